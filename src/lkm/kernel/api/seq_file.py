"""Sequential files (fs/seq_file.c): seq_open/single_open, the read loop that drives a
module's ``struct seq_operations`` (start/show/next/stop, the buffer doubled and the
record shown again when it overflows), seq_printf and friends, the seq_list_* helpers;
and the user copies they rely on (lib/usercopy.c, arch/x86/lib/usercopy_64.c).

The reading process's buffer is user memory (:func:`user_buffer`): a copy to or from an
address outside it, or not mapped, copies nothing there and gives -EFAULT as the kernel
does.  ``struct seq_file`` is laid out by the kernel's BTF; the module reads and writes
its fields (``m->private``, ``m->count``) as in the kernel.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import Protocol

from lkm.kernel.api import core
from lkm.kernel.api.core import Kernel, err, kfunc, signed
from lkm.kernel.exec.memory import MemoryFault

PAGE_SIZE = 4096
SEQ_SKIP = 1
SEQ_START_TOKEN = 1
TASK_SIZE_MAX = 0x00007FFFFFFFF000
USER_BUF = 0x00007FFFF7A00000  # where the reading process's buffer is
USER_BUF_SIZE = 0x40000
MAX_RW_COUNT = 0x7FFFF000


# -- calling ops: a kernel function's handler directly, module code on the CPU -------------

READ_CHUNK = 131072  # what cat(1) asks for at a time


class OpenFile(Protocol):
    """A file a reading process holds open: a /proc entry or a device node."""

    def read(self, n: int) -> bytes: ...

    def write(self, data: bytes) -> int: ...

    def close(self) -> None: ...


def cat(f: OpenFile) -> bytes:
    """cat(1) on an open file: read until EOF, then release it."""
    out = bytearray()
    try:
        while chunk := f.read(READ_CHUNK):
            out += chunk
    finally:
        f.close()
    return bytes(out)


def write_once(f: OpenFile, data: bytes) -> int:
    """echo VALUE > PATH on an open file: one write(2), then release it."""
    try:
        return f.write(data)
    finally:
        f.close()


def invoke(k: Kernel, fn: int, args: Sequence[int] = ()) -> int:
    """Call the function at ``fn``: a kernel function the virtual kernel implements runs
    here; module code runs on the CPU (the outermost call with the kernel's fault reports)."""
    rt = k.rt
    name = rt.names.get(fn)
    f = core.FUNCTIONS.get(name) if name is not None else None
    if f is not None:
        padded = [*args, *([0] * max(0, f.nargs - len(args)))][:f.nargs]
        ret = f.fn(k, *padded)
        return int(ret or 0) & 0xFFFFFFFFFFFFFFFF
    machine = rt._machine
    if machine is not None and machine.frames:
        return k.cpu.call(fn, args)
    from lkm.kernel.exec import calls

    return calls.call(rt, fn, args)


# -- user memory -----------------------------------------------------------------------------

def user_buffer(k: Kernel) -> int:
    """The reading process's buffer (mapped once per process)."""
    rt = k.rt
    if not getattr(rt, "user_mapped", False):
        rt.mem.map("user", USER_BUF, USER_BUF_SIZE, "rw", kind="user")
        rt.user_mapped = True
    return USER_BUF


def _user_range(addr: int, n: int) -> bool:
    """access_ok(): the range lies below TASK_SIZE_MAX."""
    return addr + n <= TASK_SIZE_MAX and addr <= TASK_SIZE_MAX


def copy_out(k: Kernel, to: int, data: bytes) -> int:
    """raw_copy_to_user(): the number of bytes NOT copied (0: all of them)."""
    if not _user_range(to, len(data)):
        return len(data)
    done = 0
    while done < len(data):
        chunk = min(len(data) - done, PAGE_SIZE - ((to + done) & (PAGE_SIZE - 1)))
        try:
            k.mem.write(to + done, data[done:done + chunk])
        except MemoryFault:
            break
        done += chunk
    return len(data) - done


def copy_in(k: Kernel, frm: int, n: int) -> tuple[bytes, int]:
    """raw_copy_from_user(): (the bytes read, the number NOT read)."""
    if not _user_range(frm, n):
        return b"", n
    out = bytearray()
    while len(out) < n:
        chunk = min(n - len(out), PAGE_SIZE - ((frm + len(out)) & (PAGE_SIZE - 1)))
        try:
            out += k.mem.read(frm + len(out), chunk)
        except MemoryFault:
            break
    return bytes(out), n - len(out)


@kfunc("copy_to_user")
def _copy_to_user(k: Kernel, to: int, frm: int, n: int) -> int:
    """lib/usercopy.c"""
    return copy_out(k, to, k.mem.read(frm, n)) if n else 0


@kfunc("copy_from_user")
def _copy_from_user(k: Kernel, to: int, frm: int, n: int) -> int:
    """lib/usercopy.c: what could not be read is zeroed in the destination."""
    if not n:
        return 0
    data, left = copy_in(k, frm, n)
    k.mem.write(to, data + bytes(left))
    return left


@kfunc()
def __check_object_size(k: Kernel, ptr: int, n: int, to_user: int) -> None:
    """mm/usercopy.c (hardened usercopy): the virtual kernel's objects pass."""


# -- struct seq_file ----------------------------------------------------------------------------

class Seq:
    """A ``struct seq_file`` in memory, its fields by the BTF."""

    def __init__(self, k: Kernel, addr: int) -> None:
        self.k = k
        self.addr = addr

    def _off(self, f: str) -> int:
        return self.k.layouts.offsetof("seq_file", f)

    def get(self, f: str) -> int:
        return self.k.mem.read_u64(self.addr + self._off(f))

    def set(self, f: str, v: int) -> None:
        self.k.mem.write_u64(self.addr + self._off(f), v & 0xFFFFFFFFFFFFFFFF)

    def op(self, name: str) -> int:
        return self.k.mem.read_u64(self.get("op") + self.k.layouts.offsetof("seq_operations",
                                                                             name))

    def overflowed(self) -> bool:
        return self.get("count") == self.get("size")

    def put(self, data: bytes) -> None:
        """The bytes if they fit, else seq_set_overflow()."""
        count, size = self.get("count"), self.get("size")
        if count + len(data) < size:
            self.k.mem.write(self.get("buf") + count, data)
            self.set("count", count + len(data))
        else:
            self.set("count", size)


def _kzalloc(k: Kernel, size: int) -> int:
    from lkm.kernel.api.slab import kmalloc

    addr = kmalloc(k, size)
    k.mem.write(addr, bytes(size))
    return addr


def _kfree(k: Kernel, addr: int) -> None:
    from lkm.kernel.api.slab import slab

    if addr:
        slab(k).kfree(addr)


def file_field(k: Kernel, file: int, f: str) -> int:
    return k.layouts.offsetof("file", f) + file


@kfunc()
def seq_open(k: Kernel, file: int, op: int) -> int:
    at = file_field(k, file, "private_data")
    if k.mem.read_u64(at):
        k.log.warn("WARNING: seq_open on a file with private data")
    size = k.layouts.sizeof("seq_file")
    m = _kzalloc(k, size)
    k.mem.write_u64(at, m)
    s = Seq(k, m)
    s.set("op", op)
    s.set("file", file)
    return 0


@kfunc()
def seq_open_private(k: Kernel, file: int, ops: int, psize: int) -> int:
    __seq_open_private(k, file, ops, psize)
    return 0


@kfunc()
def __seq_open_private(k: Kernel, file: int, ops: int, psize: int) -> int:
    private = _kzalloc(k, max(psize, 1))
    seq_open(k, file, ops)
    s = Seq(k, k.mem.read_u64(file_field(k, file, "private_data")))
    s.set("private", private)
    return private


def _single_ops(k: Kernel, show: int) -> int:
    ops = _kzalloc(k, k.layouts.sizeof("seq_operations"))
    lay = k.layouts
    for f, name in (("start", "single_start"), ("next", "single_next"),
                    ("stop", "single_stop")):
        k.mem.write_u64(ops + lay.offsetof("seq_operations", f), k.symbol(name))
    k.mem.write_u64(ops + lay.offsetof("seq_operations", "show"), show)
    return ops


@kfunc()
def single_open(k: Kernel, file: int, show: int, data: int) -> int:
    ops = _single_ops(k, show)
    seq_open(k, file, ops)
    Seq(k, k.mem.read_u64(file_field(k, file, "private_data"))).set("private", data)
    return 0


@kfunc()
def single_open_size(k: Kernel, file: int, show: int, data: int, size: int) -> int:
    single_open(k, file, show, data)
    s = Seq(k, k.mem.read_u64(file_field(k, file, "private_data")))
    from lkm.kernel.api.slab import kmalloc

    s.set("buf", kmalloc(k, size))
    s.set("size", size)
    return 0


@kfunc()
def single_start(k: Kernel, m: int, pos: int) -> int:
    return 0 if k.mem.read_u64(pos) else SEQ_START_TOKEN


@kfunc()
def single_next(k: Kernel, m: int, v: int, pos: int) -> int:
    k.mem.write_u64(pos, k.mem.read_u64(pos) + 1)
    return 0


@kfunc()
def single_stop(k: Kernel, m: int, v: int) -> None:
    return None


@kfunc()
def seq_release(k: Kernel, inode: int, file: int) -> int:
    m = k.mem.read_u64(file_field(k, file, "private_data"))
    if m:
        _kfree(k, Seq(k, m).get("buf"))
        _kfree(k, m)
    return 0


@kfunc()
def seq_release_private(k: Kernel, inode: int, file: int) -> int:
    m = k.mem.read_u64(file_field(k, file, "private_data"))
    if m:
        _kfree(k, Seq(k, m).get("private"))
    return seq_release(k, inode, file)


@kfunc()
def single_release(k: Kernel, inode: int, file: int) -> int:
    m = k.mem.read_u64(file_field(k, file, "private_data"))
    op = Seq(k, m).get("op") if m else 0
    seq_release(k, inode, file)
    _kfree(k, op)
    return 0


# -- the read loop ----------------------------------------------------------------------------

def _is_err(p: int) -> bool:
    return core.IS_ERR_VALUE(p)


def _new_buf(k: Kernel, s: Seq, size: int) -> None:
    from lkm.kernel.api.slab import kmalloc

    s.set("size", size)
    s.set("buf", kmalloc(k, size))


def _traverse(k: Kernel, s: Seq, offset: int, index_at: int) -> int:
    """traverse(): run the iterator from the start up to ``offset`` bytes."""
    s.set("index", 0)
    s.set("count", 0)
    s.set("from", 0)
    if not offset:
        return 0
    if not s.get("buf"):
        _new_buf(k, s, PAGE_SIZE)
    pos = 0
    p = invoke(k, s.op("start"), [s.addr, index_at])
    while p and not _is_err(p):
        e = signed(invoke(k, s.op("show"), [s.addr, p]))
        if e < 0:
            break
        if e:
            s.set("count", 0)
        if s.overflowed():
            invoke(k, s.op("stop"), [s.addr, p])
            _kfree(k, s.get("buf"))
            s.set("count", 0)
            _new_buf(k, s, s.get("size") << 1)
            return -errno.EAGAIN
        count = s.get("count")
        p = invoke(k, s.op("next"), [s.addr, p, index_at])
        if pos + count > offset:
            s.set("from", offset - pos)
            s.set("count", count - (offset - pos))
            break
        pos += count
        s.set("count", 0)
        if pos == offset:
            break
    invoke(k, s.op("stop"), [s.addr, p])
    return 0


def read_iter(k: Kernel, m: int, ubuf: int, want: int, pos: int) -> tuple[int, int]:
    """seq_read_iter(): (bytes copied or -errno, the new position)."""
    s = Seq(k, m)
    if not want:
        return 0, pos
    index_at = s.addr + k.layouts.offsetof("seq_file", "index")
    copied = 0
    e = 0
    if pos != s.get("read_pos"):
        while (e := _traverse(k, s, pos, index_at)) == -errno.EAGAIN:
            pass
        if e:
            s.set("read_pos", 0)
            s.set("index", 0)
            s.set("count", 0)
            return e, pos
        s.set("read_pos", pos)
    if not s.get("buf"):
        _new_buf(k, s, PAGE_SIZE)

    def copy(start: int, n: int) -> int:
        data = k.mem.read(s.get("buf") + start, n)
        return n - copy_out(k, ubuf + copied, data)

    done = False
    if s.get("count"):
        n = copy(s.get("from"), min(s.get("count"), want))
        s.set("count", s.get("count") - n)
        s.set("from", s.get("from") + n)
        copied += n
        done = bool(s.get("count"))
    if not done:
        s.set("from", 0)
        p = invoke(k, s.op("start"), [m, index_at])
        filled = False
        while True:
            if not p or _is_err(p):
                e = signed(p) if _is_err(p) else 0
                break
            e = signed(invoke(k, s.op("show"), [m, p]), 32)
            if e < 0:
                break
            if e:
                s.set("count", 0)
            if not s.get("count"):
                p = invoke(k, s.op("next"), [m, p, index_at])
                continue
            if not s.overflowed():
                filled = True
                break
            invoke(k, s.op("stop"), [m, p])
            _kfree(k, s.get("buf"))
            s.set("count", 0)
            _new_buf(k, s, s.get("size") << 1)
            p = invoke(k, s.op("start"), [m, index_at])
        if not filled:
            invoke(k, s.op("stop"), [m, p])
            s.set("count", 0)
        else:
            left = want - copied
            while True:
                offs = s.get("count")
                before = s.get("index")
                p = invoke(k, s.op("next"), [m, p, index_at])
                if before == s.get("index"):
                    s.set("index", before + 1)
                if not p or _is_err(p):
                    break
                if s.get("count") >= left:
                    break
                e = signed(invoke(k, s.op("show"), [m, p]), 32)
                if e > 0:
                    s.set("count", offs)
                elif e or s.overflowed():
                    s.set("count", offs)
                    break
            invoke(k, s.op("stop"), [m, p])
            n = copy(0, min(s.get("count"), left))
            copied += n
            s.set("count", s.get("count") - n)
            s.set("from", n)
    if not copied:
        return (-errno.EFAULT if s.get("count") else e), pos
    s.set("read_pos", s.get("read_pos") + copied)
    return copied, pos + copied


@kfunc()
def seq_read(k: Kernel, file: int, buf: int, size: int, ppos: int) -> int:
    m = k.mem.read_u64(file_field(k, file, "private_data"))
    n, pos = read_iter(k, m, buf, min(size, MAX_RW_COUNT), k.mem.read_u64(ppos))
    k.mem.write_u64(ppos, pos)
    if n > 0:
        k.mem.write_u64(file_field(k, file, "f_pos"), pos)
    return n & 0xFFFFFFFFFFFFFFFF


@kfunc()
def seq_lseek(k: Kernel, file: int, offset: int, whence: int) -> int:
    """SEEK_SET and SEEK_CUR only; a new position is traversed to on the next read."""
    m = k.mem.read_u64(file_field(k, file, "private_data"))
    s = Seq(k, m)
    at = file_field(k, file, "f_pos")
    offset = signed(offset)
    if whence == 1:
        offset += signed(k.mem.read_u64(at))
    elif whence != 0:
        return err(errno.EINVAL)
    if offset < 0:
        return err(errno.EINVAL)
    if offset != signed(k.mem.read_u64(at)):
        index_at = m + k.layouts.offsetof("seq_file", "index")
        while (e := _traverse(k, s, offset, index_at)) == -errno.EAGAIN:
            pass
        if e:
            s.set("read_pos", 0)
            k.mem.write_u64(at, 0)
            return err(-e)
        s.set("read_pos", offset)
        k.mem.write_u64(at, offset)
    return offset


# -- output -------------------------------------------------------------------------------------

@kfunc()
def seq_printf(k: Kernel, m: int, fmt: int) -> None:
    from lkm.kernel.api.printk import format_text

    Seq(k, m).put(format_text(k, fmt, k.cpu.args(2)))


@kfunc()
def seq_vprintf(k: Kernel, m: int, fmt: int, args: int) -> None:
    from lkm.kernel.api.printk import _va, format_text

    Seq(k, m).put(format_text(k, fmt, _va(k, args)))


@kfunc()
def seq_puts(k: Kernel, m: int, s: int) -> None:
    Seq(k, m).put(k.cstr(s))


@kfunc()
def seq_putc(k: Kernel, m: int, c: int) -> None:
    s = Seq(k, m)
    if s.get("count") < s.get("size"):
        k.mem.write(s.get("buf") + s.get("count"), bytes([c & 0xFF]))
        s.set("count", s.get("count") + 1)


@kfunc()
def seq_write(k: Kernel, m: int, data: int, n: int) -> int:
    s = Seq(k, m)
    if s.get("count") + n < s.get("size"):
        s.put(k.mem.read(data, n))
        return 0
    s.set("count", s.get("size"))
    return err(1)  # -1


@kfunc()
def seq_put_decimal_ull(k: Kernel, m: int, delimiter: int, num: int) -> None:
    s = Seq(k, m)
    s.put(k.cstr(delimiter) + str(num).encode())


@kfunc()
def seq_put_decimal_ll(k: Kernel, m: int, delimiter: int, num: int) -> None:
    Seq(k, m).put(k.cstr(delimiter) + str(signed(num)).encode())


@kfunc()
def seq_pad(k: Kernel, m: int, c: int) -> None:
    s = Seq(k, m)
    size = s.get("pad_until") - s.get("count")
    if signed(size) > 0 and s.get("count") + size < s.get("size"):
        s.put(b" " * size)
    if c & 0xFF:
        seq_putc(k, m, c)


# -- seq_list helpers (lists of struct list_head) ------------------------------------------------

@kfunc()
def seq_list_start(k: Kernel, head: int, pos: int) -> int:
    lh = k.mem.read_u64(head)
    while lh != head:
        if pos == 0:
            return lh
        pos -= 1
        lh = k.mem.read_u64(lh)
    return 0


@kfunc()
def seq_list_start_head(k: Kernel, head: int, pos: int) -> int:
    if not pos:
        return head
    return seq_list_start(k, head, pos - 1)


@kfunc()
def seq_list_next(k: Kernel, v: int, head: int, ppos: int) -> int:
    lh = k.mem.read_u64(v)
    k.mem.write_u64(ppos, k.mem.read_u64(ppos) + 1)
    return 0 if lh == head else lh

