"""Benchmark: running a small module's init in the virtual kernel (issue 10's goal: emulator
set-up + load + init under 50 ms with the kernel's BTF already parsed), and the import
cost of unicorn, which tools that never run code must not pay.

Per tree, the median of N runs of: a fresh kernel state and runtime (address space, kernel
data, the CPU emulator), load_module() of tests/modules/exec/lkm_exec_params.ko (checks,
layout, relocation against the runtime's symbols) and its init (printk through vsprintf).

    .venv/bin/python bench/exec.py [--runs N] [--tree 6.1|6.12]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "tests"))

from _util import trees  # noqa: E402

MODULE = "lkm_exec_params"


def import_cost() -> tuple[float, float, bool]:
    """(s to import unicorn, s to start `lkm lsmod`'s modules, unicorn imported by them)."""
    def run(code: str) -> float:
        best = 1e9
        for _ in range(3):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
            best = min(best, time.perf_counter() - t0)
        return best

    base = run("pass")
    uc = run("import unicorn") - base
    lsmod = ("import sys, lkm.cli.lsmod, lkm.cli.modinfo, lkm.kernel.virtual; "
             "sys.exit('unicorn' in sys.modules)")
    imported = subprocess.run([sys.executable, "-c", lsmod]).returncode != 0
    return uc, run(lsmod.replace("; sys.exit('unicorn' in sys.modules)", "")) - base, imported


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--tree", choices=["6.1", "6.12"], action="append")
    args = ap.parse_args()
    uc, tools, imported = import_cost()
    print(f"import unicorn: {uc * 1000:.0f} ms; lsmod/modinfo/virtual modules: "
          f"{tools * 1000:.0f} ms, unicorn imported: {'yes' if imported else 'no'}")
    rc = int(imported)

    from kbuild import build_modules
    from lkm.kernel.exec import calls
    from lkm.kernel.exec.state import ExecKernelState
    from lkm.kernel.layouts import layouts
    from lkm.kernel.module.main import load_module
    from lkm.kernel.printk import Printk
    from lkm.kernel.profile import load_cached

    for flavour, (root, release) in trees().items():
        if args.tree and flavour not in args.tree:
            continue
        profile = load_cached(root)
        layouts(profile)  # parsed once: the goal assumes it
        image = build_modules(release, exec_modules=True)[MODULE].read_bytes()
        import unicorn  # noqa: F401 - the import is measured above, not here

        setup, load, init, total = [], [], [], []
        lines = 0
        for _ in range(args.runs):
            t0 = time.perf_counter()
            k = ExecKernelState(profile)
            log = Printk(k.once)
            k.enter(log, "insmod")
            rt = k.runtime()
            rt.machine  # noqa: B018 - the emulator is made here
            t1 = time.perf_counter()
            spent = [0.0]
            real = calls.run_init

            def timed(rt_: object, mod: object, real: object = real,
                      spent: list[float] = spent) -> int:
                t = time.perf_counter()
                try:
                    return real(rt_, mod)  # type: ignore[operator,no-any-return]
                finally:
                    spent[0] += time.perf_counter() - t

            calls.run_init = timed  # type: ignore[assignment]
            try:
                load_module(k, image, "count=2", log=log)
            finally:
                calls.run_init = real
            t2 = time.perf_counter()
            setup.append(t1 - t0)
            init.append(spent[0])
            load.append(t2 - t1 - spent[0])
            total.append(t2 - t0)
            lines = len(log.records)
        med = statistics.median
        print(f"{flavour}: set-up {med(setup) * 1000:.1f} ms, load {med(load) * 1000:.1f} ms, "
              f"init {med(init) * 1000:.1f} ms: {med(total) * 1000:.1f} ms a run "
              f"(goal 50 ms; {lines} log lines)")
        rc |= med(total) > 0.050
    return rc


if __name__ == "__main__":
    sys.exit(main())
