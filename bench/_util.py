"""Helpers shared by the benchmarks (not a benchmark: bench/run.py skips it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def trees() -> dict[str, tuple[Path, str]]:
    """The fixture trees (scripts/test-fixtures.py): flavour -> (root, release)."""
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "test-fixtures.py")],
                         capture_output=True, text=True, check=True).stdout
    got = {}
    for line in out.splitlines():
        flavour, path, release = line.split()
        got[flavour] = (Path(path), release)
    return got
