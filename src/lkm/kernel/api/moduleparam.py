"""Module parameters on the module's own variables (kernel/params.c).

``param_ops_<type>`` are kernel data: struct kernel_param_ops whose set/get point at the
stubs of ``param_set_<type>`` / ``param_get_<type>``, which parse and print as
:mod:`lkm.kernel.params` does, reading and writing ``kp->arg`` in module memory.  A
parameter declared with module_param_cb() has the module's own ops: its set and get are
module code, called on the CPU.  The sysfs files and insmod's arguments go through the
ops (:func:`param_store`, :func:`param_show`), so that what /sys shows is what the code
sees.
"""

from __future__ import annotations

import errno

from lkm.kernel.api.core import Kernel, err, kdata, kfunc, signed
from lkm.kernel.params import CHARP_MAXLEN, kstrto, kstrtobool

KERNEL_PARAM_OPS_FL_NOARG = 1
PAGE_SIZE = 4096

# type -> (set, get, free, flags)
_STANDARD: dict[str, tuple[str, str, str | None, int]] = {
    t: (f"param_set_{t}", f"param_get_{t}", None, 0)
    for t in ("byte", "short", "ushort", "int", "uint", "long", "ulong", "ullong", "hexint")}
_STANDARD.update({
    "bool": ("param_set_bool", "param_get_bool", None, KERNEL_PARAM_OPS_FL_NOARG),
    "bint": ("param_set_bint", "param_get_int", None, KERNEL_PARAM_OPS_FL_NOARG),
    "invbool": ("param_set_invbool", "param_get_invbool", None, 0),
    "bool_enable_only": ("param_set_bool_enable_only", "param_get_bool", None,
                         KERNEL_PARAM_OPS_FL_NOARG),
    "charp": ("param_set_charp", "param_get_charp", "param_free_charp", 0),
    "string": ("param_set_copystring", "param_get_string", None, 0),
})
_SIZES = {"byte": (1, False), "short": (2, True), "ushort": (2, False), "int": (4, True),
          "uint": (4, False), "long": (8, True), "ulong": (8, False), "ullong": (8, False),
          "hexint": (4, False)}


def _ops_init(typ: str) -> object:
    set_, get, free, flags = _STANDARD[typ]

    def init(k: Kernel, addr: int) -> None:
        lay = k.layouts
        k.mem.write_u32(addr + lay.offsetof("kernel_param_ops", "flags"), flags)
        k.mem.write_u64(addr + lay.offsetof("kernel_param_ops", "set"), k.symbol(set_))
        k.mem.write_u64(addr + lay.offsetof("kernel_param_ops", "get"), k.symbol(get))
        if free:
            k.mem.write_u64(addr + lay.offsetof("kernel_param_ops", "free"), k.symbol(free))
    return init


for _t in _STANDARD:
    kdata(f"param_ops_{_t}", 32)(_ops_init(_t))  # type: ignore[arg-type]


@kdata("param_array_ops", 32)
def _param_array_ops(k: Kernel, addr: int) -> None:
    lay = k.layouts
    k.mem.write_u64(addr + lay.offsetof("kernel_param_ops", "set"), k.symbol("param_array_set"))
    k.mem.write_u64(addr + lay.offsetof("kernel_param_ops", "get"), k.symbol("param_array_get"))


def kp_arg(k: Kernel, kp: int) -> int:
    return k.mem.read_u64(kp + k.layouts.offsetof("kernel_param", "arg"))


def _val(k: Kernel, val: int) -> str | None:
    return k.text(val) if val else None


# -- integers --------------------------------------------------------------------------------

def _set_int(k: Kernel, typ: str, val: int, kp: int) -> int:
    s = _val(k, val)
    if s is None:
        return err(errno.EINVAL)
    rv, v = kstrto(typ, s)
    if rv:
        return rv & 0xFFFFFFFF
    size, _signed = _SIZES[typ]
    k.mem.write(kp_arg(k, kp), (v & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))
    return 0


