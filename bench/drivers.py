"""Measure: every module's init in the virtual kernel, its dependencies loaded first (as
modprobe does), one fresh virtual kernel per module.

Counts: init returned 0 / returned an error (which) / faulted (oops, killed) / stopped at an
unimplemented function (the top missing ones, by modules blocked) / a dependency failed /
the loader refused it.

    .venv/bin/python bench/drivers.py [--tree 6.1|6.12] [--sample N] [--top 20] [--only NAME]
"""

from __future__ import annotations

import argparse
import collections
import errno
import os
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from _util import trees  # noqa: E402


def read_deps(moddir: Path) -> dict[str, list[str]]:
    """modules.dep: module path -> its dependencies' paths (load order: last first)."""
    out = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        mod, _, deps = line.partition(":")
        out[mod] = deps.split()
    return out


def name_of(path: str) -> str:
    return os.path.basename(path).split(".ko")[0].replace("-", "_")


def run_one(profile: object, moddir: Path, chain: list[str]) -> tuple[str, str]:
    """(outcome, detail) of loading ``chain`` (dependencies first, the module last)."""
    from lkm.compress import read_module
    from lkm.errors import KernelError, ProcessKilled
    from lkm.kernel.exec.state import ExecKernelState
    from lkm.kernel.module.main import load_module
    from lkm.kernel.printk import Printk

    k = ExecKernelState(profile)  # type: ignore[arg-type]
    for i, rel in enumerate(chain):
        last = i == len(chain) - 1
        image = bytes(read_module(moddir / rel)[0])
        log = Printk(k.once)
        k.enter(log, "modprobe")
        try:
            load_module(k, image, "", comm="modprobe", log=log)
        except KernelError as e:
            miss = k.exec_error
            who = "" if last else f"dep {name_of(rel)}: "
            if miss is not None and e.errno == errno.ENOSYS:
                return ("missing" if last else "dep-missing", miss.name)
            code = errno.errorcode.get(e.errno or 0, str(e.errno))
            return ("error" if last else "dep-error", who + code)
        except ProcessKilled as e:
            return ("fault" if last else "dep-fault", _fault_detail(k, log, str(e)))
        except Exception as e:
            return ("crash" if last else "dep-crash", f"{type(e).__name__}: {e}"[:100])
    return ("ok", "")


def _fault_detail(k: object, log: object, text: str) -> str:
    """The first oops line; a read of an unimplemented data symbol named as such."""
    import re

    lines = [r[1] for r in getattr(log, "records", [])]
    for line in lines:
        m = re.search(r"page fault for address: ([0-9a-f]+)", line)
        if m:
            rt = getattr(k, "_rt", None)
            addr = int(m.group(1), 16)
            names = getattr(rt, "names", {})
            for a in (addr, addr & ~0xF, addr & ~0x1F, addr & ~0x3F):
                if a in names:
                    return f"data {names[a]}"
            return line[:80]
        if "BUG" in line or "general protection" in line or "invalid opcode" in line:
            return line[:80]
    return text.splitlines()[0][:80]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tree", choices=["6.1", "6.12"], default="6.1")
    ap.add_argument("--sample", type=int, default=0, help="a fixed random sample of N modules")
    ap.add_argument("--top", type=int, default=20)
    ap.add_argument("--only", action="append")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()
    from lkm.kernel.profile import load_cached

    root, release = trees()[args.tree]
    profile = load_cached(root)
    kmod_root = Path(str(root) + ".kmod")
    moddir = kmod_root / "lib" / "modules" / release
    deps = read_deps(moddir)
    mods = sorted(deps)
    if args.only:
        mods = [m for m in mods if name_of(m) in args.only]
    elif args.sample:
        mods = sorted(random.Random(12).sample(mods, args.sample))
    counts: collections.Counter[str] = collections.Counter()
    details: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    t0 = time.perf_counter()
    for m in mods:
        chain = [*reversed(deps[m]), m]
        outcome, detail = run_one(profile, moddir, chain)
        counts[outcome] += 1
        details[outcome][detail] += 1
        if args.verbose:
            print(f"{name_of(m)}: {outcome} {detail}", flush=True)
    dt = time.perf_counter() - t0
    print(f"{args.tree}: {len(mods)} modules in {dt:.0f} s")
    for outcome, n in counts.most_common():
        print(f"  {outcome}: {n}")
        if outcome in ("error", "missing", "fault", "crash", "dep-missing", "dep-fault"):
            for d, c in details[outcome].most_common(args.top):
                print(f"      {c:5d} {d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
