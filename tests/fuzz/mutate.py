"""Structure-aware mutators for module files: the ELF header, the section header table,
symbol and string tables, relocations, .modinfo, __versions, __ksymtab*, the struct
module name, the signature trailer and its PKCS#7, and the compressed containers.

Every mutator takes a :class:`random.Random` and bytes and returns new bytes; none
fails on input it cannot make sense of (it falls back to byte havoc).  The layouts are
read here from the bytes, independently of lkm's own ELF reader, so a bug in the
reader cannot hide the structure from the mutator.
"""

from __future__ import annotations

import functools
import gzip
import lzma
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import zstandard
from der import mutate_der

MAGIC = b"~Module signature appended~\n"
SIG_INFO = 12  # struct module_signature

_INTERESTING = (0, 1, 2, 3, 4, 7, 8, 0x10, 0x20, 0x3F, 0x40, 0x7F, 0x80, 0xFF, 0x100,
                0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
                1 << 32, 1 << 40, (1 << 63) - 1, 1 << 63, (1 << 64) - 1)


def interesting(rng: random.Random, width: int, old: int = 0, size: int = 0) -> int:
    """A value for a ``width``-byte field: a boundary, near the old value, near the file
    size, or random."""
    mask = (1 << (8 * width)) - 1
    r = rng.random()
    if r < 0.45:
        v = rng.choice(_INTERESTING)
    elif r < 0.65:
        v = old + rng.choice((-8, -4, -2, -1, 1, 2, 4, 8, 24, 64))
    elif r < 0.8 and size:
        v = size + rng.randint(-64, 64)
    elif r < 0.9:
        v = old ^ (1 << rng.randrange(8 * width))
    else:
        v = rng.getrandbits(8 * width)
    return v & mask


def havoc(rng: random.Random, data: bytes, start: int = 0, end: int | None = None,
          rounds: int | None = None) -> bytes:
    """AFL-style byte havoc inside ``data[start:end]``: flips, boundary bytes and words,
    deletions, duplications, insertions."""
    b = bytearray(data)
    end = len(b) if end is None else min(end, len(b))
    for _ in range(rounds if rounds is not None else rng.randint(1, 6)):
        if end <= start:
            b += rng.randbytes(rng.randint(1, 16))
            end = len(b)
            continue
        pos = rng.randrange(start, end)
        op = rng.randrange(8)
        if op == 0:
            b[pos] ^= 1 << rng.randrange(8)
        elif op == 1:
            b[pos] = rng.choice((0, 0xFF, 0x7F, 0x80, 0x01, 0x20, 0x2E, 0x3D, 0x5F))
        elif op == 2 and pos + 4 <= end:
            struct.pack_into("<I", b, pos, interesting(rng, 4))
        elif op == 3 and pos + 8 <= end:
            struct.pack_into("<Q", b, pos, interesting(rng, 8))
        elif op == 4:
            n = rng.randint(1, min(64, end - pos))
            del b[pos:pos + n]
            end -= n
        elif op == 5:
            n = rng.randint(1, min(64, end - pos))
            b[pos:pos] = b[pos:pos + n]
            end += n
        elif op == 6:
            ins = rng.randbytes(rng.randint(1, 8))
            b[pos:pos] = ins
            end += len(ins)
        else:
            b[pos] = rng.randrange(256)
    return bytes(b)


# -- the ELF layout, read independently ---------------------------------------------------

@dataclass
class Shdr:
    index: int
    at: int  # file offset of the header
    name: str
    type: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int


# (offset, width) of each field, per class: ELF32 / ELF64
_EHDR = {32: {"type": (16, 2), "machine": (18, 2), "version": (20, 4), "entry": (24, 4),
              "phoff": (28, 4), "shoff": (32, 4), "flags": (36, 4), "ehsize": (40, 2),
              "phentsize": (42, 2), "phnum": (44, 2), "shentsize": (46, 2), "shnum": (48, 2),
              "shstrndx": (50, 2)},
         64: {"type": (16, 2), "machine": (18, 2), "version": (20, 4), "entry": (24, 8),
              "phoff": (32, 8), "shoff": (40, 8), "flags": (48, 4), "ehsize": (52, 2),
              "phentsize": (54, 2), "phnum": (56, 2), "shentsize": (58, 2), "shnum": (60, 2),
              "shstrndx": (62, 2)}}