def _get_int(k: Kernel, typ: str, buffer: int, kp: int) -> int:
    size, is_signed = _SIZES[typ]
    v = int.from_bytes(k.mem.read(kp_arg(k, kp), size), "little", signed=is_signed)
    text = f"0x{v:06x}\n" if typ == "hexint" else f"{v}\n"
    k.mem.write(buffer, text.encode() + b"\0")
    return len(text)


def _int_handlers(typ: str) -> None:
    def set_(k: Kernel, val: int, kp: int) -> int:
        return _set_int(k, typ, val, kp)

    def get(k: Kernel, buffer: int, kp: int) -> int:
        return _get_int(k, typ, buffer, kp)

    set_.__name__, get.__name__ = f"param_set_{typ}", f"param_get_{typ}"
    set_.__doc__ = get.__doc__ = "kernel/params.c"
    kfunc()(set_)
    kfunc()(get)


for _t in _SIZES:
    _int_handlers(_t)


# -- booleans ----------------------------------------------------------------------------------

def _put(k: Kernel, buffer: int, text: str) -> int:
    k.mem.write(buffer, text.encode("utf-8", "surrogateescape") + b"\0")
    return len(text.encode("utf-8", "surrogateescape"))


@kfunc()
def param_set_bool(k: Kernel, val: int, kp: int) -> int:
    rv, b = kstrtobool("1" if not val else k.text(val))
    if rv:
        return rv & 0xFFFFFFFF
    k.mem.write_u8(kp_arg(k, kp), int(b))
    return 0


@kfunc()
def param_get_bool(k: Kernel, buffer: int, kp: int) -> int:
    return _put(k, buffer, "Y\n" if k.mem.read_u8(kp_arg(k, kp)) else "N\n")


@kfunc()
def param_set_invbool(k: Kernel, val: int, kp: int) -> int:
    rv, b = kstrtobool("1" if not val else k.text(val))
    if rv:
        return rv & 0xFFFFFFFF
    k.mem.write_u8(kp_arg(k, kp), int(not b))
    return 0


@kfunc()
def param_get_invbool(k: Kernel, buffer: int, kp: int) -> int:
    return _put(k, buffer, "N\n" if k.mem.read_u8(kp_arg(k, kp)) else "Y\n")


@kfunc()
def param_set_bint(k: Kernel, val: int, kp: int) -> int:
    rv, b = kstrtobool("1" if not val else k.text(val))
    if rv:
        return rv & 0xFFFFFFFF
    k.mem.write_u32(kp_arg(k, kp), int(b))
    return 0


@kfunc()
def param_set_bool_enable_only(k: Kernel, val: int, kp: int) -> int:
    rv, b = kstrtobool("1" if not val else k.text(val))
    if rv:
        return rv & 0xFFFFFFFF
    arg = kp_arg(k, kp)
    if not b and k.mem.read_u8(arg):
        return err(errno.EROFS)
    if b:
        k.mem.write_u8(arg, 1)
    return 0


# -- strings -----------------------------------------------------------------------------------

@kfunc()
def param_set_charp(k: Kernel, val: int, kp: int) -> int:
    """A copy in kmalloc'd memory (slab is up); the old copy freed."""
    from lkm.kernel.api.printk import printk
    from lkm.kernel.api.slab import kmalloc, slab

    data = k.cstr(val)
    if len(data) > CHARP_MAXLEN:
        name = k.text(k.mem.read_u64(kp))
        printk(k, 3, f"{name}: string parameter too long")
        return err(errno.ENOSPC)
    arg = kp_arg(k, kp)
    old = k.mem.read_u64(arg)
    if old and slab(k).owner(old) is not None:
        slab(k).kfree(old)
    buf = kmalloc(k, len(data) + 1)
    k.mem.write(buf, data + b"\0")
    k.mem.write_u64(arg, buf)
    return 0


@kfunc()
def param_get_charp(k: Kernel, buffer: int, kp: int) -> int:
    p = k.mem.read_u64(kp_arg(k, kp))
    return _put(k, buffer, (k.text(p) if p else "(null)") + "\n")


