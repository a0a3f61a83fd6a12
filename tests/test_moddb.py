"""lkm.kmod: name normalisation, the module directory's indexes, the libkmod context's
lookup order.

The lookups are checked against the text files kmod's depmod wrote beside the
indexes in the reference trees (modules.dep, modules.alias, modules.symbols,
modules.builtin, modules.builtin.modinfo), and on crafted directories.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from conftest import Tree
from lkm.errors import InvalidAlias, ModuleNotFound
from lkm.index import IndexBuilder
from lkm.kmod import (
    KMOD_EXTENSIONS,
    KmodContext,
    KmodModule,
    ModuleDir,
    alias_normalize,
    has_module_extension,
    make_absolute,
    modname_from_path,
    normalize_name,
    underscores,
)

# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(("name", "expect"), [
    ("snd-hda-intel", "snd_hda_intel"), ("e1000e", "e1000e"), ("foo.ko.xz", "foo"),
    ("a-b.c-d", "a_b"), ("", ""), (".hidden", ""), ("x_y-z", "x_y_z"),
])
def test_normalize_name(name: str, expect: str) -> None:
    assert normalize_name(name) == expect


@pytest.mark.parametrize(("s", "expect"), [
    ("a-b", "a_b"), ("pci:v*d[0-9]*-x", "pci:v*d[0-9]*_x"), ("[a-b]-[c-d]", "[a-b]_[c-d]"),
    ("no_dash", "no_dash"), ("a[-]b-", "a[-]b_"), ("", ""),
])
def test_underscores(s: str, expect: str) -> None:
    assert underscores(s) == expect
    assert alias_normalize(s) == expect


@pytest.mark.parametrize("bad", ["a]b", "a[b", "[", "]", "x[0-9]]", "a[b-c"])
def test_underscores_unmatched_bracket(bad: str) -> None:
    with pytest.raises(InvalidAlias):
        underscores(bad)
    with pytest.raises(InvalidAlias):
        alias_normalize(bad)


def test_alias_normalize_truncates_to_path_max() -> None:
    assert alias_normalize("a-" * 3000) == ("a_" * 3000)[:4095]
    assert len(normalize_name("b" * 5000)) == 4095


@pytest.mark.parametrize(("path", "expect"), [
    ("/lib/modules/x/kernel/snd-hda.ko.xz", "snd_hda"), ("e1000e.ko", "e1000e"),
    ("dir/", None), ("", None), ("/a/b-c", "b_c"),
])
def test_modname_from_path(path: str, expect: str | None) -> None:
    assert modname_from_path(path) == expect


@pytest.mark.parametrize(("path", "expect"), [
    ("x.ko", True), ("x.ko.xz", True), ("x.ko.zst", True), ("x.ko.gz", False), (".ko", False),
    (".ko.xz", False), ("x.o", False), ("x.ko.bak", False), ("/a/.ko", True),
])
def test_has_module_extension(path: str, expect: bool) -> None:
    assert has_module_extension(path) is expect


def test_extensions_are_the_builds_decompressors() -> None:
    """One set of module extensions, the one of the kmod build lkm stands in for:
    .ko plus one per decompressor `kmod -V` lists as built in (Debian's kmod 30: +XZ
    +ZSTD -ZLIB, so no .ko.gz)."""
    from lkm.cli._common import KMOD_FEATURES
    from lkm.depmod.search import KMOD_EXTENSIONS as DEPMODS

    features = KMOD_FEATURES.split()
    built = {"+XZ": ".ko.xz", "+ZSTD": ".ko.zst", "+ZLIB": ".ko.gz"}
    assert set(KMOD_EXTENSIONS) == {".ko"} | {ext for f, ext in built.items() if f in features}
    assert "-ZLIB" in features and ".ko.gz" not in KMOD_EXTENSIONS
    assert DEPMODS is KMOD_EXTENSIONS  # depmod scans what modinfo takes for a module file


def test_make_absolute_uses_pwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    monkeypatch.chdir(link)
    monkeypatch.setenv("PWD", str(link))
    assert make_absolute("x/../y.ko") == f"{link}/x/../y.ko"
    assert make_absolute("/abs//p") == "/abs//p"
    monkeypatch.setenv("PWD", str(tmp_path))  # wrong: the real cwd is used
    assert make_absolute("y.ko") == f"{os.getcwd()}/y.ko"
    monkeypatch.delenv("PWD")
    assert make_absolute("y.ko") == f"{os.getcwd()}/y.ko"


def test_for_release(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    rel = os.uname().release
    assert ModuleDir.for_release().dirname == f"/lib/modules/{rel}"
    assert ModuleDir.for_release("/r", "1.2").dirname == "/r/lib/modules/1.2"
    assert ModuleDir.for_release("/", "1.2").dirname == "//lib/modules/1.2"
    assert ModuleDir.for_release(None, "1.2").dirname == "/lib/modules/1.2"
    assert ModuleDir.for_release("/r").dirname == f"/r/lib/modules/{rel}"
    assert ModuleDir.for_release("", "").dirname == "/lib/modules/"
    assert ModuleDir.for_release("").dirname == f"/lib/modules/{rel}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PWD", raising=False)
    assert ModuleDir.for_release("r", "1").dirname == f"{os.getcwd()}/r/lib/modules/1"


# --------------------------------------------------------------------------- real indexes


def _moddir(tree: Tree) -> ModuleDir:
    return ModuleDir(str(tree.kmod_moddir))


def _ident(mods: list[KmodModule]) -> list[tuple[str, bool | None, str | None]]:
    """(name, built in as the lookup found it, alias) of each handle."""
    return [(m.name, m._builtin, m.alias) for m in mods]


def test_lookup_name_matches_modules_dep(tree: Tree) -> None:
    """Every modules.dep line comes back from modules.dep.bin, paths made absolute."""
    md = _moddir(tree)
    d = str(tree.kmod_moddir)
    n = 0
    for line in (tree.kmod_moddir / "modules.dep").read_text().splitlines():
        rel, deps = line.split(":", 1)
        name = normalize_name(rel.rsplit("/", 1)[-1])
        entry = md.lookup_name(name)
        assert entry is not None, name
        assert entry.path == f"{d}/{rel}"
        assert entry.deps == tuple(f"{d}/{p}" for p in deps.split())
        assert md.path_of(name) == entry.path
        n += 1
    assert n > 3000
    assert md.lookup_name("no_such_module") is None
    assert KmodContext(md).lookup_name("no-such-module") is None


def test_builtin_matches_modules_builtin(tree: Tree) -> None:
    md = _moddir(tree)
    names = [normalize_name(line.rsplit("/", 1)[-1])
             for line in (tree.kmod_moddir / "modules.builtin").read_text().splitlines()]
    assert names
    ctx = KmodContext(md)
    for name in names:
        assert md.is_builtin(name), name
        mod = ctx.lookup_name(name)
        assert mod is not None and (mod.name, mod.is_builtin(), mod.alias) == (name, True, None)
    assert not md.is_builtin("e1000e")


def test_lookup_alias_matches_modules_alias(tree: Tree) -> None:
    """Plain aliases (no wildcard) find their module; wildcard ones by a matching key."""
    md = _moddir(tree)
    lines = (tree.kmod_moddir / "modules.alias").read_text().splitlines()[1:]
    rng = random.Random(5)
    for line in rng.sample(lines, 1500):
        _, alias, mod = line.split()
        key = alias_normalize(alias)
        if not any(c in key for c in "*?["):
            assert mod in md.lookup_alias(key), line
        elif "[" not in key:
            concrete = key.replace("*", "").replace("?", "0")
            assert mod in md.lookup_alias(concrete), line
    assert md.lookup_alias("no-such-alias-at-all") == []


def test_lookup_symbol_matches_modules_symbols(tree: Tree) -> None:
    md = _moddir(tree)
    owners: dict[str, list[str]] = {}
    for line in (tree.kmod_moddir / "modules.symbols").read_text().splitlines()[1:]:
        _, key, mod = line.split()
        owners.setdefault(key, []).append(mod)
    rng = random.Random(6)
    for key in rng.sample(sorted(owners), 1000):
        got = md.lookup_symbol(key)
        assert sorted(got) == sorted(owners[key]), key
        assert md.lookup_symbol(key.removeprefix("symbol:")) == got
        assert [f.name for f in KmodContext(md).lookup(key)] == got


def _runs(data: bytes) -> list[tuple[str, list[tuple[str, str]]]]:
    """modules.builtin.modinfo as (module, entries) runs, independently of moddb."""
    runs: list[tuple[str, list[tuple[str, str]]]] = []
    for s in data.split(b"\0")[:-1]:
        mod, _, kv = s.decode().partition(".")
        key, _, value = kv.partition("=")
        if not runs or runs[-1][0] != mod:
            runs.append((mod, []))
        runs[-1][1].append((key, value))
    return runs


def test_builtin_modinfo_first_run(tree: Tree) -> None:
    """Every module's entries are those of its first contiguous run."""
    md = _moddir(tree)
    runs = _runs((tree.kmod_moddir / "modules.builtin.modinfo").read_bytes())
    first: dict[str, list[tuple[str, str]]] = {}
    for mod, entries in runs:
        first.setdefault(mod, entries)
    for mod, entries in first.items():
        assert md.builtin_modinfo(mod) == entries, mod
    with pytest.raises(ModuleNotFound):
        md.builtin_modinfo("no_such_builtin")


