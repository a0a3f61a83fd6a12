"""printk and the formatted-output functions (kernel/printk/printk.c, lib/vsprintf.c's
exported entry points, drivers/base/core.c's dev_* printing).

The formatting itself is :mod:`lkm.kernel.api.vsprintf`; here are the exported functions
around it and the record rules of vprintk_store(): the KERN_<level> prefixes (``\\001`` and
a digit, ``c`` for KERN_CONT, ``d`` for KERN_DEFAULT), a trailing newline ending the
record, a continuation appended to the caller's open record, the default level 4
(CONFIG_MESSAGE_LOGLEVEL_DEFAULT) for a printk without one.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

from lkm.kernel.api import printk_fmt
from lkm.kernel.api import vsprintf as vs
from lkm.kernel.api.core import ArgSource, Kernel, kfunc, substate
from lkm.kernel.exec.abi_x86_64 import VaList
from lkm.kernel.exec.memory import MemoryFault


class _Machine:
    """What vsprintf reads, over the running kernel (the VsprintfMachine protocol)."""

    def __init__(self, k: Kernel) -> None:
        self.k = k

    def read_memory(self, addr: int, size: int) -> bytes:
        try:
            return self.k.mem.read(addr, size)
        except MemoryFault as e:
            raise vs.MemoryFault(e.address) from None

    def kallsyms_lookup(self, addr: int) -> vs.KallsymsEntry | None:
        found = self.k.lookup(addr)
        if found is None:
            return None
        name, off, size, mod = found
        return vs.KallsymsEntry(name, off, size, mod)

    def va_list_args(self, va_list: int) -> Iterator[int]:
        return _iterate(self.k, VaList(va_list, self.k.mem.read_u64, self.k.mem.read_u32))

    def member_offset(self, struct_name: str, member: str) -> int:
        return self.k.layouts.offsetof(struct_name, member)


@substate("printk")
class PrintkState:
    """The boot's %p hashing key (ptr_key, filled once at boot)."""

    def __init__(self, k: Kernel) -> None:
        self.key = (random.getrandbits(64), random.getrandbits(64))

    def to_json(self) -> list[int]:
        return list(self.key)

    @classmethod
    def from_json(cls, k: Kernel, v: list[int]) -> PrintkState:
        s = cls(k)
        s.key = (int(v[0]), int(v[1]))
        return s


def _iterate(k: Kernel, src: ArgSource) -> Iterator[int]:
    while True:
        try:
            yield src.next()
        except MemoryFault as e:
            raise vs.MemoryFault(e.address) from None


def _policy(k: Kernel) -> vs.PointerPolicy:
    return vs.PointerPolicy(ptr_key=k.sub(PrintkState).key)


def _fault(e: vs.MemoryFault) -> MemoryFault:
    f = MemoryFault(e.addr, False)
    f.function = e.function  # type: ignore[attr-defined]
    return f


def format_text(k: Kernel, fmt: int, args: ArgSource | Iterator[int]) -> bytes:
    """What vsnprintf() makes of the format at ``fmt`` and the arguments, unbounded."""
    it = args if isinstance(args, Iterator) else _iterate(k, args)
    try:
        return vs.format_string(_Machine(k), k.cstr(fmt), it, _policy(k)).text
    except vs.MemoryFault as e:
        raise _fault(e) from None


def _vsn(k: Kernel, size: int, fmt: int, args: ArgSource | Iterator[int]) -> vs.Printed:
    it = args if isinstance(args, Iterator) else _iterate(k, args)
    try:
        return vs.vsnprintf(_Machine(k), size, k.cstr(fmt), it, _policy(k))
    except vs.MemoryFault as e:
        raise _fault(e) from None


def _va(k: Kernel, va: int) -> Iterator[int]:
    return _iterate(k, VaList(va, k.mem.read_u64, k.mem.read_u32))


# -- vprintk_store ---------------------------------------------------------------------------

def parse_prefix(text: bytes) -> tuple[int, bool, bytes]:
    """printk_parse_prefix(): (level or -1, KERN_CONT seen, the text after the prefixes)."""
    level, flags, n = printk_fmt.printk_parse_prefix(text[:7])
    return level, bool(flags & printk_fmt.LOG_CONT), text[n:]


def emit(k: Kernel, text: bytes, level: int = -1, dev_info: bool = False) -> int:
    """vprintk_store() of formatted text into the syscall's log; what printk returns."""
    rt = k.rt
    log = k.log
    pid = rt.current().pid
    last = rt.printk_open if getattr(rt, "printk_log", None) is log and log.records else None
    st = printk_fmt.vprintk_store(text, k.version, caller_id=pid, last=last, level=level,
                                  dev_info=dev_info)
    s = st.text.decode("utf-8", "surrogateescape")
    if st.append and last is not None:
        lv, prev = log.records[-1]
        log.records[-1] = (lv, prev + s)
        total = last.text_len + len(st.text)
    else:
        log.records.append((st.level, s))
        total = len(st.text)
    rt.printk_log = log
    rt.printk_open = None if st.final else printk_fmt.OpenRecord(pid, total)
    return st.ret


def printk(k: Kernel, level: int, text: str) -> None:
    """A printk from the kernel itself (oopses, warnings): one record at ``level``."""
    emit(k, text.encode("utf-8", "surrogateescape") + b"\n", level)


def vprintk_args(k: Kernel, fmt: int, args: ArgSource | Iterator[int]) -> int:
    return emit(k, format_text(k, fmt, args))


