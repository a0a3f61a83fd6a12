"""A lazy, bounds-checked ELF reader for kernel modules and vmlinux.

ELF32 and ELF64, little- and big-endian, over bytes, memoryview or mmap.  Creating
an :class:`ElfFile` reads the ELF header and the section header table; section
names, symbols and relocations are decoded on demand.  Every offset and size read
from the file is checked: bad input raises :class:`~lkm.errors.ElfError`.
"""

from __future__ import annotations

import mmap
import struct
import sys
from array import array
from collections.abc import Iterator
from typing import NamedTuple

from lkm.errors import ElfError, NotElfError

Buffer = bytes | bytearray | memoryview | mmap.mmap

ELFMAG = b"\x7fELF"
ELFCLASS32, ELFCLASS64 = 1, 2
ELFDATA2LSB, ELFDATA2MSB = 1, 2

ET_REL, ET_EXEC, ET_DYN = 1, 2, 3

EM_386, EM_MIPS, EM_PPC, EM_PPC64, EM_S390, EM_ARM = 3, 8, 20, 21, 22, 40
EM_SPARC, EM_SPARCV9, EM_X86_64, EM_AARCH64, EM_RISCV = 2, 43, 62, 183, 243

SHT_NULL, SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA = 0, 1, 2, 3, 4
SHT_NOBITS, SHT_REL, SHT_DYNSYM = 8, 9, 11
SHT_NOTE = 7

SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
SHF_INFO_LINK = 0x40

SHN_UNDEF, SHN_LORESERVE, SHN_ABS, SHN_COMMON, SHN_XINDEX = 0, 0xFF00, 0xFFF1, 0xFFF2, 0xFFFF

STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION, STT_FILE = 0, 1, 2, 3, 4

MAX_SECTIONS = 1 << 20
"""Most section headers accepted (extended numbering allows 2**32)."""

_NATIVE_LITTLE = sys.byteorder == "little"
assert array("I").itemsize == 4 and array("H").itemsize == 2


# (is64, byte order) -> Structs of the ELF header (after e_ident), section header,
# symbol, REL and RELA entries
_LAYOUTS = {
    (is64, e): tuple(struct.Struct(e + f) for f in (
        ("HHIQQQIHHHHHH" if is64 else "HHIIIIIHHHHHH"),
        ("IIQQQQIIQQ" if is64 else "IIIIIIIIII"),
        ("IBBHQQ" if is64 else "IIIBBH"),
        ("QQ" if is64 else "II"),
        ("QQq" if is64 else "IIi")))
    for is64 in (True, False) for e in ("<", ">")
}


class Section:
    """One section header; ``data()`` gives its contents."""

    __slots__ = ("_file", "addr", "addralign", "entsize", "flags", "index", "info", "link",
                 "name", "offset", "size", "type")

    def __init__(self, file: memoryview, index: int, name: str, type: int, flags: int,
                 addr: int, offset: int, size: int, link: int, info: int, addralign: int,
                 entsize: int) -> None:
        self._file = file  # the whole file (no reference back to ElfFile: no cycle)
        self.index = index
        self.name = name
        self.type = type
        self.flags = flags
        self.addr = addr
        self.offset = offset
        self.size = size
        self.link = link
        self.info = info
        self.addralign = addralign
        self.entsize = entsize

    def data(self) -> memoryview:
        """The section's bytes (empty for SHT_NOBITS); ElfError if outside the file."""
        if self.type == SHT_NOBITS:
            return self._file[0:0]
        n = len(self._file)
        if self.offset > n or self.size > n - self.offset:
            raise ElfError(f"section {self.index} ({self.name or 'unnamed'}) extends past end "
                           f"of file (offset {self.offset:#x}, size {self.size:#x}, "
                           f"file size {n:#x})")
        return self._file[self.offset:self.offset + self.size]

    def __repr__(self) -> str:
        return (f"Section({self.index}, {self.name!r}, type={self.type}, "
                f"offset={self.offset:#x}, size={self.size:#x})")


class Symbol(NamedTuple):
    """One ``.symtab`` entry; ``bind``/``type`` are the halves of st_info."""

    name: str
    value: int
    size: int
    bind: int
    type: int
    other: int
    shndx: int


class Relocation(NamedTuple):
    """One SHT_REL/SHT_RELA entry; ``addend`` is 0 for SHT_REL (the addend is in place)."""

    offset: int
    type: int
    symbol: int
    addend: int


