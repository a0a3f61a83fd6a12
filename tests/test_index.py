"""lkm.index: kmod's binary trie, read and written, against kmod's own files and modprobe."""

from __future__ import annotations

import ctypes
import random
import re
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import KMOD, Tree
from lkm.errors import IndexError_
from lkm.index import Index, IndexBuilder, fnmatch

BINS = ("modules.dep", "modules.alias", "modules.symbols", "modules.builtin",
        "modules.builtin.alias")
END = "\n# End of configuration files. Dumping indexes now:\n\n"


def _bin(tree: Tree, name: str) -> Path:
    return tree.kmod_moddir / f"{name}.bin"


def _modprobe(tree: Tree, tmp: Path, *args: str) -> str:
    empty = tmp / "modprobe.d"
    empty.mkdir(exist_ok=True)
    out = subprocess.run([KMOD["modprobe"], "-C", str(empty), "-d", str(tree.kmod_root),
                          "-S", tree.release, *args], capture_output=True, text=True)
    return out.stdout


@pytest.mark.kmod
def test_dump_matches_modprobe_c(tree: Tree, tmp_path: Path) -> None:
    """modprobe -c dumps alias.bin then symbols.bin in trie order with prefix "alias "."""
    out = _modprobe(tree, tmp_path, "-c")
    with Index.open(_bin(tree, "modules.alias")) as a, \
            Index.open(_bin(tree, "modules.symbols")) as s:
        ours = a.dump("alias ") + s.dump("alias ")
    assert out.split(END, 1)[1] == ours


def _sample_keys(tree: Tree, n: int) -> list[str]:
    """Device strings made from alias patterns of the tree (wildcards filled in)."""
    pats = [line.split()[1] for line in
            (tree.kmod_moddir / "modules.alias").read_text().splitlines()[1:]]
    rng = random.Random(3)
    keys = []
    for pat in rng.sample([p for p in pats if ":" in p and not p.startswith("symbol:")], n):
        key = re.sub(r"\[([^\]])[^\]]*\]", r"\1", pat)
        keys.append(key.replace("*", rng.choice(["", "0", "X1"])).replace("?", "7"))
    return [*keys, "pci:v00008086d00001533sv00008086sd00000001bc02sc00i00",
            "usb:v0BDAp8153d3000dc00dsc00dp00icFFisc00ip00in00", "nonexistent:thing"]


@pytest.mark.kmod
def test_wildcard_matches_modprobe_resolve_alias(tree: Tree, tmp_path: Path) -> None:
    """modprobe -R of a name with ':' answers from modules.alias.bin's wildcard search."""
    with Index.open(_bin(tree, "modules.alias")) as idx:
        for key in _sample_keys(tree, 40):
            ours = [v for _p, v in idx.search_wildcard(key.replace("-", "_"))]
            theirs = _modprobe(tree, tmp_path, "-R", key).split()
            assert ours == theirs, key


def test_exact_lookups(tree: Tree) -> None:
    with Index.open(_bin(tree, "modules.dep")) as dep:
        line = dep.lookup("e1000e")
        assert line is not None and line.startswith("kernel/drivers/net/ethernet/intel/e1000e/")
        assert dep.lookup("e1000") != line
        assert dep.lookup("e1000e_") is None and dep.lookup("") is None
    with Index.open(_bin(tree, "modules.symbols")) as sym:
        assert sym.lookup("symbol:usb_register_driver") == "usbcore"
    with Index.open(_bin(tree, "modules.builtin")) as b:
        assert b.lookup_all("iosf_mbi") == [(0, "")]


# --------------------------------------------------------------- fnmatch against glibc

_libc = ctypes.CDLL(None)
_libc.fnmatch.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int]


@pytest.mark.parametrize("pattern", [
    b"abc", b"a*c", b"a?c", b"*", b"", b"[abc]x", b"[!abc]x", b"[^abc]x", b"[]a]x", b"[!]a]x",
    b"[a-c]x", b"[a-]x", b"[-a]x", b"[c-a]x", b"[x", b"a[", b"\\*x", b"a\\", b"[\\]]x",
    b"[[:digit:]]x", b"[[:alpha:][:digit:]]*", b"[[:bogus:]]", b"pci:v*d*sv*sd*bc0Csc03i30*",
    b"*[0-9]", b"a*b*c", b"[a\\-z]x", b"**", b"?*?", b"dmi*:rn[Nn]ote*",
])
def test_fnmatch_like_glibc(pattern: bytes) -> None:
    for s in (b"abc", b"ax", b"bx", b"]x", b"-x", b"*x", b"x", b"", b"a", b"[x", b"a[", b"1x",
              b"zx", b"a\\", b"\\x", b"abbc", b"9", b"pci:v1d2sv3sd4bc0Csc03i30", b"dmi:rnnote1",
              b"a\nc", b"acb"):
        assert fnmatch(pattern, s) == (_libc.fnmatch(pattern, s, 0) == 0), (pattern, s)


# --------------------------------------------------------------- hostile input


def _hdr(root: int) -> bytes:
    return struct.pack(">III", 0xB007F457, 0x00020001, root)


