"""lkm.module.ModuleFile on modules built here and on the Debian trees (checked against kmod)."""

from __future__ import annotations

import mmap
import struct
import subprocess
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import KMOD, Tree
from lkm import compress
from lkm import elf as E
from lkm.errors import ElfError
from lkm.module import Export, ModuleFile, Param, modname_from_path
from test_elf import VARIANT_IDS, VARIANTS, Rel, Sec, Sym, build_elf

SIG_KEYS = {"sig_id", "signer", "sig_key", "sig_hashalgo", "signature"}


def module(modinfo: bytes, bits: int = 64, little: bool = True,
           sections: list[Sec] | None = None, symbols: list[Sym] | None = None) -> ModuleFile:
    secs = [Sec(".modinfo", data=modinfo), *(sections or [])]
    return ModuleFile.from_bytes(build_elf(bits, little, sections=secs, symbols=symbols).data)


# -- names ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "name"), [
    ("/lib/modules/x/kernel/sound/snd-hda-intel.ko.xz", "snd_hda_intel"),
    ("usbcore.ko", "usbcore"),
    ("a.b-c.ko", "a"),
    ("dir.d/x-y", "x_y"),
    ("", ""),
])
def test_modname_from_path(path: str, name: str) -> None:
    assert modname_from_path(path) == name


def test_name_from_modinfo_else_path() -> None:
    m = ModuleFile.from_bytes(build_elf(sections=[Sec(".modinfo", data=b"name=foo_bar\0")]).data,
                              path="/x/other-name.ko")
    assert m.name == "foo_bar"
    m = ModuleFile.from_bytes(build_elf(sections=[Sec(".modinfo", data=b"license=GPL\0")]).data,
                              path="/x/other-name.ko.zst")
    assert m.name == "other_name"


# -- .modinfo ---------------------------------------------------------------------------------

def test_modinfo_strings_like_kmod() -> None:
    """Leading padding and runs of NULs are skipped; an entry without '=' has an empty value;
    the last string may be unterminated; bytes survive via surrogateescape."""
    m = module(b"\0\0\0license=GPL\0\0\0\0alias=pci:v*\0noequals\0desc=caf\xe9=x\0alias=usb:v1")
    assert m.modinfo == [("license", "GPL"), ("alias", "pci:v*"), ("noequals", ""),
                         ("desc", "caf\udce9=x"), ("alias", "usb:v1")]
    assert m.get("desc")[0].encode("utf-8", "surrogateescape") == b"caf\xe9=x"
    assert m.aliases == ["pci:v*", "usb:v1"]
    assert m.get("nope") == [] and m.get_first("nope") is None
    assert m.has_modinfo


def test_no_modinfo() -> None:
    m = ModuleFile.from_bytes(build_elf(sections=[Sec(".text", data=b"x")]).data, path="a.ko")
    assert not m.has_modinfo and m.modinfo == [] and m.name == "a"
    assert m.vermagic is None and m.depends == [] and m.params == []


def test_fields() -> None:
    m = module(b"vermagic=6.1.0 SMP mod_unload \0license=Dual BSD/GPL\0depends=a,b\0"
               b"srcversion=ABC\0intree=Y\0retpoline=Y\0import_ns=NS1\0import_ns=NS2\0"
               b"softdep=pre: x post: y\0")
    assert m.vermagic == "6.1.0 SMP mod_unload "
    assert m.license == "Dual BSD/GPL"
    assert m.depends == ["a", "b"]
    assert m.srcversion == "ABC"
    assert m.intree and m.retpoline and not m.staging
    assert m.import_ns == ["NS1", "NS2"]
    assert m.softdeps == ["pre: x post: y"]
    assert module(b"depends=\0").depends == []
    assert module(b"staging=Y\0").staging


def test_params_merged_in_first_appearance_order() -> None:
    m = module(b"parmtype=b:int\0parm=a:the a\0parm=b:the b\0parmtype=a:charp\0"
               b"parm=c:only desc\0parmtype=d:array of int\0parm=bad\0parm=e:x:y\0"
               b"parm=a:again\0")
    assert m.params == [Param("b", "int", "the b"), Param("a", "charp", "the a"),
                        Param("c", None, "only desc"), Param("d", "array of int", None),
                        Param("e", None, "x:y")]


# -- __versions -------------------------------------------------------------------------------

