"""lkm depmod against Debian's kmod 30 depmod: every output byte, message and exit status.

Whole trees are compared with the reference indexes kmod wrote beside them
(tree.kmod_moddir); variants (partial trees, depmod.d, options, broken inputs)
run kmod live on a hard-linked copy of a small tree and lkm on another.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import KMOD, LKM, Tree
from lkm import depmod as dm
from lkm.elf import ElfFile
from lkm.index import Index
from lkm.logprio import LOG_WARNING

OUTPUTS = dm.OUTPUTS


def _outputs(moddir: Path) -> dict[str, bytes | None]:
    return {n: (moddir / n).read_bytes() if (moddir / n).exists() else None for n in OUTPUTS}


def _cp_al(src: Path, dst: Path) -> Path:
    subprocess.run(["cp", "-al", str(src), str(dst)], check=True)
    return dst


def _lkm(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([LKM, "depmod", *args], capture_output=True, cwd=cwd, timeout=600)


def _kmod(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([KMOD["depmod"], *args], capture_output=True, cwd=cwd, timeout=600)


# --------------------------------------------------------------------------- whole trees


@pytest.mark.kmod
def test_whole_tree_matches_kmod(tree: Tree, tmp_path: Path) -> None:
    """Every output on the full 6.1 (.ko) and 6.12 (.ko.xz) trees is kmod's, byte for byte."""
    root = _cp_al(tree.root, tmp_path / "root")
    moddir = root / "lib" / "modules" / tree.release
    for name in OUTPUTS:
        (moddir / name).unlink(missing_ok=True)
    r = _lkm("-b", str(root), tree.release)
    assert r.returncode == 0, r.stderr
    assert r.stderr == b""
    ours, ref = _outputs(moddir), _outputs(tree.kmod_moddir)
    for name in OUTPUTS:
        assert ours[name] == ref[name], name
    for name in OUTPUTS:
        assert (moddir / name).stat().st_mode & 0o777 == 0o644 & ~_umask()
    assert not [p for p in moddir.iterdir() if re.search(r"\.\d+\.\d+\.\d+$", p.name)]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- small trees


def _mini_tree(tree: Tree, dst: Path, count: int = 160, seed: int = 1) -> Path:
    """A hard-linked subset of ``tree``: modules from spread-out modules.order lines and
    everything they depend on, the whole modules.order/builtin/builtin.modinfo."""
    lines = (tree.kmod_moddir / "modules.dep").read_text().splitlines()
    deps = {ln.split(":")[0]: ln.split(":")[1].split() for ln in lines}
    paths = sorted(deps)
    rng = random.Random(seed)
    chosen: set[str] = set()
    for p in rng.sample(paths, count):
        chosen.add(p)
        chosen.update(deps[p])
    moddir = dst / "lib" / "modules" / tree.release
    moddir.mkdir(parents=True)
    for rel in sorted(chosen):
        (moddir / rel).parent.mkdir(parents=True, exist_ok=True)
        os.link(tree.moddir / rel, moddir / rel)
    for name in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        os.link(tree.moddir / name, moddir / name)
    boot = dst / "boot"
    boot.mkdir()
    for f in (tree.root / "boot").iterdir():
        if f.name.startswith("System.map"):
            os.link(f, boot / f.name)
    # previous indexes, as on an installed system
    subprocess.run([KMOD["depmod"], "-b", str(dst), tree.release], check=True,
                   capture_output=True)
    return dst


