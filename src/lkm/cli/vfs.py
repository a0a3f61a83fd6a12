"""``lkm cat PATH...`` and ``lkm write PATH VALUE``: the kernel's /proc and /sys files.

On a virtual kernel (--virtual DIR) the files are the virtual kernel's views; without
it they are the running kernel's.  Errors are printed as cat/sh print them:
``lkm cat: PATH: No such file or directory``.
"""

from __future__ import annotations

import os
import sys

CAT_USAGE = "usage: lkm cat PATH...\n"
WRITE_USAGE = "usage: lkm write PATH VALUE   (VALUE is written as given; add \\n yourself)\n"


def _backend(prog: str) -> object | None:
    from lkm.errors import LkmError
    from lkm.kernel.target import get_backend

    try:
        return get_backend()
    except LkmError as e:
        sys.stderr.write(f"lkm {prog}: {e}\n")
        return None


def _kernel_view(tool: str, path: str) -> bool:
    """Only the kernel's views are addressed: /proc and /sys paths (never another file)."""
    if path.startswith(("/proc/", "/sys/")) and "/../" not in path + "/":
        return True
    sys.stderr.write(f"lkm {tool}: {path}: not a /proc or /sys path\n")
    return False


def main(prog: str, argv: list[str]) -> int:
    if prog == "write":
        return _write(argv)
    return _cat(argv)


def _cat(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(CAT_USAGE)
        return 0 if argv else 1
    kernel = _backend("cat")
    if kernel is None:
        return 1
    from lkm.kernel.backend import KernelBackend

    assert isinstance(kernel, KernelBackend)
    rc = 0
    for path in argv:
        if not _kernel_view("cat", path):
            rc = 1
            continue
        try:
            text = kernel.read_text(path)
        except OSError as e:
            sys.stderr.write(f"lkm cat: {path}: {os.strerror(e.errno or 0)}\n")
            rc = 1
            continue
        sys.stdout.write(text)
    return rc


def _write(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] in ("-h", "--help"):
        sys.stdout.write(WRITE_USAGE)
        return 0 if argv[:1] in (["-h"], ["--help"]) else 1
    path, value = argv
    if not _kernel_view("write", path):
        return 1
    kernel = _backend("write")
    if kernel is None:
        return 1
    writer = getattr(kernel, "write_text", None)
    try:
        if writer is not None:
            writer(path, value)
        else:
            with open(path, "w") as f:
                f.write(value)
    except OSError as e:
        sys.stderr.write(f"lkm write: {path}: {os.strerror(e.errno or 0)}\n")
        return 1
    return 0