@pytest.mark.parametrize(("bits", "little"), VARIANTS, ids=VARIANT_IDS)
def test_versions_layouts(bits: int, little: bool) -> None:
    """64-byte entries: unsigned long CRC then the name (56 bytes on 64-bit, 60 on 32-bit)."""
    e = "<" if little else ">"
    crcfmt = "Q" if bits == 64 else "I"
    namelen = 64 - struct.calcsize(crcfmt)
    entries = [("module_layout", 0x1234ABCD), ("printk", 0xFFFFFFFF), ("x" * namelen, 7)]
    body = b"".join(struct.pack(e + crcfmt, c) + n.encode().ljust(namelen, b"\0")
                    for n, c in entries)
    m = module(b"", bits, little, sections=[Sec("__versions", data=body)])
    assert m.versions == entries
    bad = module(b"", bits, little, sections=[Sec("__versions", data=body + b"\0")])
    with pytest.raises(ElfError, match="__versions"):
        _ = bad.versions
    assert module(b"").versions == []


@pytest.mark.parametrize("little", [True, False])
def test_extended_versions(little: bool) -> None:
    """Linux 6.13+: names in __version_ext_names, u32 CRCs in __version_ext_crcs."""
    e = "<" if little else ">"
    long_name = "a_rust_symbol_" + "x" * 100
    secs = [Sec("__version_ext_crcs", data=struct.pack(e + "II", 1, 0xDEADBEEF)),
            Sec("__version_ext_names", data=b"printk\0" + long_name.encode() + b"\0")]
    m = module(b"", 64, little, sections=secs)
    assert m.extended_versions == [("printk", 1), (long_name, 0xDEADBEEF)]
    assert m.versions == []
    assert module(b"").extended_versions is None
    bad = module(b"", 64, little, sections=[secs[0], Sec("__version_ext_names", data=b"a\0")])
    with pytest.raises(ElfError, match="1 names for 2 CRCs"):
        _ = bad.extended_versions


# -- symbols ----------------------------------------------------------------------------------

def test_undefined_and_weak() -> None:
    m = module(b"", symbols=[Sym("a", shndx=0), Sym("w", bind=E.STB_WEAK, shndx=0),
                             Sym("def", shndx=".modinfo"), Sym("", shndx=0)])
    assert m.undefined_symbols == ["a", "w"]
    assert m.weak_undefined == {"w"}


# -- exports ----------------------------------------------------------------------------------

def exporter(bits: int = 64, little: bool = True, how: str = "prel32") -> ModuleFile:
    """A module exporting foo (EXPORT_SYMBOL) and bar (EXPORT_SYMBOL_GPL in NS_X).

    how: "prel32" (x86_64 style: 12-byte entries, relocations to __kstrtab_ symbols),
    "section" (relocations to the section symbol + addend), "rel32" (32-bit absolute
    pointers, SHT_REL with in-place addends), "symbols" (no relocations at all).
    """
    strings = b"foo\0\0bar\0NS_X\0"
    field = 4 if how in ("prel32", "rel32") or bits == 32 else 8
    ent = 3 * field
    e = "<" if little else ">"
    secs = [Sec(".text", data=bytes(32), flags=E.SHF_ALLOC | E.SHF_EXECINSTR),
            Sec("__ksymtab", data=bytes(ent), flags=E.SHF_ALLOC),
            Sec("__ksymtab_gpl", data=bytes(ent), flags=E.SHF_ALLOC),
            Sec("__kcrctab", data=struct.pack(e + "I", 0x11111111), flags=E.SHF_ALLOC),
            Sec("__kcrctab_gpl", data=struct.pack(e + "I", 0x22222222), flags=E.SHF_ALLOC),
            Sec("__ksymtab_strings", data=strings, flags=E.SHF_ALLOC | 0x30, entsize=1),
            Sec(".modinfo", data=b"license=GPL\0")]
    syms = [Sym("__ksymtab_strings", 0, 0, E.STB_LOCAL, E.STT_SECTION, "__ksymtab_strings"),
            Sym("__kstrtab_foo", 0, 0, E.STB_LOCAL, shndx="__ksymtab_strings"),
            Sym("__kstrtabns_foo", 4, 0, E.STB_LOCAL, shndx="__ksymtab_strings"),
            Sym("__ksymtab_foo", 0, 0, E.STB_LOCAL, shndx="__ksymtab"),
            Sym("__crc_foo", 0, 0, E.STB_LOCAL, shndx="__kcrctab"),
            Sym("__kstrtab_bar", 5, 0, E.STB_LOCAL, shndx="__ksymtab_strings"),
            Sym("__kstrtabns_bar", 9, 0, E.STB_LOCAL, shndx="__ksymtab_strings"),
            Sym("__ksymtab_bar", 0, 0, E.STB_LOCAL, shndx="__ksymtab_gpl"),
            Sym("__crc_bar", 0, 0, E.STB_LOCAL, shndx="__kcrctab_gpl"),
            Sym("foo", 0, 8, E.STB_GLOBAL, E.STT_FUNC, ".text"),
            Sym("bar", 8, 8, E.STB_GLOBAL, E.STT_FUNC, ".text")]
    relocs: dict[str, list[Rel]] | None = None
    if how == "prel32":
        relocs = {"__ksymtab": [Rel(0, 2, "foo"), Rel(4, 2, "__kstrtab_foo"),
                                Rel(8, 2, "__kstrtabns_foo")],
                  "__ksymtab_gpl": [Rel(0, 2, "bar"), Rel(4, 2, "__kstrtab_bar"),
                                    Rel(8, 2, "__kstrtabns_bar")]}
    elif how == "section":
        s = "__ksymtab_strings"
        relocs = {"__ksymtab": [Rel(0, 1, "foo"), Rel(field, 1, s, 0)],
                  "__ksymtab_gpl": [Rel(0, 1, "bar"), Rel(field, 1, s, 5),
                                    Rel(2 * field, 1, s, 9)]}
    elif how == "rel32":
        relocs = {"__ksymtab": [Rel(0, 1, "foo"), Rel(4, 1, "__ksymtab_strings"),
                                Rel(8, 1, "__ksymtab_strings")],
                  "__ksymtab_gpl": [Rel(0, 1, "bar"), Rel(4, 1, "__ksymtab_strings"),
                                    Rel(8, 1, "__ksymtab_strings")]}
        # the addends live in the table: offsets into __ksymtab_strings
        secs[1].data = struct.pack(e + "III", 0, 0, 4)
        secs[2].data = struct.pack(e + "III", 0, 5, 9)
    b = build_elf(bits, little, sections=secs, symbols=syms, relocs=relocs,
                  rela=how != "rel32", machine=E.EM_386 if bits == 32 else E.EM_X86_64)
    return ModuleFile.from_bytes(b.data)


