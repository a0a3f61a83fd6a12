#!/usr/bin/env python3
"""Fetch and prepare the test fixtures (cached outside the repository).

For each flavour (the meta-packages linux-image-amd64 -> 6.1, uncompressed and
signed; linux-image-6.12-amd64 -> 6.12, .ko.xz), find the real package through
the meta-package's dependency, `apt-get download` it and `dpkg -x` it into
$LKM_TEST_CACHE/trees/<package>/.  Beside it, <package>.kmod/ is a hard-linked
copy on which Debian's kmod `depmod -b` has been run: the reference indexes.

Prints one line per tree: FLAVOUR PATH RELEASE.  Idempotent.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("LKM_TEST_CACHE", Path.home() / ".cache" / "lkm-tests"))
FLAVOURS = {"6.1": "linux-image-amd64", "6.12": "linux-image-6.12-amd64"}


def real_package(meta: str) -> str:
    out = subprocess.run(["apt-cache", "depends", meta], capture_output=True, text=True).stdout
    for line in out.splitlines():
        line = line.strip()
        if line.startswith("Depends: linux-image-"):
            return line.split()[1]
    raise SystemExit(f"test-fixtures: no package behind {meta} (run apt-get update?)")


def fetch(meta: str) -> Path:
    pkg = real_package(meta)
    out = CACHE / "trees" / pkg
    if (out / "lib" / "modules").is_dir():
        return out
    with tempfile.TemporaryDirectory() as td:
        os.chmod(td, 0o755)  # let apt's sandbox user write the download
        subprocess.run(["apt-get", "download", pkg], cwd=td, check=True,
                       stdout=subprocess.DEVNULL)
        debs = list(Path(td).glob("*.deb"))
        partial = out.with_name(out.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        subprocess.run(["dpkg", "-x", str(debs[0]), str(partial)], check=True)
        partial.rename(out)
    return out


def release_of(tree: Path) -> str:
    return next((tree / "lib" / "modules").iterdir()).name


def kmod_reference(tree: Path, release: str) -> Path:
    ref = tree.with_name(tree.name + ".kmod")
    if (ref / "lib" / "modules" / release / "modules.dep.bin").is_file():
        return ref
    partial = ref.with_name(ref.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(["cp", "-al", str(tree), str(partial)], check=True)
    subprocess.run(["/sbin/depmod", "-b", str(partial), release], check=True)
    shutil.rmtree(ref, ignore_errors=True)
    partial.rename(ref)
    return ref


def main() -> int:
    wanted = sys.argv[1:] or list(FLAVOURS)
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / ".fixtures.lock", "w") as lock:  # parallel callers fetch one at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        for flavour in wanted:
            tree = fetch(FLAVOURS[flavour])
            release = release_of(tree)
            kmod_reference(tree, release)
            print(flavour, tree, release)
    return 0


if __name__ == "__main__":
    sys.exit(main())
