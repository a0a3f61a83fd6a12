"""Benchmark: lkm depmod against kmod's /sbin/depmod on hard-linked copies of both trees.

Each round runs both tools on their own ``cp -al`` copy of a tree, alternating which
goes first.  Prints, per tree, the median wall time, median CPU time (user + sys,
children included), peak RSS (the largest process: wait4's ru_maxrss; with lkm's
reader processes, also the sum of the main process and its largest reader) and the
lkm/kmod ratios.

    .venv/bin/python bench/depmod.py [--runs N] [--tree 6.1|6.12] [--jobs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

LKM = ROOT / ".venv" / "bin" / "lkm"
KMOD = "/sbin/depmod"


def trees() -> dict[str, tuple[Path, str]]:
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "test-fixtures.py")],
                         capture_output=True, text=True, check=True).stdout
    got = {}
    for line in out.splitlines():
        flavour, path, release = line.split()
        got[flavour] = (Path(path), release)
    return got


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int, int]:
    """(wall s, cpu s, peak RSS KiB of any one process, rc) of ``cmd``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _pid, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.stderr.write(err.decode(errors="replace"))
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--tree", choices=["6.1", "6.12"], action="append")
    ap.add_argument("--jobs", type=int, default=None, help="lkm reader processes")
    args = ap.parse_args()
    env = dict(os.environ)
    if args.jobs:
        env["LKM_DEPMOD_JOBS"] = str(args.jobs)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed lkm has its byte-code cached
    all_trees = trees()
    with tempfile.TemporaryDirectory(prefix="lkm-bench-depmod-") as tmp:
        for flavour in args.tree or ["6.1", "6.12"]:
            src, release = all_trees[flavour]
            copies = {}
            for tool in ("kmod", "lkm"):
                dst = Path(tmp) / f"{flavour}-{tool}"
                subprocess.run(["cp", "-al", str(src), str(dst)], check=True)
                copies[tool] = dst
            cmds = {"kmod": [KMOD, "-b", str(copies["kmod"]), release],
                    "lkm": [str(LKM), "depmod", "-b", str(copies["lkm"]), release]}
            # warm the page cache and the byte-code cache once
            for tool in ("kmod", "lkm"):
                run(cmds[tool], env)
            res: dict[str, list[tuple[float, float, int, int]]] = {"kmod": [], "lkm": []}
            for i in range(args.runs):
                order = ("kmod", "lkm") if i % 2 == 0 else ("lkm", "kmod")
                for tool in order:
                    res[tool].append(run(cmds[tool], env))
            same = all(
                (copies["kmod"] / "lib/modules" / release / f).read_bytes()
                == (copies["lkm"] / "lib/modules" / release / f).read_bytes()
                for f in ("modules.dep", "modules.dep.bin", "modules.alias",
                          "modules.alias.bin", "modules.softdep", "modules.symbols",
                          "modules.symbols.bin", "modules.builtin.bin",
                          "modules.builtin.alias.bin", "modules.devname"))
            med = {t: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs),
                       max(r[2] for r in rs)) for t, rs in res.items()}
            print(f"tree {flavour} ({release}), {args.runs} runs each, outputs identical: {same}")
            for tool in ("kmod", "lkm"):
                w, c, m = med[tool]
                print(f"  {tool:5s} wall {w:6.3f} s   cpu {c:6.3f} s   "
                      f"peak RSS {m / 1024:7.1f} MiB")
            kw, kc, km = med["kmod"]
            lw, lc, lm = med["lkm"]
            print(f"  ratio lkm/kmod: wall {lw / kw:.2f}x   cpu {lc / kc:.2f}x   "
                  f"peak RSS {lm / km:.2f}x")
            for tool in ("kmod", "lkm"):
                shutil.rmtree(copies[tool])
    return 0


if __name__ == "__main__":
    sys.exit(main())
