"""/proc entries a module creates (fs/proc/generic.c, fs/proc/inode.c, fs/proc/proc_net.c's
siblings): proc_create and friends, proc_mkdir, proc_remove/remove_proc_entry, and the
system calls that reach them (proc_reg_open/read/write/release).

An entry is kept by path (``/proc/lkm_exec/items``) with what it was created with: a
module's ``struct proc_ops`` (its fields by the BTF), a ``struct seq_operations``
(proc_create_seq), or a show function (proc_create_single).  ``proc_create`` returns a
``struct proc_dir_entry`` in memory whose ``data`` is the entry's data (pde_data()).
Reading a file opens it (a ``struct file`` and the ``struct inode`` of a ``struct
proc_inode``), reads until EOF into the reading process's buffer, and releases it, each
through the module's own functions; writing calls its proc_write (-EIO without one).
"""

from __future__ import annotations

import errno
import os
from typing import Any

from lkm.kernel.api.core import Kernel, kfunc, signed, substate
from lkm.kernel.api.seq_file import (
    USER_BUF_SIZE,
    _kfree,
    _kzalloc,
    cat,
    copy_out,
    file_field,
    invoke,
    read_iter,
    user_buffer,
    write_once,
)

S_IFDIR, S_IFREG = 0o040000, 0o100000
S_IRUGO, S_IXUGO = 0o444, 0o111
FMODE_READ, FMODE_WRITE = 1, 2


@substate("procfs")
class Procfs:
    """The entries under /proc that modules made: path -> its fields."""

    def __init__(self, k: Kernel) -> None:
        self.entries: dict[str, dict[str, Any]] = {}

    def to_json(self) -> dict[str, Any]:
        return {"entries": self.entries}

    @classmethod
    def from_json(cls, k: Kernel, d: dict[str, Any]) -> Procfs:
        s = cls(k)
        s.entries = {p: dict(e) for p, e in d["entries"].items()}
        return s

    def path_of(self, pde: int) -> str | None:
        return next((p for p, e in self.entries.items() if e["pde"] == pde), None)

    def children(self, path: str) -> list[str]:
        return [p for p in self.entries if p.rsplit("/", 1)[0] == path]


def procfs(k: Kernel) -> Procfs:
    return k.sub(Procfs)


def _parent_path(k: Kernel, parent: int) -> str | None:
    return "/proc" if not parent else procfs(k).path_of(parent)


def _new(k: Kernel, name: int, mode: int, parent: int, kind: str, data: int,
         **fields: int) -> int:
    """proc_create_reg()/proc_mkdir_data() + proc_register(): the entry, or NULL."""
    base = _parent_path(k, parent)
    if base is None:
        return 0
    text = k.text(name)
    parts = text.split("/")
    path = base
    for p in parts[:-1]:  # xlate_proc_name(): "driver/foo" inside /proc/driver
        path = f"{path}/{p}"
        if procfs(k).entries.get(path, {}).get("kind") != "dir":
            return 0
    leaf = parts[-1]
    if not leaf or leaf in (".", ".."):
        return 0
    path = f"{path}/{leaf}"
    if path in procfs(k).entries:
        k.log.warn(f"proc_dir_entry '{path[6:].rsplit('/', 1)[0] or '/proc'}/{leaf}' "
                   "already registered")
        return 0
    if kind == "dir":
        mode = S_IFDIR | ((mode & 0o7777) or (S_IRUGO | S_IXUGO))
    else:
        mode = S_IFREG | ((mode & 0o7777) or S_IRUGO)
    lay = k.layouts
    pde = _kzalloc(k, lay.sizeof("proc_dir_entry"))
    k.mem.write_u64(pde + lay.offsetof("proc_dir_entry", "data"), data)
    k.mem.write_u16(pde + lay.offsetof("proc_dir_entry", "mode"), mode)
    procfs(k).entries[path] = {"kind": kind, "mode": mode, "pde": pde, "data": data,
                               "owner": _owner(k), **fields}
    return pde


def _owner(k: Kernel) -> str:
    """The module whose code is calling (the return address's module)."""
    try:
        found = k.lookup(k.caller)
    except Exception:
        return ""
    return (found[3] or "") if found is not None else ""


@kfunc()
def proc_create_data(k: Kernel, name: int, mode: int, parent: int, proc_ops: int,
                     data: int) -> int:
    return _new(k, name, mode, parent, "ops", data, ops=proc_ops)


@kfunc()
def proc_create(k: Kernel, name: int, mode: int, parent: int, proc_ops: int) -> int:
    return _new(k, name, mode, parent, "ops", 0, ops=proc_ops)


