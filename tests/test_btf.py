"""lkm.btf and lkm.kernel.layouts: the BTF reader on crafted blobs, on the .BTF of both Debian
kernels (facts measured in /work/shared/reference/emulation.md, the modules' __this_module,
pahole's layouts of every struct) and on hostile data."""

from __future__ import annotations

import random
import re
import shutil
import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Tree
from lkm import btf as B
from lkm.btf import Btf, BtfError, BtfLookupError
from lkm.errors import LkmError
from lkm.kernel import layouts as L
from lkm.kernel.profile import KernelProfile
from lkm.module import ModuleFile

# -- crafted BTF -------------------------------------------------------------------------


class Blob:
    """A BTF blob built type by type (ids from 1), as pahole would write it."""

    def __init__(self) -> None:
        self.strs = bytearray(b"\0")
        self.words: list[int] = []
        self.count = 0

    def s(self, name: str) -> int:
        if not name:
            return 0
        off = len(self.strs)
        self.strs += name.encode() + b"\0"
        return off

    def add(self, kind: int, name: str = "", vlen: int = 0, kflag: bool = False,
            size_or_type: int = 0, extra: tuple[int, ...] = ()) -> int:
        self.words += [self.s(name), kind << 24 | vlen | kflag << 31, size_or_type, *extra]
        self.count += 1
        return self.count

    def int_(self, name: str, size: int, signed: bool = False, bits: int | None = None,
             offset: int = 0) -> int:
        enc = B.BTF_INT_SIGNED if signed else 0
        return self.add(B.INT, name, size_or_type=size,
                        extra=(enc << 24 | offset << 16 | (bits or 8 * size),))

    def struct(self, name: str, size: int, members: list[tuple[str, int, int]],
               kflag: bool = False, kind: int = B.STRUCT) -> int:
        extra = tuple(w for n, t, off in members for w in (self.s(n), t, off))
        return self.add(kind, name, len(members), kflag, size, extra)

    def data(self, endian: str = "<") -> bytes:
        types = struct.pack(f"{endian}{len(self.words)}I", *self.words)
        hdr = struct.pack(f"{endian}HBBIIIII", B.BTF_MAGIC, 1, 0, 24, 0, len(types),
                          len(types), len(self.strs))
        return hdr + types + bytes(self.strs)


def sample() -> Blob:
    b = Blob()
    i32 = b.int_("int", 4, signed=True)                                   # 1
    u8 = b.int_("unsigned char", 1)                                       # 2
    lng = b.int_("long int", 8, signed=True)                              # 3
    ptr = b.add(B.PTR, size_or_type=u8)                                   # 4: unsigned char *
    arr = b.add(B.ARRAY, extra=(u8, i32, 16))                             # 5: unsigned char [16]
    inner = b.struct("", 8, [("x", i32, 0), ("y", i32, 32)])              # 6: anonymous struct
    un = b.struct("", 8, [("", inner, 0), ("whole", lng, 0)], kind=B.UNION)  # 7
    fwd = b.add(B.FWD, "later")                                           # 8
    tdef = b.add(B.TYPEDEF, "pid_t", size_or_type=i32)                    # 9
    cv = b.add(B.CONST, size_or_type=b.add(B.VOLATILE, size_or_type=tdef))  # 11 -> 10 -> 9
    b.add(B.ENUM, "module_state", 3, False, 4,
          (b.s("MODULE_STATE_LIVE"), 0, b.s("MODULE_STATE_COMING"), 1,
           b.s("MODULE_STATE_NEG"), 0xFFFFFFFF))                          # 12
    b.add(B.ENUM, "sgn", 1, True, 4, (b.s("MINUS_ONE"), 0xFFFFFFFF))      # 13
    b.add(B.ENUM64, "big", 1, True, 8, (b.s("BIG"), 0xFFFFFFFE, 0xFFFFFFFF))  # 14
    proto = b.add(B.FUNC_PROTO, vlen=2, size_or_type=i32,
                  extra=(b.s("a"), ptr, 0, 0))                            # 15: int (u8 *, ...)
    func = b.add(B.FUNC, "f", vlen=1, size_or_type=proto)                 # 16
    fptr = b.add(B.PTR, size_or_type=proto)                               # 17
    b.add(B.FLOAT, "double", size_or_type=8)                              # 18
    var = b.add(B.VAR, "jiffies", size_or_type=lng, extra=(1,))           # 19
    b.add(B.DATASEC, ".data", 1, size_or_type=64, extra=(var, 8, 8))      # 20
    b.add(B.DECL_TAG, "user", size_or_type=func, extra=(0xFFFFFFFF,))     # 21
    tagged = b.add(B.TYPE_TAG, "rcu", size_or_type=ptr)                   # 22
    bits = b.struct("flags", 4, [("a", i32, 1 << 24 | 0), ("b", i32, 3 << 24 | 1)],
                    kflag=True)                                           # 23
    b.add(B.RESTRICT, size_or_type=ptr)                                   # 24
    oldbits = b.int_("unsigned int", 4, bits=3, offset=2)                 # 25
    b.struct("task", 64, [("pid", cv, 0), ("", un, 64), ("comm", arr, 128), ("mm", ptr, 256),
                          ("f", bits, 320), ("op", fptr, 384), ("rcu", tagged, 448),
                          ("old", oldbits, 32)])                          # 26
    b.struct("packed", 5, [("c", u8, 0), ("i", i32, 8)])                  # 27
    b.struct("later", 8, [("p", fwd, 0)])                                 # 28
    return b


