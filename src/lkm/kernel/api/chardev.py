"""Character devices (fs/char_dev.c, drivers/char/misc.c, drivers/base/core.c's
device_create, fs/libfs.c's simple_read_from_buffer): the regions and cdevs a module
registers, misc devices, and the /dev nodes devtmpfs would make for them.

``/dev/NAME`` is opened as chrdev_open/misc_open do: the ``struct file_operations`` of
the device number (a cdev's ``ops``, a register_chrdev region's fops, a misc device's
``fops`` with ``file->private_data`` pointing at the ``struct miscdevice``), then the
module's open, reads until EOF (or one write), and its release, in the reading process's
buffer.  Dynamic majors are given from 254 down (find_dynamic_major()), dynamic misc
minors from 127 down.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from lkm.kernel.api.core import Kernel, err, kfunc, signed, substate
from lkm.kernel.api.seq_file import (
    USER_BUF_SIZE,
    _kfree,
    _kzalloc,
    cat,
    copy_out,
    file_field,
    invoke,
    user_buffer,
    write_once,
)

MINORBITS = 20
MISC_MAJOR = 10
MISC_DYNAMIC_MINOR = 255
DYNAMIC_MINORS = 128
CHRDEV_MAJOR_DYN_END, CHRDEV_MAJOR_DYN_START = 234, 254


def MKDEV(major: int, minor: int) -> int:
    return (major << MINORBITS) | minor


@substate("chardev")
class Chardev:
    """Registered regions (major, baseminor, count, name, fops), cdevs (dev, count,
    address), misc devices (minor -> address), classes and the /dev nodes."""

    def __init__(self, k: Kernel) -> None:
        self.regions: list[list[Any]] = []
        self.cdevs: list[list[int]] = []
        self.misc: dict[str, int] = {}  # str(minor) -> struct miscdevice
        self.classes: dict[str, str] = {}  # str(address) -> name
        self.nodes: dict[str, int] = {}  # /dev name -> dev_t

    def to_json(self) -> dict[str, Any]:
        return {"regions": self.regions, "cdevs": self.cdevs, "misc": self.misc,
                "classes": self.classes, "nodes": self.nodes}

    @classmethod
    def from_json(cls, k: Kernel, d: dict[str, Any]) -> Chardev:
        s = cls(k)
        s.regions, s.cdevs = d["regions"], d["cdevs"]
        s.misc, s.classes, s.nodes = d["misc"], d["classes"], d["nodes"]
        return s

    def dynamic_major(self) -> int:
        used = {r[0] for r in self.regions}
        for m in range(CHRDEV_MAJOR_DYN_START, CHRDEV_MAJOR_DYN_END - 1, -1):
            if m not in used:
                return m
        return -errno.EBUSY


def chardev(k: Kernel) -> Chardev:
    return k.sub(Chardev)


def _region(k: Kernel, major: int, baseminor: int, count: int, name: str, fops: int) -> int:
    """__register_chrdev_region(): the major (a dynamic one for 0) or -errno."""
    st = chardev(k)
    if major == 0:
        major = st.dynamic_major()
        if major < 0:
            return major
    for m, b, c, _n, _f in st.regions:
        if m == major and b < baseminor + count and baseminor < b + c:
            return -errno.EBUSY
    st.regions.append([major, baseminor, count, name, fops])
    return major


@kfunc()
def __register_chrdev(k: Kernel, major: int, baseminor: int, count: int, name: int,
                      fops: int) -> int:
    got = _region(k, major & 0xFFFFFFFF, baseminor, count, k.text(name), fops)
    if got < 0:
        return err(-got)
    return got if not major else 0


@kfunc()
def __unregister_chrdev(k: Kernel, major: int, baseminor: int, count: int, name: int) -> None:
    st = chardev(k)
    st.regions = [r for r in st.regions if not (r[0] == major and r[1] == baseminor)]


@kfunc()
def alloc_chrdev_region(k: Kernel, dev: int, baseminor: int, count: int, name: int) -> int:
    got = _region(k, 0, baseminor, count, k.text(name), 0)
    if got < 0:
        return err(-got)
    k.mem.write_u32(dev, MKDEV(got, baseminor))
    return 0


@kfunc()
def register_chrdev_region(k: Kernel, start: int, count: int, name: int) -> int:
    got = _region(k, start >> MINORBITS, start & ((1 << MINORBITS) - 1), count, k.text(name), 0)
    return err(-got) if got < 0 else 0


@kfunc()
def unregister_chrdev_region(k: Kernel, start: int, count: int) -> None:
    st = chardev(k)
    major, minor = start >> MINORBITS, start & ((1 << MINORBITS) - 1)
    st.regions = [r for r in st.regions if not (r[0] == major and r[1] == minor)]


@kfunc()
def cdev_init(k: Kernel, cdev: int, fops: int) -> None:
    k.mem.write(cdev, bytes(k.layouts.sizeof("cdev")))
    k.mem.write_u64(cdev + k.layouts.offsetof("cdev", "ops"), fops)


@kfunc()
def cdev_alloc(k: Kernel) -> int:
    return _kzalloc(k, k.layouts.sizeof("cdev"))


@kfunc()
def cdev_add(k: Kernel, cdev: int, dev: int, count: int) -> int:
    lay = k.layouts
    k.mem.write_u32(cdev + lay.offsetof("cdev", "dev"), dev)
    k.mem.write_u32(cdev + lay.offsetof("cdev", "count"), count)
    chardev(k).cdevs.append([dev & 0xFFFFFFFF, count, cdev])
    return 0


@kfunc()
def cdev_del(k: Kernel, cdev: int) -> None:
    st = chardev(k)
    st.cdevs = [c for c in st.cdevs if c[2] != cdev]


@kfunc("class_create")
def __class_create(k: Kernel, owner_or_name: int, name: int = 0, key: int = 0) -> int:
    """6.1's __class_create(owner, name, key), 6.4+'s class_create(name)."""
    text = k.text(name) if k.version < (6, 4, 0) else k.text(owner_or_name)
    cls = _kzalloc(k, max(k.layouts.sizeof("class"), 8))
    chardev(k).classes[str(cls)] = text
    return cls


@kfunc()
def class_destroy(k: Kernel, cls: int) -> None:
    chardev(k).classes.pop(str(cls), None)


@kfunc()
def device_create(k: Kernel, cls: int, parent: int, devt: int, drvdata: int, fmt: int) -> int:
    from lkm.kernel.api.printk import format_text

    name = format_text(k, fmt, k.cpu.args(5)).decode("utf-8", "surrogateescape")
    dev = _kzalloc(k, k.layouts.sizeof("device"))
    lay = k.layouts
    k.mem.write_u32(dev + lay.offsetof("device", "devt"), devt)
    k.mem.write_u64(dev + lay.offsetof("device", "driver_data"), drvdata)
    chardev(k).nodes[name] = devt & 0xFFFFFFFF
    return dev


@kfunc()
def device_destroy(k: Kernel, cls: int, devt: int) -> None:
    st = chardev(k)
    st.nodes = {n: d for n, d in st.nodes.items() if d != devt & 0xFFFFFFFF}


def _misc_field(k: Kernel, misc: int, f: str) -> int:
    return misc + k.layouts.offsetof("miscdevice", f)


@kfunc()
def misc_register(k: Kernel, misc: int) -> int:
    st = chardev(k)
    at = _misc_field(k, misc, "minor")
    minor = k.mem.read_u32(at)
    if minor == MISC_DYNAMIC_MINOR:
        free = [m for m in range(DYNAMIC_MINORS - 1, -1, -1) if str(m) not in st.misc]
        if not free:
            return err(errno.EBUSY)
        minor = free[0]
        k.mem.write_u32(at, minor)
    elif str(minor) in st.misc:
        return err(errno.EBUSY)
    name = k.text(k.mem.read_u64(_misc_field(k, misc, "name")))
    st.misc[str(minor)] = misc
    st.nodes[name] = MKDEV(MISC_MAJOR, minor)
    return 0


@kfunc()
def misc_deregister(k: Kernel, misc: int) -> None:
    st = chardev(k)
    minor = k.mem.read_u32(_misc_field(k, misc, "minor"))
    st.misc.pop(str(minor), None)
    devt = MKDEV(MISC_MAJOR, minor)
    st.nodes = {n: d for n, d in st.nodes.items() if d != devt}


@kfunc()
def simple_read_from_buffer(k: Kernel, to: int, count: int, ppos: int, frm: int,
                            available: int) -> int:
    """fs/libfs.c"""
    pos = signed(k.mem.read_u64(ppos))
    if pos < 0:
        return err(errno.EINVAL)
    if pos >= available or not count:
        return 0
    count = min(count, available - pos)
    left = copy_out(k, to, k.mem.read(frm + pos, count))
    if left == count:
        return err(errno.EFAULT)
    count -= left
    k.mem.write_u64(ppos, pos + count)
    return count


@kfunc()
def simple_write_to_buffer(k: Kernel, to: int, available: int, ppos: int, frm: int,
                           count: int) -> int:
    from lkm.kernel.api.seq_file import copy_in

    pos = signed(k.mem.read_u64(ppos))
    if pos < 0:
        return err(errno.EINVAL)
    if pos >= available or not count:
        return 0
    count = min(count, available - pos)
    data, left = copy_in(k, frm, count)
    if left == count:
        return err(errno.EFAULT)
    k.mem.write(to + pos, data)
    k.mem.write_u64(ppos, pos + len(data))
    return len(data)


# -- opening /dev/NAME -------------------------------------------------------------------------

def _oserror(e: int, path: str) -> OSError:
    return OSError(e, os.strerror(e), path)


def _fops_of(k: Kernel, devt: int) -> tuple[int, int]:
    """(file_operations, misc device or 0) of a device number; ENXIO when none."""
    st = chardev(k)
    major, minor = devt >> MINORBITS, devt & ((1 << MINORBITS) - 1)
    if major == MISC_MAJOR and str(minor) in st.misc:
        misc = st.misc[str(minor)]
        return k.mem.read_u64(_misc_field(k, misc, "fops")), misc
    for dev, count, cdev in st.cdevs:
        if dev <= devt < dev + count:
            return k.mem.read_u64(cdev + k.layouts.offsetof("cdev", "ops")), 0
    for m, b, c, _n, fops in st.regions:
        if m == major and b <= minor < b + c and fops:
            return fops, 0
    return 0, 0


class DevFile:
    """An open character device."""

    def __init__(self, k: Kernel, path: str, fmode: int) -> None:
        name = path[len("/dev/"):]
        devt = chardev(k).nodes.get(name)
        if devt is None:
            raise _oserror(errno.ENOENT, path)
        fops, misc = _fops_of(k, devt)
        if not fops:
            raise _oserror(errno.ENXIO, path)
        lay = k.layouts
        self.k, self.path, self.fops = k, path, fops
        self.inode = _kzalloc(k, lay.sizeof("inode"))
        k.mem.write_u32(self.inode + lay.offsetof("inode", "i_rdev"), devt)
        k.mem.write_u16(self.inode + lay.offsetof("inode", "i_mode"), 0o020666)
        self.file = _kzalloc(k, lay.sizeof("file"))
        k.mem.write_u64(file_field(k, self.file, "f_inode"), self.inode)
        k.mem.write_u64(file_field(k, self.file, "f_op"), fops)
        k.mem.write_u32(file_field(k, self.file, "f_mode"), fmode)
        k.mem.write_u64(file_field(k, self.file, "private_data"), misc)
        self.ppos = _kzalloc(k, 8)
        fn = self.op("open")
        rc = signed(invoke(k, fn, [self.inode, self.file]), 32) if fn else 0
        if rc < 0:
            self._free()
            raise _oserror(-rc, path)

    def op(self, name: str) -> int:
        return self.k.mem.read_u64(self.fops + self.k.layouts.offsetof("file_operations",
                                                                        name))

    def read(self, count: int) -> bytes:
        fn = self.op("read")
        if not fn:
            raise _oserror(errno.EINVAL, self.path)
        ubuf = user_buffer(self.k)
        n = signed(invoke(self.k, fn, [self.file, ubuf, min(count, USER_BUF_SIZE), self.ppos]))
        if n < 0:
            raise _oserror(-n, self.path)
        return self.k.mem.read(ubuf, n)

    def write(self, data: bytes) -> int:
        fn = self.op("write")
        if not fn:
            raise _oserror(errno.EINVAL, self.path)
        ubuf = user_buffer(self.k)
        data = data[:USER_BUF_SIZE]
        copy_out(self.k, ubuf, data)
        n = signed(invoke(self.k, fn, [self.file, ubuf, len(data), self.ppos]))
        if n < 0:
            raise _oserror(-n, self.path)
        return n

    def close(self) -> None:
        fn = self.op("release")
        if fn:
            invoke(self.k, fn, [self.inode, self.file])
        self._free()

    def _free(self) -> None:
        for a in (self.file, self.inode, self.ppos):
            _kfree(self.k, a)


def read_dev(k: Kernel, path: str) -> bytes:
    return cat(DevFile(k, path, 1))


def write_dev(k: Kernel, path: str, data: bytes) -> int:
    return write_once(DevFile(k, path, 2), data)


# -- the virtual kernel's files ----------------------------------------------------------------

def read_file(kstate: Any, path: str) -> str | None:
    from lkm.kernel.api.procfs import _kernel_of

    k = _kernel_of(kstate)
    if k is None or path[len("/dev/"):] not in chardev(k).nodes:
        return None
    return read_dev(k, path).decode("utf-8", "surrogateescape")


def write_file(kstate: Any, path: str, value: str) -> bool:
    from lkm.kernel.api.procfs import _kernel_of

    k = _kernel_of(kstate)
    if k is None or path[len("/dev/"):] not in chardev(k).nodes:
        return False
    write_dev(k, path, value.encode("utf-8", "surrogateescape"))
    return True


def listdir(kstate: Any) -> list[str]:
    from lkm.kernel.api.procfs import _kernel_of

    k = _kernel_of(kstate)
    return [] if k is None else sorted(chardev(k).nodes)