def test_builtin_modinfo_two_runs_in_612(tree612: Tree) -> None:
    """6.12 has 'core' in two runs: only the first counts (libkmod's iterator)."""
    md = _moddir(tree612)
    runs = [entries for mod, entries in
            _runs((tree612.kmod_moddir / "modules.builtin.modinfo").read_bytes())
            if mod == "core"]
    assert len(runs) == 2
    assert md.builtin_modinfo("core") == runs[0]


# --------------------------------------------------------------------------- crafted dirs


def _index(path: Path, entries: list[tuple[str, str, int]]) -> None:
    b = IndexBuilder()
    for key, value, prio in entries:
        b.add(key, value, prio)
    path.write_bytes(b.to_bytes())


@pytest.fixture
def crafted(tmp_path: Path) -> ModuleDir:
    d = tmp_path / "lib" / "modules" / "1.0"
    d.mkdir(parents=True)
    _index(d / "modules.dep.bin", [
        ("mod_a", "kernel/a.ko: kernel/b.ko  /abs/c.ko", 0),
        ("mod_b", "kernel/b.ko:", 1),
        ("nocolon", "kernel/x.ko", 2),
        ("both", "kernel/both.ko:", 3),
    ])
    _index(d / "modules.alias.bin", [
        ("mod_a", "mod_b", 0),  # shadowed by modules.dep
        ("pat*", "mod_b", 1), ("pat*", "mod_a", 0), ("pa?1", "mod_b", 1),
        ("x[0-9]", "mod_a", 0), ("symbol:s", "mod_b", 0),
    ])
    _index(d / "modules.symbols.bin", [("symbol:exp", "mod_b", 1), ("symbol:exp", "mod_a", 0)])
    _index(d / "modules.builtin.bin", [("bi", "", 0), ("both", "", 0)])
    _index(d / "modules.builtin.alias.bin", [("bi_alias", "bi", 0), ("fs_*", "bi", 0)])
    (d / "modules.builtin.modinfo").write_bytes(
        b"bi.license=GPL\0bi.noequals\0other.a=b\0bi.late=1\0tail.x=1\0tail.y")
    return ModuleDir(str(d))