EXPECTED = [Export("foo", False, "", 0x11111111), Export("bar", True, "NS_X", 0x22222222)]


@pytest.mark.parametrize(("bits", "little"), VARIANTS, ids=VARIANT_IDS)
@pytest.mark.parametrize("how", ["prel32", "section", "rel32", "symbols"])
def test_exports(bits: int, little: bool, how: str) -> None:
    m = exporter(bits, little, how)
    assert m.exports == EXPECTED
    assert m.export_names_for_depmod() == ["foo", "bar"]


def test_export_names_for_depmod_falls_back_to_ksymtab_strings() -> None:
    """Without __crc_ symbols kmod takes every string of __ksymtab_strings (namespaces too)."""
    m = module(b"", sections=[Sec("__ksymtab_strings", data=b"\0foo\0\0bar\0NS_X\0")],
               symbols=[Sym("foo", shndx=".modinfo")])
    assert m.export_names_for_depmod() == ["foo", "bar", "NS_X"]
    assert module(b"").export_names_for_depmod() == []


def test_exports_without_crcs() -> None:
    m = exporter(how="prel32")
    data = bytearray(m.content)
    # rename the CRC symbols and sections: no CRC information left
    for old in (b"__crc_foo\0", b"__crc_bar\0", b"__kcrctab\0", b"__kcrctab_gpl\0"):
        pos = bytes(data).find(old)
        while pos >= 0:
            data[pos:pos + 2] = b"x_"
            pos = bytes(data).find(old)
    m2 = ModuleFile.from_bytes(bytes(data))
    assert [e._replace(crc=None) for e in EXPECTED] == m2.exports


def test_exports_of_linked_image() -> None:
    """A linked image (no relocations) resolves PREL32 offsets through section addresses."""
    strings = b"foo\0\0bar\0NS_X\0"
    ks_addr, ksg_addr, str_addr = 0x1000, 0x2000, 0x3000

    def entry(base: int, name: int, ns: int) -> bytes:
        return struct.pack("<iii", 0, str_addr + name - (base + 4), str_addr + ns - (base + 8))

    secs = [Sec("__ksymtab", data=entry(ks_addr, 0, 4), flags=E.SHF_ALLOC, addr=ks_addr),
            Sec("__ksymtab_gpl", data=entry(ksg_addr, 5, 9), flags=E.SHF_ALLOC, addr=ksg_addr),
            Sec("__kcrctab", data=struct.pack("<I", 0x11111111), flags=E.SHF_ALLOC),
            Sec("__kcrctab_gpl", data=struct.pack("<I", 0x22222222), flags=E.SHF_ALLOC),
            Sec("__ksymtab_strings", data=strings, flags=E.SHF_ALLOC, addr=str_addr)]
    m = ModuleFile.from_bytes(build_elf(sections=secs, e_type=E.ET_EXEC).data)
    assert m.exports == EXPECTED


