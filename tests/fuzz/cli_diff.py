"""The CLI differential: depmod on a module tree holding one mutant (beside two intact
modules), lkm's against Debian's kmod 30 (/sbin/depmod): the same exit status and the
same index files.  kmod 30 itself asserts or segfaults on some inputs: those are skipped;
so are the gzip mutants (Debian's kmod 30 is built without zlib and does not scan .ko.gz,
which lkm reads: tests/test_depmod.py::test_compressed_modules_of_every_kind).
"""

from __future__ import annotations

import random
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

RELEASE = "6.1.0-fuzz"
KMOD_DEPMOD = "/sbin/depmod"


@dataclass
class CliStats:
    mutants: int = 0
    same: int = 0
    kmod_crashed: int = 0
    gzip: int = 0
    stderr_differs: int = 0
    differs: list[tuple[bytes, str]] = field(default_factory=list)
    stderr_samples: list[tuple[bytes, str]] = field(default_factory=list)  # the first 20


def _tree(root: Path, mutant: bytes, ext: str, intact: list[tuple[str, bytes]]) -> Path:
    moddir = root / "lib" / "modules" / RELEASE
    if root.exists():
        shutil.rmtree(root)
    (moddir / "kernel" / "fuzz").mkdir(parents=True)
    for name, data in intact:
        (moddir / "kernel" / name).write_bytes(data)
    (moddir / "kernel" / "fuzz" / f"mutant{ext}").write_bytes(mutant)
    return moddir


def _run(cmd: list[str], root: Path) -> tuple[int, str]:
    try:
        r = subprocess.run([*cmd, "-b", str(root), RELEASE], capture_output=True, text=True,
                           errors="surrogateescape", timeout=120)
    except subprocess.TimeoutExpired:
        return -999, "timeout"
    return r.returncode, r.stderr.replace(str(root), "ROOT")


def compare(mutant: bytes, work: Path, lkm: str, intact: list[tuple[str, bytes]]
            ) -> tuple[str, str]:
    """("same" | "kmod-crashed" | "gzip" | "differs" | "stderr", detail)."""
    from lkm.compress import detect

    if detect(mutant) == "gzip":
        return "gzip", ""
    ext = {"gzip": ".ko.gz", "xz": ".ko.xz", "zstd": ".ko.zst"}.get(detect(mutant) or "", ".ko")
    out = {}
    for tool, cmd in (("kmod", [KMOD_DEPMOD]), ("lkm", [lkm, "depmod"])):
        root = work / tool
        moddir = _tree(root, mutant, ext, intact)
        status, err = _run(cmd, root)
        files = {p.name: p.read_bytes() for p in sorted(moddir.glob("modules.*"))}
        out[tool] = (status, err, files)
    ks, ke, kf = out["kmod"]
    ls, le, lf = out["lkm"]
    if ks < 0 or ks == 134 or ks == 139:
        return "kmod-crashed", f"kmod exit {ks}"
    if ks != ls:
        return "differs", f"exit {ks} (kmod) vs {ls} (lkm): {le.strip()[-300:]}"
    names = sorted(set(kf) | set(lf))
    bad = [n for n in names if kf.get(n) != lf.get(n)]
    if bad:
        return "differs", f"files differ: {', '.join(bad)}"
    if "Traceback" in le:
        return "differs", f"lkm printed a traceback: {le.strip()[-300:]}"
    return ("same", "") if ke == le else ("stderr", f"kmod: {ke[-200:]!r} lkm: {le[-200:]!r}")


def campaign(count: int, seed: int, work: Path, lkm: str) -> CliStats:
    """``count`` module mutants (tests/fuzz/targets.py's make_module) through both tools."""
    import seeds
    from targets import make_module

    mods = [d for fl, d in seeds.modules() if fl == "6.1"]
    intact = [("a.ko", mods[0]), ("b.ko", mods[1])]
    rng = random.Random(seed)
    st = CliStats()
    for _ in range(count):
        mutant = make_module(rng)
        kind, detail = compare(mutant, work, lkm, intact)
        st.mutants += 1
        if kind == "same":
            st.same += 1
        elif kind == "stderr":
            st.same += 1
            st.stderr_differs += 1
            if len(st.stderr_samples) < 20:
                st.stderr_samples.append((mutant, detail))
        elif kind == "kmod-crashed":
            st.kmod_crashed += 1
        elif kind == "gzip":
            st.gzip += 1
        else:
            st.differs.append((mutant, detail))
    return st