def test_crafted_lookups(crafted: ModuleDir) -> None:
    d = crafted.dirname
    a = crafted.lookup_name("mod_a")
    assert a is not None
    assert a.path == f"{d}/kernel/a.ko" and a.deps == (f"{d}/kernel/b.ko", "/abs/c.ko")
    nc = crafted.lookup_name("nocolon")
    assert nc is not None and nc.path is None and nc.deps == ()
    ctx = KmodContext(crafted)
    # modules.dep wins over modules.alias; dashes normalised
    assert [f.name for f in ctx.lookup("mod-a")] == ["mod_a"]
    # a name with ':' skips modules.dep
    assert _ident(ctx.lookup("symbol:s")) == [("mod_b", None, "symbol:s")]
    # symbols before aliases, priority order
    assert [f.name for f in ctx.lookup("symbol:exp")] == ["mod_a", "mod_b"]
    # wildcard: by priority; the same module through two patterns twice (one handle)
    assert crafted.lookup_alias("pat1") == ["mod_a", "mod_b", "mod_b"]
    found = ctx.lookup("pat1")
    assert [f.alias for f in found] == ["pat1"] * 3 and found[1] is found[2]
    assert crafted.lookup_alias("x5") == ["mod_a"]
    # builtin index, then builtin aliases
    assert _ident(ctx.lookup("bi")) == [("bi", True, None)]
    assert _ident(ctx.lookup("bi-alias")) == [("bi", True, "bi_alias")]
    assert _ident(ctx.lookup("fs-ext9")) == [("bi", True, "fs_ext9")]
    bi = ctx.lookup_name("bi-alias")
    assert bi is not None and _ident([bi]) == [("bi", True, "bi_alias")]
    assert ctx.lookup_name("pat1") is None  # -m ignores aliases
    assert ctx.lookup("nothing") == []
    with pytest.raises(InvalidAlias):
        ctx.lookup("bad]")
    # both in modules.dep and builtin: modules.dep answers the lookup
    (both,) = ctx.lookup("both")
    assert both.path() == f"{d}/kernel/both.ko" and crafted.is_builtin("both")
    assert both.is_builtin()  # the lookup did not tell: libkmod asks modules.builtin.bin


