"""Benchmark: modinfo over every module of both trees, lkm beside Debian's kmod 30.

Per tree, best of ``--runs``:
  kmod     /sbin/modinfo over every module, by path, ``--batch`` paths per call
  lkm cli  `lkm modinfo` on the same batches (byte-identical output)
  lkm lib  the library: ModuleFile.open + .modinfo + undefined symbols + exports +
           signature, one process, every module
The ratios are lkm time / kmod time (below 1.0: lkm is faster).

    .venv/bin/python bench/modinfo.py [--runs N] [--tree 6.1|6.12] [--batch N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from _util import trees  # noqa: E402

from lkm.module import ModuleFile  # noqa: E402

LKM = ROOT / ".venv" / "bin" / "lkm"
KMOD_MODINFO = "/sbin/modinfo"


def run_batches(cmd: list[str], paths: list[str], batch: int) -> float:
    """Wall time of running ``cmd + batch`` over every batch (output discarded)."""
    t0 = time.perf_counter()
    for i in range(0, len(paths), batch):
        subprocess.run(cmd + paths[i:i + batch], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0


def library_pass(paths: list[str]) -> tuple[float, int, int, int]:
    """(seconds, modinfo entries, undefined symbols, exports) for one pass."""
    n_info = n_undef = n_exp = 0
    t0 = time.perf_counter()
    for p in paths:
        mod = ModuleFile.open(p)
        n_info += len(mod.modinfo)
        n_undef += len(mod.undefined_symbols)
        n_exp += len(mod.exports)
        mod.signature  # noqa: B018 - parsed for the timing
        mod.close()
    return time.perf_counter() - t0, n_info, n_undef, n_exp


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tree", choices=["6.1", "6.12"], action="append")
    ap.add_argument("--batch", type=int, default=1000)
    args = ap.parse_args()
    print(f"{'tree':6} {'modules':>7} {'kmod s':>8} {'lkm cli s':>10} {'ratio':>6} "
          f"{'lkm lib s':>10} {'ratio':>6}  per module (kmod / cli / lib)")
    for flavour, (root, release) in trees().items():
        if args.tree and flavour not in args.tree:
            continue
        paths = sorted(str(p) for p in (root / "lib" / "modules" / release / "kernel")
                       .rglob("*.ko*") if p.is_file())
        kmod = min(run_batches([KMOD_MODINFO], paths, args.batch) for _ in range(args.runs))
        cli = min(run_batches([str(LKM), "modinfo"], paths, args.batch)
                  for _ in range(args.runs))
        lib_runs = [library_pass(paths) for _ in range(args.runs)]
        lib = min(r[0] for r in lib_runs)
        _, n_info, n_undef, n_exp = lib_runs[0]
        n = len(paths)
        print(f"{flavour:6} {n:7} {kmod:8.2f} {cli:10.2f} {cli / kmod:6.2f} {lib:10.2f} "
              f"{lib / kmod:6.2f}  {kmod / n * 1e3:.3f} / {cli / n * 1e3:.3f} / "
              f"{lib / n * 1e3:.3f} ms", flush=True)
        print(f"{'':6} library pass read {n_info} modinfo entries, {n_undef} undefined "
              f"symbols, {n_exp} exports")
    return 0


if __name__ == "__main__":
    sys.exit(main())
