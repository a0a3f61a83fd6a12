"""The /proc and /sys files a virtual kernel shows, read, listed and written.

/proc/modules is kernel/module/procfs.c's (:mod:`lkm.kernel.module.procfs`), /sys/module
kernel/module/sysfs.c's (:mod:`lkm.kernel.module.sysfs`); the few others the tools read
are here: /proc/cmdline, /proc/sys/kernel/tainted (kernel/panic.c), modules_disabled
(its sysctl: only 1 can be written, once), /sys/kernel/security/lockdown
(security/lockdown/lockdown.c).  Failures are OSError with the kernel's errno.
"""

from __future__ import annotations

import errno

from lkm.kernel import taint as T
from lkm.kernel.kernfs import kernfs_error
from lkm.kernel.module import procfs, sysfs
from lkm.kernel.module.state import KernelState
from lkm.kernel.params import kstrtoll, kstrtoull
from lkm.kernel.printk import Printk

LOCKDOWN = "/sys/kernel/security/lockdown"
LOCKDOWN_LEVELS = ("none", "integrity", "confidentiality")
_DIRECTORIES = ("/proc", "/sys", "/sys/module", "/proc/sys", "/proc/sys/kernel")


def normalize(path: str) -> str:
    """An absolute path without ".", ".." or repeated slashes."""
    out: list[str] = []
    for x in path.split("/"):
        if x == "..":
            if out:
                out.pop()
        elif x and x != ".":
            out.append(x)
    return "/" + "/".join(out)


def _parts(path: str) -> list[str]:
    return path.strip("/").split("/")


def read(k: KernelState, path: str) -> str:
    """The text of a /proc or /sys file (``path`` normalized)."""
    if path == "/proc/modules":
        return procfs.proc_modules(k)
    if path == "/proc/sys/kernel/tainted":
        return f"{k.tainted}\n"
    if path == "/proc/cmdline":
        return k.cmdline + "\n"
    if path == "/proc/sys/kernel/modules_disabled":
        return f"{int(k.modules_disabled)}\n"
    if path == LOCKDOWN and k.profile.enabled("SECURITY_LOCKDOWN_LSM"):
        return " ".join(f"[{n}]" if i == k.lockdown else n
                        for i, n in enumerate(LOCKDOWN_LEVELS)) + "\n"
    parts = _parts(path)
    if parts[:2] == ["sys", "module"]:
        text = sysfs.read(k, parts, path)
        if text is not None:
            return text
    if path in _DIRECTORIES:
        raise kernfs_error(errno.EISDIR, path)
    raise kernfs_error(errno.ENOENT, path)


def listdir(k: KernelState, path: str) -> list[str]:
    """The entries of a /sys directory, in readdir order."""
    parts = _parts(path)
    if parts[:2] == ["sys", "module"]:
        names = sysfs.listdir(k, parts, path)
        if names is not None:
            return names
    raise kernfs_error(errno.ENOENT, path)


def write(k: KernelState, path: str, value: str, log: Printk) -> None:
    """A write(2) to a /proc or /sys file, validated as the kernel does."""
    from lkm.kernel.exec.state import ExecKernelState  # files of running code (watchdog)

    if isinstance(k, ExecKernelState) and k.proc_write(path, value):
        return
    if path == LOCKDOWN and k.profile.enabled("SECURITY_LOCKDOWN_LSM"):
        _write_lockdown(k, path, value, log)
        return
    if path == "/proc/sys/kernel/modules_disabled":
        # proc_dointvec_minmax with min = max = 1: only "1" is accepted, for good
        rv, v = kstrtoll(value.strip(), 10)
        if rv or v != 1:
            raise kernfs_error(errno.EINVAL, path)
        k.modules_disabled = True
        return
    if path == "/proc/sys/kernel/tainted":
        rv, mask = kstrtoull(value.strip(), 10)
        if rv:
            raise kernfs_error(errno.EINVAL, path)
        for i in range(len(T.TAINT_FLAGS)):
            if mask >> i & 1:
                k.add_taint(i, log)
        return
    parts = _parts(path)
    if parts[:2] == ["sys", "module"] and sysfs.write(k, parts, path, value, log):
        return
    read(k, path)  # ENOENT, EISDIR, ... as the file's read would
    raise kernfs_error(errno.EACCES, path)


def _write_lockdown(k: KernelState, path: str, value: str, log: Printk) -> None:
    """lockdown_write(): a level can be raised, never lowered."""
    state = value[:-1] if value.endswith("\n") else value
    err = errno.EINVAL
    for i, n in enumerate(LOCKDOWN_LEVELS):
        if state == n:
            if k.lockdown >= i:
                err = errno.EPERM
            else:
                k.lockdown = i
                log.notice("Kernel is locked down from securityfs; see man kernel_lockdown.7")
                err = 0
    if err:
        raise kernfs_error(err, path)