@pytest.mark.parametrize("endian", ["<", ">"])
def test_every_kind(endian: str) -> None:
    t = Btf(sample().data(endian))
    assert t.little_endian == (endian == "<") and len(t) == 29
    assert [t.type(i).kind_name for i in range(1, 29)] == [
        "int", "int", "int", "ptr", "array", "struct", "union", "fwd", "typedef", "volatile",
        "const", "enum", "enum", "enum64", "func_proto", "func", "ptr", "float", "var",
        "datasec", "decl_tag", "type_tag", "struct", "restrict", "int", "struct", "struct",
        "struct"]
    assert t.type(0).name == "void"
    assert t.array(5) == (2, 1, 16)
    assert t.int_info(1) == (B.BTF_INT_SIGNED, 0, 32)
    assert t.params(15) == [("a", 4), ("", 0)]
    assert t.linkage(16) == 1 and t.linkage(19) == 1
    assert t.var_secinfo(20) == [(19, 8, 8)]
    assert t.decl_tag(21) == (16, -1)
    assert t.enum_values("module_state") == {"MODULE_STATE_LIVE": 0, "MODULE_STATE_COMING": 1,
                                             "MODULE_STATE_NEG": 0xFFFFFFFF}
    assert t.enum_values("enum sgn") == {"MINUS_ONE": -1}
    assert t.enum_values("big") == {"BIG": -2}
    assert t.enumerator("MODULE_STATE_COMING") == 1
    assert t.members(23) == [B.BtfMember("a", 1, 0, 1), B.BtfMember("b", 1, 1, 3)]
    assert t.pointer_size == 8
    names = {i: t.type_name(i) for i in (4, 5, 11, 15, 17, 22, 24, 16, 19, 8)}
    assert names == {4: "unsigned char *", 5: "unsigned char[16]",
                     11: "const volatile pid_t", 15: "int (unsigned char *, ...)",
                     17: "int (*)(unsigned char *, ...)", 22: "unsigned char *",
                     24: "unsigned char * restrict", 16: "int f(unsigned char *, ...)",
                     19: "long int jiffies", 8: "struct later"}