_SHDR = {32: {"name": (0, 4), "type": (4, 4), "flags": (8, 4), "addr": (12, 4),
              "offset": (16, 4), "size": (20, 4), "link": (24, 4), "info": (28, 4),
              "addralign": (32, 4), "entsize": (36, 4)},
         64: {"name": (0, 4), "type": (4, 4), "flags": (8, 8), "addr": (16, 8),
              "offset": (24, 8), "size": (32, 8), "link": (40, 4), "info": (44, 4),
              "addralign": (48, 8), "entsize": (56, 8)}}
_SYM = {32: {"name": (0, 4), "value": (4, 4), "size": (8, 4), "info": (12, 1),
             "other": (13, 1), "shndx": (14, 2)},
        64: {"name": (0, 4), "info": (4, 1), "other": (5, 1), "shndx": (6, 2),
             "value": (8, 8), "size": (16, 8)}}


class ElfMap:
    """Where the parts of an ELF file are (tolerant: whatever cannot be read is absent)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.ok = len(data) >= 52 and data[:4] == b"\x7fELF" and data[4] in (1, 2)
        self.bits = 64 if len(data) > 4 and data[4] == 2 else 32
        self.end = ">" if len(data) > 5 and data[5] == 2 else "<"
        self.shdrs: list[Shdr] = []
        if not self.ok or len(data) < (64 if self.bits == 64 else 52):
            self.ok = False
            return
        shoff = self.get(_EHDR[self.bits]["shoff"], 0)
        shnum = self.get(_EHDR[self.bits]["shnum"], 0)
        shstrndx = self.get(_EHDR[self.bits]["shstrndx"], 0)
        esz = 64 if self.bits == 64 else 40
        raw: list[tuple[int, list[int]]] = []
        for i in range(min(shnum, 4096)):
            at = shoff + i * esz
            if at + esz > len(data):
                break
            raw.append((at, [self.get(_SHDR[self.bits][f], at) for f in
                             ("name", "type", "offset", "size", "link", "info", "entsize")]))
        names = b""
        if shstrndx < len(raw):
            _at, f = raw[shstrndx]
            names = data[f[2]:f[2] + f[3]]
        for i, (at, f) in enumerate(raw):
            n = names[f[0]:names.find(b"\0", f[0])] if f[0] < len(names) else b""
            self.shdrs.append(Shdr(i, at, n.decode("latin-1"), f[1], f[2], f[3], f[4], f[5],
                                   f[6]))

    def get(self, field: tuple[int, int], base: int) -> int:
        off, width = field
        return int.from_bytes(self.data[base + off:base + off + width],
                              "big" if self.end == ">" else "little")

    def section(self, name: str) -> Shdr | None:
        for s in self.shdrs:
            if s.name == name:
                return s
        return None

    def of_type(self, *types: int) -> list[Shdr]:
        return [s for s in self.shdrs if s.type in types]

    def in_file(self, s: Shdr) -> bool:
        return s.size > 0 and s.offset + s.size <= len(self.data)


def _put(b: bytearray, m: ElfMap, field: tuple[int, int], base: int, value: int) -> None:
    off, width = field
    if base + off + width <= len(b):
        b[base + off:base + off + width] = (value & ((1 << 8 * width) - 1)).to_bytes(
            width, "big" if m.end == ">" else "little")


def split_signature(data: bytes) -> tuple[bytes, bytes]:
    """(the module, its signature trailer or b"")."""
    if data.endswith(MAGIC) and len(data) > len(MAGIC) + SIG_INFO:
        sig_len = int.from_bytes(data[-len(MAGIC) - 4:-len(MAGIC)], "big")
        start = len(data) - len(MAGIC) - SIG_INFO - sig_len
        if start > 0:
            return data[:start], data[start:]
    return data, b""


# -- ELF mutators ----------------------------------------------------------------------------

def m_ehdr(rng: random.Random, data: bytes, m: ElfMap) -> bytes:
    b = bytearray(data)
    if rng.random() < 0.15:
        b[rng.randrange(4, 16)] = rng.choice((0, 1, 2, 3, 0xFF))
        return bytes(b)
    field = _EHDR[m.bits][rng.choice(list(_EHDR[m.bits]))]
    old = m.get(field, 0)
    _put(b, m, field, 0, interesting(rng, field[1], old, len(data)))
    return bytes(b)


def m_shdr(rng: random.Random, data: bytes, m: ElfMap) -> bytes:
    if not m.shdrs:
        return havoc(rng, data)
    b = bytearray(data)
    s = rng.choice(m.shdrs)
    name = rng.choice(list(_SHDR[m.bits]))
    field = _SHDR[m.bits][name]
    old = m.get(field, s.at)
    if name in ("link", "info") and rng.random() < 0.5:
        v = rng.choice((0, len(m.shdrs) - 1, len(m.shdrs), s.index, rng.randrange(len(m.shdrs))))
    elif name == "type" and rng.random() < 0.6:
        v = rng.choice((0, 1, 2, 3, 4, 8, 9, 11, 0x6FFFFFF0, 0x70000000))
    elif name in ("offset", "size") and rng.random() < 0.4:
        other = rng.choice(m.shdrs)
        v = other.offset if name == "offset" else other.size
    else:
        v = interesting(rng, field[1], old, len(data))
    _put(b, m, field, s.at, v)
    return bytes(b)


def m_symbol(rng: random.Random, data: bytes, m: ElfMap) -> bytes:
    tabs = [s for s in m.of_type(2, 11) if m.in_file(s)]
    if not tabs:
        return m_shdr(rng, data, m)
    t = rng.choice(tabs)
    esz = 24 if m.bits == 64 else 16
    n = t.size // esz
    if n == 0:
        return m_shdr(rng, data, m)
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        base = t.offset + rng.randrange(n) * esz
        name = rng.choice(list(_SYM[m.bits]))
        field = _SYM[m.bits][name]
        old = m.get(field, base)
        if name == "shndx" and rng.random() < 0.6:
            v = rng.choice((0, 0xFFF1, 0xFFF2, 0xFF00, 0xFFFF, len(m.shdrs),
                            rng.randrange(max(1, len(m.shdrs)))))
        elif name == "info" and rng.random() < 0.6:
            v = rng.choice((0x10, 0x11, 0x12, 0x20, 0x21, 0x22, 0x03, 0x00, 0xA0))
        elif name == "name" and rng.random() < 0.5:
            strtab = m.shdrs[t.link] if t.link < len(m.shdrs) else None
            v = rng.randrange(strtab.size + 2) if strtab and strtab.size else old + 1
        else:
            v = interesting(rng, field[1], old, len(data))
        _put(b, m, field, base, v)
    return bytes(b)


_PREFIXES = (b"__crc_", b"__kstrtab_", b"__ksymtab_", b"__kstrtabns_", b"__export_symbol_",
             b"init_module", b"cleanup_module", b"__this_module", b".", b"\xff\xfe", b"")


def m_strings(rng: random.Random, data: bytes, m: ElfMap) -> bytes:
    """A string table or string section: lose or add NULs, plant prefixes, non-ASCII."""
    names = (".strtab", ".shstrtab", "__ksymtab_strings", ".modinfo", "__versions")
    secs = [s for s in m.shdrs if s.name in names and m.in_file(s)]
    secs += [s for s in m.of_type(3) if m.in_file(s) and s not in secs]
    if not secs:
        return havoc(rng, data)
    s = rng.choice(secs)
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        pos = s.offset + rng.randrange(s.size)
        op = rng.randrange(5)
        if op == 0:  # a NUL removed, or the last one
            nul = b.find(b"\0", pos, s.offset + s.size)
            at = nul if nul >= 0 and rng.random() < 0.7 else s.offset + s.size - 1
            b[at] = rng.choice((ord("x"), 0xFF, ord("=")))
        elif op == 1:
            b[pos] = 0
        elif op == 2:  # a prefix planted at a string start
            start = b.rfind(b"\0", s.offset, pos) + 1 or s.offset
            p = rng.choice(_PREFIXES)
            b[start:start + len(p)] = p[:max(0, s.offset + s.size - start)]
        elif op == 3:
            b[pos] = rng.choice((0x80, 0xC3, 0xE2, 0xFF, 0x7F, 0x01, ord("["), ord("*"),
                                 ord("\\"), ord("\n"), ord(" "), ord("-"), ord("_")))
        else:
            other = b.find(b"\0", rng.randrange(s.offset, s.offset + s.size))
            if other > 0:
                ln = rng.randint(1, 32)
                b[pos:pos + ln] = b[other - ln:other]
    return bytes(b[:len(data)])


def m_relocation(rng: random.Random, data: bytes, m: ElfMap) -> bytes:
    rels = [s for s in m.of_type(4, 9) if m.in_file(s)]
    if not rels:
        return m_shdr(rng, data, m)
    s = rng.choice(rels)
    wide = 8 if m.bits == 64 else 4
    esz = (3 if s.type == 4 else 2) * wide
    n = s.size // esz
    if not n:
        return m_shdr(rng, data, m)
    b = bytearray(data)
    base = s.offset + rng.randrange(n) * esz
    field = rng.randrange(3 if s.type == 4 else 2)
    fld = (field * wide, wide)
    old = m.get(fld, base)
    if field == 1 and rng.random() < 0.7:  # r_info: the symbol or the type
        shift = 32 if m.bits == 64 else 8
        sym, typ = old >> shift, old & ((1 << shift) - 1)
        if rng.random() < 0.5:
            sym = rng.choice((0, 1, sym + 1, 0xFFFFFF, 1 << 20, rng.randrange(1 << 16)))
        else:
            typ = rng.choice((0, 1, 2, 4, 9, 10, 11, 24, 42, 0xFF, rng.randrange(64)))
        v = (sym << shift) | typ
    else:
        v = interesting(rng, wide, old, len(data))
    _put(b, m, fld, base, v)
    return bytes(b)


_MODINFO_KEYS = ("name", "alias", "depends", "vermagic", "license", "softdep", "parm",
                 "parmtype", "srcversion", "intree", "retpoline", "staging", "import_ns",
                 "author", "description", "firmware", "version", "livepatch", "test")
_MODINFO_VALUES = ("", "x", "GPL", "Proprietary", "Y", "pci:v*d*sv*sd*bc*sc*i*", "a,b,,c",
                   "pre: a b post: c", "p:int", "p:charp", "p:bool", "p:array of int",
                   "6.1.0-57-amd64 SMP preempt mod_unload modversions ", "\xff\xfe", "[",
                   "a" * 300, "m" * 60, "ns:\x01", "=", " pre:", "post:")


def modinfo_block(rng: random.Random) -> bytes:
    out = []
    for _ in range(rng.randint(0, 12)):
        k = rng.choice(_MODINFO_KEYS) if rng.random() < 0.9 else rng.choice(("", "=", "x y"))
        v = rng.choice(_MODINFO_VALUES)
        sep = "=" if rng.random() < 0.95 else rng.choice(("", "==", ":"))
        out.append(f"{k}{sep}{v}".encode("utf-8", "surrogateescape"))
    tail = b"\0" if rng.random() < 0.9 else b""
    return b"\0".join(out) + tail


def replace_section(data: bytes, m: ElfMap, s: Shdr, content: bytes) -> bytes:
    """Put ``content`` at the end of the file (before no trailer) and point the section at it."""
    b = bytearray(data)
    while len(b) % 8:
        b.append(0)
    off = len(b)
    b += content
    _put(b, m, _SHDR[m.bits]["offset"], s.at, off)
    _put(b, m, _SHDR[m.bits]["size"], s.at, len(content))
    return bytes(b)


def m_modinfo(rng: random.Random, data: bytes, m: ElfMap) -> bytes:
    s = m.section(".modinfo")
    if s is None:
        return m_strings(rng, data, m)
    if rng.random() < 0.5 and m.in_file(s):
        old = data[s.offset:s.offset + s.size]
        parts = old.split(b"\0")
        new = modinfo_block(rng).rstrip(b"\0").split(b"\0")
        at = rng.randrange(len(parts) + 1)
        if rng.random() < 0.3 and parts:
            del parts[rng.randrange(len(parts))]
        parts[at:at] = new
        return replace_section(data, m, s, b"\0".join(parts))
    return replace_section(data, m, s, modinfo_block(rng))


def m_versions(rng: random.Random, data: bytes, m: ElfMap) -> bytes:
    s = m.section("__versions")
    if s is None or not m.in_file(s):
        return m_shdr(rng, data, m)
    rec = 64  # struct modversion_info on both classes
    n = s.size // rec
    content = bytearray(data[s.offset:s.offset + s.size])
    op = rng.randrange(5)
    if op == 0 and n:  # a CRC
        i = rng.randrange(n) * rec
        content[i:i + 8] = interesting(rng, 8).to_bytes(8, "little")
    elif op == 1 and n:  # a name without NUL, or emptied
        i = rng.randrange(n) * rec
        content[i + 8:i + 64] = rng.choice((b"x" * 56, bytes(56), b"\xff" * 56,
                                            b"module_layout".ljust(56, b"\0")))
    elif op == 2 and n:  # a duplicated record
        i = rng.randrange(n) * rec
        content += content[i:i + rec]
    elif op == 3:  # a partial record
        content += rng.randbytes(rng.randint(1, 63))
    else:
        return replace_section(data, m, s, bytes(content[:rng.randrange(len(content) + 1)]))
    return replace_section(data, m, s, bytes(content))


def m_ksymtab(rng: random.Random, data: bytes, m: ElfMap) -> bytes:
    secs = [s for s in m.shdrs if s.name.startswith(("__ksymtab", "__kcrctab")) and
            m.in_file(s)]
    if not secs:
        return m_strings(rng, data, m)
    s = rng.choice(secs)
    return havoc(rng, data, s.offset, s.offset + s.size, rng.randint(1, 3))


def m_this_module(rng: random.Random, data: bytes, m: ElfMap) -> bytes:
    s = m.section(".gnu.linkonce.this_module")
    if s is None or not m.in_file(s):
        return m_shdr(rng, data, m)
    b = bytearray(data)
    name_at = s.offset + 24  # struct module: state, list (2 pointers), then name[56]
    if name_at + 56 > len(b):
        return m_shdr(rng, data, m)
    op = rng.randrange(4)
    if op == 0:
        b[name_at:name_at + 56] = b"y" * 56
    elif op == 1:
        b[name_at:name_at + 56] = bytes(56)
    elif op == 2:
        b[name_at + rng.randrange(56)] = rng.choice((0xFF, ord("-"), ord("."), ord("/")))
    else:
        return replace_section(data, m, s, data[s.offset:s.offset + rng.randrange(s.size)])
    return bytes(b)


def m_truncate(rng: random.Random, data: bytes, m: ElfMap) -> bytes:
    points = [0, 4, 16, 52, 64, len(data) // 2, len(data) - 1]
    for s in m.shdrs:
        points += [s.offset, s.offset + s.size, s.at, s.offset + s.size // 2]
    p = rng.choice([p for p in points if 0 <= p < len(data)] or [0])
    return data[:p + rng.randint(-2, 2) if p > 2 else p]


def m_splice(rng: random.Random, data: bytes, m: ElfMap, donor: bytes) -> bytes:
    """A section's contents taken from another module."""
    dm = ElfMap(donor)
    if not m.shdrs or not dm.shdrs:
        return havoc(rng, data)
    s = rng.choice(m.shdrs)
    d = dm.section(s.name) or rng.choice(dm.shdrs)
    return replace_section(data, m, s, donor[d.offset:d.offset + min(d.size, 1 << 20)])


