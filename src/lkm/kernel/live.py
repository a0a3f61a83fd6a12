"""The running kernel: finit_module/init_module/delete_module through ctypes, real /proc and /sys.

The syscalls are made with libc's ``syscall()`` and the architecture's numbers
(glibc has no finit_module wrapper before 2.36, and none of the three is in
every libc), so no compiler or helper binary is needed.  Failures raise
:class:`lkm.errors.KernelError` with the errno the kernel returned.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from lkm.errors import KernelError
from lkm.kernel.backend import KernelBackend
from lkm.kernel.uapi import O_NONBLOCK

# (init_module, delete_module, finit_module) by machine (uname -m)
SYSCALLS: dict[str, tuple[int, int, int]] = {
    "x86_64": (175, 176, 313),
    "i386": (128, 129, 350),
    "i686": (128, 129, 350),
    "aarch64": (105, 106, 273),
    "arm64": (105, 106, 273),
    "riscv64": (105, 106, 273),
    "loongarch64": (105, 106, 273),
    "armv7l": (128, 129, 379),
    "armv6l": (128, 129, 379),
    "ppc64le": (128, 129, 353),
    "ppc64": (128, 129, 353),
    "ppc": (128, 129, 353),
    "s390x": (128, 129, 344),
    "mips64": (5168, 5169, 5307),
}

_syscall_fn: Any = None


def _syscall() -> Any:
    """libc's syscall(), loaded on first use (ctypes is not imported before)."""
    global _syscall_fn
    if _syscall_fn is None:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.syscall
        fn.restype = ctypes.c_long
        _syscall_fn = fn
    return _syscall_fn


def syscall_numbers(machine: str | None = None) -> tuple[int, int, int]:
    """(init_module, delete_module, finit_module) numbers of ``machine`` (default: this one)."""
    m = machine or os.uname().machine
    try:
        return SYSCALLS[m]
    except KeyError:
        raise KernelError(errno.ENOSYS, f"module syscalls of {m} are not known") from None


def _call(nr: int, *args: object) -> None:
    import ctypes

    fn = _syscall()
    ctypes.set_errno(0)
    rc = fn(ctypes.c_long(nr), *args)
    if rc < 0:
        err = ctypes.get_errno() or errno.EINVAL
        raise KernelError(err)


class LiveKernel(KernelBackend):
    """The kernel this process runs on."""

    def __init__(self, machine: str | None = None) -> None:
        self.machine = machine or os.uname().machine

    # -- syscalls --------------------------------------------------------------
    def finit_module(self, path: str, params: str, flags: int = 0) -> None:
        import ctypes

        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            nr = syscall_numbers(self.machine)[2]
            _call(nr, ctypes.c_int(fd), ctypes.c_char_p(_enc(params)), ctypes.c_int(flags))
        finally:
            os.close(fd)

    def init_module(self, image: bytes, params: str) -> None:
        import ctypes

        nr = syscall_numbers(self.machine)[0]
        buf = ctypes.create_string_buffer(bytes(image), len(image))
        _call(nr, buf, ctypes.c_ulong(len(image)), ctypes.c_char_p(_enc(params)))

    def delete_module(self, name: str, flags: int = O_NONBLOCK) -> None:
        import ctypes

        nr = syscall_numbers(self.machine)[1]
        _call(nr, ctypes.c_char_p(_enc(name)), ctypes.c_uint(flags))

    # -- views -----------------------------------------------------------------
    def read_text(self, path: str) -> str:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "surrogateescape")

    def list_dir(self, path: str) -> list[str]:
        return os.listdir(path)

    def exists(self, path: str) -> bool:
        return os.path.exists(path)

    def release(self) -> str:
        return os.uname().release


def _enc(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")