def test_queries() -> None:
    t = Btf(sample().data())
    assert t.find("task") == 26 and t.find("struct task") == 26 and t.find("later") == 28
    assert t.find_all("later") == [8, 28]
    assert t.resolve(11) == 1 and t.sizeof(11) == 4 and t.sizeof("pid_t") == 4
    assert t.sizeof(5) == 16 and t.sizeof(4) == 8 and t.sizeof("task") == 64
    assert t.offsetof("task", "pid") == 0
    assert t.offsetof("task", "x") == 8 and t.offsetof("task", "y") == 12  # through the anons
    assert t.offsetof("task", "whole") == 8
    assert t.offsetof("task", "comm[3]") == 19
    f = t.field("task", "f.b")
    assert (f.bit_offset, f.bitfield_size, f.kind) == (321, 3, "int")
    f = t.field("task", "old")  # a bitfield told by its int (no kind_flag)
    assert (f.bit_offset, f.bitfield_size) == (34, 3)
    with pytest.raises(BtfLookupError, match="bitfield"):
        t.offsetof("task", "f.b")
    f = t.field("task", "mm")
    assert (f.kind, f.size, f.offset) == ("ptr", 8, 32)
    assert t.field("task", "comm").kind == "array" and t.field("task", "op").kind == "ptr"
    assert t.field("task", "pid").kind == "int" and t.type_name(t.field("task", "pid").type) \
        == "const volatile pid_t"
    assert t.alignof("task") == 8 and t.alignof("packed") == 1 and t.alignof(5) == 1
    for bad in (lambda: t.offsetof("task", "nope"), lambda: t.offsetof("task", "mm.x"),
                lambda: t.offsetof("task", "comm[16]"), lambda: t.offsetof("task", "pid[1]"),
                lambda: t.offsetof("task", "a..b"), lambda: t.sizeof("f"),
                lambda: t.sizeof(8), lambda: t.sizeof(0), lambda: t.find("nothing"),
                lambda: t.find("union task"), lambda: t.enum_values("task"),
                lambda: t.enumerator("NONE"), lambda: t.members(1), lambda: t.array(1)):
        with pytest.raises(BtfLookupError):
            bad()


def test_malformed() -> None:
    good = sample().data()

    def hdr(**kw: int) -> bytes:
        vals = dict(zip(("magic", "version", "flags", "hdr_len", "type_off", "type_len",
                         "str_off", "str_len"), struct.unpack_from("<HBBIIIII", good), strict=True))
        vals.update(kw)
        return struct.pack("<HBBIIIII", *vals.values()) + good[24:]

    _, _, _, _, _, tl, _, sl = struct.unpack_from("<HBBIIIII", good)
    cases = {
        "header truncated": good[:10], "bad magic": hdr(magic=0x1234),
        "version": hdr(version=2), "header length": hdr(hdr_len=1 << 30),
        "past the end": hdr(str_len=sl + 1), "misaligned": hdr(type_off=2, type_len=tl - 4),
        "overlap": hdr(str_off=0), "NUL": good[:-1] + b"x",
        "unknown kind": good[:24] + struct.pack("<III", 0, 25 << 24, 0) + good[36:],
        "runs past": good[:28] + struct.pack("<I", B.STRUCT << 24 | 0xFFFF) + good[32:],
    }
    for what, data in cases.items():
        with pytest.raises(BtfError, match=what):
            Btf(data)
    b = Blob()
    b.add(B.PTR, "p", size_or_type=99)  # a reference past the last type
    b.add(B.STRUCT, "s", 1, False, 4, (b.s("m"), 77, 0))
    b.add(B.TYPEDEF, "a", size_or_type=4)  # a typedef loop 3 -> 4 -> 3
    b.add(B.TYPEDEF, "b", size_or_type=3)
    b.words[-3] = 1 << 20  # type 4's name offset is out of range
    t = Btf(b.data())
    for bad in (lambda: t.type_name(1), lambda: t.members(2), lambda: t.sizeof("a"),
                lambda: t.type(4), lambda: t.type(9)):
        with pytest.raises(BtfError):
            bad()


def test_loops_bounded() -> None:
    b = Blob()
    i32 = b.int_("int", 4)
    # two structs whose anonymous members are each other (by value): C cannot, hostile data can
    b.struct("a", 8, [("", 3, 0), ("x", i32, 0)])
    b.struct("", 8, [("", 2, 0), ("", 2, 0)])
    b.add(B.ARRAY, extra=(4, i32, 1 << 31))  # an array of itself
    wide = b.count + 1
    b.struct("wide", 4, [("", wide, 0)] * 0xFFFF)  # 65535 anonymous members of itself
    t = Btf(b.data())
    t0 = time.monotonic()
    assert t.offsetof("a", "x") == 0
    for bad in (lambda: t.offsetof("a", "nope"), lambda: t.alignof("a"), lambda: t.sizeof(4),
                lambda: t.offsetof("wide", "nope"), lambda: t.alignof("wide"),
                lambda: t.type_name(4)):
        with pytest.raises(LkmError):
            bad()
    assert time.monotonic() - t0 < 5