ELF_MUTATORS: tuple[Callable[[random.Random, bytes, ElfMap], bytes], ...] = (
    m_ehdr, m_shdr, m_shdr, m_symbol, m_symbol, m_strings, m_strings, m_relocation,
    m_modinfo, m_modinfo, m_versions, m_ksymtab, m_this_module, m_truncate)


def mutate_elf(rng: random.Random, data: bytes, donors: list[bytes] | None = None) -> bytes:
    """One to three structure-aware changes (or byte havoc when the layout is unreadable)."""
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        m = ElfMap(data)
        if not m.ok or rng.random() < 0.08:
            data = havoc(rng, data)
        elif donors and rng.random() < 0.05:
            data = m_splice(rng, data, m, rng.choice(donors))
        else:
            data = rng.choice(ELF_MUTATORS)(rng, data, m)
    return data


# -- the signature trailer -------------------------------------------------------------------

def mutate_signature(rng: random.Random, signed: bytes) -> bytes:
    """struct module_signature's fields, the PKCS#7 message (DER-aware), the magic."""
    body, trailer = split_signature(signed)
    if not trailer:
        return signed + rng.choice((MAGIC, bytes(SIG_INFO) + MAGIC, rng.randbytes(40) + MAGIC))
    pkcs7 = trailer[:-len(MAGIC) - SIG_INFO]
    info = bytearray(trailer[-len(MAGIC) - SIG_INFO:-len(MAGIC)])
    op = rng.randrange(6)
    if op <= 2:
        pkcs7 = mutate_der(rng, pkcs7)
        if rng.random() < 0.8:  # keep sig_len consistent so the PKCS#7 parser is reached
            info[8:12] = len(pkcs7).to_bytes(4, "big")
    elif op == 3:
        i = rng.randrange(SIG_INFO)
        info[i] = rng.choice((0, 1, 2, 0xFF, info[i] ^ 1))
    elif op == 4:
        info[8:12] = interesting(rng, 4, len(pkcs7), len(signed)).to_bytes(4, "big")
    else:
        return body + (pkcs7 + bytes(info) + MAGIC)[rng.randrange(len(trailer)):]
    magic = MAGIC if rng.random() < 0.97 else havoc(rng, MAGIC, rounds=1)
    return body + pkcs7 + bytes(info) + magic


