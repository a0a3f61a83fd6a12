"""Kernel images: bzImage → vmlinux, its built-in X.509 certificates and vermagic.

A bzImage is the real-mode setup (``setup_sects`` + 1 sectors) followed by the
protected-mode part, whose compressed payload sits at ``payload_offset`` for
``payload_length`` bytes (boot protocol ≥ 2.08, header at 0x1f1).  The payload
is vmlinux (a stripped ELF) compressed with the image's CONFIG_KERNEL_*
compressor, followed by its uncompressed size as a little-endian u32.

Supported payload compressions: gzip, xz, lzma, bzip2, zstd; lz4 only when the
optional ``lz4`` package is installed; lzo is not supported (no Python library
reads the kernel's lzop stream).  ARM64/RISC-V EFI zboot images (``zimg``) are
read too.
"""

from __future__ import annotations

import bz2
import lzma
import os
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lkm.errors import CompressionError, FormatError

ELF_MAGIC = b"\x7fELF"
HDRS_MAGIC = b"HdrS"

# Upper bound on a decompressed vmlinux: refuses decompression bombs.
MAX_VMLINUX = 1 << 30

# name, magic at the start of the payload
COMPRESSIONS: tuple[tuple[str, bytes], ...] = (
    ("gzip", b"\x1f\x8b"),
    ("xz", b"\xfd7zXZ\x00"),
    ("zstd", b"\x28\xb5\x2f\xfd"),
    ("bzip2", b"BZh"),
    ("lz4", b"\x02\x21\x4c\x18"),
    ("lzo", b"\x89LZO"),
    ("lzma", b"\x5d\x00\x00"),
)

_OFF_SETUP_SECTS = 0x1F1
_OFF_HEADER = 0x202
_OFF_VERSION = 0x206
_OFF_KERNEL_VERSION = 0x20E
_OFF_PAYLOAD = 0x248


def compression_of(payload: bytes | memoryview) -> str | None:
    """The compressor whose magic starts ``payload``, or None."""
    head = bytes(payload[:6])
    for name, magic in COMPRESSIONS:
        if head.startswith(magic):
            return name
    return None


def is_bzimage(data: bytes | memoryview) -> bool:
    return len(data) >= 0x250 and bytes(data[_OFF_HEADER:_OFF_HEADER + 4]) == HDRS_MAGIC


def _is_zboot(data: bytes | memoryview) -> bool:
    return len(data) >= 64 and bytes(data[0:2]) == b"MZ" and bytes(data[4:8]) == b"zimg"


def bzimage_payload(data: bytes | memoryview) -> tuple[str, memoryview]:
    """(compression name, compressed payload) of a bzImage or EFI zboot image."""
    mv = memoryview(data)
    if _is_zboot(mv):
        off, size = struct.unpack_from("<II", mv, 8)
        if off + size > len(mv) or size == 0:
            raise FormatError("zboot payload lies outside the image")
        name = bytes(mv[24:56]).split(b"\0", 1)[0].decode("ascii", "replace")
        name = {"lzma": "lzma", "gzip": "gzip", "xzkern": "xz", "zstd22": "zstd"}.get(name, name)
        return name, mv[off:off + size]
    if not is_bzimage(mv):
        raise FormatError("not a bzImage (no HdrS boot header)")
    setup_sects = mv[_OFF_SETUP_SECTS] or 4
    pm_start = (setup_sects + 1) * 512
    (version,) = struct.unpack_from("<H", mv, _OFF_VERSION)
    if pm_start >= len(mv):
        raise FormatError("bzImage setup sectors exceed the file")
    if version >= 0x208:
        off, size = struct.unpack_from("<II", mv, _OFF_PAYLOAD)
        start = pm_start + off
        if size == 0 or start + size > len(mv):
            raise FormatError("bzImage payload lies outside the image")
        payload = mv[start:start + size]
    else:
        payload = _scan_payload(mv[pm_start:])
    found = compression_of(payload)
    if found is None:
        raise CompressionError("bzImage payload has no known compression magic")
    return found, payload