# -- struct module, signature, compression -----------------------------------------------------

@pytest.mark.parametrize(("bits", "little"), VARIANTS, ids=VARIANT_IDS)
def test_this_module(bits: int, little: bool) -> None:
    ptr = bits // 8
    body = bytes(3 * ptr) + b"mymod".ljust(64 - ptr, b"\0") + bytes(100)
    m = module(b"", bits, little, sections=[Sec(".gnu.linkonce.this_module", data=body)])
    assert m.this_module_name == "mymod" and m.this_module_size == len(body)
    assert m.this_module == (len(body), "mymod")
    assert module(b"").this_module_name is None and module(b"").this_module is None
    short = module(b"", bits, little, sections=[Sec(".gnu.linkonce.this_module", data=b"x")])
    with pytest.raises(ElfError, match="too small"):
        _ = short.this_module_name


def test_unsigned() -> None:
    m = module(b"license=GPL\0")
    assert m.signature is None
    assert m.signature_offset == len(m.content)
    assert m.body == bytes(m.content)


@pytest.mark.parametrize("kind", ["gzip", "xz", "zstd"])
def test_compressed(tmp_path: Path, kind: str) -> None:
    raw = build_elf(sections=[Sec(".modinfo", data=b"name=z\0")]).data
    packed = compress.compress(raw, kind)
    m = ModuleFile.from_bytes(packed)
    assert (m.compression, m.name, bytes(m.content)) == (kind, "z", raw)
    p = tmp_path / f"z.ko{compress.EXTENSIONS[kind]}"
    p.write_bytes(packed)
    with ModuleFile.open(p) as m:
        assert (m.compression, m.name, m.path) == (kind, "z", str(p))


def test_open_uncompressed_maps_and_closes(tmp_path: Path) -> None:
    p = tmp_path / "u.ko"
    p.write_bytes(build_elf(sections=[Sec(".modinfo", data=b"alias=a\0")]).data)
    m = ModuleFile.open(p)
    assert m.compression is None and m.aliases == ["a"] and m.name == "u"
    assert isinstance(m.content, mmap.mmap)
    for read in (lambda: m.elf.sections, m.elf.symbols, lambda: m.exports,
                 lambda: m.undefined_symbols, lambda: m.versions, lambda: m.signature,
                 lambda: m.this_module, m.export_names_for_depmod):
        read()
    del read
    m.close()
    assert m.content.closed  # nothing kept a view of the mapping


# -- the Debian trees, checked against kmod ----------------------------------------------------