# -- compressed containers -----------------------------------------------------------------

def compress_as(kind: str, data: bytes) -> bytes:
    if kind == "gzip":
        return gzip.compress(data, compresslevel=1, mtime=0)
    if kind == "xz":
        return lzma.compress(data, preset=0, check=lzma.CHECK_CRC32)
    return bytes(zstandard.ZstdCompressor(level=1).compress(data))


@functools.cache
def bomb(kind: str, mib: int) -> bytes:
    """``mib`` MiB of zeros compressed (made once, a MiB at a time)."""
    chunk = bytes(1 << 20)
    if kind == "gzip":
        c = zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return b"".join(c.compress(chunk) for _ in range(mib)) + c.flush()
    if kind == "xz":
        x = lzma.LZMACompressor(preset=0)
        return b"".join(x.compress(chunk) for _ in range(mib)) + x.flush()
    z = zstandard.ZstdCompressor(level=1).compressobj()
    return b"".join(z.compress(chunk) for _ in range(mib)) + z.flush()


def mutate_container(rng: random.Random, z: bytes, kind: str, payload: bytes) -> bytes:
    """Truncation, header and trailer damage, lies about sizes, concatenation, small bombs."""
    b = bytearray(z)
    op = rng.randrange(9)
    if op == 0:
        return z[:rng.randrange(len(z) + 1)]
    if op == 1:
        return havoc(rng, z, 0, min(len(z), 32), rng.randint(1, 2))
    if op == 2:
        return havoc(rng, z, max(0, len(z) - 24), len(z), rng.randint(1, 2))
    if op == 3:
        return havoc(rng, z, rounds=rng.randint(1, 3))
    if op == 4 and kind == "gzip" and len(b) >= 8:  # ISIZE and CRC lie
        struct.pack_into("<I", b, len(b) - rng.choice((4, 8)), interesting(rng, 4))
        return bytes(b)
    if op == 4 and kind == "zstd" and len(b) > 6:  # frame header descriptor / FCS
        b[4] = rng.choice((0x00, 0x20, 0x40, 0x80, 0xC0, 0xE0, 0x24, b[4] ^ 0x20))
        return bytes(b)
    if op == 5:  # another stream after, or garbage after
        return z + (compress_as(kind, payload[:rng.randrange(len(payload) + 1)])
                    if rng.random() < 0.5 else rng.randbytes(rng.randint(1, 64)))
    if op == 6 and rng.random() < 0.1:  # a bomb: zeros far past the payload's size
        return bomb(kind, rng.choice((8, 8, 64)))
    if op == 7:  # the magic of one kind, the body of another
        other = rng.choice([k for k in ("gzip", "xz", "zstd") if k != kind])
        return compress_as(other, payload)[:6] + z[6:]
    return z[:-rng.randint(1, min(len(z), 16))] if z else z


def mutate_module(rng: random.Random, seed: bytes, donors: list[bytes] | None = None
                  ) -> bytes:
    """A module file mutant: ELF (signature kept or not), signature, or a container."""
    r = rng.random()
    body, trailer = split_signature(seed)
    if r < 0.6:
        out = mutate_elf(rng, body, donors)
        if trailer and rng.random() < 0.3:
            out += trailer
    elif r < 0.8 and trailer:
        out = mutate_signature(rng, seed)
    elif r < 0.8:
        out = mutate_elf(rng, seed, donors)
    else:
        kind = rng.choice(("gzip", "xz", "zstd"))
        payload = mutate_elf(rng, body, donors) if rng.random() < 0.5 else seed
        z = compress_as(kind, payload)
        out = mutate_container(rng, z, kind, payload) if rng.random() < 0.6 else z
    return out