def _scan_payload(pm: memoryview) -> memoryview:
    """Old boot protocols: find the first compression magic in the protected-mode part."""
    raw = bytes(pm)
    best = -1
    for name, magic in COMPRESSIONS:
        if name == "lzma":
            continue  # three bytes are too weak to scan for
        i = raw.find(magic)
        if i >= 0 and (best < 0 or i < best):
            best = i
    if best < 0:
        raise CompressionError("no compressed payload found in the bzImage")
    return pm[best:]


def kernel_version(data: bytes | memoryview) -> str | None:
    """The bzImage's kernel_version string ("6.1.0-56-amd64 (...) #1 SMP ..."), if any."""
    if not is_bzimage(data):
        return None
    (ptr,) = struct.unpack_from("<H", data, _OFF_KERNEL_VERSION)
    start = ptr + 0x200
    if ptr == 0 or start >= len(data):
        return None
    end = bytes(data[start:start + 512]).split(b"\0", 1)[0]
    return end.decode("ascii", "replace") or None


def vmlinux_from_bzimage(data: bytes | memoryview, limit: int = MAX_VMLINUX) -> bytes:
    """Decompress the vmlinux inside a bzImage (or EFI zboot image)."""
    name, payload = bzimage_payload(data)
    return decompress_payload(name, payload, limit)


def decompress_payload(name: str, payload: bytes | memoryview, limit: int = MAX_VMLINUX) -> bytes:
    """Decompress one kernel payload stream; trailing bytes (the size word) are ignored."""
    fn = _DECOMPRESSORS.get(name)
    if fn is None:
        raise CompressionError(f"{name}-compressed kernel images are not supported")
    try:
        out = fn(payload, limit)
    except CompressionError:
        raise
    except (OSError, EOFError, ValueError, lzma.LZMAError, zlib.error, MemoryError) as e:
        raise CompressionError(f"corrupt {name} kernel payload: {e}") from None
    except Exception as e:  # zstandard.ZstdError, lz4 errors
        raise CompressionError(f"corrupt {name} kernel payload: {e}") from None
    if len(out) > limit:
        raise CompressionError(f"decompressed kernel exceeds {limit} bytes")
    return out


def _stream(dec: lzma.LZMADecompressor | bz2.BZ2Decompressor, payload: bytes | memoryview,
            limit: int, name: str) -> bytes:
    out = dec.decompress(payload, max_length=limit + 1)
    if not dec.eof and len(out) <= limit:
        raise CompressionError(f"truncated {name} kernel payload")
    return out


def _gzip(payload: bytes | memoryview, limit: int) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(payload, limit + 1)
    if not d.eof and len(out) <= limit:
        raise CompressionError("truncated gzip kernel payload")
    return out


def _xz(payload: bytes | memoryview, limit: int) -> bytes:
    return _stream(lzma.LZMADecompressor(lzma.FORMAT_XZ), payload, limit, "xz")


def _lzma(payload: bytes | memoryview, limit: int) -> bytes:
    return _stream(lzma.LZMADecompressor(lzma.FORMAT_ALONE, memlimit=1 << 30), payload, limit,
                   "lzma")


def _bzip2(payload: bytes | memoryview, limit: int) -> bytes:
    return _stream(bz2.BZ2Decompressor(), payload, limit, "bzip2")


def _zstd(payload: bytes | memoryview, limit: int) -> bytes:
    import zstandard

    dobj = zstandard.ZstdDecompressor().decompressobj()
    mv = memoryview(payload)
    chunks = []
    total = 0
    # small input steps bound what one call can produce
    for pos in range(0, len(mv), 1 << 13):
        chunk = dobj.decompress(mv[pos:pos + (1 << 13)])
        chunks.append(chunk)
        total += len(chunk)
        if dobj.eof or total > limit:
            break
    if not dobj.eof and total <= limit:
        raise CompressionError("truncated zstd kernel payload")
    return b"".join(chunks)


