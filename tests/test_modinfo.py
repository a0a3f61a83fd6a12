"""`lkm modinfo` against Debian's kmod 30 `modinfo`, live, over every module of both trees.

Each comparison runs both tools on the same batch of arguments (many modules per
call) and compares stdout bytes, stderr and the exit status.  On a differing batch
the modules are re-run one by one to count the differing modules; the count is
printed and must be zero.

The 6.12 tree holds .ko.xz: the default output is compared on those files; the
other variants run on a decompressed copy of the tree (the same modules, cached
beside the trees) so that xz decompression does not dominate the run time.  For
the same reason lookups by name in the 6.12 tree compare ``-n`` (which reads no
module) for every name and the full output for a sample: the module contents are
already compared file by file.
"""

from __future__ import annotations

import fcntl
import lzma
import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from aliases import concrete
from conftest import CACHE, LKM, Tree

pytestmark = [pytest.mark.trees, pytest.mark.kmod]

KMOD_MODINFO = "/sbin/modinfo"
BATCH = 1500  # arguments per call (lkm's start-up is paid once per call)

FIELDS = ["filename", "license", "alias", "depends", "vermagic", "signer", "sig_key",
          "sig_hashalgo", "signature", "parm", "description", "author", "firmware", "intree",
          "name", "retpoline", "srcversion", "import_ns", "softdep"]
VARIANTS: dict[str, list[str]] = {
    "default": [], "-0": ["-0"], "-p": ["-p"], "-n": ["-n"], "-a": ["-a"], "-d": ["-d"],
    "-l": ["-l"], "-F parm -0": ["-F", "parm", "-0"],
    **{f"-F {f}": ["-F", f] for f in FIELDS},
}