# -- the Debian kernels ------------------------------------------------------------------

_btfs: dict[str, bytes] = {}


def raw_btf(tree: Tree) -> bytes:
    """The .BTF of the tree's vmlinuz (extracted once per session)."""
    if tree.flavour not in _btfs:
        _btfs[tree.flavour] = L.extract_btf(tree.vmlinuz)
    return _btfs[tree.flavour]


def test_parse_time(tree: Tree) -> None:
    data = raw_btf(tree)
    t0 = time.perf_counter()
    t = Btf(data)
    t.find("task_struct")  # the name index is built on the first lookup
    elapsed = time.perf_counter() - t0
    assert len(t) > 100_000
    assert elapsed < 0.5, f"parse and index took {elapsed:.3f} s"


def test_measured_61(tree61: Tree) -> None:
    """The offsets emulation.md measured in modules compiled for 6.1."""
    t = Btf(raw_btf(tree61))
    want = {("proc_ops", "proc_open"): 0x8, ("proc_ops", "proc_read"): 0x10,
            ("proc_ops", "proc_lseek"): 0x28, ("proc_ops", "proc_release"): 0x30,
            ("file", "private_data"): 0xC8, ("seq_file", "buf"): 0, ("seq_file", "size"): 8,
            ("seq_file", "count"): 0x18, ("seq_file", "op"): 0x58, ("seq_file", "private"): 0x70,
            ("task_struct", "pid"): 0x970, ("task_struct", "comm"): 0xBA0,
            ("module", "init"): 0x138, ("module", "exit"): 0x350}
    assert {k: t.offsetof(*k) for k in want} == want
    assert t.sizeof("module") == 896 and t.sizeof("struct list_head") == 16
    assert t.field("seq_file", "buf").kind == "ptr" and t.field("task_struct", "comm").size == 16
    assert t.field("task_struct", "pid").kind == "int"
    assert t.offsetof("file", "f_path.dentry") == 0x18
    assert t.type_name(t.field("seq_file", "op").type) == "const struct seq_operations *"
    assert t.enum_values("module_state") == {"MODULE_STATE_LIVE": 0, "MODULE_STATE_COMING": 1,
                                             "MODULE_STATE_GOING": 2, "MODULE_STATE_UNFORMED": 3}
    assert t.alignof("module") == 8


def test_big_endian(tree61: Tree) -> None:
    """The same BTF written big-endian (as an s390x or ppc64 kernel's) reads the same."""
    data = raw_btf(tree61)
    hdr = struct.unpack_from("<HBBIIIII", data)
    hl, to, tl = hdr[3:6]
    words = struct.unpack_from(f"<{tl // 4}I", data, hl + to)
    swapped = (struct.pack(">HBBIIIII", *hdr) + data[24:hl + to]
               + struct.pack(f">{tl // 4}I", *words) + data[hl + to + tl:])
    le, be = Btf(data), Btf(swapped)
    assert not be.little_endian and len(be) == len(le)
    for tid in range(1, len(le), 97):
        assert be.type(tid) == le.type(tid)
    assert be.offsetof("task_struct", "comm") == 0xBA0 and be.sizeof("module") == 896


def test_this_module_size(tree: Tree) -> None:
    """sizeof(struct module) is the size of every module's __this_module."""
    size = Btf(raw_btf(tree)).sizeof("module")
    sizes: dict[int, list[str]] = {}
    for p in tree.modules():
        with ModuleFile.open(p) as m:
            sizes.setdefault(m.this_module_size or 0, []).append(p.name)
    assert list(sizes) == [size], {k: v[:3] for k, v in sizes.items()}


# pahole's --hex lines: "type name;  /* offset size */", bitfields "/* offset:bit size */"
_NUM = r"(?:0x[0-9a-f]+|\d+)"
_LINE = re.compile(rf"^\s*(.*?);\s*/\*\s*({_NUM})(?::\s*({_NUM}))?\s+({_NUM})\s*\*/")
_SIZE = re.compile(r"/\* size: (\d+),")