def _sample(tree: Tree, count: int) -> list[Path]:
    mods = tree.modules()
    return mods[::max(1, len(mods) // count)]


def _kmod_modinfo0(paths: list[Path]) -> list[tuple[list[tuple[str, str]], list[str]]]:
    """kmod's ``modinfo -0`` of many paths: per module, its key=value items and parm lines."""
    out = subprocess.run([KMOD["modinfo"], "-0", *map(str, paths)], capture_output=True,
                         check=True).stdout.decode("utf-8", "surrogateescape")
    mods: list[tuple[list[tuple[str, str]], list[str]]] = []
    for item in out.split("\0")[:-1]:
        if item.startswith("filename:"):
            mods.append(([], []))
        elif item.startswith("parm:"):
            mods[-1][1].append(item[len("parm:"):].lstrip(" "))
        else:
            k, _, v = item.partition("=")
            if k not in SIG_KEYS:
                mods[-1][0].append((k, v))
    return mods


def _kmod_parm(p: Param) -> str:
    if p.description is not None and p.type is not None:
        return f"{p.name}:{p.description} ({p.type})"
    return f"{p.name}:{p.description if p.description is not None else p.type}"


@pytest.mark.trees
@pytest.mark.kmod
def test_modinfo_matches_kmod(tree: Tree) -> None:
    """Every .modinfo pair and parameter of a sample equals kmod's ``modinfo -0``."""
    paths = _sample(tree, 300)
    theirs = _kmod_modinfo0(paths)
    assert len(theirs) == len(paths)
    diffs = []
    for p, (pairs, parms) in zip(paths, theirs, strict=True):
        m = ModuleFile.open(p)
        ours = [(k, v) for k, v in m.modinfo if k not in ("parm", "parmtype")]
        if ours != pairs or [_kmod_parm(x) for x in reversed(m.params)] != parms:
            diffs.append(p)
        assert m.vermagic is not None and m.vermagic.split()[0] == tree.release
        assert m.name == modname_from_path(p) == m.this_module_name
        if m.compression is None:
            assert p.suffix == ".ko"
        else:
            assert p.name.endswith(compress.EXTENSIONS[m.compression])
        m.close()
    assert diffs == []


@pytest.mark.trees
def test_exports_against_kmod_symbols_and_importers(tree: Tree) -> None:
    """Exports agree with kmod's modules.symbols; their CRCs with the __versions of the
    modules that import them; their namespaces with the importers' import_ns."""
    owners: dict[str, str] = {}
    for line in (tree.kmod_moddir / "modules.symbols").read_text().splitlines():
        if line.startswith("alias symbol:"):
            sym, owner = line[len("alias symbol:"):].split()
            owners[sym] = owner
    by_owner: dict[str, set[str]] = defaultdict(set)
    for sym, owner in owners.items():
        by_owner[owner].add(sym)
    mods = tree.modules()
    step = 1 if tree.flavour == "6.1" else 8  # the xz tree costs 2 ms per module to inflate
    exported: dict[str, Export] = {}
    importers = []
    for p in mods[::step]:
        m = ModuleFile.open(p)
        names = m.export_names_for_depmod()
        assert set(names) == {e.name for e in m.exports}
        assert by_owner.get(m.name, set()) <= set(names), p
        assert set(names) <= set(owners), p
        for e in m.exports:
            assert e.crc is not None
            exported[e.name] = e
        importers.append((m.versions, m.undefined_symbols, set(m.import_ns)))
        m.close()
    checked = ns_checked = 0
    for versions, undefined, nss in importers:
        for sym, crc in versions:
            if sym in exported:
                assert exported[sym].crc == crc, sym
                checked += 1
        for sym in undefined:
            if sym in exported and exported[sym].namespace:
                assert exported[sym].namespace in nss, sym
                ns_checked += 1
    assert checked > 100 and ns_checked > 0


@pytest.mark.trees
def test_real_module_spot_values(tree: Tree) -> None:
    ext = "" if tree.flavour == "6.1" else ".xz"
    with ModuleFile.open(tree.moddir / "kernel/drivers/usb/core" / f"usbcore.ko{ext}") as m:
        assert m.name == "usbcore" and m.license == "GPL" and m.depends == ["usb-common"]
        assert m.intree and m.retpoline
        assert {p.name for p in m.params} >= {"autosuspend", "nousb", "quirks"}
        assert "usb_ep_type_string" in dict(m.versions)
        ex = {e.name: e for e in m.exports}
        assert ex["usb_register_driver"].gpl and not ex["cdc_parse_cdc_header"].gpl
        assert "usb_alloc_urb" in m.export_names_for_depmod()
        assert {"kfree", "usb_ep_type_string"} <= set(m.undefined_symbols)
        assert m.this_module_size in (896, 1280)
        sig = m.signature
        assert sig is not None and sig.hash_algo == "sha256"
        assert m.signature_offset == len(m.content) - sig.trailer_len
        assert m.body == bytes(m.content[:m.signature_offset])
        assert m.elf.section(".modinfo") is not None


@pytest.mark.trees
def test_vmlinux_exports(tree: Tree) -> None:
    """The linked kernel image's export table (no relocations, PREL32 offsets): its CRCs
    match what modules recorded in __versions, its namespaces their import_ns."""
    from lkm import kimage

    m = ModuleFile.from_bytes(kimage.load_vmlinux(tree.vmlinuz))
    assert m.elf.e_type == E.ET_EXEC
    exports = {e.name: e for e in m.exports}
    assert len(exports) > 10_000
    assert not exports["printk" if "printk" in exports else "_printk"].gpl
    assert sum(1 for e in exports.values() if e.namespace) > 50
    checked = 0
    for p in _sample(tree, 150):
        with ModuleFile.open(p) as mod:
            for sym, crc in mod.versions:
                if sym in exports:
                    assert exports[sym].crc == crc, (p, sym)
                    checked += 1
            nss = set(mod.import_ns)
            for sym in mod.undefined_symbols:
                if sym in exports and exports[sym].namespace:
                    assert exports[sym].namespace in nss, (p, sym)
    assert checked > 1000
