"""Fetch a Debian linux-image package and unpack it into a kernel tree (``lkm vm --fetch``).

``apt-get download`` (the archive the machine's apt sources name; nothing is
installed) and ``dpkg -x`` into ``~/.cache/lkm/trees/<package>_<version>/``, which then
holds boot/vmlinuz-<release> and lib/modules/<release>/ as every lkm tool expects of
a tree.  A meta-package (linux-image-amd64, linux-image-6.12-amd64) is followed to
the image package it depends on.  A tree already unpacked is not fetched again.
"""

from __future__ import annotations

import errno as _errno
import os
import subprocess
import tempfile
from pathlib import Path

from lkm.errors import LkmError

MAX_META = 8  # meta-packages followed before giving up


class FetchError(LkmError):
    """The package could not be found, downloaded or unpacked."""


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lkm" / "trees"


def image_package(package: str) -> str:
    """The package holding the kernel: ``package``, or the linux-image-* package a
    meta-package depends on (followed through further meta-packages)."""
    for _ in range(MAX_META):
        deps = _run(["apt-cache", "depends", package], f"no package {package}")
        nxt = next((line.split()[1] for line in deps.splitlines()
                    if line.strip().startswith("Depends: linux-image-")), None)
        if nxt is None:
            return package
        package = nxt
    raise FetchError(f"{package}: more than {MAX_META} meta-packages deep")


def candidate_version(package: str) -> str:
    """The version apt would download (``apt-cache show`` of the candidate)."""
    show = _run(["apt-cache", "show", "--no-all-versions", package], f"no package {package}")
    version = next((line.split(None, 1)[1] for line in show.splitlines()
                    if line.startswith("Version:")), None)
    if version is None:
        raise FetchError(f"{package}: apt knows no version of it (run apt-get update?)")
    return version.strip()


def fetch(package: str, cache: Path | None = None) -> Path:
    """The unpacked tree of ``package`` (downloaded and unpacked when not cached)."""
    cache = cache or cache_dir()
    package = image_package(package)
    version = candidate_version(package)
    out = cache / f"{package}_{version.replace(':', '%3a')}"
    if any((out / "boot").glob("vmlinuz-*")):
        return out
    try:
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".fetch-", dir=cache) as td:
            os.chmod(td, 0o755)  # apt's download sandbox user (_apt) writes there
            _run(["apt-get", "download", f"{package}={version}"],
                 f"apt-get download {package} failed", cwd=td)
            debs = sorted(Path(td).glob("*.deb"))
            if not debs:
                raise FetchError(f"apt-get download {package}: no .deb file")
            tree = Path(td) / "tree"
            _run(["dpkg", "-x", str(debs[0]), str(tree)], f"dpkg -x {debs[0].name} failed")
            if not any((tree / "boot").glob("vmlinuz-*")):
                raise FetchError(f"{package}: no boot/vmlinuz-* in it: not a kernel image")
            try:
                tree.rename(out)
            except OSError as e:  # another fetch got there first
                if e.errno not in (_errno.EEXIST, _errno.ENOTEMPTY):
                    raise
    except OSError as e:
        raise FetchError(f"{e.filename or cache}: {e.strerror}") from e
    return out


def _run(cmd: list[str], what: str, cwd: str | None = None) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd)
    except FileNotFoundError:
        raise FetchError(f"{cmd[0]} not found: fetching needs Debian's apt and dpkg") from None
    lines = (p.stderr or "").strip().splitlines()
    errors = [line for line in lines if line.startswith("E: ")]
    if p.returncode != 0 or errors:
        why = (errors or lines or [f"exit status {p.returncode}"])[-1].removeprefix("E: ")
        raise FetchError(f"{what}: {why}")
    return p.stdout
