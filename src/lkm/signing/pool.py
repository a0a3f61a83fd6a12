"""Verifying many modules: the files of a tree, checked by a pool of processes."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from lkm.signing.keyring import Keyring
from lkm.signing.verify import Verdict, VerifyStats, verify_file

MODULE_SUFFIXES = (".ko", ".ko.gz", ".ko.xz", ".ko.zst")
"""What a directory search takes for a module: every compression a kernel can load."""


def module_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The files given, with directories expanded to their modules (sorted)."""
    out: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*")
                              if f.name.endswith(MODULE_SUFFIXES) and f.is_file()))
        else:
            out.append(p)
    return out


_worker_ring: Keyring | None = None


def _init_worker(ders: list[bytes], digests: frozenset[str] | None) -> None:
    global _worker_ring
    _worker_ring = Keyring(ders, digests)


def _work(path: str) -> tuple[Verdict, VerifyStats]:
    assert _worker_ring is not None
    st = VerifyStats()
    return verify_file(path, _worker_ring, st), st


def verify_files(files: Sequence[str | os.PathLike[str]], keyring: Keyring,
                 jobs: int | None = None, stats: VerifyStats | None = None
                 ) -> Iterator[tuple[Path, Verdict]]:
    """verify_file over many files, in order; ``jobs`` processes (default: CPUs, 1 for few).

    Each worker process builds its own Keyring from the certificates (keys do not pickle).
    """
    paths = [Path(f) for f in files]
    if jobs is None:
        jobs = (os.cpu_count() or 1) if len(paths) >= 64 else 1
    if jobs <= 1:
        for p in paths:
            yield p, verify_file(p, keyring, stats)
        return
    import multiprocessing

    ctx = multiprocessing.get_context("fork" if hasattr(os, "fork") else "spawn")
    with ctx.Pool(jobs, initializer=_init_worker, initargs=(keyring.ders, keyring.digests)) as pool:
        chunk = max(1, min(64, len(paths) // (jobs * 8)))
        for p, (v, st) in zip(paths, pool.imap(_work, [str(p) for p in paths], chunk),
                              strict=True):
            if stats is not None:
                stats.merge(st)
            yield p, v