def _lz4(payload: bytes | memoryview, limit: int) -> bytes:
    """The lz4 legacy format of the kernel: magic, then (le32 size, block) pairs."""
    try:
        import lz4.block  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        raise CompressionError(
            "lz4-compressed kernel images need the 'lz4' Python package") from None
    mv = memoryview(payload)
    pos = 4
    out = bytearray()
    while pos + 4 <= len(mv):
        (size,) = struct.unpack_from("<I", mv, pos)
        if size == 0x184C2102:  # a new legacy frame
            pos += 4
            continue
        if size == 0 or pos + 4 + size > len(mv):
            break  # the appended size word, or the end
        out += lz4.block.decompress(bytes(mv[pos + 4:pos + 4 + size]), uncompressed_size=8 << 20)
        pos += 4 + size
        if len(out) > limit:
            break
    if not out:
        raise CompressionError("empty lz4 kernel payload")
    return bytes(out)


_DECOMPRESSORS: dict[str, Callable[[bytes | memoryview, int], bytes]] = {
    "gzip": _gzip,
    "xz": _xz,
    "lzma": _lzma,
    "bzip2": _bzip2,
    "zstd": _zstd,
    "lz4": _lz4,
}


def load_vmlinux(path: str | os.PathLike[str]) -> bytes:
    """vmlinux bytes from a bzImage/vmlinuz, an EFI zboot image, a compressed vmlinux
    (vmlinux.gz, .xz, ...) or an ELF vmlinux."""
    data = Path(path).read_bytes()
    return vmlinux_from_image(data)


def vmlinux_from_image(data: bytes) -> bytes:
    """Like load_vmlinux, from bytes."""
    if data[:4] == ELF_MAGIC:
        return data
    if is_bzimage(data) or _is_zboot(data):
        return vmlinux_from_bzimage(data)
    name = compression_of(data)
    if name is not None and name != "lzma":
        out = decompress_payload(name, data)
        if out[:4] == ELF_MAGIC:
            return out
    raise FormatError("not a kernel image: neither bzImage nor ELF vmlinux")


# --- ELF section lookup (enough for a vmlinux) --------------------------------------