def _decl_name(decl: str) -> str:
    decl = re.sub(r"\s*__attribute__\(\(\w+(\(\d+\))?\)\)", "", decl).strip()
    if decl.startswith("}"):  # the end of an inline anonymous struct/union
        decl = decl[1:].strip().lstrip("*").strip()
        if not decl:
            return ""
    m = re.search(r"\(\*\s*(\w+)\)", decl)
    if m:
        return m.group(1)
    decl = re.sub(r"(\[\d*\])+$", "", re.sub(r":\s*\d+$", "", decl))
    return re.findall(r"\w+", decl)[-1]


def _pahole_layouts(text: str) -> dict[str, tuple[int | None, list[tuple[str, int, int]]]]:
    """name -> (size (None for a union), [(member, bit offset, size)]), inline anonymous
    members flattened as pahole prints them (their members, then the anonymous member)."""
    out: dict[str, tuple[int | None, list[tuple[str, int, int]]]] = {}
    cur: list[tuple[str, int, int]] = []
    name, opened, size = "", [], None
    for line in text.splitlines():
        m = re.match(r"^(?:struct|union) (\w+) \{", line)
        if m:
            name, cur, opened, size = m.group(1), [], [], None
            continue
        if line.rstrip().endswith("{"):
            opened.append(len(cur))
            continue
        s = _SIZE.search(line)
        if s and name:
            size = int(s.group(1))
            continue
        if line.startswith("}") and name:
            out[name], name = (size, cur), ""
            continue
        m = _LINE.match(line)
        if m and name:
            decl, off, bit, width = m.groups()
            if decl.startswith("}"):
                start = opened.pop()
                if "*" in decl:  # a pointer to an anonymous struct: its members are its own
                    del cur[start:]
            cur.append((_decl_name(decl), int(off, 0) * 8 + int(bit or "0", 0), int(width, 0)))
    return out


def _flat(t: Btf, tid: int, base: int, out: list[tuple[str, int, int]]) -> None:
    """Our members of ``tid`` in pahole's order (anonymous struct types shown inline)."""
    for m in t.members(tid):
        inner = m.type
        while t.kind(inner) in (B.CONST, B.VOLATILE, B.ARRAY):
            inner = t.array(inner)[0] if t.kind(inner) == B.ARRAY else t.type(inner).size_or_type
        if t.kind(inner) in (B.STRUCT, B.UNION) and not t.name(inner):
            _flat(t, inner, base + m.bit_offset, out)
        out.append((m.name, base + m.bit_offset, t.sizeof(m.type)))


def test_pahole(tree: Tree, tmp_path: Path) -> None:
    """Every member offset and size of every struct and union (unique by name) as pahole
    (dwarves, reading the same BTF) lays them out."""
    if shutil.which("pahole") is None:
        pytest.skip("pahole is not installed (Debian package pahole)")
    data = raw_btf(tree)
    (tmp_path / "btf").write_bytes(data)
    text = subprocess.run(["pahole", "-F", "btf", "--hex", str(tmp_path / "btf")], check=True,
                          capture_output=True, text=True).stdout
    theirs = _pahole_layouts(text)
    t = Btf(data)
    by_name: dict[str, list[int]] = {}
    for tid in t.ids_of_kind(B.STRUCT, B.UNION):
        if t.name(tid):
            by_name.setdefault(t.name(tid), []).append(tid)
    names = sorted(n for n, ids in by_name.items() if len(ids) == 1)
    assert len(names) > 7000
    differ = []
    for n in names:
        tid = by_name[n][0]
        ours: list[tuple[str, int, int]] = []
        _flat(t, tid, 0, ours)
        if theirs.get(n) != (t.sizeof(tid) if t.kind(tid) == B.STRUCT else None, ours):
            differ.append(n)
    assert not differ, f"{len(differ)} of {len(names)} differ from pahole: {differ[:10]}"


# -- layouts of a kernel profile ---------------------------------------------------------


def _profile(tree: Tree, **kw: str) -> KernelProfile:
    fields = {"release": tree.release, "vermagic": "", "source": str(tree.root), "kind": "tree"}
    fields.update(kw)
    return KernelProfile(version=(6, 1, 0), **fields)  # type: ignore[arg-type]