@kfunc()
def param_free_charp(k: Kernel, arg: int) -> None:
    from lkm.kernel.api.slab import slab

    p = k.mem.read_u64(arg)
    if p and slab(k).owner(p) is not None:
        slab(k).kfree(p)


@kfunc()
def param_set_copystring(k: Kernel, val: int, kp: int) -> int:
    from lkm.kernel.api.printk import printk

    kps = kp_arg(k, kp)
    maxlen = k.mem.read_u32(kps)
    dest = k.mem.read_u64(kps + 8)
    data = k.cstr(val)
    if len(data) + 1 > maxlen:
        printk(k, 3, f"{k.text(k.mem.read_u64(kp))}: string doesn't fit in {maxlen - 1} chars.")
        return err(errno.ENOSPC)
    k.mem.write(dest, data + b"\0")
    return 0


@kfunc()
def param_get_string(k: Kernel, buffer: int, kp: int) -> int:
    kps = kp_arg(k, kp)
    return _put(k, buffer, k.text(k.mem.read_u64(kps + 8)) + "\n")


# -- arrays ------------------------------------------------------------------------------------

def _array(k: Kernel, kp: int) -> tuple[int, int, int, int, int]:
    """struct kparam_array: max, elemsize, num pointer, ops, elem."""
    a = kp_arg(k, kp)
    return (k.mem.read_u32(a), k.mem.read_u32(a + 4), k.mem.read_u64(a + 8),
            k.mem.read_u64(a + 16), k.mem.read_u64(a + 24))


@kfunc()
def param_array_set(k: Kernel, val: int, kp: int) -> int:
    """param_array(): comma-separated values through the element ops' set, each with a
    temporary kernel_param whose arg is the element."""
    from lkm.kernel.api.printk import printk
    from lkm.kernel.api.slab import kmalloc

    mx, elemsize, nump, ops, elem = _array(k, kp)
    lay = k.layouts
    name = k.text(k.mem.read_u64(kp))
    text = k.cstr(val) if val else b""
    parts = text.split(b",")
    set_fn = k.mem.read_u64(ops + lay.offsetof("kernel_param_ops", "set"))
    size = lay.sizeof("kernel_param")
    tmp = kmalloc(k, size)
    k.mem.write(tmp, k.mem.read(kp, size))
    sbuf = kmalloc(k, len(text) + 1)
    count = 0
    for i, part in enumerate(parts):
        if i >= mx:
            printk(k, 3, f"{name}: can only take {mx} arguments")
            return err(errno.EINVAL)
        k.mem.write(sbuf, part + b"\0")
        k.mem.write_u64(tmp + lay.offsetof("kernel_param", "arg"), elem + i * elemsize)
        rv = signed(k.cpu.call(set_fn, [sbuf, tmp]), 32)
        if rv:
            return rv & 0xFFFFFFFF
        count += 1
    if nump:
        k.mem.write_u32(nump, count)
    return 0


@kfunc()
def param_array_get(k: Kernel, buffer: int, kp: int) -> int:
    mx, elemsize, nump, ops, elem = _array(k, kp)
    lay = k.layouts
    num = k.mem.read_u32(nump) if nump else mx
    get_fn = k.mem.read_u64(ops + lay.offsetof("kernel_param_ops", "get"))
    size = lay.sizeof("kernel_param")
    from lkm.kernel.api.slab import kmalloc

    tmp = kmalloc(k, size)
    k.mem.write(tmp, k.mem.read(kp, size))
    out = b""
    scratch = kmalloc(k, PAGE_SIZE)
    for i in range(num):
        k.mem.write_u64(tmp + lay.offsetof("kernel_param", "arg"), elem + i * elemsize)
        n = signed(k.cpu.call(get_fn, [scratch, tmp]), 32)
        if n < 0:
            return n & 0xFFFFFFFF
        piece = k.mem.read(scratch, n)
        out += (b"," if out else b"") + piece.removesuffix(b"\n")
    out += b"\n"
    k.mem.write(buffer, out + b"\0")
    return len(out)
