"""Benchmark: lkm depmod against kmod's /sbin/depmod on hard-linked copies of both trees.

Each round runs both tools on their own ``cp -al`` copy of a tree, alternating which
goes first.  Prints, per tree, the median wall time, median CPU time (user + sys,
children included), peak RSS (the largest process, wait4's ru_maxrss; and the peak
of the summed RSS of the whole process tree, sampled) and the lkm/kmod ratios.
lkm runs with its byte-code cache enabled, as an installed lkm has.  lkm uses two
processes: on a machine whose other core is busy, wall ratios show it.

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
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from _util import trees  # noqa: E402

LKM = ROOT / ".venv" / "bin" / "lkm"
KMOD = "/sbin/depmod"


_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def _tree_rss(root: int, old: set[int]) -> int:
    """Sum of the resident sizes (KiB) of ``root`` and its descendants (processes not
    in ``old``, the ones that existed before)."""
    parent: dict[int, int] = {}
    rss: dict[int, int] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) in old:
            continue
        pid = int(d)
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
            with open(f"/proc/{d}/statm") as f:
                rss[pid] = int(f.read().split()[1]) * _PAGE_KIB
        except (OSError, ValueError, IndexError):
            continue
        parent[pid] = int(stat.rsplit(")", 1)[1].split()[1])
    total = 0
    for pid, kib in rss.items():
        p = pid
        while p and p != root and p in parent:
            p = parent[p]
        if p == root:
            total += kib
    return total


def run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, int, int, int]:
    """(wall s, cpu s, peak RSS KiB of any one process, peak summed RSS KiB of the process
    tree (sampled every 10 ms), rc) of ``cmd``."""
    old = {int(d) for d in os.listdir("/proc") if d.isdigit()}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    peak = [0]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak[0] = max(peak[0], _tree_rss(proc.pid, old))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _pid, status, ru = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    sampler.join()
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.stderr.write(err.decode(errors="replace"))
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss, peak[0], proc.returncode


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
            res: dict[str, list[tuple[float, float, int, int, int]]] = {"kmod": [], "lkm": []}
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
                       max(r[2] for r in rs), max(r[3] for r in rs)) for t, rs in res.items()}
            print(f"tree {flavour} ({release}), {args.runs} runs each, outputs identical: {same}")
            for tool in ("kmod", "lkm"):
                w, c, m, t = med[tool]
                print(f"  {tool:5s} wall {w:6.3f} s   cpu {c:6.3f} s   "
                      f"peak RSS {m / 1024:6.1f} MiB (largest process), "
                      f"{t / 1024:6.1f} MiB (all processes)")
            kw, kc, km, kt = med["kmod"]
            lw, lc, lm, lt = med["lkm"]
            print(f"  ratio lkm/kmod: wall {lw / kw:.2f}x   cpu {lc / kc:.2f}x   "
                  f"peak RSS {lm / km:.2f}x (largest), {lt / max(kt, 1):.2f}x (all)")
            for tool in ("kmod", "lkm"):
                shutil.rmtree(copies[tool])
    return 0


if __name__ == "__main__":
    sys.exit(main())