def test_lookup_order_with_configuration(crafted: ModuleDir) -> None:
    """THE lookup order (kmod_module_new_from_lookup): configuration aliases, modules.dep,
    symbols, install/remove commands, modules.alias, builtin, builtin aliases -- the first
    step that finds anything answers."""
    from lkm.config import ModprobeConfig
    from lkm.kmod import LOOKUP_ORDER, NAME_LOOKUP_ORDER

    assert [f.__name__ for f in LOOKUP_ORDER] == [
        "_from_config", "_from_moddep", "_from_symbols", "_from_commands", "_from_aliases",
        "_from_builtin", "_from_kernel_builtin"]
    assert [f.__name__ for f in NAME_LOOKUP_ORDER] == [
        "_from_moddep", "_from_builtin", "_from_kernel_builtin"]
    cfg = ModprobeConfig()
    cfg.parse(b"alias mod_a bi\nalias symbol:exp mod_b\ninstall pat1 /bin/true\n"
              b"remove rm_only /bin/true\ninstall bi /bin/true\nalias cfg* mod_b\n",
              "test.conf")
    ctx = KmodContext(crafted, cfg)
    # configuration aliases shadow modules.dep and the symbols
    assert _ident(ctx.lookup("mod-a")) == [("bi", None, "mod_a")]
    assert _ident(ctx.lookup("symbol:exp")) == [("mod_b", None, "symbol:exp")]
    assert _ident(ctx.lookup("cfg-x")) == [("mod_b", None, "cfg*")]
    # install commands shadow modules.alias and the builtin index; remove ones too
    (pat1,) = ctx.lookup("pat1")
    assert _ident([pat1]) == [("pat1", None, None)] and pat1.install_command() == "/bin/true"
    assert _ident(ctx.lookup("rm-only")) == [("rm_only", None, None)]
    (bi,) = ctx.lookup("bi")
    assert bi.install_command() == "/bin/true"
    # -m asks neither configuration nor modules.alias
    assert ctx.lookup_name("pat1") is None
    mod_a = ctx.lookup_name("mod-a")
    assert mod_a is not None and mod_a.path() == f"{crafted.dirname}/kernel/a.ko"


def test_crafted_builtin_modinfo(crafted: ModuleDir) -> None:
    assert crafted.builtin_modinfo("bi") == [("license", "GPL"), ("noequals", "")]
    assert crafted.builtin_modinfo_strings("other") == [b"a=b"]
    with pytest.raises(ModuleNotFound):
        crafted.builtin_modinfo("nothing")
    from lkm.errors import FormatError

    with pytest.raises(FormatError):  # a run ending in an unterminated string
        crafted.builtin_modinfo("tail")


