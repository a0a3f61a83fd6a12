"""Fuzz campaigns over lkm's in-process entry points (tests/fuzz/targets.py).

    nice -n 19 .venv/bin/python scripts/fuzz.py [TARGET...] [--count N | --seconds S]
        [--seed N] [--out DIR] [--memory MIB] [--atheris]

Each target runs in its own process (so its peak memory is its own) under an address
space cap; findings (unexpected exceptions, inputs over the time bound) are saved under
--out with their tracebacks, one per distinct crash site.  The figures are printed as a
table and written to DIR/summary.json.  --atheris runs coverage-guided instead (atheris
from PyPI, the "fuzz" extra), with the structure-aware mutators as its custom mutator.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "tests" / "fuzz"), str(ROOT / "tests")]


def _one(name: str, count: int | None, seconds: float | None, seed: int, out: str,
         memory: int) -> dict[str, object]:
    import harness
    from targets import TARGETS

    harness.limit_memory(memory)
    target = TARGETS[name]
    outdir = Path(out)

    def report(f: harness.Finding) -> None:
        path = harness.save(f, outdir)
        print(f"[{name}] finding {f.key}: {f.message[:160]} -> {path}", flush=True)

    def row(st: harness.Stats) -> dict[str, object]:
        return {"target": name, "inputs": st.inputs, "seconds": round(st.seconds, 1),
                "cpu_seconds": round(st.cpu_seconds, 1),
                "slowest": round(st.slowest, 3), "peak_rss_mib": round(st.peak_rss_mib, 1),
                "findings": {k: f.count for k, f in st.findings.items()},
                "mutator_errors": st.mutator_errors,
                "outcomes": dict(sorted(st.outcomes.items(), key=lambda kv: -kv[1]))}

    def progress(st: harness.Stats) -> None:
        outdir.mkdir(parents=True, exist_ok=True)
        (outdir / f"progress-{name}.json").write_text(json.dumps(row(st)) + "\n")

    try:
        st = harness.campaign(target, seed, count, seconds, report, progress)
    except Exception as e:  # (one target's failure must not lose the others)
        print(f"[{name}] campaign stopped: {type(e).__name__}: {e}", flush=True)
        return {"target": name, "inputs": 0, "seconds": 0, "cpu_seconds": 0, "slowest": 0,
                "peak_rss_mib": 0, "findings": {}, "error": f"{type(e).__name__}: {e}",
                "outcomes": {}}
    for f in st.findings.values():
        harness.save(f, outdir)
    progress(st)
    return row(st)


def _atheris(name: str, seed: int, count: int | None) -> None:
    """Coverage-guided: libFuzzer (atheris) over lkm's code only (instrumented as it is
    imported), the target's structure-aware mutators as the custom mutator."""
    import random

    import atheris  # type: ignore[import-untyped, import-not-found, unused-ignore]

    with atheris.instrument_imports(include=["lkm"]):
        import harness
        from targets import TARGETS

        target = TARGETS[name]
        rng = random.Random(seed)
        corpus = [target.make(rng) for _ in range(64)]
        for data in corpus[:8]:  # imports what the entry point uses, instrumented
            harness.run_one(target, data)

    def mutator(data: bytes, _max_size: int, s: int) -> bytes:
        r = random.Random(s)
        if r.random() < 0.3 or not data:
            return target.make(r)
        return _remutate(target.name, r, data, corpus)

    def test_one(data: bytes) -> None:
        f = harness.run_one(target, data)
        if f is not None:
            path = harness.save(f, ROOT / "fuzz-out")
            raise RuntimeError(f"{f.key}: {f.message} (input: {path})")

    args = [sys.argv[0], f"-seed={seed}", "-max_len=4194304", "-rss_limit_mb=3072"] + (
        [f"-runs={count}"] if count else [])
    atheris.Setup(args, test_one, custom_mutator=mutator)
    atheris.Fuzz()


def _remutate(name: str, rng: object, data: bytes, corpus: list[bytes]) -> bytes:
    import random

    from mutate import havoc, mutate_elf

    assert isinstance(rng, random.Random)
    if name in ("module", "depmod-read", "depmod"):
        return mutate_elf(rng, data, corpus[:4])
    return havoc(rng, data)


def _cli(count: int, seed: int, out: Path) -> int:
    import tempfile
    import time

    import cli_diff

    lkm = ROOT / ".venv" / "bin" / "lkm"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="lkm-fuzz-cli-") as work:
        st = cli_diff.campaign(count, seed, Path(work), str(lkm))
    d = out / "cli"
    d.mkdir(parents=True, exist_ok=True)
    for i, (data, detail) in enumerate(st.differs):
        (d / f"differs-{seed}-{i}.bin").write_bytes(data)
        (d / f"differs-{seed}-{i}.txt").write_text(detail + "\n")
        print(f"differs: {detail} -> {d}/differs-{seed}-{i}.bin")
    for i, (data, detail) in enumerate(st.stderr_samples):
        (d / f"stderr-{seed}-{i}.bin").write_bytes(data)
        (d / f"stderr-{seed}-{i}.txt").write_text(detail + "\n")
    print(f"cli: {st.mutants} mutants in {time.perf_counter() - t0:.0f} s: {st.same} the same "
          f"({st.stderr_differs} with other messages), {st.kmod_crashed} crashed kmod, "
          f"{st.gzip} gzip (not scanned by kmod 30), {len(st.differs)} differ")
    return 1 if st.differs else 0


def main() -> int:
    from targets import TARGETS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    ap.add_argument("targets", nargs="*", metavar="TARGET",
                    help=f"among: {', '.join(TARGETS)} (default: all)")
    ap.add_argument("--count", type=int, default=None)
    ap.add_argument("--seconds", type=float, default=None)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", default=str(ROOT / "fuzz-out"))
    ap.add_argument("--memory", type=int, default=3072, help="address space cap, MiB")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--atheris", action="store_true")
    ap.add_argument("--cli", type=int, default=0, metavar="N",
                    help="instead: N module mutants through lkm depmod and kmod 30's")
    a = ap.parse_args()
    names = a.targets or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        ap.error(f"unknown target {unknown[0]!r}")
    if a.atheris:
        _atheris(names[0], a.seed, a.count)
        return 0
    if a.cli:
        return _cli(a.cli, a.seed, Path(a.out))
    if a.count is None and a.seconds is None:
        a.count = 1000
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(a.jobs, maxtasksperchild=1) as pool:
        rows = pool.starmap(_one, [(n, a.count, a.seconds, a.seed + i, a.out, a.memory)
                                   for i, n in enumerate(names)], chunksize=1)
    print(f"{'target':14} {'inputs':>8} {'seconds':>8} {'CPU s':>8} {'slowest':>8} "
          f"{'peak MiB':>9} findings")
    for r in rows:
        print(f"{r['target']:14} {r['inputs']:>8} {r['seconds']:>8} {r['cpu_seconds']:>8} "
              f"{r['slowest']:>8} "
              f"{r['peak_rss_mib']:>9} {r['findings'] or '-'}")
        print(f"{'':14} outcomes: {r['outcomes']}")
    Path(a.out).mkdir(parents=True, exist_ok=True)
    summary = Path(a.out) / "summary.json"
    old = json.loads(summary.read_text()) if summary.is_file() else {}
    old.update({str(r["target"]): r for r in rows})
    summary.write_text(json.dumps(old, indent=1) + "\n")
    return 1 if any(r["findings"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