def _section_headers(mv: memoryview) -> tuple[str, int, list[tuple[str, int, int, int, int, int]]]:
    """(struct endianness, ELF class, [(name, type, addr, offset, size, link)])."""
    if len(mv) < 52 or bytes(mv[:4]) != ELF_MAGIC:
        raise FormatError("not an ELF file")
    cls, data = mv[4], mv[5]
    if cls not in (1, 2) or data not in (1, 2):
        raise FormatError("bad ELF class or data encoding")
    e = "<" if data == 1 else ">"
    if cls == 2:
        if len(mv) < 64:
            raise FormatError("truncated ELF header")
        shoff, = struct.unpack_from(e + "Q", mv, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", mv, 0x3A)
        shdr = struct.Struct(e + "IIQQQQIIQQ")
    else:
        shoff, = struct.unpack_from(e + "I", mv, 0x20)
        shentsize, shnum, shstrndx = struct.unpack_from(e + "HHH", mv, 0x2E)
        shdr = struct.Struct(e + "IIIIIIIIII")
    if shnum == 0 or shentsize < shdr.size or shoff + shnum * shentsize > len(mv):
        return e, cls, []
    if shstrndx >= shnum:
        return e, cls, []
    heads = [shdr.unpack_from(mv, shoff + i * shentsize) for i in range(shnum)]
    str_off, str_size = heads[shstrndx][4], heads[shstrndx][5]
    if str_off + str_size > len(mv):
        return e, cls, []
    strtab = bytes(mv[str_off:str_off + str_size])
    out = []
    for h in heads:
        name_off = h[0]
        end = strtab.find(b"\0", name_off)
        name = (strtab[name_off:end if end >= 0 else None].decode("ascii", "replace")
                if name_off < len(strtab) else "")
        out.append((name, h[1], h[3], h[4], h[5], h[6]))
    return e, cls, out


def elf_sections(vmlinux: bytes | memoryview) -> dict[str, tuple[int, int]]:
    """name -> (file offset, size) of every section with file contents."""
    mv = memoryview(vmlinux)
    _e, _cls, heads = _section_headers(mv)
    out: dict[str, tuple[int, int]] = {}
    for name, sh_type, _addr, off, size, _link in heads:
        if sh_type == 8 or off + size > len(mv):  # SHT_NOBITS, or out of the file
            continue
        out.setdefault(name, (off, size))
    return out


def elf_symbols(vmlinux: bytes | memoryview, wanted: set[str]) -> dict[str, int]:
    """Values of the ``wanted`` symbols of an unstripped vmlinux's .symtab (missing: absent)."""
    mv = memoryview(vmlinux)
    e, cls, heads = _section_headers(mv)
    sym = struct.Struct(e + ("IBBHQQ" if cls == 2 else "IIIBBH"))
    found: dict[str, int] = {}
    keys = {w.encode() for w in wanted}
    for _name, sh_type, _addr, off, size, link in heads:
        if sh_type != 2 or link >= len(heads) or off + size > len(mv):  # SHT_SYMTAB
            continue
        s_off, s_size = heads[link][3], heads[link][4]
        if s_off + s_size > len(mv):
            continue
        strtab = bytes(mv[s_off:s_off + s_size])
        n = size // sym.size
        for entry in sym.iter_unpack(mv[off:off + n * sym.size]):
            name_off, value = (entry[0], entry[4]) if cls == 2 else (entry[0], entry[1])
            end = strtab.find(b"\0", name_off)
            if end < 0:
                continue
            key = strtab[name_off:end]
            if key in keys:
                found.setdefault(key.decode(), value)
    return found


def _vaddr_to_offset(heads: list[tuple[str, int, int, int, int, int]], addr: int,
                     length: int, limit: int) -> int | None:
    for _name, sh_type, sh_addr, off, size, _link in heads:
        if sh_type != 8 and sh_addr and sh_addr <= addr and addr + length <= sh_addr + size:
            pos = off + addr - sh_addr
            return pos if pos + length <= limit else None
    return None


# --- what the image carries ----------------------------------------------------------

_CERT_RE = re.compile(rb"\x30\x82..\x30\x82", re.S)


def find_certificates(vmlinux: bytes | memoryview) -> list[bytes]:
    """The DER X.509 certificates built into the kernel (system_certificate_list).

    With symbols (an unstripped vmlinux) the list is read as the kernel reads it;
    otherwise .init.data (or, without section headers, the whole image) is scanned
    for DER certificates.
    """
    mv = memoryview(vmlinux)
    listed = _listed_certificates(mv)
    if listed is not None:
        return listed
    try:
        sections = elf_sections(mv)
    except FormatError:
        sections = {}
    area = sections.get(".init.data")
    region = mv[area[0]:area[0] + area[1]] if area else mv
    raw = bytes(region)
    certs: list[bytes] = []
    pos = 0
    while True:
        m = _CERT_RE.search(raw, pos)
        if m is None:
            break
        start = m.start()
        (length,) = struct.unpack_from(">H", raw, start + 2)
        der = raw[start:start + 4 + length]
        if _is_certificate(der):
            certs.append(der)
            pos = start + len(der)
        else:
            pos = start + 1
    return certs


def _is_certificate(der: bytes) -> bool:
    from cryptography import x509

    try:
        x509.load_der_x509_certificate(der)
    except ValueError:
        return False
    return True


def _listed_certificates(mv: memoryview) -> list[bytes] | None:
    """system_certificate_list[system_certificate_list_size], as x509_load_certificate_list
    walks it (``30 82 len16`` records); None without those symbols."""
    try:
        syms = elf_symbols(mv, {"system_certificate_list", "system_certificate_list_size"})
        e, cls, heads = _section_headers(mv)
    except FormatError:
        return None
    if len(syms) != 2:
        return None
    word = 8 if cls == 2 else 4
    size_at = _vaddr_to_offset(heads, syms["system_certificate_list_size"], word, len(mv))
    if size_at is None:
        return None
    (size,) = struct.unpack_from(e + ("Q" if word == 8 else "I"), mv, size_at)
    start = _vaddr_to_offset(heads, syms["system_certificate_list"], size, len(mv))
    if start is None:
        return None
    raw = bytes(mv[start:start + size])
    certs = []
    p = 0
    while len(raw) - p >= 4:
        if raw[p] != 0x30 or raw[p + 1] != 0x82:
            break  # the kernel: "Problem parsing in-kernel X.509 certificate list"
        plen = 4 + ((raw[p + 2] << 8) | raw[p + 3])
        if plen > len(raw) - p:
            break
        der = raw[p:p + plen]
        if _is_certificate(der):
            certs.append(der)
        p += plen
    return certs


_VERMAGIC_RE = re.compile(
    rb"\0(\d+\.\d+[\x21-\x7e]*) ((?:SMP |preempt |PREEMPT_RT |mod_unload |modversions )+"
    rb"(?:[\x21-\x7e]+ )*)\0")


def find_vermagic(vmlinux: bytes | memoryview, release: str | None = None) -> str | None:
    """The kernel's vermagic string ("6.1.0-56-amd64 SMP preempt mod_unload modversions ")."""
    mv = memoryview(vmlinux)
    try:
        sections = elf_sections(mv)
    except FormatError:
        sections = {}
    area = sections.get(".rodata")
    raw = bytes(mv[area[0]:area[0] + area[1]]) if area else bytes(mv)
    if release is not None:
        pat = re.compile(b"\0(" + re.escape(release.encode()) + rb" [\x20-\x7e]*)\0")
        m = pat.search(raw)
        if m:
            return m.group(1).decode("ascii")
    m2 = _VERMAGIC_RE.search(raw)
    if m2:
        return (m2.group(1) + b" " + m2.group(2)).decode("ascii")
    return None


@dataclass
class KernelImage:
    """A kernel image, decompressed once; certificates and vermagic found on demand."""

    vmlinux: bytes
    version: str | None = None  # bzImage kernel_version string
    compression: str | None = None
    _certs: list[bytes] | None = field(default=None, repr=False)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> KernelImage:
        data = Path(path).read_bytes()
        if is_bzimage(data) or _is_zboot(data):
            name, payload = bzimage_payload(data)
            return cls(decompress_payload(name, payload), kernel_version(data), name)
        return cls(vmlinux_from_image(data))

    @property
    def release(self) -> str | None:
        """The release (uname -r) from the boot header, or from vermagic."""
        if self.version:
            return self.version.split(" ", 1)[0]
        vm = find_vermagic(self.vmlinux)
        return vm.split(" ", 1)[0] if vm else None

    @property
    def certificates(self) -> list[bytes]:
        if self._certs is None:
            self._certs = find_certificates(self.vmlinux)
        return self._certs

    @property
    def vermagic(self) -> str | None:
        return find_vermagic(self.vmlinux, self.release)


def locate_vmlinuz(path: str | os.PathLike[str]) -> Path:
    """A kernel image given directly, or the one under a tree's boot/ (the last by name)."""
    p = Path(path)
    if p.is_dir():
        for d in (p / "boot", p):
            cands = sorted(d.glob("vmlinuz-*")) + sorted(d.glob("vmlinuz")) if d.is_dir() else []
            if cands:
                return cands[-1]
        # a module directory lib/modules/<release>: look for ../../../boot/vmlinuz-<release>
        root = p.parent.parent.parent
        cand = root / "boot" / f"vmlinuz-{p.name}"
        if cand.is_file():
            return cand
        raise FormatError(f"no vmlinuz found under {p}")
    return p