def test_missing_and_corrupt_indexes(tmp_path: Path) -> None:
    """No index: lookups find nothing; a corrupt one behaves as missing."""
    md = ModuleDir(str(tmp_path / "none"))
    ctx = KmodContext(md)
    assert ctx.lookup("x") == [] and ctx.lookup_name("x") is None
    assert md.lookup_alias("x") == [] and md.lookup_symbol("x") == []
    assert not md.is_builtin("x") and md.lookup_builtin_alias("x") == []
    with pytest.raises(OSError):
        md.builtin_modinfo("x")
    d = tmp_path / "bad"
    d.mkdir()
    (d / "modules.dep.bin").write_bytes(b"")
    (d / "modules.alias.bin").write_bytes(b"\xb0\x07\xf4\x57\x00\x02\x00\x01\x00\x00\x10\x00")
    (d / "modules.builtin.bin").write_bytes(os.urandom(64))
    (d / "modules.builtin.modinfo").write_bytes(b"")
    md = ModuleDir(str(d))
    assert KmodContext(md).lookup("x") == []
    with pytest.raises(ModuleNotFound):
        md.builtin_modinfo("x")
    md.close()


# --------------------------------------------------------------------------- handles on a kernel


class FakeKernel:
    """A kernel backend over a dict of /sys and /proc files (KernelBackend's interface)."""

    def __init__(self, files: dict[str, str], dirs: dict[str, list[str]]) -> None:
        self.files, self.dirs = files, dirs
        self.calls: list[tuple[object, ...]] = []
        self.fail: dict[str, int] = {}

    def read_text(self, path: str) -> str:
        if path not in self.files:
            raise FileNotFoundError(2, "No such file or directory", path)
        return self.files[path]

    def list_dir(self, path: str) -> list[str]:
        if path not in self.dirs:
            raise FileNotFoundError(2, "No such file or directory", path)
        return self.dirs[path]

    def release(self) -> str:
        return "1.0"

    def module_dir(self) -> str | None:
        return None

    def compression(self) -> str | None:
        return None

    def cmdline(self) -> str:
        return ""

    def finit_module(self, path: str, params: str, flags: int = 0) -> None:
        self.calls.append(("finit_module", path, params, flags))

    def init_module(self, image: bytes, params: str) -> None:
        self.calls.append(("init_module", len(image), params))

    def delete_module(self, name: str, flags: int = 0) -> None:
        from lkm.errors import KernelError

        self.calls.append(("delete_module", name, flags))
        if name in self.fail:
            raise KernelError(self.fail[name])


def _kernel_ctx(crafted: ModuleDir) -> tuple[KmodContext, FakeKernel, list[str]]:
    k = FakeKernel(
        files={"/proc/modules": "mod_a 16384 1 - Live 0x0\nmod_b 8192 0 - Live 0x0\nodd\n",
               "/sys/module/mod_a/initstate": "live\n", "/sys/module/mod_a/refcnt": "1\n",
               "/sys/module/mod_a/coresize": "20480\n", "/sys/module/mod_b/initstate": "odd\n",
               "/sys/module/mod_b/refcnt": "many\n", "/sys/module/odd/coresize": "x\n"},
        dirs={"/sys/module/mod_a": ["initstate"], "/sys/module/mod_a/holders": ["mod_b", "x-y"],
              "/sys/module/mod_b": ["refcnt"], "/sys/module/coming": [],
              "/sys/module/odd": ["coresize"], "/sys/module/bi": []})
    logged: list[str] = []
    ctx = KmodContext(crafted, kernel=k,  # type: ignore[arg-type]
                      log=lambda prio, where, fn, msg: logged.append(f"{where} {fn}: {msg}"))
    return ctx, k, logged