@kfunc()
def proc_create_seq_private(k: Kernel, name: int, mode: int, parent: int, ops: int,
                            state_size: int, data: int) -> int:
    return _new(k, name, mode, parent, "seq", data, seq_ops=ops, state_size=state_size)


@kfunc()
def proc_create_single_data(k: Kernel, name: int, mode: int, parent: int, show: int,
                            data: int) -> int:
    return _new(k, name, mode, parent, "single", data, show=show)


@kfunc()
def proc_mkdir_data(k: Kernel, name: int, mode: int, parent: int, data: int) -> int:
    return _new(k, name, mode, parent, "dir", data)


@kfunc()
def proc_mkdir_mode(k: Kernel, name: int, mode: int, parent: int) -> int:
    return _new(k, name, mode, parent, "dir", 0)


@kfunc()
def proc_mkdir(k: Kernel, name: int, parent: int) -> int:
    return _new(k, name, 0, parent, "dir", 0)


@kfunc()
def proc_set_size(k: Kernel, de: int, size: int) -> None:
    return None


@kfunc()
def proc_set_user(k: Kernel, de: int, uid: int, gid: int) -> None:
    return None


@kfunc()
def pde_data(k: Kernel, inode: int) -> int:
    """PDE(inode)->data (6.1 exports it as a function)."""
    return k.mem.read_u64(inode + k.layouts.offsetof("inode", "i_private"))


@kfunc("PDE_DATA")
def _pde_data_old(k: Kernel, inode: int) -> int:
    return pde_data(k, inode)


def _remove_tree(k: Kernel, path: str) -> None:
    st = procfs(k)
    for p in sorted((p for p in st.entries if p == path or p.startswith(path + "/")),
                    reverse=True):
        _kfree(k, st.entries.pop(p)["pde"])


@kfunc("proc_remove")
def proc_remove(k: Kernel, de: int) -> None:
    """proc_remove(): the entry and everything below it."""
    path = procfs(k).path_of(de) if de else None
    if path is not None:
        _remove_tree(k, path)


def _named(k: Kernel, name: int, parent: int) -> str | None:
    base = _parent_path(k, parent)
    return None if base is None else f"{base}/{k.text(name)}"


@kfunc()
def remove_proc_entry(k: Kernel, name: int, parent: int) -> None:
    path = _named(k, name, parent)
    st = procfs(k)
    if path is None or path not in st.entries:
        k.log.warn(f"name '{k.text(name)}'")
        return
    kids = st.children(path)
    if kids:
        k.log.warn(f"remove_proc_entry: removing non-empty directory '{path[6:]}', "
                   f"leaking at least '{kids[0].rsplit('/', 1)[1]}'")
    _kfree(k, st.entries.pop(path)["pde"])


@kfunc()
def remove_proc_subtree(k: Kernel, name: int, parent: int) -> int:
    path = _named(k, name, parent)
    if path is None or path not in procfs(k).entries:
        return (-errno.ENOENT) & 0xFFFFFFFF
    _remove_tree(k, path)
    return 0


# -- the system calls ----------------------------------------------------------------------------

def _oserror(e: int, path: str) -> OSError:
    return OSError(e, os.strerror(e), path)