def test_layouts_cached(tree: Tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(L, "_parsed", {})
    prof = _profile(tree)
    t0 = time.perf_counter()
    first = L.layouts(prof)
    t1 = time.perf_counter()
    assert L.layouts(prof) is first  # kept in the process
    cache = prof.cache_path(".btf")
    assert cache.parent == tmp_path / "lkm" / "profiles" and cache.read_bytes() == raw_btf(tree)
    monkeypatch.setattr(L, "_parsed", {})
    t2 = time.perf_counter()
    second = L.layouts(prof)
    t3 = time.perf_counter()
    assert second.offsetof("task_struct", "comm") == first.offsetof("task_struct", "comm")
    print(f"{tree.flavour}: layouts first use {t1 - t0:.3f} s, second {t3 - t2:.3f} s")
    assert t3 - t2 < 0.25
    cache.write_bytes(b"junk")  # a damaged cache is rebuilt
    monkeypatch.setattr(L, "_parsed", {})
    assert L.layouts(prof).sizeof("module") == first.sizeof("module")
    assert cache.read_bytes() == raw_btf(tree)


def test_no_btf(tree61: Tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    image = tmp_path / "vmlinuz-0.0"
    shutil.copy("/bin/true", image)  # an ELF without .BTF
    profiles = {"headers only": _profile(tree61, kind="headers", source="/usr/src/x"),
                "no .BTF section": _profile(tree61, kind="vmlinuz", source=str(image)),
                "is missing": _profile(tree61, source=str(tmp_path / "gone")),
                "no vmlinuz found": _profile(tree61, source=str(tmp_path / "lib"))}
    (tmp_path / "lib" / "modules" / "x").mkdir(parents=True)
    for why, prof in profiles.items():
        with pytest.raises(L.NoBtfError, match=f"{why}.*code cannot run"):
            L.layouts(prof)


# -- hostile BTF -------------------------------------------------------------------------


def _exercise(data: bytes) -> None:
    """Parse and query; only typed errors may come out."""
    try:
        t = Btf(data)
    except BtfError:
        return
    checks: list[tuple[Callable[..., object], tuple[object, ...]]] = [
        (t.offsetof, ("task_struct", "pid")), (t.offsetof, ("file", "f_path.dentry")),
        (t.sizeof, ("module",)), (t.alignof, ("seq_file",)), (t.enum_values, ("module_state",)),
        (t.enumerator, ("MODULE_STATE_LIVE",))]
    for tid in range(0, len(t), max(1, len(t) // 300)):
        checks += [(t.sizeof, (tid,)), (t.alignof, (tid,)), (t.type_name, (tid,))]
    for fn, args in checks:
        try:
            fn(*args)
        except LkmError as e:
            assert str(e)


def _with_types(data: bytes, words: bytes) -> bytes:
    """The BTF ``data`` with its type section replaced (header updated, strings kept)."""
    _, _, _, hl, _, _, so, sl = struct.unpack_from("<HBBIIIII", data)
    strs = data[hl + so:hl + so + sl]
    return struct.pack("<HBBIIIII", B.BTF_MAGIC, 1, 0, 24, 0, len(words), len(words),
                       len(strs)) + words + strs


def test_hostile(tree61: Tree) -> None:
    data = raw_btf(tree61)
    hl, to, tl = struct.unpack_from("<III", data, 4)
    types = data[hl + to:hl + to + tl]
    rng = random.Random(10)
    cases = [data[:rng.randrange(len(data))] for _ in range(20)]  # cut anywhere
    cases += [_with_types(data, types[:rng.randrange(tl // 4) * 4]) for _ in range(20)]
    for _ in range(60):  # random words in the type section
        w = bytearray(types)
        for _ in range(rng.choice((1, 4, 64))):
            pos = rng.randrange(tl // 4) * 4
            w[pos:pos + 4] = rng.choice((rng.getrandbits(32), rng.randrange(len(types) // 12),
                                         rng.getrandbits(8) << 24)).to_bytes(4, "little")
        cases.append(_with_types(data, bytes(w)))
    worst = 0.0
    for case in cases:
        t0 = time.monotonic()
        _exercise(case)
        worst = max(worst, time.monotonic() - t0)
    assert worst < 5, f"slowest hostile case took {worst:.1f} s"
