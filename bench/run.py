#!/usr/bin/env python3
"""Run every benchmark in bench/ (each prints its own ratios against kmod)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    wanted = set(sys.argv[1:])
    rc = 0
    for script in sorted(HERE.glob("*.py")):
        if script.name == "run.py" or script.name.startswith("_"):
            continue
        if wanted and script.stem not in wanted:
            continue
        print(f"== bench/{script.name}", flush=True)
        rc |= subprocess.run([sys.executable, str(script)]).returncode
    return rc


if __name__ == "__main__":
    sys.exit(main())
