"""lkm.elf agrees with pyelftools: sections, symbols and relocations, on real modules of both
trees (a sample of about 100 each) and on the crafted ELF32/64 LE/BE files."""

from __future__ import annotations

import io
from typing import Any

import pytest
from elftools.elf import enums
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from conftest import Tree
from lkm import elf as E
from lkm.elf import ElfFile
from lkm.module import ModuleFile
from test_elf import VARIANT_IDS, VARIANTS, sample


def _enum(prefix: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for name in dir(enums):
        if name.startswith(prefix):
            out.update({k: v for k, v in getattr(enums, name).items() if k != "_default_"})
    return out


SH_TYPE = _enum("ENUM_SH_TYPE")
BIND = _enum("ENUM_ST_INFO_BIND")
STYPE = _enum("ENUM_ST_INFO_TYPE")
SHNDX = _enum("ENUM_ST_SHNDX")
VIS = _enum("ENUM_ST_VISIBILITY")


def _num(table: dict[str, int], v: Any) -> int:
    return v if isinstance(v, int) else table[v]


def their_sections(pe: ELFFile) -> list[tuple[Any, ...]]:
    return [(s.name, _num(SH_TYPE, s["sh_type"]), s["sh_flags"], s["sh_addr"], s["sh_offset"],
             s["sh_size"], s["sh_link"], s["sh_info"], s["sh_addralign"], s["sh_entsize"])
            for s in pe.iter_sections()]


def our_sections(f: ElfFile) -> list[tuple[Any, ...]]:
    return [(s.name, s.type, s.flags, s.addr, s.offset, s.size, s.link, s.info, s.addralign,
             s.entsize) for s in f.sections]


def their_symbols(pe: ELFFile) -> list[tuple[Any, ...]]:
    tab = pe.get_section_by_name(".symtab")
    if tab is None:
        return []
    assert isinstance(tab, SymbolTableSection)
    return [(s.name, s["st_value"], s["st_size"], _num(BIND, s["st_info"]["bind"]),
             _num(STYPE, s["st_info"]["type"]), _num(VIS, s["st_other"]["visibility"]),
             _num(SHNDX, s["st_shndx"])) for s in tab.iter_symbols()]


def our_symbols(f: ElfFile) -> list[tuple[Any, ...]]:
    return [(s.name, s.value, s.size, s.bind, s.type, s.other & 3, s.shndx) for s in f.symbols()]


def their_relocations(pe: ELFFile, name: str) -> list[tuple[int, int, int, int]]:
    sec = pe.get_section_by_name(name)
    assert isinstance(sec, RelocationSection)
    return [(r["r_offset"], r["r_info_type"], r["r_info_sym"],
             r["r_addend"] if sec.is_RELA() else 0) for r in sec.iter_relocations()]


def compare(data: bytes | memoryview, relocation_sections: int = 3) -> None:
    f = ElfFile(data)
    pe = ELFFile(io.BytesIO(bytes(data)))
    assert f.elfclass == pe.elfclass and f.little_endian == pe.little_endian
    assert f.e_machine == _num(_enum("ENUM_E_MACHINE"), pe["e_machine"])
    assert our_sections(f) == their_sections(pe)
    assert our_symbols(f) == their_symbols(pe)
    undefined = [s[0] for s in their_symbols(pe)[1:] if s[6] == 0 and s[0]]
    assert f.undefined_symbols() == undefined
    rels = [s for s in f.sections if s.type in (E.SHT_REL, E.SHT_RELA)]
    # the export tables, then the first few others
    rels.sort(key=lambda s: (not s.name.startswith(".rela__ksymtab"), s.index))
    for s in rels[:relocation_sections]:
        assert list(f.relocations(s)) == their_relocations(pe, s.name), s.name


@pytest.mark.parametrize(("bits", "little"), VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("rela", [True, False], ids=["rela", "rel"])
def test_crafted(bits: int, little: bool, rela: bool) -> None:
    compare(sample(bits, little, rela).data)


@pytest.mark.trees
def test_tree_sample(tree: Tree) -> None:
    mods = tree.modules()
    paths = mods[::len(mods) // 100]
    assert len(paths) >= 100
    for p in paths:
        with ModuleFile.open(p) as m:
            compare(memoryview(m.content))


C_SOURCE = """
extern int printk(const char *, ...);
__attribute__((weak)) extern int maybe(void);
int counter = 5;
static const char msg[] = "hello";
int f(void) { return printk(msg) + counter; }
int g(void) { return maybe ? maybe() : 0; }
"""


@pytest.mark.parametrize("flags", [["-m32"], ["-m64"], ["-m32", "-fno-pic"]],
                         ids=["i386-pic", "x86_64", "i386"])
def test_gcc_objects(tmp_path: Any, flags: list[str]) -> None:
    """Objects from the real toolchain: ELF32 with SHT_REL, ELF64 with SHT_RELA."""
    import shutil
    import subprocess

    if shutil.which("gcc") is None:
        pytest.skip("gcc not installed")
    src = tmp_path / "t.c"
    src.write_text(C_SOURCE)
    obj = tmp_path / "t.o"
    subprocess.run(["gcc", *flags, "-O2", "-c", str(src), "-o", str(obj)], check=True)
    data = obj.read_bytes()
    compare(data, relocation_sections=10)
    f = ElfFile(data)
    assert f.elfclass == (32 if "-m32" in flags else 64)
    undefined = dict(f.undefined_symbols_with_bind())
    assert undefined["printk"] == E.STB_GLOBAL and undefined["maybe"] == E.STB_WEAK
