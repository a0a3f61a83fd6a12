#!/usr/bin/env python3
"""modprobe -a -D over every module of the Debian 6.1 tree: lkm against kmod's C.

Runs kmod and lkm alternately (the best of several runs each, wall time) on the
tree's kmod reference root and prints the ratio; the target is at most 3x.
Also checks that both print the same bytes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from _util import trees

ROOT = Path(__file__).resolve().parent.parent
LKM = ROOT / ".venv" / "bin" / "lkm"
RUNS = int(os.environ.get("BENCH_RUNS", "7"))
# Python as users run it: byte-compiled modules cached in __pycache__
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def tree61() -> tuple[Path, str]:
    """The 6.1 tree's kmod reference root and its release."""
    tree = trees().get("6.1")
    if tree is None:
        raise SystemExit("no 6.1 tree")
    path, release = tree
    return path.with_name(path.name + ".kmod"), release


def best(cmd: list[str]) -> tuple[float, bytes]:
    times = []
    out = b""
    for _ in range(RUNS):
        t0 = time.perf_counter()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=ENV)
        times.append(time.perf_counter() - t0)
        out = p.stdout
    return min(times), out


def main() -> int:
    kroot, release = tree61()
    moddir = kroot / "lib" / "modules" / release
    names = sorted(p.name.split(".")[0] for p in (moddir / "kernel").rglob("*.ko*"))
    args = ["-d", str(kroot), "-S", release, "-a", "-D", *names]
    lkm_cmd = [str(LKM), "modprobe", *args]
    kmod_cmd = ["/sbin/modprobe", *args]
    # alternate so that load from other processes hits both alike
    kt, lt = [], []
    kout = lout = b""
    for _ in range(2):
        t, kout = best(kmod_cmd)
        kt.append(t)
        t, lout = best(lkm_cmd)
        lt.append(t)
    k, lk = min(kt), min(lt)
    same = "identical" if kout == lout else "DIFFERENT"
    print(f"modprobe -a -D, {len(names)} modules of {release}: kmod {k * 1000:.1f} ms, "
          f"lkm {lk * 1000:.1f} ms, ratio {lk / k:.2f}x (target <= 3x); output {same}")
    return 0 if kout == lout else 1


if __name__ == "__main__":
    sys.exit(main())
