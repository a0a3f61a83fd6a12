"""lkm.elf on ELF files built here (ELF32/64, LE/BE) and on real binaries.

``build_elf`` is also used by test_module, test_hostile and test_pyelftools.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lkm import elf as E
from lkm.elf import ElfFile
from lkm.errors import ElfError, NotElfError

VARIANTS = [(64, True), (64, False), (32, True), (32, False)]
VARIANT_IDS = ["elf64le", "elf64be", "elf32le", "elf32be"]


@dataclass
class Sec:
    name: str
    type: int = E.SHT_PROGBITS
    data: bytes = b""
    flags: int = 0
    link: int | str = 0
    info: int | str = 0
    entsize: int = 0
    addr: int = 0
    addralign: int = 1
    size: int | None = None  # for NOBITS


@dataclass
class Sym:
    name: str
    value: int = 0
    size: int = 0
    bind: int = E.STB_GLOBAL
    type: int = E.STT_NOTYPE
    shndx: int | str = 0
    other: int = 0


@dataclass
class Rel:
    offset: int
    type: int
    symbol: int | str  # index or name in the symbol list
    addend: int = 0


@dataclass
class Built:
    data: bytes
    bits: int
    little: bool
    shoff: int
    sec_index: dict[str, int] = field(default_factory=dict)
    sec_offsets: dict[str, int] = field(default_factory=dict)

    @property
    def e(self) -> str:
        return "<" if self.little else ">"

    @property
    def shentsize(self) -> int:
        return 64 if self.bits == 64 else 40

    def shdr_offset(self, index: int) -> int:
        return self.shoff + index * self.shentsize

    def patch_shdr(self, index: int, fieldname: str, value: int) -> bytes:
        """The file with one section header field replaced."""
        names = ["name", "type", "flags", "addr", "offset", "size", "link", "info",
                 "addralign", "entsize"]
        fmt = "IIQQQQIIQQ" if self.bits == 64 else "IIIIIIIIII"
        pos = self.shdr_offset(index)
        for f, c in zip(names, fmt, strict=True):
            if f == fieldname:
                b = bytearray(self.data)
                struct.pack_into(self.e + c, b, pos, value)
                return bytes(b)
            pos += struct.calcsize(c)
        raise KeyError(fieldname)

    def patch_ehdr(self, fieldname: str, value: int) -> bytes:
        names = ["type", "machine", "version", "entry", "phoff", "shoff", "flags", "ehsize",
                 "phentsize", "phnum", "shentsize", "shnum", "shstrndx"]
        fmt = "HHIQQQIHHHHHH" if self.bits == 64 else "HHIIIIIHHHHHH"
        pos = 16
        for f, c in zip(names, fmt, strict=True):
            if f == fieldname:
                b = bytearray(self.data)
                struct.pack_into(self.e + c, b, pos, value)
                return bytes(b)
            pos += struct.calcsize(c)
        raise KeyError(fieldname)


def build_elf(bits: int = 64, little: bool = True, sections: list[Sec] | None = None,
              symbols: list[Sym] | None = None, relocs: dict[str, list[Rel]] | None = None,
              rela: bool = True, machine: int = E.EM_X86_64, e_type: int = E.ET_REL,
              symtab_first_global: int | None = None) -> Built:
    """An ELF file with the given sections, a .symtab/.strtab from ``symbols`` (the null
    symbol is added) and relocation sections (``.rela<name>``/``.rel<name>``)."""
    e = "<" if little else ">"
    secs = list(sections or [])
    syms = [Sym("", bind=E.STB_LOCAL), *list(symbols or [])]
    if symbols is not None or relocs:
        strtab = bytearray(b"\0")
        name_off = []
        for y in syms:
            if y.name:
                name_off.append(len(strtab))
                strtab += y.name.encode("utf-8", "surrogateescape") + b"\0"
            else:
                name_off.append(0)
        secs.append(Sec(".strtab", E.SHT_STRTAB, bytes(strtab)))
    all_names = [s.name for s in secs]
    for target in relocs or {}:
        all_names.append((".rela" if rela else ".rel") + target)
    if symbols is not None or relocs:
        all_names.append(".symtab")
    index = {n: i + 1 for i, n in enumerate(all_names)}

    def sh(x: int | str) -> int:
        return index[x] if isinstance(x, str) else x

    if relocs:
        for target, rs in relocs.items():
            body = bytearray()
            symidx = {s.name: i for i, s in enumerate(syms)}
            for r in rs:
                si = symidx[r.symbol] if isinstance(r.symbol, str) else r.symbol
                if bits == 64:
                    info = (si << 32) | r.type
                    body += struct.pack(e + ("QQq" if rela else "QQ"),
                                        *((r.offset, info, r.addend) if rela else
                                          (r.offset, info)))
                else:
                    info = (si << 8) | r.type
                    body += struct.pack(e + ("IIi" if rela else "II"),
                                        *((r.offset, info, r.addend) if rela else
                                          (r.offset, info)))
            secs.append(Sec((".rela" if rela else ".rel") + target,
                            E.SHT_RELA if rela else E.SHT_REL, bytes(body),
                            flags=E.SHF_INFO_LINK, link=".symtab", info=target,
                            entsize=(24 if rela else 16) if bits == 64 else (12 if rela else 8)))
    if symbols is not None or relocs:
        body = bytearray()
        for y, off in zip(syms, name_off, strict=True):
            info = (y.bind << 4) | y.type
            if bits == 64:
                body += struct.pack(e + "IBBHQQ", off, info, y.other, sh(y.shndx), y.value,
                                    y.size)
            else:
                body += struct.pack(e + "IIIBBH", off, y.value, y.size, info, y.other,
                                    sh(y.shndx))
        nlocal = symtab_first_global
        if nlocal is None:
            nlocal = next((i for i, y in enumerate(syms) if y.bind != E.STB_LOCAL), len(syms))
        secs.append(Sec(".symtab", E.SHT_SYMTAB, bytes(body), link=".strtab", info=nlocal,
                        entsize=24 if bits == 64 else 16, addralign=8))
    assert [s.name for s in secs] == all_names, "section order"
    shstr = bytearray(b"\0")
    sh_names = []
    for s in [*secs, Sec(".shstrtab")]:
        sh_names.append(len(shstr))
        shstr += s.name.encode() + b"\0"
    secs.append(Sec(".shstrtab", E.SHT_STRTAB, bytes(shstr)))
    ehsize = 64 if bits == 64 else 52
    out = bytearray(ehsize)
    offsets = []
    for s in secs:
        while len(out) % 8:
            out.append(0)
        offsets.append(len(out))
        if s.type != E.SHT_NOBITS:
            out += s.data
    while len(out) % 8:
        out.append(0)
    shoff = len(out)
    shnum = len(secs) + 1
    shentsize = 64 if bits == 64 else 40
    out += bytes(shentsize)  # null section
    for s, off, nm in zip(secs, offsets, sh_names, strict=True):
        size = s.size if s.size is not None else len(s.data)
        vals = (nm, s.type, s.flags, s.addr, off, size, sh(s.link), sh(s.info), s.addralign,
                s.entsize)
        out += struct.pack(e + ("IIQQQQIIQQ" if bits == 64 else "IIIIIIIIII"), *vals)
    ident = b"\x7fELF" + bytes([2 if bits == 64 else 1, 1 if little else 2, 1, 0]) + bytes(8)
    out[:16] = ident
    hdr = struct.pack(e + ("HHIQQQIHHHHHH" if bits == 64 else "HHIIIIIHHHHHH"),
                      e_type, machine, 1, 0, 0, shoff, 0, ehsize, 0, 0, shentsize, shnum,
                      shnum - 1)
    out[16:16 + len(hdr)] = hdr
    return Built(bytes(out), bits, little, shoff, {s.name: i + 1 for i, s in enumerate(secs)},
                 {s.name: o for s, o in zip(secs, offsets, strict=True)})


def sample(bits: int, little: bool, rela: bool = True) -> Built:
    return build_elf(
        bits, little,
        sections=[
            Sec(".text", E.SHT_PROGBITS, b"\x90" * 16, flags=E.SHF_ALLOC | E.SHF_EXECINSTR,
                addralign=16),
            Sec(".data", E.SHT_PROGBITS, b"\x01\x02\x03\x04\x05\x06\x07\x08",
                flags=E.SHF_ALLOC | E.SHF_WRITE, addralign=8),
            Sec(".bss", E.SHT_NOBITS, flags=E.SHF_ALLOC | E.SHF_WRITE, size=0x1000),
            Sec(".modinfo", E.SHT_PROGBITS, b"license=GPL\0name=x\0"),
        ],
        symbols=[
            Sym("local_fn", 4, 8, E.STB_LOCAL, E.STT_FUNC, ".text"),
            Sym("__crc_foo", 0, 0, E.STB_LOCAL, E.STT_NOTYPE, E.SHN_ABS),
            Sym("printk", shndx=0),
            Sym("foo", 0, 16, E.STB_GLOBAL, E.STT_FUNC, ".text"),
            Sym("weak_thing", bind=E.STB_WEAK, shndx=0),
            Sym("__crc_bar", 0x1234, 0, E.STB_GLOBAL, E.STT_NOTYPE, E.SHN_ABS),
            Sym("", shndx=0),  # unnamed undefined: left out like kmod does
            Sym("kfree", shndx=0),
        ],
        relocs={".text": [Rel(1, 2, "printk", -4), Rel(8, 1, "kfree", 0),
                          Rel(12, 4, 2, 7)]},
        rela=rela)


@pytest.mark.parametrize(("bits", "little"), VARIANTS, ids=VARIANT_IDS)
def test_header_and_sections(bits: int, little: bool) -> None:
    b = sample(bits, little)
    f = ElfFile(b.data)
    assert (f.elfclass, f.little_endian, f.e_type, f.e_machine) == (bits, little, E.ET_REL,
                                                                      E.EM_X86_64)
    names = [s.name for s in f.sections]
    assert names == ["", ".text", ".data", ".bss", ".modinfo", ".strtab", ".rela.text",
                     ".symtab", ".shstrtab"]
    assert f.e_shstrndx == len(names) - 1
    text = f.section(".text")
    assert text is not None and text.index == 1 and text.size == 16
    assert bytes(text.data()) == b"\x90" * 16
    assert text.flags == E.SHF_ALLOC | E.SHF_EXECINSTR and text.addralign == 16
    bss = f.section(".bss")
    assert bss is not None and bss.type == E.SHT_NOBITS and bss.size == 0x1000
    assert bytes(bss.data()) == b""
    assert f.section(".nope") is None
    assert f.section_index(".modinfo") == 4
    assert bytes(f.section_bytes(".modinfo") or b"") == b"license=GPL\0name=x\0"
    rel = f.section(".rela.text")
    assert rel is not None and rel.link == f.section_index(".symtab") and rel.info == 1
    assert list(f.relocation_sections_for(1)) == [rel.index]


@pytest.mark.parametrize(("bits", "little"), VARIANTS, ids=VARIANT_IDS)
def test_symbols(bits: int, little: bool) -> None:
    f = ElfFile(sample(bits, little).data)
    syms = f.symbols()
    assert syms[0] == E.Symbol("", 0, 0, 0, 0, 0, 0)  # the null symbol is included
    assert [s.name for s in syms[1:]] == ["local_fn", "__crc_foo", "printk", "foo",
                                          "weak_thing", "__crc_bar", "", "kfree"]
    assert syms[1] == E.Symbol("local_fn", 4, 8, E.STB_LOCAL, E.STT_FUNC, 0, 1)
    assert syms[6] == E.Symbol("__crc_bar", 0x1234, 0, E.STB_GLOBAL, E.STT_NOTYPE, 0, E.SHN_ABS)
    assert f.undefined_symbols() == ["printk", "weak_thing", "kfree"]
    assert f.undefined_symbols_with_bind() == [("printk", E.STB_GLOBAL),
                                               ("weak_thing", E.STB_WEAK),
                                               ("kfree", E.STB_GLOBAL)]
    assert f.symbol_names_with_prefix(b"__crc_") == ["__crc_foo", "__crc_bar"]
    assert f.symbol_names_with_prefix(b"__ksymtab_") == []
    assert f.symbol_names_with_prefix(b"f") == ["foo"]
    assert f.symbol_name_offsets_valid()


@pytest.mark.parametrize(("bits", "little"), VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("rela", [True, False], ids=["rela", "rel"])
def test_relocations(bits: int, little: bool, rela: bool) -> None:
    f = ElfFile(sample(bits, little, rela).data)
    sec = f.section(".rela.text" if rela else ".rel.text")
    assert sec is not None
    rels = f.relocations(sec)
    assert rels == [E.Relocation(1, 2, 3, -4 if rela else 0), E.Relocation(8, 1, 8, 0),
                    E.Relocation(12, 4, 2, 7 if rela else 0)]
    assert f.relocations(sec.index) == rels
    with pytest.raises(ElfError, match="not a relocation section"):
        f.relocations(1)


def test_mips64el_r_info() -> None:
    """mips64el keeps r_sym in the low word and the three types in the high bytes."""
    b = build_elf(64, True, sections=[Sec(".text", data=bytes(16))],
                  symbols=[Sym("a", shndx=0)], relocs={".text": [Rel(0, 0, 1)]},
                  machine=E.EM_MIPS)
    # r_sym=1, r_ssym=0, r_type3=0, r_type2=0x12, r_type=0x03, addend 5
    entry = struct.pack("<QIBBBBq", 0, 1, 0, 0, 0x12, 0x03, 5)
    data = bytearray(b.data)
    data[b.sec_offsets[".rela.text"]:b.sec_offsets[".rela.text"] + 24] = entry
    f = ElfFile(bytes(data))
    assert f.relocations(b.sec_index[".rela.text"]) == [E.Relocation(0, 0x1203, 1, 5)]


def test_shared_name_suffixes_and_duplicates() -> None:
    """Section names may share a tail in .shstrtab; section() returns the first match."""
    b = build_elf(sections=[Sec(".rela.text", E.SHT_PROGBITS, b"a"), Sec("x", data=b"b"),
                            Sec("x", data=b"c")])
    f = ElfFile(b.data)
    assert f.section_index("x") == 2
    assert bytes(f.section_bytes("x") or b"") == b"b"
    shstr = f.section(".shstrtab")
    assert shstr is not None
    tail = bytes(shstr.data()).index(b".rela.text") + len(".rela")
    f = ElfFile(b.patch_shdr(3, "name", tail))  # section 3 is now ".text"
    assert f.section_index(".text") == 3
    assert f.section_names()[3] == ".text"
    assert f.section_index("x") == 2


def test_extended_section_numbering() -> None:
    """e_shnum 0 and e_shstrndx SHN_XINDEX take their values from section header 0."""
    b = build_elf(sections=[Sec(".a", data=b"1"), Sec(".b", data=b"2")])
    shnum = 4
    data = bytearray(Built(b.patch_ehdr("shnum", 0), 64, True, b.shoff)
                     .patch_ehdr("shstrndx", E.SHN_XINDEX))
    struct.pack_into("<Q", data, b.shoff + 32, shnum)  # sh_size of section 0
    struct.pack_into("<I", data, b.shoff + 40, shnum - 1)  # sh_link of section 0
    f = ElfFile(bytes(data))
    assert f.e_shnum == shnum and f.e_shstrndx == shnum - 1
    assert [s.name for s in f.sections] == ["", ".a", ".b", ".shstrtab"]


def test_no_symtab() -> None:
    f = ElfFile(build_elf(sections=[Sec(".text", data=b"x")]).data)
    assert f.symtab_index() is None
    assert f.symbols() == [] and f.undefined_symbols() == []
    assert f.symbol_names_with_prefix(b"__crc_") == []


def test_non_ascii_names_round_trip() -> None:
    name = "caf\u00e9_\udcff"  # the byte 0xff survives through surrogateescape
    f = ElfFile(build_elf(sections=[Sec(".text", data=b"x")],
                          symbols=[Sym(name, shndx=0)]).data)
    assert f.undefined_symbols() == [name]
    assert f.symbols()[1].name == name
    assert f.symbol_names_with_prefix("caf\u00e9".encode()) == [name]


def test_buffers_bytes_memoryview_bytearray() -> None:
    b = sample(64, True).data
    for buf in (b, bytearray(b), memoryview(b)):
        assert ElfFile(buf).undefined_symbols() == ["printk", "weak_thing", "kfree"]


def test_errors_have_clear_messages() -> None:
    b = sample(64, True)
    with pytest.raises(NotElfError, match="not an ELF file"):
        ElfFile(b"\x7fELX" + bytes(100))
    with pytest.raises(ElfError, match="unsupported ELF class 3"):
        ElfFile(b.data[:4] + b"\x03" + b.data[5:])
    sym = b.sec_index[".symtab"]
    bad = b.patch_shdr(sym, "size", 1 << 40)
    with pytest.raises(ElfError, match=rf"section {sym} \(\.symtab\) extends past end of file"):
        ElfFile(bad).symbols()
    assert ElfFile(bad).section_index(".text") == 1  # other sections still readable


def test_real_exec_busybox() -> None:
    """ET_EXEC (statically linked busybox) parses: sections with addresses."""
    path = Path("/bin/busybox")
    if not path.exists():
        pytest.skip("busybox-static not installed")
    f = ElfFile(path.read_bytes())
    assert f.e_type in (E.ET_EXEC, E.ET_DYN)
    text = f.section(".text")
    assert text is not None and text.addr != 0 and len(text.data()) == text.size