def test_handle_kernel_views(crafted: ModuleDir) -> None:
    """initstate, refcnt, size and holders as libkmod reads /sys/module and /proc/modules,
    with its errnos and messages."""
    import errno

    from lkm.kmod import BUILTIN, COMING, LIVE

    ctx, _k, logged = _kernel_ctx(crafted)
    a, b = ctx.new_from_loaded()[:2]
    assert [m.name for m in ctx.new_from_loaded()] == ["mod_a", "mod_b", "odd"]
    assert (a.initstate(), a.refcnt(), a.size()) == (LIVE, 1, 20480)
    assert [h.name for h in a.holders()] == ["mod_b", "x_y"]
    assert ctx.new_from_name("coming").initstate() == COMING
    assert ctx.new_from_name("bi").initstate() == BUILTIN
    assert ctx.new_from_name("gone").initstate() == -errno.ENOENT
    assert ctx.new_from_name("gone").size() == -errno.ENOENT
    assert not logged
    assert b.initstate() == -errno.EINVAL
    assert b.refcnt() == -errno.EINVAL
    assert b.size() == 8192  # no coresize: the /proc/modules column
    assert b.holders() == []
    assert ctx.new_from_name("odd").size() == -errno.ENOENT
    assert logged == [
        "../libkmod/libkmod-module.c:1847 kmod_module_get_initstate: "
        "unknown /sys/module/mod_b/initstate: 'odd\n'\n",
        "../libkmod/libkmod-module.c:1967 kmod_module_get_refcnt: could not read integer "
        "from '/sys/module/mod_b/refcnt': 'Invalid argument'\n",
        "../libkmod/libkmod-module.c:1998 kmod_module_get_holders: could not open "
        "'/sys/module/mod_b/holders': No such file or directory\n",
        "../libkmod/libkmod-module.c:1886 kmod_module_get_size: failed to read coresize "
        "from /sys/module/odd\n"]


def test_handle_effects(crafted: ModuleDir, tmp_path: Path) -> None:
    """insert goes to finit_module with the force flags; remove is a non-blocking
    delete_module (O_TRUNC with REMOVE_FORCE), failures as -errno with libkmod's message."""
    import errno

    from lkm.kmod.module import INSERT_FORCE_VERMAGIC, REMOVE_FORCE, REMOVE_NOLOG

    ctx, k, logged = _kernel_ctx(crafted)
    f = tmp_path / "plain.ko"
    f.write_bytes(b"\x7fELF" + bytes(60))
    mod = ctx.new_from_path(str(f))
    assert mod.insert(INSERT_FORCE_VERMAGIC, "a=1") == 0
    assert k.calls[-1] == ("finit_module", str(f), "a=1", 2)
    assert ctx.new_from_name("nofile").insert() == -errno.ENOENT
    assert mod.remove() == 0 and k.calls[-1] == ("delete_module", "plain", os.O_NONBLOCK)
    assert mod.remove(REMOVE_FORCE) == 0
    assert k.calls[-1] == ("delete_module", "plain", os.O_NONBLOCK | os.O_TRUNC)
    k.fail["plain"] = errno.EBUSY
    assert mod.remove(REMOVE_NOLOG) == -errno.EBUSY and len(logged) == 1
    assert mod.remove() == -errno.EBUSY
    assert logged[1].endswith("could not remove 'plain': Device or resource busy\n")
    assert logged[0].endswith("could not find module by name='nofile'\n")
    with pytest.raises(OSError):
        ctx.new_from_path(str(tmp_path / "missing.ko"))


def test_handle_file_reads(tree61: Tree) -> None:
    """info, versions and symbols of a real module; KmodError with libkmod's errno."""
    import errno

    from lkm.kmod import KmodError

    ctx = KmodContext(_moddir(tree61))
    (mod,) = ctx.lookup("jbd2")
    info = dict(mod.info())
    assert info["name"] == "jbd2" and info["license"] == "GPL"
    assert ("jbd2_journal_start" in {s for _c, s in mod.symbols()})
    assert all(not s.startswith(".") for _c, s in mod.versions())
    with pytest.raises(KmodError) as e:
        ctx.new_from_name("no_such_module").versions()
    assert e.value.errno == errno.ENOENT
    assert ctx.lookup_name("crc32c_generic") is not None