class OpenFile:
    """An open /proc file: its struct file and inode, released by :meth:`close`."""

    def __init__(self, k: Kernel, path: str, e: dict[str, Any], fmode: int) -> None:
        lay = k.layouts
        self.k, self.path, self.e = k, path, e
        self.pi = _kzalloc(k, lay.sizeof("proc_inode"))
        self.inode = self.pi + lay.offsetof("proc_inode", "vfs_inode")
        k.mem.write_u64(self.pi + lay.offsetof("proc_inode", "pde"), e["pde"])
        k.mem.write_u64(self.inode + lay.offsetof("inode", "i_private"), e["data"])
        k.mem.write_u16(self.inode + lay.offsetof("inode", "i_mode"), e["mode"])
        self.file = _kzalloc(k, lay.sizeof("file"))
        k.mem.write_u64(file_field(k, self.file, "f_inode"), self.inode)
        k.mem.write_u32(file_field(k, self.file, "f_mode"), fmode)
        self.ppos = _kzalloc(k, 8)

    def op(self, name: str) -> int:
        if self.e["kind"] != "ops":
            return 0
        return self.k.mem.read_u64(self.e["ops"] + self.k.layouts.offsetof("proc_ops", name))

    def open(self) -> None:
        from lkm.kernel.api import seq_file as sf

        k, e, f = self.k, self.e, self.file
        if e["kind"] == "single":
            rc = sf.single_open(k, f, e["show"], e["data"])
        elif e["kind"] == "seq":
            if e["state_size"]:
                rc = sf.seq_open_private(k, f, e["seq_ops"], e["state_size"])
            else:
                rc = sf.seq_open(k, f, e["seq_ops"])
        else:
            fn = self.op("proc_open")
            rc = signed(invoke(k, fn, [self.inode, f]), 32) if fn else 0
        if rc < 0:
            self._free()
            raise _oserror(-rc, self.path)

    def read(self, count: int) -> bytes:
        """One read(2) of ``count`` bytes at the file's position."""
        k = self.k
        ubuf = user_buffer(k)
        count = min(count, USER_BUF_SIZE)
        fn_iter = self.op("proc_read_iter")
        fn = self.op("proc_read")
        if self.e["kind"] != "ops" or (fn_iter and k.rt.names.get(fn_iter) == "seq_read_iter"):
            m = k.mem.read_u64(file_field(k, self.file, "private_data"))
            n, pos = read_iter(k, m, ubuf, count, k.mem.read_u64(self.ppos))
            k.mem.write_u64(self.ppos, pos)
        elif fn:
            n = signed(invoke(k, fn, [self.file, ubuf, count, self.ppos]))
        else:
            n = -errno.EIO
        if n < 0:
            raise _oserror(-n, self.path)
        return k.mem.read(ubuf, n)

    def write(self, data: bytes) -> int:
        k = self.k
        fn = self.op("proc_write")
        if not fn:
            raise _oserror(errno.EIO, self.path)
        ubuf = user_buffer(k)
        data = data[:USER_BUF_SIZE]
        copy_out(k, ubuf, data)
        n = signed(invoke(k, fn, [self.file, ubuf, len(data), self.ppos]))
        if n < 0:
            raise _oserror(-n, self.path)
        return n

    def close(self) -> None:
        from lkm.kernel.api import seq_file as sf

        k, e = self.k, self.e
        if e["kind"] == "single":
            sf.single_release(k, self.inode, self.file)
        elif e["kind"] == "seq":
            (sf.seq_release_private if e["state_size"] else sf.seq_release)(
                k, self.inode, self.file)
        else:
            fn = self.op("proc_release")
            if fn:
                invoke(k, fn, [self.inode, self.file])
        self._free()

    def _free(self) -> None:
        for a in (self.file, self.pi, self.ppos):
            _kfree(self.k, a)


def open_entry(k: Kernel, path: str, fmode: int = FMODE_READ) -> OpenFile:
    e = procfs(k).entries.get(path)
    if e is None:
        raise _oserror(errno.ENOENT, path)
    if e["kind"] == "dir":
        raise _oserror(errno.EISDIR, path)
    f = OpenFile(k, path, e, fmode)
    f.open()
    return f


def read_entry(k: Kernel, path: str) -> bytes:
    """cat PATH: open, read until EOF, release."""
    return cat(open_entry(k, path))


def write_entry(k: Kernel, path: str, data: bytes) -> int:
    """echo VALUE > PATH: open for writing, one write(2), release."""
    return write_once(open_entry(k, path, FMODE_WRITE), data)


def list_entries(k: Kernel, path: str) -> list[str] | None:
    """The names in a directory a module made (None: not one)."""
    st = procfs(k)
    if path != "/proc" and st.entries.get(path, {}).get("kind") != "dir":
        return None
    return [p.rsplit("/", 1)[1] for p in st.children(path)]


# -- the virtual kernel's files ------------------------------------------------------------------

def _kernel_of(kstate: Any) -> Kernel | None:
    """The running kernel of a virtual kernel's state, if module code has run in it."""
    from lkm.kernel.exec.state import ExecKernelState

    if not isinstance(kstate, ExecKernelState) or kstate.cannot_run is not None:
        return None
    if not kstate.exec_generation and kstate._rt is None:
        return None
    from lkm.kernel.exec import calls

    rt = kstate.runtime()
    calls.enter(rt, "proc")
    return rt.kernel


def read_file(kstate: Any, path: str) -> str | None:
    """The text of a module's /proc file (None: no such entry here)."""
    k = _kernel_of(kstate)
    if k is None or path not in procfs(k).entries:
        return None
    return read_entry(k, path).decode("utf-8", "surrogateescape")


def write_file(kstate: Any, path: str, value: str) -> bool:
    k = _kernel_of(kstate)
    if k is None or path not in procfs(k).entries:
        return False
    write_entry(k, path, value.encode("utf-8", "surrogateescape"))
    return True


def listdir(kstate: Any, path: str) -> list[str] | None:
    k = _kernel_of(kstate)
    return None if k is None else list_entries(k, path)