@pytest.fixture(scope="module")
def mini61(tree61: Tree, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _mini_tree(tree61, tmp_path_factory.mktemp("mini61"))


@pytest.fixture(scope="module")
def mini612(tree612: Tree, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _mini_tree(tree612, tmp_path_factory.mktemp("mini612"), count=120)


def _release(root: Path) -> str:
    return next((root / "lib" / "modules").iterdir()).name


def _norm(text: bytes, *roots: Path) -> bytes:
    """Paths of the copies made alike; libkmod's own -vv lines (pointers, source lines)
    dropped."""
    for r in roots:
        text = text.replace(str(r).encode(), b"ROOT")
    return re.sub(rb"(?m)^depmod: INFO: \.\./libkmod/.*\n", b"", text)


Setup = Callable[[Path], list[str]]


def _compare(base: Path, tmp: Path, setup: Setup | None = None,
             extra: tuple[str, ...] = (), version: bool = True) -> tuple[
                 subprocess.CompletedProcess[bytes], subprocess.CompletedProcess[bytes]]:
    """Run kmod and lkm on their own copies of ``base`` (after ``setup(root)``, which may
    return extra arguments) and assert identical outputs, messages and statuses."""
    release = _release(base)
    results = []
    roots = []
    tmp.mkdir(parents=True, exist_ok=True)
    for tool in ("kmd", "lkm"):
        root = _cp_al(base, tmp / tool)
        args = setup(root) if setup else []
        argv = ["-b", str(root), *extra, *([release] if version else []), *args]
        results.append((_kmod if tool == "kmd" else _lkm)(*argv, cwd=tmp))
        roots.append(root)
    k, lk = results
    assert lk.returncode == k.returncode, (k.stderr, lk.stderr)
    assert _norm(lk.stderr, *roots) == _norm(k.stderr, *roots)
    assert _norm(lk.stdout, *roots) == _norm(k.stdout, *roots)
    mk, ml = (r / "lib" / "modules" / release for r in roots)
    ok, ol = _outputs(mk), _outputs(ml)
    for name in OUTPUTS:
        assert ol[name] == ok[name], name
    leftovers = [p.name for p in ml.iterdir() if re.search(r"\.\d+\.\d+\.\d+$", p.name)]
    assert not leftovers
    return k, lk


def _first_module(root: Path, pattern: str = "*.ko*") -> Path:
    moddir = root / "lib" / "modules" / _release(root)
    return sorted((moddir / "kernel").rglob(pattern))[0]


def _dep_line_modules(root: Path) -> list[tuple[Path, list[Path]]]:
    moddir = root / "lib" / "modules" / _release(root)
    out = []
    for line in (moddir / "modules.dep").read_text().splitlines():
        head, _, rest = line.partition(":")
        out.append((moddir / head, [moddir / d for d in rest.split()]))
    return out


# each variant: (name, setup) — setup edits the copy and returns extra operands
def _no_order(root: Path) -> list[str]:
    (root / "lib/modules" / _release(root) / "modules.order").unlink()
    return []


def _no_builtin(root: Path) -> list[str]:
    (root / "lib/modules" / _release(root) / "modules.builtin").unlink()
    return []


def _no_builtin_modinfo(root: Path) -> list[str]:
    (root / "lib/modules" / _release(root) / "modules.builtin.modinfo").unlink()
    return []


def _updates_override(root: Path) -> list[str]:
    """A module in updates/ overrides the in-tree one; another sits only in updates/."""
    moddir = root / "lib/modules" / _release(root)
    mods = sorted((moddir / "kernel").rglob("*.ko*"))
    (moddir / "updates" / "sub").mkdir(parents=True)
    os.link(mods[3], moddir / "updates" / "sub" / mods[3].name)
    os.link(mods[7], moddir / "updates" / ("renamed-" + mods[7].name))
    return []


def _extra_outside_order(root: Path) -> list[str]:
    """Modules outside modules.order: an extra/ copy under a new name and a dash name."""
    moddir = root / "lib/modules" / _release(root)
    mods = sorted((moddir / "kernel").rglob("*.ko*"))
    (moddir / "extra").mkdir()
    os.link(mods[5], moddir / "extra" / ("zz-extra-" + mods[5].name))
    os.link(mods[9], moddir / "extra" / ("a-b_c-" + mods[9].name))
    return []


def _truncated_order(root: Path) -> list[str]:
    p = root / "lib/modules" / _release(root) / "modules.order"
    data = p.read_bytes()
    p.unlink()
    p.write_bytes(data.rstrip(b"\n"))  # last line misses its newline: no ordering at all
    return []


def _reordered_order(root: Path) -> list[str]:
    """modules.order reversed, with duplicates, blank and unknown lines."""
    p = root / "lib/modules" / _release(root) / "modules.order"
    lines = p.read_text().splitlines()
    p.unlink()
    text = "\n".join([*reversed(lines), "", "kernel/nope.ko", lines[3]]) + "\n"
    p.write_text(text)
    return []


def _bad_builtin(root: Path) -> list[str]:
    p = root / "lib/modules" / _release(root) / "modules.builtin"
    lines = p.read_text().splitlines()
    p.unlink()
    p.write_text("\n".join([lines[0], "/bad/line.ko", "", "9digit/x.ko", "kernel/noext",
                            "kernel/dup.ko", "kernel/dup.ko", *lines[1:]]) + "\n")
    m = root / "lib/modules" / _release(root) / "modules.builtin.modinfo"
    data = m.read_bytes()
    m.unlink()
    m.write_bytes(data + b"foo.alias=bad]x\0foo.noequals\0bar.alias=ok-[a-b]\0x.alias=\0"
                  b".alias=nomod\0baz.alias=last-no-nul")
    return []


def _config(text: str) -> Setup:
    def setup(root: Path) -> list[str]:
        conf = root / "depmod.d"
        conf.mkdir()
        (conf / "test.conf").write_text(text.replace("@ROOT@", str(root)))
        (conf / "a-second.conf").write_text("# comment\n  \nsearch\n")
        (conf / "ignored.txt").write_text("bogus\n")
        (conf / ".hidden.conf").write_text("bogus\n")
        moddir = root / "lib/modules" / _release(root)
        mods = sorted((moddir / "kernel").rglob("*.ko*"))
        for sub in ("updates", "extra", "weak"):
            (moddir / sub).mkdir()
        # the same module in three places, another twice
        for i, sub in enumerate(("updates", "extra", "weak")):
            os.link(mods[2], moddir / sub / mods[2].name)
            if i < 2:
                os.link(mods[4], moddir / sub / mods[4].name)
        ext = root / "external"
        ext.mkdir()
        os.link(mods[2], ext / mods[2].name)
        os.link(mods[6], ext / mods[6].name)
        return ["-C", str(conf)]
    return setup


CONFIGS = {
    "search": "search extra updates built-in\n",
    "search_external": "search external built-in updates\nexternal * @ROOT@/external\n",
    "external_regex": "external 6\\.[0-9]+\\..* @ROOT@/external\nexternal 5.* /nonexistent\n",
    "override": "override {m2} * weak\noverride {m4} 6.* extra\noverride x 9.9 extra\n",
    "exclude": "exclude extra weak\nexclude {d}\n",
    "bad_lines": "bogus line\nsearch\\\n updates \\\n extra\noverride onlyname\nexternal\n"
                 "include foo\nmake_map_files\n  # indented comment\n",
    # freadline_wrapped at end of file: a backslash there is read as (char)EOF, 0xff
    "eof_backslash": "search extra built-in\nbogus\\",
    "eof_continuation": "search extra \\\n",
}


def _with_names(text: str, root: Path) -> str:
    moddir = root / "lib/modules" / _release(root)
    mods = sorted((moddir / "kernel").rglob("*.ko*"))
    return text.format(m2=mods[2].name.split(".")[0], m4=mods[4].name.split(".")[0],
                       d=mods[0].parent.name)


VARIANTS: dict[str, Setup | None] = {
    "base": None,
    "no_order": _no_order,
    "no_builtin": _no_builtin,
    "no_builtin_modinfo": _no_builtin_modinfo,
    "updates_override": _updates_override,
    "extra_outside_order": _extra_outside_order,
    "truncated_order": _truncated_order,
    "reordered_order": _reordered_order,
    "bad_builtin": _bad_builtin,
}


@pytest.mark.kmod
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_partial_trees(variant: str, mini61: Path, tmp_path: Path) -> None:
    _compare(mini61, tmp_path, VARIANTS[variant])


@pytest.mark.kmod
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_depmod_d_config(name: str, mini61: Path, tmp_path: Path) -> None:
    """depmod.d: search, override, external, exclude, bad lines (kmod's messages)."""
    release = _release(mini61)
    results = []
    roots = []
    for tool in ("kmd", "lkm"):
        root = _cp_al(mini61, tmp_path / tool)
        args = _config("")(root)
        (root / "depmod.d" / "test.conf").write_text(
            _with_names(CONFIGS[name], root).replace("@ROOT@", str(root)))
        run = _kmod if tool == "kmd" else _lkm
        results.append(run("-vv", *args, "-b", str(root), release, cwd=tmp_path))
        roots.append(root)
    k, lk = results
    assert lk.returncode == k.returncode
    assert _norm(lk.stderr, *roots) == _norm(k.stderr, *roots)
    assert _norm(lk.stdout, *roots) == _norm(k.stdout, *roots)
    ok, ol = (_outputs(r / "lib/modules" / release) for r in roots)
    for n in OUTPUTS:
        assert _norm(ol[n] or b"", *roots) == _norm(ok[n] or b"", *roots), n


OPTION_CASES: dict[str, tuple[str, ...]] = {
    "show": ("-n",),
    "dry_run_long": ("--dry-run",),
    "verbose": ("-v",),
    "warn": ("-w",),
    "errsyms_no_symbols": ("-e",),
    "symbol_prefix": ("-P", "_"),
    "deprecated": ("-u", "-q", "-r", "-m", "--quiet", "--map"),
    "all_explicit": ("-a",),
}


@pytest.mark.kmod
@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_options(case: str, mini61: Path, tmp_path: Path) -> None:
    _compare(mini61, tmp_path, extra=OPTION_CASES[case])


@pytest.mark.kmod
def test_relative_basedir_and_no_version(mini61: Path, tmp_path: Path) -> None:
    """-b relative to the working directory (kept unnormalised in messages and paths);
    no version operand: uname's release, whose directory is missing here."""
    release = _release(mini61)
    for tool in ("kmd", "lkm"):
        _cp_al(mini61, tmp_path / tool)
    runs = {}
    for tool, run in (("kmd", _kmod), ("lkm", _lkm)):
        root = tmp_path / tool
        os.link(_first_module(root), root / "lib/modules" / release / "dup.ko")
        runs[tool] = run("-b", f"./{tool}/", release, cwd=tmp_path)
        runs[tool + "-none"] = run("-b", f"./{tool}/", cwd=tmp_path)
    for suffix in ("", "-none"):
        k, lk = runs["kmd" + suffix], runs["lkm" + suffix]
        assert lk.returncode == k.returncode
        assert lk.stderr.replace(b"/lkm/", b"/kmd/") == k.stderr
    ok, ol = (_outputs(tmp_path / t / "lib/modules" / release) for t in ("kmd", "lkm"))
    assert ok == ol


@pytest.mark.kmod
@pytest.mark.parametrize("argv", [
    ["-P", "ab"], ["--bogus"], ["-x"], ["-b"], ["notaversion"], ["--basedir"],
    ["--symv", "/nonexistent"], ["-E", "/nonexistent", "-e"], ["-F", "/nonexistent"],
    ["--all=1"], ["-V"], ["-h"], ["--s"],
])
def test_option_errors(argv: list[str], tmp_path: Path) -> None:
    """Bad command lines: kmod's messages and statuses (help and version aside)."""
    k = _kmod("-b", str(tmp_path), *argv, "1.2.3")
    lk = _lkm("-b", str(tmp_path), *argv, "1.2.3")
    assert lk.returncode == k.returncode
    if argv[0] not in ("-h", "-V"):
        # getopt names the program by argv[0] ("/sbin/depmod"), kmod's log by its basename
        assert lk.stderr == k.stderr.replace(KMOD["depmod"].encode() + b":", b"depmod:")
        assert lk.stdout == k.stdout


@pytest.mark.kmod
def test_symvers_and_system_map(tree61: Tree, tree612: Tree, mini61: Path, mini612: Path,
                                tmp_path: Path) -> None:
    """-e with -E Module.symvers (CRCs checked) and -F System.map: kmod's warnings, on
    matching and on mismatched (other release's) symbol lists."""
    sv61 = Path(f"/usr/src/linux-headers-{tree61.release}/Module.symvers")
    sv612 = Path(f"/usr/src/linux-headers-{tree612.release}/Module.symvers")
    if not sv61.exists() or not sv612.exists():
        pytest.skip("linux-headers not installed")
    cases = [(mini61, ("-e", "-E", str(sv61))), (mini61, ("-e", "-E", str(sv612))),
             (mini612, ("-e", "-E", str(sv612))), (mini612, ("-e", "-E", str(sv61))),
             (mini61, ("-e", "-E", str(sv61), "-v")), (mini61, ("-E", str(sv612))),
             (mini612, ("-e", "-w", "-E", str(sv612)))]
    for i, (base, extra) in enumerate(cases):
        k, _lk = _compare(base, tmp_path / f"case{i}", extra=extra)
        if "-e" in extra and ("6.12" in extra[-1]) != ("6.12" in _release(base)):
            assert b"disagrees about version of symbol" in k.stderr
    for i, base in enumerate((mini61, mini612)):
        smap = next((base / "boot").glob("System.map-*"))
        _compare(base, tmp_path / f"map{i}", extra=("-e", "-F", str(smap)))
        other = next(((mini612 if i == 0 else mini61) / "boot").glob("System.map-*"))
        k, _lk = _compare(base, tmp_path / f"othermap{i}", extra=("-e", "-F", str(other)))


@pytest.mark.kmod
def test_symvers_whole_trees(tree: Tree, tmp_path: Path) -> None:
    """-n -e -E with the release's own Module.symvers over a whole tree."""
    sv = Path(f"/usr/src/linux-headers-{tree.release}/Module.symvers")
    if not sv.exists():
        pytest.skip("linux-headers not installed")
    args = ("-n", "-e", "-E", str(sv), "-b", str(tree.root), tree.release)
    k, lk = _kmod(*args), _lkm(*args)
    assert (lk.returncode, lk.stderr) == (k.returncode, k.stderr)
    assert lk.stdout == k.stdout


@pytest.mark.kmod
def test_xz_tree_variants(mini612: Path, tmp_path: Path) -> None:
    for name in ("base", "updates_override", "no_order", "extra_outside_order"):
        _compare(mini612, tmp_path / name, VARIANTS[name])


@pytest.mark.kmod
def test_explicit_module_paths(mini61: Path, tmp_path: Path) -> None:
    """depmod VERSION FILE...: just those modules; relative paths and duplicates are fatal."""
    def chosen(root: Path) -> list[str]:
        pairs = _dep_line_modules(root)
        with_deps = next(p for p in pairs if len(p[1]) >= 2)
        return [str(with_deps[0]), *map(str, with_deps[1]), str(pairs[0][0])]

    for name, setup in [
        ("some", chosen),
        ("relative", lambda r: ["kernel/foo.ko"]),
        ("missing", lambda r: [str(r / "missing.ko")]),
        ("twice", lambda r: [chosen(r)[0], chosen(r)[0]]),
        ("samename", lambda r: _same_name_elsewhere(r)),
    ]:
        # kmod's reference indexes come from the source tree: start from fresh copies
        _compare(mini61, tmp_path / name, setup)


def _same_name_elsewhere(root: Path) -> list[str]:
    mod = _first_module(root)
    other = root / "elsewhere"
    other.mkdir()
    os.link(mod, other / mod.name)
    return [str(mod), str(other / mod.name)]


@pytest.mark.kmod
def test_broken_modules(mini61: Path, tmp_path: Path) -> None:
    """Unreadable, empty, truncated, non-ELF and corrupt compressed files in the tree."""
    def setup(root: Path) -> list[str]:
        moddir = root / "lib/modules" / _release(root) / "kernel" / "broken"
        moddir.mkdir()
        good = _first_module(root).read_bytes()
        (moddir / "empty.ko").write_bytes(b"")
        (moddir / "tiny.ko").write_bytes(b"\x7fEL")
        (moddir / "notelf.ko").write_bytes(b"hello world, not an ELF file at all" * 10)
        (moddir / "truncated.ko").write_bytes(good[:3000])
        (moddir / "badxz.ko.xz").write_bytes(b"\xfd7zXZ\x00" + b"garbage" * 20)
        (moddir / "badzst.ko.zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"garbage" * 20)
        (moddir / "ko-dir.ko").mkdir()
        (moddir / "README").write_text("not a module\n")
        os.symlink("nowhere.ko", moddir / "dangling.ko")
        elf = bytearray(good)
        struct_off = int.from_bytes(elf[0x28:0x30], "little")  # e_shoff
        elf[0x28:0x30] = (struct_off + 10_000_000).to_bytes(8, "little")
        (moddir / "badshoff.ko").write_bytes(bytes(elf))
        return []

    _compare(mini61, tmp_path, setup)


def test_compressed_modules_of_every_kind(mini61: Path, tmp_path: Path) -> None:
    """.ko.xz and .ko.zst are scanned under their own file names; .ko.gz is not (Debian's
    kmod 30 is built without zlib: lkm.kmod.names.KMOD_EXTENSIONS) -- as kmod, byte for
    byte."""
    from lkm import compress

    release = _release(mini61)
    ref_lines = (mini61 / "lib/modules" / release / "modules.dep").read_text().splitlines()
    with_deps = [ln.split(":")[0] for ln in ref_lines if ln.split(":")[1].strip()][:3]
    kinds = ("gzip", "xz", "zstd")

    def setup(root: Path) -> list[str]:
        for rel, kind in zip(with_deps, kinds, strict=True):
            src = root / "lib/modules" / release / rel
            dst = src.with_name(src.name + compress.EXTENSIONS[kind])
            dst.write_bytes(compress.compress(src.read_bytes(), kind))
            src.unlink()
        return []

    _compare(mini61, tmp_path, setup)
    dep = (tmp_path / "lkm" / "lib/modules" / release / "modules.dep").read_text()
    for rel, kind in zip(with_deps, kinds, strict=True):
        listed = f"{rel}{compress.EXTENSIONS[kind]}:" in dep
        assert listed == (kind != "gzip"), (rel, kind)


def test_fifos_do_not_hang(tmp_path: Path) -> None:
    """FIFOs as modules.order, as a -C file and as a module operand: kmod blocks on
    them; lkm reads what is there (nothing) and goes on."""
    moddir = tmp_path / "lib/modules/1.2.3"
    moddir.mkdir(parents=True)
    os.mkfifo(moddir / "modules.order")
    os.mkfifo(tmp_path / "conf.conf")
    os.mkfifo(tmp_path / "fifo.ko")
    r = _lkm("-C", str(tmp_path / "conf.conf"), "-b", str(tmp_path), "1.2.3")
    assert r.returncode == 0
    r = _lkm("-b", str(tmp_path), "1.2.3", str(tmp_path / "fifo.ko"))
    assert r.returncode == 0
    assert b"failed to load symbols from" in r.stderr
    assert (moddir / "modules.dep").read_bytes() == f"{tmp_path}/fifo.ko:\n".encode()


def test_show_into_closed_pipe(mini61: Path) -> None:
    """-n into a pipe closed early: killed by SIGPIPE like kmod, no traceback."""
    proc = subprocess.Popen([LKM, "depmod", "-n", "-b", str(mini61), _release(mini61)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == -signal.SIGPIPE
    assert err == b""


def test_symlink_loop_is_bounded(mini61: Path, tmp_path: Path) -> None:
    """A directory symlink loop: kmod recurses until it runs out of file descriptors (and
    writes gigabytes of errors); lkm reports the loop once and finishes."""
    root = _cp_al(mini61, tmp_path / "root")
    release = _release(root)
    os.symlink("..", root / "lib/modules" / release / "kernel" / "loop")
    r = _lkm("-b", str(root), release)
    assert r.returncode == 0
    assert r.stderr.count(b"Too many levels of symbolic links") == 1
    ref = _outputs(mini61 / "lib/modules" / release)
    assert _outputs(root / "lib/modules" / release) == ref


def _make_cycle(root: Path) -> list[str]:
    """Patch a module B that A depends on so that B needs one of A's exports."""
    moddir = root / "lib/modules" / _release(root)
    for a, deps in _dep_line_modules(root):
        if not deps:
            continue
        b = deps[0]
        ea = ElfFile(a.read_bytes())
        a_exports = {s.name[6:] for s in ea.symbols() if s.name.startswith("__crc_")}
        data = bytearray(b.read_bytes())
        eb = ElfFile(bytes(data))
        strtab = eb.section(".strtab")
        assert strtab is not None
        b_exports = {s.name[6:] for s in eb.symbols() if s.name.startswith("__crc_")}
        for name in eb.undefined_symbols():
            if name in b_exports:
                continue
            same = [y for y in sorted(a_exports) if len(y) == len(name)]
            if not same:
                continue
            lo, hi = strtab.offset, strtab.offset + strtab.size
            needle = b"\0" + name.encode() + b"\0"
            at = bytes(data).find(needle, lo, hi)
            if at < 0 or bytes(data).find(needle, at + 1, hi) >= 0:
                continue
            data[at + 1:at + 1 + len(name)] = same[0].encode()
            b.unlink()
            b.write_bytes(bytes(data))
            del moddir
            return []
    raise AssertionError("no module pair to make a cycle from")


@pytest.mark.kmod
def test_dependency_cycle(mini61: Path, tmp_path: Path) -> None:
    """A cycle: kmod's "Cycle detected" lines, the count, exit 1, nothing written."""
    k, _lk = _compare(mini61, tmp_path, _make_cycle)
    assert k.returncode == 1
    assert b"Cycle detected:" in k.stderr
    assert b"modules in dependency cycles!" in k.stderr


@pytest.mark.kmod
def test_quick(mini61: Path, tmp_path: Path) -> None:
    """-A: nothing to do when no module is newer than modules.dep; else a full run."""
    release = _release(mini61)
    for tool in ("kmd", "lkm"):
        root = _cp_al(mini61, tmp_path / tool)
        moddir = root / "lib/modules" / release
        run = _kmod if tool == "kmd" else _lkm
        (moddir / "modules.dep").unlink()
        first = run("-A", "-b", str(root), release)
        assert first.returncode == 0
        assert b"could not fstatat" in first.stderr  # no modules.dep yet
        assert (moddir / "modules.dep").exists()
        old = os.stat(moddir / "modules.dep").st_mtime_ns
        time.sleep(0.01)
        os.utime(moddir / "modules.dep", (time.time() + 100, time.time() + 100))
        stamp = os.stat(moddir / "modules.dep").st_mtime_ns
        second = run("-A", "-b", str(root), release)
        assert (second.returncode, second.stderr) == (0, b"")
        assert os.stat(moddir / "modules.dep").st_mtime_ns == stamp
        assert run("-A", "-n", "-b", str(root), release).stdout == b""
        mod = _first_module(root)
        data = mod.read_bytes()
        mod.unlink()
        mod.write_bytes(data)
        os.utime(mod, (time.time() + 200, time.time() + 200))
        third = run("-A", "-b", str(root), release)
        assert third.returncode == 0
        assert os.stat(moddir / "modules.dep").st_mtime_ns != stamp
        del old


@pytest.mark.kmod
def test_outdir(mini61: Path, tmp_path: Path) -> None:
    """-o DIR (kmod 31's --outdir): the outputs land under DIR/lib/modules/VERSION,
    the same bytes kmod writes in place; the module tree is not touched."""
    release = _release(mini61)
    kroot = _cp_al(mini61, tmp_path / "kmod")
    assert _kmod("-b", str(kroot), release).returncode == 0
    lroot = _cp_al(mini61, tmp_path / "lkm")
    out = tmp_path / "out"
    r = _lkm("-b", str(lroot), "-o", str(out), release)
    assert r.returncode == 0, r.stderr
    ref = _outputs(kroot / "lib/modules" / release)
    assert _outputs(out / "lib/modules" / release) == ref
    assert _outputs(lroot / "lib/modules" / release) == _outputs(mini61 / "lib/modules" / release)


@pytest.mark.kmod
def test_preorder_layout(mini61: Path, tmp_path: Path) -> None:
    """--index-layout preorder: kmod 34's layout (root first) with the same entries, and
    modprobe (kmod 30) answers the same from it."""
    release = _release(mini61)
    post = _cp_al(mini61, tmp_path / "post")
    pre = _cp_al(mini61, tmp_path / "pre")
    assert _lkm("-b", str(post), release).returncode == 0
    r = _lkm("--index-layout", "preorder", "-b", str(pre), release)
    assert r.returncode == 0, r.stderr
    for name in OUTPUTS:
        a = (post / "lib/modules" / release / name).read_bytes()
        b = (pre / "lib/modules" / release / name).read_bytes()
        if not name.endswith(".bin") or not a:
            assert a == b
            continue
        ia, ib = Index(a), Index(b)
        assert ib.root & 0x0FFFFFFF == 12
        assert list(ia.entries()) == list(ib.entries())
        assert len(a) == len(b)
    conf = tmp_path / "conf"
    conf.mkdir()
    names = [ln.split(":")[0].rsplit("/", 1)[-1].split(".")[0].replace("-", "_")
             for ln in (post / "lib/modules" / release / "modules.dep").read_text()
             .splitlines()[:25]]
    for name in names:
        outs = [subprocess.run([KMOD["modprobe"], "-C", str(conf), "-d", str(root), "-S",
                                release, "--show-depends", "--ignore-install", name],
                               capture_output=True).stdout.replace(str(root).encode(), b"")
                for root in (post, pre)]
        assert outs[0] == outs[1]
    assert _lkm("--index-layout", "inorder", "-b", str(pre), release).returncode == 1


def test_non_ascii_alias_is_fatal(mini61: Path, tmp_path: Path) -> None:
    """A non-ASCII alias: kmod corrupts memory (its 7-bit check never fires on a signed
    char); lkm stops with kmod's intended FATAL message, leaving no temporary file and
    the files after modules.alias as they were."""
    root = _cp_al(mini61, tmp_path / "root")
    release = _release(root)
    moddir = root / "lib/modules" / release
    before = _outputs(moddir)
    for mod in sorted((moddir / "kernel").rglob("*.ko")):
        data = mod.read_bytes()
        at = data.find(b"\0alias=")
        if at > 0:
            break
    patched = bytearray(data)
    patched[at + 7] = 0xE9
    mod.unlink()
    mod.write_bytes(bytes(patched))
    r = _lkm("-b", str(root), release)
    assert r.returncode == 1
    assert b"depmod: FATAL: Module index: bad character" in r.stderr
    assert not [p for p in moddir.iterdir() if re.search(r"\.\d+\.\d+\.\d+$", p.name)]
    after = _outputs(moddir)
    assert after["modules.alias"] != before["modules.alias"]  # written before the failure
    for name in OUTPUTS[OUTPUTS.index("modules.alias.bin"):]:
        assert after[name] == before[name], name


# --------------------------------------------------------------------------- interruption


@pytest.mark.kmod
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGKILL])
def test_killed_midway_keeps_indexes(sig: int, tree61: Tree, tmp_path: Path) -> None:
    """depmod killed at random moments: every index is the previous one or the new one,
    complete; after SIGTERM/SIGINT no temporary file remains (kmod leaves one behind)."""
    root = _cp_al(tree61.root, tmp_path / "root")
    moddir = root / "lib/modules" / tree61.release
    ref = _outputs(tree61.kmod_moddir)
    # the "previous" indexes: kmod's, from a tree without one module
    for name in OUTPUTS:
        (moddir / name).unlink(missing_ok=True)
        (moddir / name).write_bytes(b"previous " + name.encode())
    previous = _outputs(moddir)
    rng = random.Random(sig)
    for _ in range(4):
        proc = subprocess.Popen([LKM, "depmod", "-b", str(root), tree61.release],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.2, 2.0))
        proc.send_signal(sig)
        proc.communicate(timeout=60)
        now = _outputs(moddir)
        for name in OUTPUTS:
            assert now[name] in (previous[name], ref[name]), name
        temps = [p.name for p in moddir.iterdir() if re.search(r"\.\d+\.\d+\.\d+$", p.name)]
        if sig != signal.SIGKILL:
            assert temps == []
        for t in temps:
            (moddir / t).unlink()
        for name in OUTPUTS:
            (moddir / name).unlink()
            (moddir / name).write_bytes(previous[name] or b"")


# --------------------------------------------------------------------------- units


# values printed by kmod 30's shared/hash.c hash_superfast (compiled from the v30 tag):
# every remainder 0..3 of the length, and high bytes read as signed chars
SUPERFAST = {b"": 0, b"a": 291415938, b"ab": 1366002500, b"abc": 3535673738,
             b"abcd": 3671636187, b"abcde": 1374488366, b"e1000e": 1109782235,
             b"snd_hda_intel": 1849698465, b"\xff": 0, b"x\xe9\xff": 3860522019,
             b"ab\xfe": 896057952, b"usb_storage": 2677747627}


@pytest.mark.parametrize(("key", "value"), SUPERFAST.items())
def test_superfast_hash(key: bytes, value: int) -> None:
    assert dm.superfast_hash(key) == value


@pytest.mark.parametrize(("alias", "expected"), [
    ("pci:v*d*", "pci:v*d*"), ("a-b-c", "a_b_c"), ("x[a-z]-y", "x[a-z]_y"),
    ("bad]", None), ("open[abc", None), ("", ""), ("[-]-", "[-]_"),
])
def test_alias_normalize(alias: str, expected: str | None) -> None:
    assert dm.alias_normalize(alias) == expected


def test_wrapped_lines() -> None:
    """depmod.d's lines are modprobe.d's (lkm.config.lines, kmod's freadline_wrapped)."""
    data = b"a \\\nb\nc\\d\\\\e\n\n#x\nlast"
    assert list(dm.wrapped_lines(data)) == [(2, "a b"), (3, "cd\\e"), (4, ""), (5, "#x"),
                                            (6, "last")]
    assert list(dm.wrapped_lines(b"x\\\n")) == [(2, "x")]  # EOF counts as a line end
    assert list(dm.wrapped_lines(b"x\\")) == [(1, "x\udcff")]  # (char)EOF


def test_fgets_lines() -> None:
    assert list(dm.fgets_lines(b"ab\ncd")) == [b"ab\n", b"cd"]
    long = b"x" * 5000 + b"\n"
    assert [len(c) for c in dm.fgets_lines(long)] == [4095, 906]
    assert list(dm.fgets_lines(b"a\0b\nc\n")) == [b"a", b"c\n"]


def test_is_version_number() -> None:
    assert dm.is_version_number("6.1.0-56-amd64") and dm.is_version_number(" 1.2")
    assert not dm.is_version_number("6") and not dm.is_version_number("x6.1")


def test_library_messages_and_cycles_api(mini61: Path, tmp_path: Path) -> None:
    """The library collects kmod's messages when no log callback is given."""
    root = _cp_al(mini61, tmp_path / "root")
    release = _release(root)
    _make_cycle(root)
    d = dm.Depmod(str(root / "lib/modules" / release), release, jobs=1)
    d.search()
    d.build_array()
    with pytest.raises(dm.DependencyCycleError) as ei:
        d.load()
    assert ei.value.count >= 2 and ei.value.cycles
    assert any(msg.startswith("Cycle detected: ") for _p, msg in d.messages)
    shutil.rmtree(root)


def test_run_api(mini61: Path, tmp_path: Path) -> None:
    """lkm.depmod.run: kmod's files, -A's early return, -n into a stream, and the errors
    with kmod's text (messages collected when no log callback is given)."""
    import io

    release = _release(mini61)
    root = _cp_al(mini61, tmp_path / "root")
    moddir = root / "lib/modules" / release
    for name in OUTPUTS:
        (moddir / name).unlink(missing_ok=True)
    d = dm.run(str(moddir), release, config_paths=[], jobs=2)
    assert d is not None and d.messages == [] and len(d.modules) > 100
    assert _outputs(moddir) == _outputs(mini61 / "lib/modules" / release)
    assert dm.run(str(moddir), release, config_paths=[], quick=True) is None
    shown = io.BytesIO()
    assert dm.run(str(moddir), release, config_paths=[], show=shown) is not None
    assert shown.getvalue() == b"".join((moddir / n).read_bytes() for n in dm.TEXT_OUTPUTS)
    with pytest.raises(dm.DepmodError, match=r"^could not search modules: No such file"):
        dm.run(str(tmp_path / "missing"), release, config_paths=[])
    with pytest.raises(dm.DepmodError, match=r"^could not load /nonexistent: No such file"):
        dm.run(str(moddir), release, symvers="/nonexistent")
    logged: list[tuple[int, str]] = []
    dm.run(str(moddir), release, config_paths=[], print_unknown=True,
           log=lambda prio, msg: logged.append((prio, msg)))
    assert logged == [(LOG_WARNING, "-e needs -E or -F\n")]
