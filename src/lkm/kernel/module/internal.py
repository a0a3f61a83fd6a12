"""struct load_info and the ELF types the loader reads (kernel/module/internal.h).

The image is read the way the kernel reads it: an ELF64 little-endian relocatable,
taken field by field with only the kernel's own checks.  :class:`SectionHeader` is an
Elf64_Shdr with named fields, mutable because the loader rewrites sh_flags, sh_addr
and sh_entsize as the kernel does.  A failed step raises :class:`LoadError` with the
errno load_module() returns (its log lines are in the caller's Printk).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from lkm.kernel.module.state import ModuleRef

# include/uapi/linux/elf.h
ET_REL = 1
EM_X86_64 = 62
SHT_NULL, SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_NOTE, SHT_NOBITS, SHT_REL = 0, 2, 3, 4, 7, 8, 9
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
SHF_RELA_LIVEPATCH = 0x00100000
SHF_RO_AFTER_INIT = 0x00200000
SHN_UNDEF, SHN_LIVEPATCH, SHN_ABS, SHN_COMMON = 0, 0xFF20, 0xFFF1, 0xFFF2
STB_WEAK = 2

EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
SHDR_SIZE = 64
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_RELA = struct.Struct("<QQq")
RELA_SIZE = _RELA.size

MODULE_NAME_OFFSET = 24  # offsetof(struct module, name) on 64-bit


class LoadError(Exception):
    """A load_module() step failed with ``err`` (a positive or negative errno)."""

    def __init__(self, err: int) -> None:
        super().__init__(err)
        self.err = abs(err)


class SectionHeader:
    """Elf64_Shdr."""

    __slots__ = ("sh_addr", "sh_addralign", "sh_entsize", "sh_flags", "sh_info", "sh_link",
                 "sh_name", "sh_offset", "sh_size", "sh_type")

    def __init__(self, sh_name: int, sh_type: int, sh_flags: int, sh_addr: int,
                 sh_offset: int, sh_size: int, sh_link: int, sh_info: int, sh_addralign: int,
                 sh_entsize: int) -> None:
        self.sh_name = sh_name
        self.sh_type = sh_type
        self.sh_flags = sh_flags
        self.sh_addr = sh_addr
        self.sh_offset = sh_offset
        self.sh_size = sh_size
        self.sh_link = sh_link
        self.sh_info = sh_info
        self.sh_addralign = sh_addralign
        self.sh_entsize = sh_entsize

    @classmethod
    def unpack_from(cls, data: bytes, offset: int) -> SectionHeader:
        return cls(*_SHDR.unpack_from(data, offset))


class Elf64Sym(NamedTuple):
    st_name: int
    st_info: int
    st_other: int
    st_shndx: int
    st_value: int
    st_size: int


class Rela(NamedTuple):
    """Elf64_Rela, split: the symbol index and type of r_info."""

    r_offset: int
    sym: int
    type: int
    r_addend: int


class LoadInfo:
    """struct load_info: the image, its section headers and the indexes found."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.len = len(data)
        self.sechdrs: list[SectionHeader] = []
        self.secstrings_off = 0
        self.secstrings_size = 0
        self.shoff = 0
        self.shnum = 0
        self.name: str | None = None
        self.index_info = 0  # .modinfo
        self.index_sym = 0
        self.index_str = 0
        self.index_mod = 0  # .gnu.linkonce.this_module
        self.index_vers = 0  # __versions
        self.index_pcpu = 0  # .data..percpu
        self.sig_ok = False
        self.mod = ModuleRef("")
        self.versions: dict[bytes, int] | None = None  # __versions, read once (version.py)
        self.buffers: dict[int, bytearray] = {}  # sections relocated, as in memory
        self.sym_values: list[int] = []  # each symbol's value after simplify_symbols
        self._syms: list[Elf64Sym] | None = None
        self._relas: dict[int, dict[int, Rela]] = {}

    # -- raw access, zero-padded outside the image (the kernel would read garbage) ----
    def read(self, off: int, n: int) -> bytes:
        b = self.data[off:off + n] if 0 <= off < len(self.data) else b""
        return b + bytes(n - len(b)) if len(b) < n else b

    def cstr(self, off: int, limit: int = 4096) -> str:
        if not 0 <= off < len(self.data):
            return ""
        end = self.data.find(b"\0", off, off + limit)
        raw = self.data[off:end if end >= 0 else min(len(self.data), off + limit)]
        return raw.decode("utf-8", "surrogateescape")

    def load_sechdrs(self, shoff: int, shnum: int) -> None:
        self.shoff = shoff
        self.shnum = shnum
        self.sechdrs = [SectionHeader.unpack_from(self.data, shoff + i * SHDR_SIZE)
                        for i in range(shnum)]

    # -- sections ---------------------------------------------------------------------
    def secname(self, i: int) -> str:
        return self.cstr(self.secstrings_off + self.sechdrs[i].sh_name)

    def secnames(self) -> list[str]:
        return [self.secname(i) for i in range(self.shnum)]

    def find_sec(self, name: str) -> int:
        """find_sec(): the first SHF_ALLOC section called ``name`` (0: none)."""
        for i in range(1, self.shnum):
            if self.sechdrs[i].sh_flags & SHF_ALLOC and self.secname(i) == name:
                return i
        return 0

    def find_any_unique_sec(self, name: str) -> int:
        """find_any_unique_sec(): the one section called ``name``; 0 if none, minus the
        count if several."""
        found = [i for i in range(1, self.shnum) if self.secname(i) == name]
        if len(found) == 1:
            return found[0]
        return -len(found)

    def sec_bytes(self, i: int) -> bytes:
        """Contents of section ``i``; a NOBITS section reads as zeros (only small ones are
        materialised: reads past what is returned count as zeros everywhere)."""
        h = self.sechdrs[i]
        if h.sh_type == SHT_NOBITS:
            return bytes(h.sh_size) if h.sh_size < (1 << 24) else b""
        return self.read(h.sh_offset, h.sh_size) if h.sh_size < (1 << 31) else b""

    def section_buffer(self, i: int) -> bytearray:
        """Section ``i`` as it lies in the module's memory (relocations write here)."""
        buf = self.buffers.get(i)
        if buf is None:
            buf = self.buffers[i] = bytearray(self.sec_bytes(i))
        return buf

    def section_contents(self, i: int) -> bytes | bytearray:
        """Section ``i`` as move_module() copied it, with the relocations applied."""
        buf = self.buffers.get(i)
        return buf if buf is not None else self.sec_bytes(i)

    def string_at(self, sec: int, off: int) -> str:
        h = self.sechdrs[sec]
        if h.sh_type == SHT_NOBITS:
            return ""
        return self.cstr(h.sh_offset + off)

    # -- .modinfo ---------------------------------------------------------------------
    def modinfo_strings(self) -> list[bytes]:
        if not self.index_info:
            return []
        return [s for s in self.sec_bytes(self.index_info).split(b"\0") if s]

    def get_modinfo_all(self, tag: str) -> list[str]:
        t = tag.encode() + b"="
        return [s[len(t):].decode("utf-8", "surrogateescape")
                for s in self.modinfo_strings() if s.startswith(t)]

    def get_modinfo(self, tag: str) -> str | None:
        """get_modinfo(): the first ``tag=`` value."""
        vals = self.get_modinfo_all(tag)
        return vals[0] if vals else None

    # -- symbols and relocations ------------------------------------------------------
    def symbols(self) -> list[Elf64Sym]:
        if self._syms is None:
            h = self.sechdrs[self.index_sym]
            raw = self.sec_bytes(self.index_sym)
            n = h.sh_size // _SYM.size
            self._syms = [Elf64Sym._make(s) for s in _SYM.iter_unpack(raw[:n * _SYM.size])]
        return self._syms

    def symname(self, st_name: int) -> str:
        return self.cstr(self.sechdrs[self.index_str].sh_offset + st_name)

    def relas(self, relsec: int) -> list[Rela]:
        """The entries of RELA section ``relsec``."""
        raw = self.sec_bytes(relsec)
        n = min(self.sechdrs[relsec].sh_size, len(raw)) // RELA_SIZE
        return [Rela(off, info >> 32, info & 0xFFFFFFFF, addend)
                for off, info, addend in _RELA.iter_unpack(raw[:n * RELA_SIZE])]

    def relas_for(self, target: int) -> dict[int, Rela]:
        """offset -> the first relocation at it, of the RELA sections applying to
        section ``target``."""
        if target not in self._relas:
            out: dict[int, Rela] = {}
            for i in range(1, self.shnum):
                h = self.sechdrs[i]
                if h.sh_type == SHT_RELA and h.sh_info == target:
                    for r in self.relas(i):
                        out.setdefault(r.r_offset, r)
            self._relas[target] = out
        return self._relas[target]

    def reloc_target(self, sec: int, off: int) -> tuple[int, int, str] | None:
        """Where a relocated pointer at (sec, off) points: (section, offset, symbol name);
        section is 0 for an undefined (external) symbol."""
        r = self.relas_for(sec).get(off)
        if r is None:
            return None
        syms = self.symbols()
        if not 0 <= r.sym < len(syms):
            return None
        s = syms[r.sym]
        name = self.symname(s.st_name)
        if s.st_shndx == SHN_UNDEF or s.st_shndx >= self.shnum:
            return 0, r.r_addend, name
        return s.st_shndx, s.st_value + r.r_addend, name
