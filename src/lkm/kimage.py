"""Kernel images: bzImage → vmlinux, its sections, built-in X.509 certificates, vermagic.

:class:`KernelImage` is an image decompressed once; its ``elf`` is a :class:`Vmlinux`,
the one reader of a linked kernel's ELF (sections by name, bytes at a virtual
address, symbols), for the profile's export table and for whatever else reads the
kernel's data (``.BTF``).

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

import bisect
import bz2
import lzma
import os
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lkm.elf import SHT_NOBITS, ElfFile, Section
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


# --- the vmlinux ELF ------------------------------------------------------------------


class Vmlinux:
    """A linked kernel (vmlinux) as an ELF file: its sections by name, the bytes at a
    virtual address, its symbols.

    This is the one vmlinux reader (built on :class:`lkm.elf.ElfFile`); the kernel
    profile reads the export table and ``__param`` through it, and other readers of
    the kernel's data (``.BTF``, say) should too::

        vm = KernelImage.load("/boot/vmlinuz-6.1.0-57-amd64").elf
        btf = vm.section_bytes(".BTF")          # memoryview, or None
        vm.read(addr, 8)                        # bytes at a virtual address
        vm.cstring(addr)                        # a NUL-terminated string there
        vm.symbols({"system_certificate_list"})  # from .symtab, if not stripped

    Creating one raises :class:`~lkm.errors.ElfError` (a FormatError) when the data is
    not an ELF file with usable section headers; reads outside the file raise it too.
    """

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = memoryview(data)
        self.elf = ElfFile(self.data)
        self.little_endian = self.elf.little_endian
        self.pointer_size = self.elf.pointer_size
        self._sections: dict[str, Section] | None = None
        self._mapped: list[tuple[int, int, int]] | None = None  # (addr, end, offset)
        self._starts: list[int] = []

    @property
    def sections(self) -> dict[str, Section]:
        """name -> the first section of that name (nameless ones left out)."""
        if self._sections is None:
            out: dict[str, Section] = {}
            for sec in self.elf.sections:
                if sec.name:
                    out.setdefault(sec.name, sec)
            self._sections = out
        return self._sections

    def section(self, name: str) -> Section | None:
        """The first section called ``name`` (its header: addr, offset, size, type...)."""
        return self.sections.get(name)

    def section_bytes(self, name: str) -> memoryview | None:
        """The file contents of section ``name``: None if there is none or it has no file
        contents (SHT_NOBITS, e.g. ``.bss``); ElfError if it extends past the file."""
        sec = self.sections.get(name)
        if sec is None or sec.type == SHT_NOBITS:
            return None
        return sec.data()

    def read(self, addr: int, size: int) -> memoryview:
        """``size`` bytes at virtual address ``addr``, from the section with file contents
        that holds them all; FormatError if none does."""
        found = self._containing(addr, size)
        if found is None:
            raise FormatError(f"vmlinux: {size} bytes at {addr:#x} are not in the image")
        return self.data[found[0]:found[0] + size]

    def read_word(self, addr: int) -> int:
        """The unsigned pointer-sized word at ``addr``, in the file's byte order."""
        return int.from_bytes(self.read(addr, self.pointer_size),
                              "little" if self.little_endian else "big")

    def cstring(self, addr: int, limit: int = 4096) -> str | None:
        """The NUL-terminated string at ``addr`` (at most ``limit`` bytes), None if ``addr``
        is not in the image or no NUL follows within its section and the limit."""
        found = self._containing(addr, 1)
        if found is None:
            return None
        pos, sec_end = found
        raw = bytes(self.data[pos:min(sec_end, pos + limit)])
        nul = raw.find(b"\0")
        return None if nul < 0 else raw[:nul].decode("utf-8", "surrogateescape")

    def symbols(self, wanted: set[str]) -> dict[str, int]:
        """Values of the ``wanted`` symbols in ``.symtab`` (the first of each name); those
        missing, or all without a symbol table, are absent."""
        found: dict[str, int] = {}
        for name in sorted(wanted):
            for i in self.elf.symbol_indexes_with_prefix(name.encode()):
                sym = self.elf.symbol(i)
                if sym.name == name:
                    found.setdefault(name, sym.value)
                    break
        return found

    def _containing(self, addr: int, size: int) -> tuple[int, int] | None:
        """(file offset of ``addr``, file offset of its section's end) for the section
        with file contents holding ``size`` bytes at ``addr``."""
        if self._mapped is None:
            n = len(self.data)
            self._mapped = sorted((s.addr, s.addr + s.size, s.offset) for s in self.elf.sections
                                  if s.addr and s.size and s.type != SHT_NOBITS
                                  and s.offset + s.size <= n)
            self._starts = [m[0] for m in self._mapped]
        i = bisect.bisect_right(self._starts, addr) - 1
        while i >= 0:  # sections may overlap (.percpu at 0 aside): look back
            start, end, off = self._mapped[i]
            if addr + size <= end:
                return off + addr - start, off + end - start
            i -= 1
        return None


def _vmlinux_or_none(data: bytes | memoryview) -> Vmlinux | None:
    """A Vmlinux, or None when the image has no usable ELF section headers."""
    try:
        return Vmlinux(data)
    except FormatError:
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
    vm = _vmlinux_or_none(mv)
    listed = _listed_certificates(vm) if vm is not None else None
    if listed is not None:
        return listed
    area = _section_or_none(vm, ".init.data")
    raw = bytes(area if area is not None else mv)
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


def _section_or_none(vm: Vmlinux | None, name: str) -> memoryview | None:
    """A section's bytes, None when there is no such section or it lies outside the file."""
    if vm is None:
        return None
    try:
        return vm.section_bytes(name)
    except FormatError:
        return None


def _is_certificate(der: bytes) -> bool:
    from cryptography import x509

    try:
        x509.load_der_x509_certificate(der)
    except (ValueError, x509.InvalidVersion):  # InvalidVersion: an X.509 version past v3
        return False
    return True


def _listed_certificates(vm: Vmlinux) -> list[bytes] | None:
    """system_certificate_list[system_certificate_list_size], as x509_load_certificate_list
    walks it (``30 82 len16`` records); None without those symbols."""
    try:
        syms = vm.symbols({"system_certificate_list", "system_certificate_list_size"})
        if len(syms) != 2:
            return None
        size = vm.read_word(syms["system_certificate_list_size"])
        raw = bytes(vm.read(syms["system_certificate_list"], size))
    except FormatError:
        return None
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
    area = _section_or_none(_vmlinux_or_none(mv), ".rodata")
    raw = bytes(area if area is not None else mv)
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
    _elf: Vmlinux | None = field(default=None, repr=False)

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
    def elf(self) -> Vmlinux:
        """The vmlinux's sections, addresses and symbols (ElfError without section headers)."""
        if self._elf is None:
            self._elf = Vmlinux(self.vmlinux)
        return self._elf

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