def run(tool: str, args: list[str], cwd: str | Path | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run kmod's modinfo ("kmod") or lkm's, both with argv[0] "modinfo"."""
    if tool == "kmod":
        return subprocess.run(["modinfo", *args], executable=KMOD_MODINFO, capture_output=True,
                              cwd=cwd, env=env, timeout=600)
    return subprocess.run([LKM, "modinfo", *args], capture_output=True, cwd=cwd, env=env,
                          timeout=600)


def outcome(p: subprocess.CompletedProcess[bytes]) -> tuple[bytes, bytes, int]:
    return p.stdout, p.stderr, p.returncode


def compare(prefix: list[str], items: list[str], label: str, batch: int = BATCH) -> int:
    """Compare both tools on ``prefix + batch`` for every batch of ``items``; returns and
    prints the number of differing items (batches that differ are re-run item by item)."""
    bad: list[str] = []
    for i in range(0, len(items), batch):
        chunk = items[i:i + batch]
        a, k = run("lkm", prefix + chunk), run("kmod", prefix + chunk)
        if outcome(a) == outcome(k):
            continue
        for item in chunk:
            a1, k1 = run("lkm", [*prefix, item]), run("kmod", [*prefix, item])
            if outcome(a1) != outcome(k1):
                bad.append(item)
                if len(bad) <= 3:
                    print(f"DIFF {label} {item}:\n lkm  {outcome(a1)!r:.600}\n kmod "
                          f"{outcome(k1)!r:.600}")
        if not bad:  # the batch differs as a whole only: count it once
            bad.append(f"batch {i}")
    print(f"modinfo {label}: {len(items)} arguments, {len(bad)} differences")
    return len(bad)


# --------------------------------------------------------------------------- fixtures


def _decompressed_copy(tree: Tree) -> list[str]:
    """The tree's modules, decompressed (cached): same relative paths without .xz/.zst."""
    mods = tree.modules()
    if not any(p.suffix in (".xz", ".zst") for p in mods):
        return [str(p) for p in mods]
    dest = CACHE / "decompressed" / tree.release
    done = dest / ".complete"
    out = []
    for p in mods:
        rel = p.relative_to(tree.moddir)
        out.append(dest / rel.with_suffix("") if p.suffix in (".xz", ".zst") else dest / rel)
    dest.mkdir(parents=True, exist_ok=True)
    with open(dest / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one pytest-xdist worker makes it, others wait
        if not done.exists():
            _decompress_all(mods, out)
            done.write_text("ok\n")
    return [str(p) for p in out]


def _decompress_all(mods: list[Path], out: list[Path]) -> None:
    for src, dst in zip(mods, out, strict=True):
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_name(dst.name + ".tmp")
        if src.suffix == ".xz":
            tmp.write_bytes(lzma.decompress(src.read_bytes()))
        elif src.suffix == ".zst":
            import zstandard

            with src.open("rb") as f:
                tmp.write_bytes(zstandard.ZstdDecompressor().stream_reader(f).read())
        else:
            shutil.copyfile(src, tmp)
        os.replace(tmp, dst)


@pytest.fixture(scope="session")
def plain_modules(trees: dict[str, Tree]) -> dict[str, list[str]]:
    return {flavour: _decompressed_copy(t) for flavour, t in trees.items()}


# --------------------------------------------------------------------------- by path


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_paths(tree: Tree, variant: str, plain_modules: dict[str, list[str]]) -> None:
    """Every module of the tree by path, in batches: stdout, stderr and status identical."""
    # as shipped (.ko or .ko.xz) for the default output, else decompressed
    mods = [str(p) for p in tree.modules()] if variant == "default" \
        else plain_modules[tree.flavour]
    assert len(mods) > 3000
    assert compare(VARIANTS[variant], mods, f"{tree.flavour} paths {variant}") == 0


def test_relative_paths_and_pwd(tree61: Tree, tmp_path: Path) -> None:
    """Relative paths are shown joined to the cwd as kmod does, $PWD included."""
    link = tmp_path / "link"
    link.symlink_to(tree61.moddir)
    rel = [str(p.relative_to(tree61.moddir)) for p in tree61.modules()[:50]]
    env = dict(os.environ, PWD=str(link))
    for cwd, e in ((tree61.moddir, None), (link, env)):
        a, k = run("lkm", ["-n", *rel], cwd=cwd, env=e), run("kmod", ["-n", *rel], cwd=cwd, env=e)
        assert outcome(a) == outcome(k)
        assert a.stdout.startswith(str(cwd).encode() + b"/")


# --------------------------------------------------------------------------- by name


def _dep_names(tree: Tree) -> list[str]:
    names = []
    for line in (tree.kmod_moddir / "modules.dep").read_text().splitlines():
        base = line.split(":", 1)[0].rsplit("/", 1)[-1]
        names.append(base.split(".", 1)[0])
    return names


def _builtin_names(tree: Tree) -> list[str]:
    lines = (tree.kmod_moddir / "modules.builtin").read_text().splitlines()
    return [line.rsplit("/", 1)[-1].split(".", 1)[0] for line in lines if line]


def concretize(pattern: str, rng: random.Random) -> str:
    """A string the fnmatch pattern matches (random fill for ``*``)."""
    return concrete(pattern, lambda: rng.choice(["", "0", "1A", "v0000", "x"]), spare="Zz_0")


def _kmod_dir_args(tree: Tree) -> list[str]:
    return ["-b", str(tree.kmod_root), "-k", tree.release]


def test_names(tree: Tree) -> None:
    """Every module of the tree by name (as written in modules.dep and with '-' for '_');
    compressed trees: -n for every name, the full output for a sample."""
    names = _dep_names(tree)
    rng = random.Random(1)
    dashed = [n.replace("_", "-") for n in rng.sample(names, 200) if "_" in n]
    prefix = _kmod_dir_args(tree)
    if any(p.suffix == ".xz" for p in tree.modules()[:50]):
        assert compare([*prefix, "-n"], names + dashed, f"{tree.flavour} names -n") == 0
        names = rng.sample(names, 400)
    assert compare(prefix, names + dashed, f"{tree.flavour} names") == 0


def test_names_modname(tree: Tree) -> None:
    """-m: builtin modules, a sample of modules, aliases (which -m must not resolve)."""
    rng = random.Random(2)
    names = _builtin_names(tree) + rng.sample(_dep_names(tree), 300)
    aliases = [line.split()[1] for line in
               (tree.kmod_moddir / "modules.alias").read_text().splitlines()[1:50]]
    assert compare(["-m", *_kmod_dir_args(tree)], names + aliases,
                   f"{tree.flavour} -m names") == 0


def test_builtin(tree: Tree) -> None:
    """Builtin modules by name, every variant that matters for them."""
    names = _builtin_names(tree)
    assert names
    total = 0
    for variant in ("default", "-0", "-p", "-n", "-F name", "-F alias", "-F parmtype"):
        total += compare(_kmod_dir_args(tree) + VARIANTS.get(variant, variant.split()), names,
                         f"{tree.flavour} builtin {variant}")
    assert total == 0


def test_aliases(tree: Tree) -> None:
    """Aliases made concrete from modules.alias patterns (several modules may match),
    symbol: keys, builtin aliases from modules.builtin.modinfo, unknown aliases."""
    rng = random.Random(3)
    lines = (tree.kmod_moddir / "modules.alias").read_text().splitlines()[1:]
    pats = [line.split()[1] for line in rng.sample(lines, 400)]
    pats += [line.split()[1] for line in lines if "[" in line][:40]
    aliases = [concretize(p, rng) for p in pats]
    syms = (tree.kmod_moddir / "modules.symbols").read_text().splitlines()[1:]
    aliases += [line.split()[1] for line in rng.sample(syms, 100)]
    binfo = (tree.kmod_moddir / "modules.builtin.modinfo").read_bytes().split(b"\0")
    balias = [s.split(b"=", 1)[1].decode() for s in binfo if b".alias=" in s]
    aliases += [concretize(a, rng) for a in balias]
    aliases += ["no-such-alias", "pci:v0000FFFFd*", "symbol:no_such_symbol", "fs-ext4",
                "char-major-10-229", "crypto-sha256", "bad]alias", "bad[alias", "a[b]c-d"]
    prefix = _kmod_dir_args(tree)
    assert compare([*prefix, "-F", "filename"], aliases, f"{tree.flavour} aliases -n") == 0
    if any(p.suffix == ".xz" for p in tree.modules()[:50]):
        aliases = rng.sample(aliases, 150)
    assert compare(prefix, aliases, f"{tree.flavour} aliases") == 0


def test_running_kernel_dir() -> None:
    """Without -b/-k the directory is /lib/modules/$(uname -r)."""
    args = ["e1000e", "ext4", "no-such-module", "-m", "-F", "filename"]
    assert outcome(run("lkm", args)) == outcome(run("kmod", args))


# --------------------------------------------------------------------------- errors


def _corrupt(tree: Tree, tmp: Path) -> dict[str, Path]:
    """Hostile files: not ELF, truncated, tiny, empty, no .modinfo, gzip content, ..."""
    mod = next(p for p in tree.modules() if p.name == "e1000e.ko")
    data = mod.read_bytes()
    files: dict[str, bytes] = {
        "passwd.ko": Path("/etc/passwd").read_bytes(),
        "trunc1000.ko": data[:1000],
        "trunc_half.ko": data[:len(data) // 2],
        "tiny.ko": b"\x7fELF",
        "five.ko": b"12345",
        "six.ko": b"123456",
        "empty.ko": b"",
        "elfident.ko": data[:16],
        "elfhdr.ko": data[:64],
        "class3.ko": data[:4] + b"\x03" + data[5:],
        "data3.ko": data[:5] + b"\x03" + data[6:],
        "nomodinfo.ko": data.replace(b"\0.modinfo\0", b"\0.modinfX\0", 1),
        "nosig.ko": data.replace(b"signature appended~", b"signature appendeX~"),
        "gzip.ko": b"\x1f\x8b\x08\x00" + data[4:],
    }
    lz = lzma.compress(data)
    files["good.ko.xz"] = lz
    files["trunc.ko.xz"] = lz[:len(lz) // 2]
    files["corrupt.ko.xz"] = lz[:100] + bytes(200) + lz[300:]
    files["xzmagic.ko"] = b"\xfd7zXZ\x00" + bytes(100)
    out = {}
    for name, content in files.items():
        p = tmp / name
        p.write_bytes(content)
        out[name] = p
    d = tmp / "dir.ko"
    d.mkdir()
    out["dir.ko"] = d
    gz = tmp / "mod.ko.gz"
    gz.write_bytes(b"\x1f\x8b" + bytes(30))
    out["mod.ko.gz"] = gz
    return out


def test_error_files(tree61: Tree, tmp_path: Path) -> None:
    """Each hostile file alone and all together: stdout, stderr and status as kmod."""
    files = _corrupt(tree61, tmp_path)
    expect_stderr = {"passwd.ko": b"Exec format error", "trunc1000.ko": b"Invalid argument",
                     "nomodinfo.ko": b"No such file or directory"}
    for name, path in files.items():
        if name in ("trunc.ko.xz", "corrupt.ko.xz"):
            continue  # libkmod's own xz messages are not reproduced: compared below
        a, k = run("lkm", [str(path)]), run("kmod", [str(path)])
        assert outcome(a) == outcome(k), name
        if name in expect_stderr:
            assert expect_stderr[name] in a.stderr and a.returncode == 1
    for name in ("trunc.ko.xz", "corrupt.ko.xz"):
        a, k = run("lkm", [str(files[name])]), run("kmod", [str(files[name])])
        assert (a.stdout, a.returncode) == (k.stdout, k.returncode), name
        assert a.stderr.splitlines()[-1] == k.stderr.splitlines()[-1], name
    allargs = [str(p) for n, p in files.items() if n not in ("trunc.ko.xz", "corrupt.ko.xz")]
    for extra in ([], ["-0"], ["-F", "license"], ["-p"]):
        a, k = run("lkm", extra + allargs), run("kmod", extra + allargs)
        assert outcome(a) == outcome(k), extra


def test_error_messages(tree61: Tree) -> None:
    """Missing modules, missing argument, -F with nothing matching, option errors."""
    mod = str(tree61.modules()[0])
    d = _kmod_dir_args(tree61)
    cases: list[list[str]] = [
        [], ["-0"], ["-F"], ["-k"], ["-x"], ["--foo"], ["--f"], ["--author=x"], ["--field"],
        ["-h"], ["--help"], ["-V"], ["--version"], ["-V", "-x"], ["-x", "-V"],
        ["no-such-module"], ["-m", "no-such-module"], [*d, "no-such-module"],
        [*d, "-m", "no-such-module"], ["-F", "nonexistent", mod], ["-F", "", mod],
        ["--field=license", "--null", mod], ["--fie", "license", mod], ["-Flicense", mod],
        ["--=x"], ["--fi=x"], ["--nul=3"], ["--f=x", mod], ["--set-v", "1", "-n", "e1000e"],
        ["-0nF"], ["--", "-x"], ["-"], [mod, "-F", "license"], [mod, "--", "-n"],
        ["/nonexistent/x.ko"], ["bad]alias"], ["-b", "/nonexistent", "e1000e"],
        ["-k", "0.0-none", "e1000e"], [*d, "-m", "e1000e.ko"], [*d, "e1000e.ko"],
        ["-b", "relative-root", "-k", tree61.release, "e1000e"],
        ["-k", "", "e1000e"], ["-b", "", "e1000e"], ["-b", f"{tree61.kmod_root}/", "-k",
                                                    tree61.release, "-n", "e1000e"],
    ]
    for args in cases:
        a, k = run("lkm", args), run("kmod", args)
        assert outcome(a) == outcome(k), args
    assert run("lkm", ["-F", "nonexistent", mod]).stdout == b""
    a = run("lkm", ["no-such-module"])
    assert a.stderr == b"modinfo: ERROR: Module no-such-module not found.\n"
    assert a.returncode == 1
    a = run("lkm", [])
    assert a.stderr == b"modinfo: ERROR: missing module or filename.\n"


def test_multicall_link(tree61: Tree, tmp_path: Path) -> None:
    """A link named modinfo runs lkm's modinfo."""
    link = tmp_path / "modinfo"
    link.symlink_to(Path(LKM).resolve() if os.path.exists(LKM) else shutil.which(LKM) or LKM)
    mod = str(tree61.modules()[0])
    a = subprocess.run([str(link), mod], capture_output=True)
    assert outcome(a) == outcome(run("kmod", [mod]))


def test_parm_order_and_long_keys(tmp_path: Path, tree61: Tree) -> None:
    """Crafted .modinfo: parm/parmtype merging and order, keys longer than 15 characters
    (printf's negative width pads them), entries without '=' or ':', odd padding."""
    from lkm.module import kmod_strings as modinfo_strings

    src = next(p for p in tree61.modules() if p.name == "e1000e.ko").read_bytes()
    start = src.find(b"\0license=") + 1
    end = src.find(b"\0\0", start)
    assert start > 0 and end > start
    room = len(src[start:end])
    entries = [b"parmtype=b:int", b"parm=a:first a", b"verylongkeyname_over15=v", b"x",
               b"parm=b:desc of b", b"parmtype=a:charp", b"parm=c", b"parm=d:", b"parmtype=e:",
               b"key15_exactly15=q", b"parm=a:second a", b"", b"=novalue", b"empty=",
               b"author=\xff\xfe caf\xc3\xa9", b"parm=\xff:\xfe"]
    blob = b"\0".join(entries)
    assert len(blob) <= room
    blob = blob + b"\0" * (room - len(blob))
    data = src[:start] + blob + src[end:]
    p = tmp_path / "crafted.ko"
    p.write_bytes(data)
    for extra in ([], ["-0"], ["-p"], ["-F", "parm"], ["-F", "x"], ["-F", ""],
                  ["-F", "verylongkeyname_over15"]):
        a, k = run("lkm", [*extra, str(p)]), run("kmod", [*extra, str(p)])
        assert outcome(a) == outcome(k), extra
    odd = tmp_path / os.fsdecode(b"n\xffn-utf8.ko")  # a file name that is not UTF-8
    odd.write_bytes(data)
    for extra in ([], ["-n"], ["-F", "author"]):
        a, k = run("lkm", [*extra, str(odd)]), run("kmod", [*extra, str(odd)])
        assert outcome(a) == outcome(k), extra
    assert b"\xff" in run("lkm", ["-n", str(odd)]).stdout
    assert modinfo_strings(b"\0\0a\0\0b") == [b"a", b"b"]
    assert modinfo_strings(b"\0\0a") == []
    assert modinfo_strings(b"ab") == [b"ab"]


def test_getopt_permutation() -> None:
    from lkm.cli._getopt import getopt_long
    from lkm.cli.modinfo import LONGOPTS, SHORTOPTS

    opts, args = getopt_long("modinfo", ["a", "-F", "x", "b", "--null", "--", "-c"],
                             SHORTOPTS, LONGOPTS)
    assert opts == [("F", "x"), ("0", None)] and args == ["a", "b", "-c"]
    opts, _ = getopt_long("modinfo", ["--auth", "--f"], SHORTOPTS, LONGOPTS)
    assert opts[0] == ("a", None) and opts[1][0] == "?"
    assert re.search("ambiguous", opts[1][1] or "")


def test_getopt_glibc_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    """Optional arguments, '+' and POSIXLY_CORRECT, prefixes reporting the same key,
    and the messages' texts (the whole word, '=value' included, for unknown and
    ambiguous options; the full name for argument errors)."""
    from lkm.cli._getopt import NO_ARGUMENT, OPTIONAL_ARGUMENT, REQUIRED_ARGUMENT, LongOpt
    from lkm.cli._getopt import getopt_long as g

    longs = [LongOpt("opt", OPTIONAL_ARGUMENT, "o"), LongOpt("req", REQUIRED_ARGUMENT, "r"),
             LongOpt("ignore-a", NO_ARGUMENT, "i"), LongOpt("ignore-b", NO_ARGUMENT, "i"),
             LongOpt("reqx", NO_ARGUMENT, "x")]
    assert g("p", ["-o", "v", "-ov"], "o::", longs) == ([("o", None), ("o", "v")], ["v"])
    assert g("p", ["--opt", "v", "--opt=", "--ign"], "", longs) == \
        ([("o", None), ("o", ""), ("i", None)], ["v"])
    assert g("p", ["--req"], "", longs)[0] == [("?", "p: option '--req' requires an argument")]
    assert g("p", ["--re=1"], "", longs)[0] == \
        [("?", "p: option '--re=1' is ambiguous; possibilities: '--req' '--reqx'")]
    assert g("p", ["--reqx=1"], "", longs)[0] == \
        [("?", "p: option '--reqx' doesn't allow an argument")]
    assert g("p", ["--nope=1"], "", longs)[0] == [("?", "p: unrecognized option '--nope=1'")]
    assert g("p", ["-ab", "-;"], "ab", longs)[0] == \
        [("a", None), ("b", None), ("?", "p: invalid option -- ';'")]
    assert g("p", ["x", "-a"], "+a", longs) == ([], ["x", "-a"])
    monkeypatch.setenv("POSIXLY_CORRECT", "1")
    assert g("p", ["x", "-a"], "a", longs) == ([], ["x", "-a"])


def _write_index(path: Path, entries: list[tuple[str, str, int]]) -> None:
    from lkm.index import IndexBuilder

    b = IndexBuilder()
    for key, value, prio in entries:
        b.add(key, value, prio)
    path.write_bytes(b.to_bytes())


def _crafted_root(tmp: Path, tree: Tree, builtin_modinfo: bool = True) -> Path:
    """A module directory with odd index contents: missing dependency files, dep lines
    without ':', absolute paths, a module both in modules.dep and builtin, a module
    matched by several patterns, builtin modules with two runs or no modinfo."""
    root = tmp / "root"
    d = root / "lib" / "modules" / "9.9"
    (d / "kernel").mkdir(parents=True)
    src = next(p for p in tree.modules() if p.name == "e1000e.ko")
    shutil.copyfile(src, d / "kernel" / "e1000e.ko")
    _write_index(d / "modules.dep.bin", [
        ("e1000e", "kernel/e1000e.ko: kernel/missing.ko\tkernel/e1000e.ko", 0),
        ("nopath", "no colon here", 1),
        ("abs", f"{d}/kernel/e1000e.ko:", 2),
        ("both", "kernel/e1000e.ko:", 3),
        ("gone", "kernel/gone.ko:", 4),
    ])
    _write_index(d / "modules.alias.bin", [
        ("myalias*", "e1000e", 0), ("myalias2", "nopath", 0), ("myalias2", "e1000e", 1),
        ("myal?as2", "e1000e", 2), ("notindep", "notindep", 0), ("bracket[0-9]", "e1000e", 5),
        ("dash_alias", "gone", 3),
    ])
    _write_index(d / "modules.symbols.bin", [("symbol:e1000e_sym", "e1000e", 0)])
    _write_index(d / "modules.builtin.bin",
                 [(n, "", 0) for n in ("bi", "both", "bi_nomodinfo", "two_runs")])
    _write_index(d / "modules.builtin.alias.bin", [("bi_alias", "bi", 0)])
    if builtin_modinfo:
        (d / "modules.builtin.modinfo").write_bytes(
            b"bi.license=GPL\0bi.alias=bi-alias\0bi.parm=p:desc\0bi.parmtype=p:int\0"
            b"bi.noequals\0two_runs.a=1\0other.x=y\0two_runs.b=2\0both.description=builtin\0"
            b"only_modinfo.license=GPL\0")
    return root


CRAFTED_QUERIES = ["e1000e", "nopath", "abs", "both", "gone", "myalias2", "myalias1",
                   "myalias-2", "notindep", "bracket5", "symbol:e1000e_sym", "bi", "bi-alias",
                   "bi_nomodinfo", "two_runs", "two-runs", "only_modinfo", "dash-alias",
                   "missing", "e1000e.ko"]


def _masked(p: subprocess.CompletedProcess[bytes]) -> tuple[bytes, bytes, int]:
    return p.stdout, re.sub(rb"ctx=0x[0-9a-f]+", b"ctx=X", p.stderr), p.returncode


@pytest.mark.parametrize("with_modinfo", [True, False])
def test_crafted_module_dir(tree61: Tree, tmp_path: Path, with_modinfo: bool) -> None:
    root = _crafted_root(tmp_path, tree61, with_modinfo)
    for q in CRAFTED_QUERIES:  # one by one: each query's own status
        args = ["-b", str(root), "-k", "9.9", q]
        assert _masked(run("lkm", args)) == _masked(run("kmod", args)), args
    for extra in ([], ["-m"], ["-F", "license"], ["-p"], ["-0"], ["-n"], ["-F", "name"]):
        args = ["-b", str(root), "-k", "9.9", *extra, *CRAFTED_QUERIES]
        assert _masked(run("lkm", args)) == _masked(run("kmod", args)), args


def test_corrupt_indexes(tree61: Tree, tmp_path: Path) -> None:
    """Indexes that are empty, garbage or truncated count as missing, as in libkmod."""
    root = _crafted_root(tmp_path, tree61)
    d = root / "lib" / "modules" / "9.9"
    (d / "modules.dep.bin").write_bytes(b"")
    (d / "modules.alias.bin").write_bytes(b"not an index at all")
    (d / "modules.builtin.bin").write_bytes(b"\xb0\x07\xf4\x57\x00\x03\x00\x01")
    args = ["-b", str(root), "-k", "9.9", *CRAFTED_QUERIES]
    assert _masked(run("lkm", args)) == _masked(run("kmod", args))
