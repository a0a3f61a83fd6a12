"""File system types (fs/filesystems.c): register_filesystem() appends a type to the list
/proc/filesystems prints ("nodev" unless FS_REQUIRES_DEV, a tab, the name); a name
already registered, or a type already linked, is -EBUSY.  The list starts with the types
Debian's kernel registers while booting."""

from __future__ import annotations

import errno
from typing import Any

from lkm.kernel.api.core import Kernel, err, kfunc, substate
from lkm.kernel.api.driver_base import read_ptr

FS_REQUIRES_DEV = 1
# built-in file systems of Debian's 6.1 and 6.12 kernels, in registration order
BUILTIN = ("sysfs", "tmpfs", "bdev", "proc", "cgroup", "cgroup2", "cpuset", "devtmpfs",
           "debugfs", "tracefs", "securityfs", "sockfs", "bpf", "pipefs", "ramfs",
           "hugetlbfs", "devpts", "mqueue", "pstore")


@substate("filesystems")
class FileSystems:
    """Types registered by modules: [address, name, requires a device]."""

    def __init__(self, k: Kernel | None = None) -> None:
        self.types: list[list[Any]] = []

    def to_json(self) -> list[list[Any]]:
        return self.types

    @classmethod
    def from_json(cls, k: Kernel | None, d: list[Any]) -> FileSystems:
        s = cls(k)
        s.types = [list(t) for t in d]
        return s


@kfunc()
def register_filesystem(k: Kernel, fs: int) -> int:
    """fs/filesystems.c."""
    s = k.sub(FileSystems)
    name = k.text(read_ptr(k, fs, "file_system_type", "name"))
    if read_ptr(k, fs, "file_system_type", "next"):
        return err(errno.EBUSY)
    if name in BUILTIN or any(t[1] == name for t in s.types):
        return err(errno.EBUSY)
    flags = k.mem.read_u32(fs + k.layouts.offsetof("file_system_type", "fs_flags"))
    s.types.append([fs, name, bool(flags & FS_REQUIRES_DEV)])
    return 0


@kfunc()
def unregister_filesystem(k: Kernel, fs: int) -> int:
    """fs/filesystems.c: -EINVAL for a type not registered."""
    s = k.sub(FileSystems)
    for t in s.types:
        if t[0] == fs:
            s.types.remove(t)
            return 0
    return err(errno.EINVAL)


def proc_filesystems(s: FileSystems | None) -> str:
    """/proc/filesystems."""
    rows = [(n, False) for n in BUILTIN]
    if s is not None:
        rows += [(t[1], bool(t[2])) for t in s.types]
    return "".join(f"{'' if dev else 'nodev'}\t{n}\n" for n, dev in rows)