def _decode(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


class _SymColumns:
    """A symbol table split into columns with C-level slicing (no per-symbol unpacking)."""

    __slots__ = ("entsize", "info_off", "names", "shndx_bytes", "strtab", "tab", "text")

    def __init__(self, elf: ElfFile, tab: memoryview, strtab: memoryview | bytes,
                 count: int) -> None:
        self.tab = tab
        self.entsize = es = elf._sym.size
        self.info_off = 4 if elf.elfclass == 64 else 12
        shndx_off = 6 if elf.elfclass == 64 else 14
        swap = elf.little_endian != _NATIVE_LITTLE
        words = array("I")
        words.frombytes(tab)
        if swap:
            words.byteswap()
        self.names = words[0::es // 4].tolist()
        halves = array("H")
        halves.frombytes(tab)
        if swap:
            halves.byteswap()
        # little-endian u16 per symbol: a zero entry is an aligned b"\0\0"
        self.shndx_bytes = halves[shndx_off // 2::es // 2].tobytes()
        self.strtab = st = bytes(strtab)
        self.text = st.decode("ascii") if st.isascii() else None

    def name(self, i: int) -> str:
        """Name of symbol ``i``."""
        off = self.names[i]
        text = self.text
        if text is not None:
            end = text.find("\0", off)
            if off < len(text):
                return text[off:end] if end >= 0 else text[off:]
        st = self.strtab
        if off >= len(st):
            raise ElfError(f"symbol {i}: name offset {off:#x} is outside the string table "
                           f"({len(st):#x} bytes)")
        end = st.find(b"\0", off)
        return _decode(st[off:end if end >= 0 else len(st)])


class ElfFile:
    """An ELF object over ``data`` (kept referenced, never copied).

    Construction checks the identification, the header and that the section
    header table and the section-name string table lie inside the file (as
    kmod's ``kmod_elf_new`` does); everything else is checked when read.
    """

    def __init__(self, data: Buffer) -> None:
        mv = memoryview(data)
        if mv.ndim != 1 or mv.itemsize != 1:
            mv = mv.cast("B")
        self._mv = mv
        self._len = n = len(mv)
        if n < 16 or bytes(mv[:4]) != ELFMAG:
            raise NotElfError("not an ELF file (bad magic)")
        ei_class, ei_data = mv[4], mv[5]
        if ei_class == ELFCLASS32:
            self.elfclass = 32
        elif ei_class == ELFCLASS64:
            self.elfclass = 64
        else:
            raise ElfError(f"unsupported ELF class {ei_class}")
        if ei_data == ELFDATA2LSB:
            self.little_endian = True
        elif ei_data == ELFDATA2MSB:
            self.little_endian = False
        else:
            raise ElfError(f"unsupported ELF data encoding {ei_data}")
        e = "<" if self.little_endian else ">"
        self._e = e
        is64 = self.elfclass == 64
        ehdr, self._shdr, self._sym, self._rel, self._rela = _LAYOUTS[(is64, e)]
        if n < 16 + ehdr.size:
            raise ElfError(f"file too short for an ELF{self.elfclass} header "
                           f"({n} bytes, need {16 + ehdr.size})")
        (self.e_type, self.e_machine, self.e_version, self.e_entry, self.e_phoff, shoff,
         self.e_flags, _ehsize, _phentsize, self.e_phnum, shentsize, shnum,
         shstrndx) = ehdr.unpack_from(mv, 16)
        self.e_shoff = shoff
        if shoff == 0:
            raise ElfError("no section header table (e_shoff is 0)")
        if shentsize != self._shdr.size:
            raise ElfError(f"unexpected section header size {shentsize} "
                           f"(ELF{self.elfclass} needs {self._shdr.size})")
        if shoff > n or n - shoff < self._shdr.size:
            raise ElfError(f"section header table at {shoff:#x} is past the end of the file "
                           f"({n:#x} bytes)")
        if shnum == 0 or shstrndx == SHN_XINDEX:
            # extended numbering: the real values live in section header 0
            _, _, _, _, _, size0, link0, *_ = self._shdr.unpack_from(mv, shoff)
            if shnum == 0:
                shnum = size0
            if shstrndx == SHN_XINDEX:
                shstrndx = link0
        if shnum == 0:
            raise ElfError("no section headers (e_shnum is 0)")
        if shnum > MAX_SECTIONS:
            raise ElfError(f"too many sections ({shnum})")
        if shnum * self._shdr.size > n - shoff:
            raise ElfError(f"section header table ({shnum} entries at {shoff:#x}) "
                           f"extends past end of file ({n:#x} bytes)")
        self.e_shnum = shnum
        self.e_shstrndx = shstrndx
        if shstrndx == SHN_UNDEF or shstrndx >= shnum:
            raise ElfError(f"section name table index {shstrndx} out of range "
                           f"(0 < index < {shnum})")
        self._hdrs: list[tuple[int, ...]] = list(
            self._shdr.iter_unpack(mv[shoff:shoff + shnum * self._shdr.size]))
        shstr = self._raw_section(shstrndx, "section name table")
        if len(shstr) == 0 or shstr[-1] != 0:
            raise ElfError(f"section name table (section {shstrndx}) is not NUL-terminated")
        self._shstrtab = bytes(shstr)
        self._names: list[str] | None = None
        self._by_name: dict[str, int | None] | None = None
        self._first_by_name_offset: dict[int, int] | None = None
        self._sections: list[Section] | None = None
        self._symtab: int | bool | None = False  # False = not looked up yet
        self._cols: _SymColumns | bool | None = False

    # -- sections -------------------------------------------------------------------------

    def _raw_section(self, index: int, what: str | None = None) -> memoryview:
        """Bounds-checked contents of section ``index`` (NOBITS: empty)."""
        if not 0 <= index < self.e_shnum:
            raise ElfError(f"section index {index} out of range (file has {self.e_shnum})")
        h = self._hdrs[index]
        if h[1] == SHT_NOBITS:
            return self._mv[0:0]
        off, size = h[4], h[5]
        if off > self._len or size > self._len - off:
            label = what or self._label(index)
            raise ElfError(f"section {index} ({label}) extends past end of file "
                           f"(offset {off:#x}, size {size:#x}, file size {self._len:#x})")
        return self._mv[off:off + size]

    def _label(self, index: int) -> str:
        try:
            return self.section_names()[index] or "unnamed"
        except ElfError:
            return "unnamed"

    def section_names(self) -> list[str]:
        """Names of all sections, by index (index 0 included)."""
        if self._names is None:
            st = self._shstrtab
            text = st.decode("utf-8", "surrogateescape") if not st.isascii() else st.decode()
            ascii_ = len(text) == len(st)
            end = len(st)
            names = []
            for i, h in enumerate(self._hdrs):
                off = h[0]
                if off >= end:
                    raise ElfError(f"section {i}: name offset {off:#x} is outside the section "
                                   f"name table ({end:#x} bytes)")
                if ascii_:
                    names.append(text[off:text.index("\0", off)])
                else:
                    names.append(_decode(st[off:st.index(b"\0", off)]))
            self._names = names
        return self._names

    @property
    def sections(self) -> list[Section]:
        """Every section header, index 0 (SHT_NULL) included."""
        if self._sections is None:
            names = self.section_names()
            mv = self._mv
            self._sections = [Section(mv, i, names[i], h[1], h[2], h[3], h[4], h[5], h[6],
                                      h[7], h[8], h[9]) for i, h in enumerate(self._hdrs)]
        return self._sections

    def section_index(self, name: str) -> int | None:
        """Index of the first section called ``name`` (index 0 never matches), or None.

        Looks the name up in the section name table without decoding every name;
        sections whose name offset is out of range never match (as in kmod).
        """
        by = self._by_name
        if by is None:
            by = self._by_name = {}
        elif name in by:
            return by[name]
        key = name.encode("utf-8", "surrogateescape") + b"\0"
        st = self._shstrtab
        pos = st.find(key)
        found: int | None = None
        if pos >= 0:
            first = self._first_by_name_offset
            if first is None:
                n = len(self._hdrs)
                first = self._first_by_name_offset = dict(
                    zip([h[0] for h in reversed(self._hdrs)], range(n - 1, -1, -1), strict=True))
            while pos >= 0:
                i = first.get(pos)
                if i and (found is None or i < found):
                    found = i
                pos = st.find(key, pos + 1)
            if found is None and not name:
                found = next((i for i, h in enumerate(self._hdrs) if i and h[0] < len(st)
                              and st[h[0]] == 0), None)
        by[name] = found
        return found

    def section(self, name: str) -> Section | None:
        """The first section called ``name``, or None."""
        i = self.section_index(name)
        return None if i is None else self.sections[i]

    def section_data(self, index: int) -> memoryview:
        """Contents of section ``index``: bounds-checked, empty for SHT_NOBITS."""
        return self._raw_section(index)

    def section_bytes(self, name: str) -> memoryview | None:
        """Contents of the first section called ``name``, or None if there is none."""
        i = self.section_index(name)
        return None if i is None else self._raw_section(i)

    def section_header(self, index: int) -> tuple[int, ...]:
        """Raw header fields (name, type, flags, addr, offset, size, link, info, addralign,
        entsize) of section ``index``."""
        if not 0 <= index < self.e_shnum:
            raise ElfError(f"section index {index} out of range (file has {self.e_shnum})")
        return self._hdrs[index]

    # -- symbols --------------------------------------------------------------------------

    def symtab_index(self) -> int | None:
        """Index of the (first) SHT_SYMTAB section, or None."""
        if self._symtab is False:
            self._symtab = next((i for i, h in enumerate(self._hdrs) if h[1] == SHT_SYMTAB),
                                None)
        assert self._symtab is not True
        return self._symtab

    def _symtab_parts(self) -> tuple[memoryview, bytes | memoryview, int] | None:
        """(.symtab bytes, its string table, symbol count) or None without a symtab."""
        idx = self.symtab_index()
        if idx is None:
            return None
        tab = self._raw_section(idx)
        link = self._hdrs[idx][6]
        if link == SHN_UNDEF or link >= self.e_shnum:
            raise ElfError(f"section {idx} ({self._label(idx)}): string table index {link} "
                           "out of range")
        strtab = self._raw_section(link)
        entsize = self._sym.size
        if len(tab) % entsize:
            raise ElfError(f"section {idx} ({self._label(idx)}): size {len(tab):#x} is not a "
                           f"multiple of the symbol size {entsize}")
        return tab, strtab, len(tab) // entsize

    def _symbols_raw(self) -> tuple[list[tuple[int, ...]], memoryview | bytes]:
        """Unpacked symtab entries (name, info, other, shndx, value, size) and the strtab."""
        parts = self._symtab_parts()
        if parts is None:
            return [], b""
        tab, strtab, _ = parts
        rows = list(self._sym.iter_unpack(tab))
        if self.elfclass == 32:  # name, value, size, info, other, shndx -> 64-bit order
            rows = [(r[0], r[3], r[4], r[5], r[1], r[2]) for r in rows]
        return rows, strtab

    def symbols(self) -> list[Symbol]:
        """All ``.symtab`` entries in table order, the null symbol 0 included, so that
        ``symbols()[i]`` is symbol index ``i`` (as relocations name them)."""
        rows, strtab = self._symbols_raw()
        if not rows:
            return []
        st = bytes(strtab)
        end = len(st)
        out = []
        for i, (name, info, other, shndx, value, size) in enumerate(rows):
            if name >= end:
                raise ElfError(f"symbol {i}: name offset {name:#x} is outside the string "
                               f"table ({end:#x} bytes)")
            nul = st.find(b"\0", name)
            out.append(Symbol(_decode(st[name:nul if nul >= 0 else end]), value, size,
                              info >> 4, info & 0xF, other, shndx))
        return out

    def _columns(self) -> _SymColumns | None:
        """The symtab as columns (st_name, st_shndx) plus its string table, built once."""
        if self._cols is False:
            parts = self._symtab_parts()
            self._cols = None if parts is None else _SymColumns(self, *parts)
        assert self._cols is not True
        return self._cols

    def undefined_symbols_with_bind(self) -> list[tuple[str, int]]:
        """(name, bind) of every SHN_UNDEF symbol in table order; the null symbol and
        empty names are left out (as kmod's depmod does)."""
        cols = self._columns()
        if cols is None:
            return []
        shndx = cols.shndx_bytes
        tab, es, io = cols.tab, cols.entsize, cols.info_off
        names, text = cols.names, cols.text
        limit = len(cols.strtab)
        out = []
        pos = shndx.find(b"\0\0", 2)  # skip the null symbol
        while pos >= 0:
            if pos & 1:  # straddles two entries
                pos = shndx.find(b"\0\0", pos + 1)
                continue
            i = pos >> 1
            off = names[i]
            if text is not None and off < limit:
                end = text.find("\0", off)
                name = text[off:end] if end >= 0 else text[off:]
            else:
                name = cols.name(i)
            if name:
                out.append((name, tab[i * es + io] >> 4))
            pos = shndx.find(b"\0\0", pos + 2)
        return out

    def undefined_symbols(self) -> list[str]:
        """Names of the SHN_UNDEF symbols, table order, without the null symbol and empty names."""
        return [n for n, _ in self.undefined_symbols_with_bind()]

    def symbol_indexes_with_prefix(self, prefix: bytes) -> list[int]:
        """Indexes (1 on, table order) of the symbols whose name starts with ``prefix``.

        A symbol whose name offset is outside the string table raises ElfError.
        """
        cols = self._columns()
        if cols is None:
            return []
        st = cols.strtab
        starts = set()
        pos = st.find(prefix)
        while pos >= 0:
            starts.add(pos)
            pos = st.find(prefix, pos + 1)
        if not starts:
            return []
        names = cols.names
        if names and max(names) >= len(st):
            bad = next(i for i, off in enumerate(names) if off >= len(st))
            raise ElfError(f"symbol {bad}: name offset {names[bad]:#x} is outside the string "
                           f"table ({len(st):#x} bytes)")
        return [i for i, off in enumerate(names) if off in starts and i]

    def symbol_names_with_prefix(self, prefix: bytes) -> list[str]:
        """Names of the symbols (index 1 on) starting with ``prefix``, in table order."""
        cols = self._columns()
        if cols is None:
            return []
        return [cols.name(i) for i in self.symbol_indexes_with_prefix(prefix)]

    def symbol_count(self) -> int:
        """Number of ``.symtab`` entries (the null symbol included); 0 without a symtab."""
        cols = self._columns()
        return 0 if cols is None else len(cols.names)

    def symbol(self, index: int) -> Symbol:
        """Symbol ``index`` of ``.symtab``, decoded alone."""
        cols = self._columns()
        count = 0 if cols is None else len(cols.names)
        if cols is None or not 0 <= index < count:
            raise ElfError(f"symbol index {index} out of range ({count} symbols)")
        r = self._sym.unpack_from(cols.tab, index * cols.entsize)
        if self.elfclass == 64:
            _, info, other, shndx, value, size = r
        else:
            _, value, size, info, other, shndx = r
        return Symbol(cols.name(index), value, size, info >> 4, info & 0xF, other, shndx)

    def symbol_name_offsets_valid(self) -> bool:
        """True when every symbol's name offset lies inside the string table."""
        cols = self._columns()
        return cols is None or not cols.names or max(cols.names) < len(cols.strtab)

    # -- relocations ----------------------------------------------------------------------

    def relocations(self, section: Section | int) -> list[Relocation]:
        """Entries of an SHT_REL or SHT_RELA section, in order."""
        index = section if isinstance(section, int) else section.index
        if not 0 <= index < self.e_shnum:
            raise ElfError(f"section index {index} out of range (file has {self.e_shnum})")
        sh_type = self._hdrs[index][1]
        if sh_type == SHT_RELA:
            st = self._rela
        elif sh_type == SHT_REL:
            st = self._rel
        else:
            raise ElfError(f"section {index} ({self._label(index)}) is not a relocation "
                           "section")
        data = self._raw_section(index)
        if len(data) % st.size:
            raise ElfError(f"section {index} ({self._label(index)}): size {len(data):#x} is "
                           f"not a multiple of the entry size {st.size}")
        return [Relocation(r[0], *self._split_info(r[1]), r[2] if len(r) > 2 else 0)
                for r in st.iter_unpack(data)]

    def _split_info(self, info: int) -> tuple[int, int]:
        """(type, symbol index) from r_info."""
        if self.elfclass == 32:
            return info & 0xFF, info >> 8
        if self.e_machine == EM_MIPS and self.little_endian:
            # mips64el: r_sym (32), r_ssym (8), r_type3, r_type2, r_type (8 each)
            t = info >> 32
            return ((t >> 24) & 0xFF) | ((t >> 8) & 0xFF00) | ((t << 8) & 0xFF0000), \
                info & 0xFFFFFFFF
        return info & 0xFFFFFFFF, info >> 32

    def relocation_sections_for(self, index: int) -> Iterator[int]:
        """Indexes of the SHT_REL/SHT_RELA sections applying to section ``index``."""
        for i, h in enumerate(self._hdrs):
            if h[1] in (SHT_REL, SHT_RELA) and h[7] == index:
                yield i

    # -- plain values ---------------------------------------------------------------------

    def read_uint(self, data: memoryview | bytes, offset: int, size: int) -> int:
        """An unsigned integer of ``size`` bytes at ``offset`` of ``data``, file byte order."""
        if offset < 0 or offset + size > len(data):
            raise ElfError(f"read of {size} bytes at {offset:#x} is outside its section "
                           f"({len(data):#x} bytes)")
        return int.from_bytes(data[offset:offset + size],
                              "little" if self.little_endian else "big")

    @property
    def pointer_size(self) -> int:
        return 8 if self.elfclass == 64 else 4

    def __repr__(self) -> str:
        return (f"ElfFile(ELF{self.elfclass}{'LE' if self.little_endian else 'BE'}, "
                f"type={self.e_type}, machine={self.e_machine}, sections={self.e_shnum})")
