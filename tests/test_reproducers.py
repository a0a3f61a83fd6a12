"""Inputs that once broke lkm (tests/reproducers/README): each through the in-process
entry point that met it (tests/fuzz/targets.py), and the module files also through
depmod against kmod 30.  Findings in code still being refactored elsewhere are xfail
(strict=False) until fixed, named after the finding."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import KMOD, LKM, Tree

HERE = Path(__file__).resolve().parent / "reproducers"
RELEASE = "6.1.0-reproducer"
sys.path.insert(0, str(HERE.parent / "fuzz"))


def _open(finding: str) -> pytest.MarkDecorator:
    """A finding in a file another helper is refactoring: recorded, not yet fixed."""
    return pytest.mark.xfail(reason=f"open finding: {finding}", strict=False)


# (input, the fuzz target that met it); the open findings are xfail
IN_PROCESS = [
    ("depmod-traceback-1.ko", "depmod-read"),
    ("depmod-traceback-1.ko", "module"),
    ("depmod-hang-1.ko", "depmod-read"),
    ("depmod-surrogate-1.ko", "depmod-read"),
    ("depmod-surrogate-1.ko", "depmod"),
    ("loader-name-1.bin", "loader"),
    ("loader-shnum0-1.bin", "loader"),
    ("kimage-cert-version-1.vmlinuz", "kimage"),
    ("kimage-cert-version-1.vmlinuz", "profile"),
    ("profile-exports-1.vmlinuz", "profile"),
    ("profile-ksymtab-1.vmlinuz", "profile"),
    ("profile-kcrctab-1.vmlinuz", "profile"),
]


@pytest.mark.trees
@pytest.mark.parametrize(("name", "target"), IN_PROCESS)
def test_in_process(name: str, target: str) -> None:
    """The entry point ends in a typed error or normally, within its time bound."""
    import random

    import harness
    from targets import TARGETS

    t = TARGETS[target]
    harness.run_one(t, t.make(random.Random(0)))  # set-up (the seeds) outside the bound
    f = harness.run_one(t, (HERE / name).read_bytes())
    assert f is None, f"{f.key}: {f.message}\n{f.trace}"


def _tree(root: Path, ko: Path | tuple[str, bytes]) -> Path:
    d = root / "lib" / "modules" / RELEASE / "kernel"
    d.mkdir(parents=True)
    if isinstance(ko, Path):
        shutil.copy(ko, d / ko.name)
    else:
        (d / ko[0]).write_bytes(ko[1])
    return root / "lib" / "modules" / RELEASE


def _depmod_both(tmp_path: Path, ko: Path | tuple[str, bytes]) -> dict[str, object]:
    if not Path(KMOD["depmod"]).exists():
        pytest.skip("Debian's kmod is not installed")
    out: dict[str, object] = {}
    for tool, cmd in (("kmod", KMOD["depmod"]), ("lkm", LKM)):
        args = [cmd] if tool == "kmod" else [cmd, "depmod"]
        moddir = _tree(tmp_path / tool, ko)
        r = subprocess.run([*args, "-b", str(tmp_path / tool), RELEASE],
                           capture_output=True, text=True, timeout=60)
        files = {p.name: p.read_bytes() for p in sorted(moddir.glob("modules.*"))}
        out[tool] = (r.returncode, r.stdout, r.stderr.replace(str(tmp_path / tool), "ROOT"),
                     files)
    return out


@pytest.mark.kmod
@pytest.mark.parametrize("name", ["depmod-traceback-1.ko", "depmod-hang-1.ko",
                                  "depmod-surrogate-1.ko"])
def test_depmod_like_kmod(tmp_path: Path, name: str) -> None:
    """depmod on a tree holding the input: the same exit status, messages and index files."""
    out = _depmod_both(tmp_path, HERE / name)
    assert "Traceback" not in str(out["lkm"])
    assert out["lkm"] == out["kmod"]


@pytest.mark.kmod
@pytest.mark.trees
@pytest.mark.parametrize("cut", [3, 40, 400])
def test_truncated_zstd_like_kmod(tmp_path: Path, cut: int, tree61: Tree) -> None:
    """A truncated .ko.zst (the CLI differential: kmod said "Exec format error", lkm
    "Invalid argument"): kmod 30 keeps what ZSTD_decompressStream gave before the cut."""
    import zstandard

    ko = (tree61.moddir / "kernel/drivers/media/dvb-frontends/lgdt330x.ko").read_bytes()
    z = zstandard.ZstdCompressor(level=1).compress(ko * 4)
    out = _depmod_both(tmp_path, ("m.ko.zst", z[:-cut]))
    assert out["lkm"] == out["kmod"]


@pytest.mark.kmod
@pytest.mark.trees
@pytest.mark.parametrize("case", ["padding", "odd-padding", "garbage", "two-streams",
                                  "truncated-second"])
def test_xz_streams_like_kmod(tmp_path: Path, case: str, tree61: Tree) -> None:
    """.ko.xz containers the fuzz CLI differential met: kmod 30 reads concatenated streams
    and padding of four NULs, and rejects other trailing bytes (lkm read the first stream
    only and ignored what followed)."""
    import lzma

    ko = (tree61.moddir / "kernel/lib/crc7.ko").read_bytes()

    def xz(b: bytes) -> bytes:
        return lzma.compress(b, preset=0, check=lzma.CHECK_CRC32)

    data = {"padding": xz(ko) + bytes(8), "odd-padding": xz(ko) + bytes(1),
            "garbage": xz(ko) + b"J", "two-streams": xz(ko[:5000]) + xz(ko[5000:]),
            "truncated-second": xz(ko) + xz(b"abc")[:-4]}[case]
    out = _depmod_both(tmp_path, ("m.ko.xz", data))
    assert out["lkm"] == out["kmod"]


def test_depmod_d_many_entries() -> None:
    """A depmod.d of 100,000 exclude/search entries (the fuzz target depmod.d found 117,000
    on one line taking 1.6 s: one list insert per entry) parses in well under a second."""
    import time

    from lkm.config.depmod import DepmodConfig

    cfg = DepmodConfig()
    data = b"exclude build x\n" * 25000 + b"search" + b" a b" * 25000 + b"\n"
    t0 = time.perf_counter()
    cfg.parse(data, "f.conf", "6.1.0", lambda _p, _m: None)
    assert time.perf_counter() - t0 < 0.5
    assert cfg.excludes[:2] == ["x", "build"] and len(cfg.excludes) == 50000
    assert cfg.searches[:2] == ["b", "a"] and len(cfg.searches) == 50000


def test_config_line_of_many_backslashes() -> None:
    """A 2.8 MB depmod.d line full of backslashes (the fuzz target depmod.d: 2.5 s, the
    line reader searching the next newline again after each backslash) reads in linear
    time, as kmod's freadline_wrapped does."""
    import time

    from lkm.config.lines import wrapped_lines

    data = b"override [a-z]* \\ updates" * 100000 + b"\\\nx\n" + b"a\\" * 100000
    t0 = time.perf_counter()
    lines = list(wrapped_lines(data))
    assert time.perf_counter() - t0 < 0.5
    assert [n for n, _l in lines] == [2, 3]
    assert lines[0][1].startswith("override [a-z]*  updatesoverride") and lines[0][1][-1] == "x"
    assert lines[1][1] == "a" * 100000 + "\udcff"


def test_modprobe_d_long_tokens() -> None:
    """A 125 MB modprobe.d (the fuzz target modprobe.d: over 15 s, its tokens split a
    character at a time) parses at C-like speed: here 20 MB of one token."""
    import time

    from lkm.config.modprobe import ModprobeConfig

    cfg = ModprobeConfig()
    data = b"alias \t" + b"x" * 20_000_000 + b" \tm\noptions" + b" o" * 1_000_000 + b"\n"
    t0 = time.perf_counter()
    cfg.parse(data, "f.conf")
    assert time.perf_counter() - t0 < 1.0
    assert cfg.aliases == [("x" * 20_000_000, "m")]
    assert cfg.options == [("o", "o " * 999_998 + "o")]
