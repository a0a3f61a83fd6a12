"""debugfs (fs/debugfs/inode.c, file.c): Debian builds it in, so creating entries works
whether it is mounted or not.

An entry is a ``struct dentry`` from the slab whose ``d_name.name`` and ``d_parent`` are
set (what ``%pd`` and module code read); the tree is kept in :class:`Debugfs`.  A name
already present in its directory is ERR_PTR(-EEXIST) with the kernel's message;
debugfs_remove() (debugfs_remove_recursive in 6.1) takes a whole subtree away.  The
value helpers (debugfs_create_u32...) are void in the kernel; they create the file.
"""

from __future__ import annotations

import errno
from typing import Any

from lkm.kernel.api.core import ERR_PTR, IS_ERR_VALUE, Kernel, kfunc, substate
from lkm.kernel.api.slab import slab


@substate("debugfs")
class Debugfs:
    """dentry address -> [name, parent dentry (0: the root), is a directory]."""

    def __init__(self, k: Kernel | None = None) -> None:
        self.entries: dict[int, list[Any]] = {}

    def to_json(self) -> list[Any]:
        return [[a, *v] for a, v in self.entries.items()]

    @classmethod
    def from_json(cls, k: Kernel | None, d: list[Any]) -> Debugfs:
        s = cls(k)
        s.entries = {int(v[0]): list(v[1:]) for v in d}
        return s

    def children(self, parent: int) -> list[int]:
        return [a for a, v in self.entries.items() if v[1] == parent]


def _create(k: Kernel, name: int, parent: int, is_dir: bool) -> int:
    s = k.sub(Debugfs)
    if IS_ERR_VALUE(parent):
        return parent
    text = k.text(name)
    for a in s.children(parent):
        if s.entries[a][0] == text:
            what = "Directory" if is_dir else "File"
            pname = s.entries[parent][0] if parent in s.entries else "(null)"
            k.log.err(f"debugfs: {what} '{text}' with parent '{pname}' already present!")
            return ERR_PTR(errno.EEXIST)
    lay = k.layouts
    sl = slab(k)
    d = sl.kmalloc(lay.sizeof("dentry"), 0)
    raw = text.encode("utf-8", "surrogateescape")
    s_addr = sl.kmalloc(len(raw) + 1, 0)
    k.mem.write(s_addr, raw + b"\0")
    qstr = d + lay.offsetof("dentry", "d_name")
    k.mem.write_u64(qstr + lay.offsetof("qstr", "name"), s_addr)
    k.mem.write_u32(qstr + lay.offsetof("qstr", "len"), len(raw))
    k.mem.write_u64(d + lay.offsetof("dentry", "d_parent"), parent or d)
    s.entries[d] = [text, parent, is_dir]
    return d


@kfunc()
def debugfs_create_dir(k: Kernel, name: int, parent: int) -> int:
    """fs/debugfs/inode.c."""
    return _create(k, name, parent, True)


@kfunc("debugfs_create_file_unsafe")
def debugfs_create_file(k: Kernel, name: int, mode: int, parent: int, data: int,
                        fops: int) -> int:
    return _create(k, name, parent, False)


@kfunc()
def debugfs_create_file_size(k: Kernel, name: int, mode: int, parent: int, data: int,
                             fops: int, file_size: int) -> int:
    return _create(k, name, parent, False)


@kfunc("debugfs_create_u16", "debugfs_create_u32", "debugfs_create_u64",
       "debugfs_create_x8", "debugfs_create_x16", "debugfs_create_x32", "debugfs_create_x64",
       "debugfs_create_size_t", "debugfs_create_atomic_t", "debugfs_create_bool",
       "debugfs_create_ulong", "debugfs_create_blob", "debugfs_create_u32_array",
       "debugfs_create_regset32", "debugfs_create_str", "debugfs_create_devm_seqfile")
def debugfs_create_u8(k: Kernel, name: int, mode: int, parent: int, value: int) -> int:
    return _create(k, name, parent, False)


@kfunc()
def debugfs_create_symlink(k: Kernel, name: int, parent: int, target: int) -> int:
    return _create(k, name, parent, False)


@kfunc("debugfs_remove_recursive")
def debugfs_remove(k: Kernel, dentry: int) -> None:
    """fs/debugfs/inode.c: the entry and all below it (NULL and ERR_PTR ignored)."""
    s = k.sub(Debugfs)
    if not dentry or IS_ERR_VALUE(dentry) or dentry not in s.entries:
        return
    todo = [dentry]
    while todo:
        d = todo.pop()
        todo += s.children(d)
        s.entries.pop(d, None)


@kfunc()
def debugfs_lookup(k: Kernel, name: int, parent: int) -> int:
    s = k.sub(Debugfs)
    text = k.text(name)
    for a in s.children(parent):
        if s.entries[a][0] == text:
            return a
    return 0


@kfunc()
def debugfs_lookup_and_remove(k: Kernel, name: int, parent: int) -> None:
    debugfs_remove(k, debugfs_lookup(k, name, parent))


@kfunc()
def debugfs_initialized(k: Kernel) -> int:
    return 1


@kfunc()
def debugfs_file_get(k: Kernel, dentry: int) -> int:
    return 0


@kfunc()
def debugfs_file_put(k: Kernel, dentry: int) -> None:
    return None