@kfunc("printk")
def _printk(k: Kernel, fmt: int) -> int:
    """kernel/printk/printk.c."""
    return vprintk_args(k, fmt, k.cpu.args(1))


@kfunc("vprintk_default", "_printk_deferred")
def vprintk(k: Kernel, fmt: int, args: int) -> int:
    """kernel/printk/printk.c: the va_list form."""
    return vprintk_args(k, fmt, _va(k, args))


@kfunc()
def vprintk_emit(k: Kernel, facility: int, level: int, dev_info: int, fmt: int,
                 args: int) -> int:
    lv = level & 0xFFFFFFFF
    return emit(k, format_text(k, fmt, _va(k, args)), -1 if lv >= 0x80000000 else lv)


@kfunc("printk_ratelimit")
def __printk_ratelimit(k: Kernel, func: int) -> int:
    return 1


# -- dev_* (drivers/base/core.c) ---------------------------------------------------------------

def _ptr(k: Kernel, addr: int, struct_: str, path: str) -> int:
    return k.mem.read_u64(addr + k.layouts.offsetof(struct_, path))


def dev_driver_string(k: Kernel, dev: int) -> str:
    drv = _ptr(k, dev, "device", "driver")
    if drv:
        return k.text(_ptr(k, drv, "device_driver", "name"))
    bus = _ptr(k, dev, "device", "bus")
    if bus:
        return k.text(_ptr(k, bus, "bus_type", "name"))
    cls = _ptr(k, dev, "device", "class")
    if cls:
        return k.text(_ptr(k, cls, "class", "name"))
    return ""


def dev_name(k: Kernel, dev: int) -> str:
    init_name = _ptr(k, dev, "device", "init_name")
    if init_name:
        return k.text(init_name)
    name = _ptr(k, dev, "device", "kobj.name")
    return k.text(name) if name else ""


def _dev_print(k: Kernel, level: int, dev: int, fmt: int, args: ArgSource) -> int:
    """__dev_printk(): "driver device: message", a final record at the given level."""
    msg = format_text(k, fmt, args)
    if dev:
        head = f"{dev_driver_string(k, dev)} {dev_name(k, dev)}: ".encode()
        return emit(k, head + msg, level, dev_info=True)
    return emit(k, b"\x01" + bytes((0x30 + level,)) + b"(NULL device *): " + msg)


def _dev_level(level: int) -> Any:
    def handler(k: Kernel, dev: int, fmt: int) -> int:
        return _dev_print(k, level, dev, fmt, k.cpu.args(2))
    return handler


for _lv, _name in enumerate(("emerg", "alert", "crit", "err", "warn", "notice", "info")):
    _h = _dev_level(_lv)
    _h.__name__ = f"_dev_{_name}"
    _h.__doc__ = "drivers/base/core.c"
    kfunc()(_h)


@kfunc()
def _dev_printk(k: Kernel, level: int, dev: int, fmt: int) -> int:
    lv, _c, _t = parse_prefix(k.cstr(level, 4))
    return _dev_print(k, lv, dev, fmt, k.cpu.args(3))


# -- the sprintf family (lib/vsprintf.c) -------------------------------------------------------

def _store(k: Kernel, buf: int, p: vs.Printed) -> int:
    if p.stored:
        k.mem.write(buf, p.stored)
    return p.ret


@kfunc()
def snprintf(k: Kernel, buf: int, size: int, fmt: int) -> int:
    return _store(k, buf, _vsn(k, size, fmt, k.cpu.args(3)))


@kfunc()
def vsnprintf(k: Kernel, buf: int, size: int, fmt: int, args: int) -> int:
    return _store(k, buf, _vsn(k, size, fmt, _va(k, args)))


def _scn(k: Kernel, buf: int, size: int, p: vs.Printed) -> int:
    _store(k, buf, p)
    return 0 if size == 0 else min(p.ret, size - 1)


@kfunc()
def scnprintf(k: Kernel, buf: int, size: int, fmt: int) -> int:
    if size == 0:
        return 0
    return _scn(k, buf, size, _vsn(k, size, fmt, k.cpu.args(3)))


@kfunc()
def vscnprintf(k: Kernel, buf: int, size: int, fmt: int, args: int) -> int:
    if size == 0:
        return 0
    return _scn(k, buf, size, _vsn(k, size, fmt, _va(k, args)))


@kfunc()
def sprintf(k: Kernel, buf: int, fmt: int) -> int:
    return _store(k, buf, _vsn(k, vs.INT_MAX, fmt, k.cpu.args(2)))


@kfunc()
def vsprintf(k: Kernel, buf: int, fmt: int, args: int) -> int:
    return _store(k, buf, _vsn(k, vs.INT_MAX, fmt, _va(k, args)))


def _kas(k: Kernel, gfp: int, text: bytes) -> int:
    from lkm.kernel.api.slab import kmalloc

    buf = kmalloc(k, len(text) + 1, gfp)
    k.mem.write(buf, text + b"\0")
    return buf


@kfunc()
def kasprintf(k: Kernel, gfp: int, fmt: int) -> int:
    return _kas(k, gfp, format_text(k, fmt, k.cpu.args(2)))


@kfunc()
def kvasprintf(k: Kernel, gfp: int, fmt: int, ap: int) -> int:
    return _kas(k, gfp, format_text(k, fmt, _va(k, ap)))


@kfunc()
def kvasprintf_const(k: Kernel, gfp: int, fmt: int, ap: int) -> int:
    return _kas(k, gfp, format_text(k, fmt, _va(k, ap)))