@pytest.mark.parametrize("data", [
    b"", b"\0" * 11, b"\xb0\x07\xf4\x58" + b"\0" * 8, struct.pack(">III", 0xB007F457, 0x30001, 12),
])
def test_bad_header(data: bytes) -> None:
    with pytest.raises(IndexError_):
        Index(data)


@pytest.mark.parametrize("data", [
    _hdr(0x80000000 | 100),  # root beyond the end
    _hdr(0x80000000 | 12) + b"abc",  # unterminated prefix
    _hdr(0x20000000 | 12) + b"a",  # truncated child range
    _hdr(0x20000000 | 12) + b"az" + b"\0" * 8,  # child words beyond the end
    _hdr(0x20000000 | 12) + b"ba",  # first > last
    _hdr(0x40000000 | 12) + struct.pack(">I", 0xFFFFFFFF),  # absurd value count
    _hdr(0x40000000 | 12) + struct.pack(">II", 1, 5) + b"abc",  # unterminated value
    _hdr(0x20000000 | 12) + b"aa" + struct.pack(">I", 0x20000000 | 12),  # self loop
    _hdr(0x20000000 | 12) + b"ab" + struct.pack(">II", 0x20000000 | 22, 0x20000000 | 22)
    + b"ab" + struct.pack(">II", 0x20000000 | 12, 0),  # shared child, cycle back to root
])
def test_corrupt_nodes_raise(data: bytes) -> None:
    idx = Index(data)
    with pytest.raises(IndexError_):
        list(idx.items())
    raised = 0
    for key in ("a" * 50, "ba", ""):  # each search ends; at least one meets the damage
        for search in (idx.search_wildcard, idx.lookup):
            try:
                search(key)
            except IndexError_:
                raised += 1
    assert raised


def test_empty_index() -> None:
    idx = Index(_hdr(12))
    assert list(idx.items()) == [] and idx.lookup("x") is None and idx.search_wildcard("") == []
    assert Index(_hdr(0)).lookup("") is None


# --------------------------------------------------------------- writer


@pytest.mark.trees
def test_rewrite_is_byte_identical(tree: Tree) -> None:
    """Every .bin kmod 30's depmod wrote, read back and rewritten post-order, is the same bytes;
    the pre-order layout holds the same entries with the root first."""
    for name in BINS:
        data = _bin(tree, name).read_bytes()
        entries = list(Index(data).entries())
        builder = IndexBuilder()
        for key, value, prio in reversed(entries):  # file order is reverse insertion for ties
            builder.add(key, value, prio)
        assert builder.to_bytes() == data, name
        pre = builder.to_bytes("preorder")
        assert len(pre) == len(data)
        idx = Index(pre)
        assert idx.root & 0x0FFFFFFF == 12 and list(idx.entries()) == entries


def _entries(idx: Index) -> list[tuple[str, str, int]]:
    return list(idx.entries())


def test_writer_shapes_and_orders() -> None:
    b = IndexBuilder()
    assert b.to_bytes() == _hdr(12) == b.to_bytes("preorder")
    for key, value, prio in [("abc", "x", 5), ("abd", "y", 1), ("ab", "z", 2), ("abc", "w", 5),
                             ("abc", "v", 1), ("", "root", 0), ("b*", "glob", 3)]:
        b.add(key, value, prio)
    assert b.add("abc", "x", 9) is True and b.add("abc", "new", 9) is False
    for layout in ("postorder", "preorder"):
        idx = Index(b.to_bytes(layout))
        assert idx.lookup_all("abc") == [(1, "v"), (5, "w"), (5, "x"), (9, "new"), (9, "x")]
        assert idx.lookup("ab") == "z" and idx.lookup("a") is None and idx.lookup("") == "root"
        assert [k for k, _v in idx.items()] == ["", "ab", "abc", "abc", "abc", "abc", "abc",
                                                "abd", "b*"]
        assert idx.search_wildcard("bxx") == [(3, "glob")]
        assert idx.search_wildcard("ab") == [(2, "z")]
    with pytest.raises(IndexError_):
        b.add("caf\u00e9", "x", 1)
    with pytest.raises(IndexError_):
        b.add("a", "x\0y", 1)


def test_writer_round_trip_against_modprobe(tmp_path: Path, tree61: Tree) -> None:
    """An alias index written by lkm answers kmod's modprobe -R like kmod's own file."""
    src = tree61.kmod_moddir / "modules.alias.bin"
    entries = list(Index.open(src).entries())
    b = IndexBuilder()
    for key, value, prio in reversed(entries):
        b.add(key, value, prio)
    moddir = tmp_path / "lib" / "modules" / tree61.release
    moddir.mkdir(parents=True)
    for name in BINS:
        (moddir / f"{name}.bin").write_bytes((tree61.kmod_moddir / f"{name}.bin").read_bytes())
    (moddir / "modules.alias.bin").write_bytes(b.to_bytes("preorder"))
    (tmp_path / "modprobe.d").mkdir()
    with Index.open(moddir / "modules.alias.bin") as idx:
        for key in _sample_keys(tree61, 15):
            key = key.replace("-", "_")
            out = subprocess.run([KMOD["modprobe"], "-C", str(tmp_path / "modprobe.d"), "-d",
                                  str(tmp_path), "-S", tree61.release, "-R", key],
                                 capture_output=True, text=True).stdout.split()
            assert out == [v for _p, v in idx.search_wildcard(key)], key
