"""Kobjects and sysfs attributes of modules (lib/kobject.c kobject_create_and_add,
fs/sysfs/file.c, fs/sysfs/group.c, kobj_sysfs_ops' kobj_attr_show/kobj_attr_store).

A kobject made by kobject_create_and_add() is a directory: under /sys/kernel for
``kernel_kobj``, under /sys/module/M for a module's ``mkobj.kobj``, under another such
kobject, or /sys/NAME for NULL.  Its attributes are ``struct kobj_attribute`` (the
``struct attribute`` first, then show and store): reading one calls show(kobj, attr, buf)
with a page, writing calls store(kobj, attr, buf, count) with the written bytes
(NUL-terminated, as kernfs gives them); a file without store, or without a write bit in
its mode, refuses the write with EACCES.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from lkm.kernel.api.core import Kernel, err, kdata, kfunc, signed, substate
from lkm.kernel.api.seq_file import _kfree, _kzalloc, invoke

PAGE_SIZE = 4096
KOBJECT_SIZE = 64


@substate("sysfs_attr")
class SysfsAttrs:
    """kobject address -> its directory; directory -> {name: (attribute, kobject)}."""

    def __init__(self, k: Kernel) -> None:
        self.dirs: dict[str, str] = {}
        self.files: dict[str, list[int]] = {}  # path -> [attribute, kobject]

    def to_json(self) -> dict[str, Any]:
        return {"dirs": self.dirs, "files": self.files}

    @classmethod
    def from_json(cls, k: Kernel, d: dict[str, Any]) -> SysfsAttrs:
        s = cls(k)
        s.dirs, s.files = dict(d["dirs"]), {p: list(v) for p, v in d["files"].items()}
        return s


def attrs(k: Kernel) -> SysfsAttrs:
    return k.sub(SysfsAttrs)


@kdata("kernel_kobj", 8)
def _kernel_kobj(k: Kernel, addr: int) -> None:
    obj = k.rt.kdata_alloc(KOBJECT_SIZE)
    k.mem.write_u64(addr, obj)
    attrs(k).dirs[str(obj)] = "/sys/kernel"


def _dir_of(k: Kernel, kobj: int) -> str | None:
    st = attrs(k)
    got = st.dirs.get(str(kobj))
    if got is not None:
        return got
    for code in k.rt.code.values():  # a module's own kobject: THIS_MODULE->mkobj.kobj
        this = code.memory.this_module
        if this and kobj == this + k.layouts.offsetof("module", "mkobj.kobj"):
            return f"/sys/module/{code.name}"
    return None


@kfunc()
def kobject_create_and_add(k: Kernel, name: int, parent: int) -> int:
    base = "/sys" if not parent else _dir_of(k, parent)
    if base is None:
        return 0
    path = f"{base}/{k.text(name)}"
    st = attrs(k)
    if path in st.dirs.values():
        k.log.err(f"sysfs: cannot create duplicate filename '{path[4:]}'")
        return 0
    kobj = _kzalloc(k, max(k.layouts.sizeof("kobject"), KOBJECT_SIZE))
    st.dirs[str(kobj)] = path
    return kobj


@kfunc()
def kobject_put(k: Kernel, kobj: int) -> None:
    st = attrs(k)
    path = st.dirs.pop(str(kobj), None)
    if path is None:
        return
    st.files = {p: v for p, v in st.files.items() if not p.startswith(path + "/")}
    for key, d in list(st.dirs.items()):
        if d.startswith(path + "/"):
            del st.dirs[key]
    _kfree(k, kobj)


def _attr_name(k: Kernel, attr: int) -> str:
    return k.text(k.mem.read_u64(attr + k.layouts.offsetof("attribute", "name")))


def _add(k: Kernel, base: str, kobj: int, attr: int) -> int:
    path = f"{base}/{_attr_name(k, attr)}"
    st = attrs(k)
    if path in st.files:
        k.log.err(f"sysfs: cannot create duplicate filename '{path[4:]}'")
        return err(errno.EEXIST)
    st.files[path] = [attr, kobj]
    return 0


@kfunc("sysfs_create_file")
def sysfs_create_file_ns(k: Kernel, kobj: int, attr: int, ns: int = 0) -> int:
    base = _dir_of(k, kobj)
    return err(errno.EINVAL) if base is None else _add(k, base, kobj, attr)


@kfunc("sysfs_remove_file")
def sysfs_remove_file_ns(k: Kernel, kobj: int, attr: int, ns: int = 0) -> None:
    base = _dir_of(k, kobj)
    if base is not None:
        attrs(k).files.pop(f"{base}/{_attr_name(k, attr)}", None)


def _group(k: Kernel, kobj: int, grp: int) -> tuple[str, list[int]] | None:
    base = _dir_of(k, kobj)
    if base is None:
        return None
    lay = k.layouts
    name_p = k.mem.read_u64(grp + lay.offsetof("attribute_group", "name"))
    if name_p:
        base = f"{base}/{k.text(name_p)}"
    out, at = [], k.mem.read_u64(grp + lay.offsetof("attribute_group", "attrs"))
    while at and (a := k.mem.read_u64(at)):
        out.append(a)
        at += 8
    return base, out


@kfunc()
def sysfs_create_group(k: Kernel, kobj: int, grp: int) -> int:
    got = _group(k, kobj, grp)
    if got is None:
        return err(errno.EINVAL)
    base, list_ = got
    for a in list_:
        rc = _add(k, base, kobj, a)
        if rc:
            return rc
    return 0


@kfunc()
def sysfs_remove_group(k: Kernel, kobj: int, grp: int) -> None:
    got = _group(k, kobj, grp)
    if got is not None:
        base, list_ = got
        for a in list_:
            attrs(k).files.pop(f"{base}/{_attr_name(k, a)}", None)


@kfunc()
def sysfs_emit(k: Kernel, buf: int, fmt: int) -> int:
    """fs/sysfs/file.c: at most a page, into a page-aligned buffer."""
    from lkm.kernel.api.printk import format_text

    data = format_text(k, fmt, k.cpu.args(2))[:PAGE_SIZE - 1]
    k.mem.write(buf, data + b"\0")
    return len(data)


# -- the virtual kernel's files ---------------------------------------------------------------

def _kattr(k: Kernel, attr: int, f: str) -> int:
    return k.mem.read_u64(attr + k.layouts.offsetof("kobj_attribute", f))


def read_file(kstate: Any, path: str) -> str | None:
    from lkm.kernel.api.procfs import _kernel_of
    from lkm.kernel.api.slab import kmalloc

    k = _kernel_of(kstate)
    if k is None or path not in attrs(k).files:
        return None
    attr, kobj = attrs(k).files[path]
    show = _kattr(k, attr, "show")
    if not show:
        raise OSError(errno.EIO, os.strerror(errno.EIO), path)
    buf = kmalloc(k, PAGE_SIZE)
    k.mem.write(buf, bytes(PAGE_SIZE))
    n = signed(invoke(k, show, [kobj, attr, buf]))
    if n < 0:
        raise OSError(-n, os.strerror(-n), path)
    return k.mem.read(buf, min(n, PAGE_SIZE)).decode("utf-8", "surrogateescape")


def write_file(kstate: Any, path: str, value: str) -> bool:
    from lkm.kernel.api.procfs import _kernel_of
    from lkm.kernel.api.slab import kmalloc

    k = _kernel_of(kstate)
    if k is None or path not in attrs(k).files:
        return False
    attr, kobj = attrs(k).files[path]
    store = _kattr(k, attr, "store")
    mode = k.mem.read_u16(attr + k.layouts.offsetof("attribute", "mode"))
    if not store or not mode & 0o222:
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), path)
    data = value.encode("utf-8", "surrogateescape")[:PAGE_SIZE - 1]
    buf = kmalloc(k, PAGE_SIZE)
    k.mem.write(buf, data + b"\0")
    n = signed(invoke(k, store, [kobj, attr, buf, len(data)]))
    if n < 0:
        raise OSError(-n, os.strerror(-n), path)
    return True


def listdir(kstate: Any, path: str) -> list[str] | None:
    from lkm.kernel.api.procfs import _kernel_of

    k = _kernel_of(kstate)
    if k is None:
        return None
    st = attrs(k)
    names = [p.rsplit("/", 1)[1] for p in st.files if p.rsplit("/", 1)[0] == path]
    names += [d.rsplit("/", 1)[1] for d in st.dirs.values() if d.rsplit("/", 1)[0] == path]
    if not names and path not in st.dirs.values():
        return None
    return names
