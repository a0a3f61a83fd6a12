"""Benchmark: lkm verify over every module of both trees, against their own vmlinuz keys.

Per tree: modules per second (one process, and --jobs processes), and where the time of
the one-process run goes: reading (and xz-decompressing) the file, parsing the PKCS#7,
hashing the module body, the public-key operation (RSA-4096 in 6.1, ECDSA P-384 in
6.12) and the rest.  Hashing plus public-key work is the floor any verifier pays.

    .venv/bin/python bench/verify.py [--runs N] [--tree 6.1|6.12] [--jobs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from _util import trees  # noqa: E402

from lkm import signing  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--tree", choices=["6.1", "6.12"], action="append")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = ap.parse_args()
    rc = 0
    for flavour, (root, release) in trees().items():
        if args.tree and flavour not in args.tree:
            continue
        t0 = time.perf_counter()
        ring = signing.Keyring.from_kernel(root / "boot" / f"vmlinuz-{release}")
        t_ring = time.perf_counter() - t0
        files = signing.module_files([root / "lib" / "modules" / release / "kernel"])
        walls, stats_runs = [], []
        for _ in range(args.runs):
            st = signing.VerifyStats()
            t0 = time.perf_counter()
            bad = sum(not v.ok for _p, v in signing.verify_files(files, ring, 1, st))
            walls.append(time.perf_counter() - t0)
            stats_runs.append(st)
            rc |= bad != 0
        par = []
        for _ in range(args.runs):
            t0 = time.perf_counter()
            list(signing.verify_files(files, ring, args.jobs))
            par.append(time.perf_counter() - t0)
        wall = statistics.median(walls)
        st = stats_runs[walls.index(wall)]
        other = wall - st.read - st.parse - st.hash - st.pubkey
        n = len(files)
        key = type(ring.keys[0].public_key).__name__.replace("PublicKey", "")
        print(f"{flavour}: {n} modules, key {key}, keyring from vmlinuz {t_ring:.2f} s")
        print(f"  1 process:  {wall:6.2f} s  {n / wall:7.0f} modules/s")
        print(f"  {args.jobs} processes: {statistics.median(par):6.2f} s  "
              f"{n / statistics.median(par):7.0f} modules/s")
        for name, t in (("read+decompress", st.read), ("parse PKCS#7", st.parse),
                        ("hash body", st.hash), ("public key", st.pubkey), ("other", other)):
            print(f"    {name:16s} {t:6.2f} s  {100 * t / wall:5.1f} %  "
                  f"{1e6 * t / n:7.1f} us/module")
        floor = st.hash + st.pubkey
        print(f"  floor (hash + public key): {floor:.2f} s = {100 * floor / wall:.0f} % of the "
              f"run; without reading: {100 * floor / (wall - st.read):.0f} %")
    return rc


if __name__ == "__main__":
    sys.exit(main())
