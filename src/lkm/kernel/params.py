"""Module parameters: parse_args and the standard parameter types (kernel/params.c).

Values are kept as Python objects (int, bool, str, None for a NULL charp, a list for
an array) in :class:`KernelParam`; the setters and getters reproduce the kernel's
``param_set_*``/``param_get_*`` exactly: the same accepted syntax (kstrto* with
base 0), the same errors (EINVAL, ERANGE, ENOSPC, EROFS) and log lines, and the same
sysfs text.
"""

from __future__ import annotations

import errno
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lkm.kernel.printk import Printk
from lkm.kernel.uapi import PAGE_SIZE

# struct kernel_param.flags
KERNEL_PARAM_FL_UNSAFE = 1 << 0
KERNEL_PARAM_FL_HWPARAM = 1 << 1

_SPACE = frozenset(" \t\n\v\f\r\xa0")  # the kernel's isspace() (lib/ctype.c, Latin-1)

# integer types: name -> (signed, bits, sysfs format)
_INT_TYPES: dict[str, tuple[bool, int]] = {
    "byte": (False, 8),
    "short": (True, 16),
    "ushort": (False, 16),
    "int": (True, 32),
    "uint": (False, 32),
    "long": (True, 64),
    "ulong": (False, 64),
    "ullong": (False, 64),
    "hexint": (False, 32),
}
BOOL_TYPES = ("bool", "invbool", "bint", "bool_enable_only")
STANDARD_TYPES = frozenset(_INT_TYPES) | frozenset(BOOL_TYPES) | {"charp", "string", "array"}
# ops that accept a parameter without "=value" (KERNEL_PARAM_OPS_FL_NOARG)
NOARG_TYPES = frozenset({"bool", "bint", "bool_enable_only"})
# element sizes in bytes on a 64-bit kernel
ELEM_SIZE = {"byte": 1, "short": 2, "ushort": 2, "int": 4, "uint": 4, "long": 8, "ulong": 8,
             "ullong": 8, "hexint": 4, "bool": 1, "invbool": 1, "bint": 4,
             "bool_enable_only": 1, "charp": 8}

CHARP_MAXLEN = 1024


def isspace(c: str) -> bool:
    return c in _SPACE


def skip_spaces(s: str) -> str:
    i = 0
    while i < len(s) and s[i] in _SPACE:
        i += 1
    return s[i:]


# -- lib/kstrtox.c -------------------------------------------------------------------

def _parse_integer(s: str, base: int) -> tuple[int, int, bool]:
    """(value, digits consumed, overflowed) as _parse_integer_limit."""
    res = 0
    n = 0
    overflow = False
    for c in s:
        if "0" <= c <= "9":
            v = ord(c) - 48
        else:
            lc = chr(ord(c) | 0x20) if ord(c) < 128 else c
            if "a" <= lc <= "f":
                v = ord(lc) - 87
            else:
                break
        if v >= base:
            break
        res = res * base + v
        if res >> 64:
            overflow = True
            res &= (1 << 64) - 1
        n += 1
    return res, n, overflow


def _isxdigit(c: str) -> bool:
    return c in "0123456789abcdefABCDEF" and c != ""


def _kstrtoull(s: str, base: int) -> tuple[int, int]:
    """(-errno or 0, value)."""
    if base == 0:
        if s[:1] == "0":
            base = 16 if s[1:2].lower() == "x" and s[2:3] != "" and _isxdigit(s[2:3]) else 8
        else:
            base = 10
    if base == 16 and s[:1] == "0" and s[1:2].lower() == "x":
        s = s[2:]
    value, n, overflow = _parse_integer(s, base)
    if overflow:
        return -errno.ERANGE, 0
    if n == 0:
        return -errno.EINVAL, 0
    rest = s[n:]
    if rest[:1] == "\n":
        rest = rest[1:]
    if rest:
        return -errno.EINVAL, 0
    return 0, value


def kstrtoull(s: str, base: int = 0) -> tuple[int, int]:
    """The kernel's kstrtoull(): '+' allowed, one trailing newline allowed."""
    if s[:1] == "+":
        s = s[1:]
    return _kstrtoull(s, base)


def kstrtoll(s: str, base: int = 0) -> tuple[int, int]:
    if s[:1] == "-":
        rv, tmp = _kstrtoull(s[1:], base)
        if rv:
            return rv, 0
        if tmp > (1 << 63):
            return -errno.ERANGE, 0
        return 0, -tmp
    rv, tmp = kstrtoull(s, base)
    if rv:
        return rv, 0
    if tmp >= (1 << 63):
        return -errno.ERANGE, 0
    return 0, tmp


def kstrto(type_name: str, s: str) -> tuple[int, int]:
    """kstrtou8/s16/u16/int/uint/long/ul/ull for a parameter type; (-errno or 0, value)."""
    signed, bits = _INT_TYPES[type_name]
    if signed:
        rv, v = kstrtoll(s)
        if rv:
            return rv, 0
        if not -(1 << (bits - 1)) <= v < (1 << (bits - 1)):
            return -errno.ERANGE, 0
        return 0, v
    rv, v = kstrtoull(s)
    if rv:
        return rv, 0
    if v >> bits:
        return -errno.ERANGE, 0
    return 0, v


def kstrtobool(s: str | None) -> tuple[int, bool]:
    """y/Y/t/T/1, n/N/f/F/0, on/off (first characters only)."""
    if s is None:
        return -errno.EINVAL, False
    c = s[:1]
    if c in ("y", "Y", "t", "T", "1"):
        return 0, True
    if c in ("n", "N", "f", "F", "0"):
        return 0, False
    if c in ("o", "O"):
        c2 = s[1:2]
        if c2 in ("n", "N"):
            return 0, True
        if c2 in ("f", "F"):
            return 0, False
    return -errno.EINVAL, False


# -- the parameters --------------------------------------------------------------------

@dataclass
class KernelParam:
    """One ``struct kernel_param`` of a module, with its current value.

    ``type`` names the ops (``param_ops_<type>``); "array" has ``elem_type``, ``max``
    and ``num`` (None when the module passed no count pointer); "string" has
    ``maxlen``.  ``type`` is "" for ops the module defines itself: their setter is
    module code, which the virtual kernel does not run (any value is accepted).
    """

    name: str
    type: str
    perm: int = 0
    value: Any = None
    flags: int = 0
    level: int = -1
    maxlen: int = 0
    elem_type: str = ""
    max: int = 0
    num: int | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "type": self.type, "perm": self.perm,
                             "value": self.value}
        if self.flags:
            d["flags"] = self.flags
        if self.level != -1:
            d["level"] = self.level
        if self.type == "string":
            d["maxlen"] = self.maxlen
        if self.type == "array":
            d.update(elem_type=self.elem_type, max=self.max, num=self.num)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> KernelParam:
        return cls(d["name"], d["type"], d.get("perm", 0), d.get("value"), d.get("flags", 0),
                   d.get("level", -1), d.get("maxlen", 0), d.get("elem_type", ""),
                   d.get("max", 0), d.get("num"))

    @property
    def noarg(self) -> bool:
        return self.type in NOARG_TYPES

    @property
    def writable(self) -> bool:
        """sysfs store exists only when some write bit is set (S_IWUSR|S_IWGRP|S_IWOTH)."""
        return bool(self.perm & 0o222)


def default_value(type_name: str) -> Any:
    if type_name in _INT_TYPES or type_name == "bint":
        return 0
    if type_name in ("bool", "invbool", "bool_enable_only"):
        return False
    if type_name == "charp":
        return None
    if type_name == "string":
        return ""
    return None


def _set_scalar(type_name: str, name: str, val: str | None, cur: Any, log: Printk,
                maxlen: int = 0) -> tuple[int, Any]:
    """A standard setter: (-errno or 0, new value)."""
    if type_name in _INT_TYPES:
        if val is None:  # only reachable through arrays/sysfs with NULL: kstrto on NULL
            return -errno.EINVAL, cur
        rv, v = kstrto(type_name, val)
        return (rv, cur) if rv else (0, v)
    if type_name in ("bool", "bint"):
        rv, b = kstrtobool("1" if val is None else val)
        if rv:
            return rv, cur
        return 0, (int(b) if type_name == "bint" else b)
    if type_name == "invbool":
        rv, b = kstrtobool("1" if val is None else val)
        return (rv, cur) if rv else (0, not b)
    if type_name == "bool_enable_only":
        rv, b = kstrtobool("1" if val is None else val)
        if rv:
            return rv, cur
        if not b and cur:
            return -errno.EROFS, cur
        return 0, (True if b else cur)
    if type_name == "charp":
        assert val is not None
        if len(val) > CHARP_MAXLEN:
            log.err(f"{name}: string parameter too long")
            return -errno.ENOSPC, cur
        return 0, val
    if type_name == "string":
        assert val is not None
        if len(val) >= maxlen:
            log.err(f"{name}: string doesn't fit in {maxlen - 1} chars.")
            return -errno.ENOSPC, cur
        return 0, val
    return -errno.EINVAL, cur


def _get_scalar(type_name: str, v: Any) -> str:
    """A standard getter's text, with its trailing newline."""
    if type_name == "hexint":
        return f"0x{int(v):06x}\n"
    if type_name in _INT_TYPES or type_name == "bint":
        return f"{int(v)}\n"
    if type_name in ("bool", "bool_enable_only"):
        return "Y\n" if v else "N\n"
    if type_name == "invbool":
        return "N\n" if v else "Y\n"
    if type_name in ("charp", "string"):
        return ("(null)" if v is None else str(v)) + "\n"
    return f"{v}\n"


def param_set(kp: KernelParam, val: str | None, log: Printk) -> int:
    """ops->set(val, kp): update kp.value; return 0 or -errno (messages to ``log``)."""
    if kp.type == "array":
        return _array_set(kp, val, log)
    if kp.type == "":
        kp.value = val
        return 0
    rv, v = _set_scalar(kp.type, kp.name, val, kp.value, log, kp.maxlen)
    if rv == 0:
        kp.value = v
    return rv


def _array_set(kp: KernelParam, val: str | None, log: Printk) -> int:
    if val is None:
        return -errno.EINVAL
    values = list(kp.value) if isinstance(kp.value, list) else []
    values += [default_value(kp.elem_type)] * (kp.max - len(values))
    num = 0
    rest: str | None = val
    ret = 0
    while rest is not None:
        if num == kp.max:
            log.err(f"{kp.name}: can only take {kp.max} arguments")
            ret = -errno.EINVAL
            break
        comma = rest.find(",")
        item, rest = (rest, None) if comma < 0 else (rest[:comma], rest[comma + 1:])
        rv, v = _set_scalar(kp.elem_type, kp.name, item, values[num], log)
        if rv:
            ret = rv
            break
        values[num] = v
        num += 1
    kp.value = values
    if kp.num is not None:
        kp.num = num
    if ret == 0 and num < 1:
        log.err(f"{kp.name}: needs at least 1 arguments")
        return -errno.EINVAL
    return ret


def param_get(kp: KernelParam) -> str:
    """ops->get(buffer, kp): the sysfs text of the parameter."""
    if kp.type == "array":
        values = list(kp.value) if isinstance(kp.value, list) else []
        n = kp.max if kp.num is None else kp.num
        out = ""
        for i in range(n):
            if i:
                out = out[:-1] + ","
            v = values[i] if i < len(values) else default_value(kp.elem_type)
            out += _get_scalar(kp.elem_type, v)
        return out[: PAGE_SIZE - 1]
    if kp.type == "":
        return ("" if kp.value is None else str(kp.value)) + "\n"
    return _get_scalar(kp.type, kp.value)[: PAGE_SIZE - 1]


# -- parse_args ------------------------------------------------------------------------

def next_arg(args: str) -> tuple[str, str | None, str]:
    """Split off the first argument: (param, value or None, rest); lib/cmdline.c."""
    in_quote = quoted = False
    if args[:1] == '"':
        args = args[1:]
        in_quote = quoted = True
    equals = 0
    i = 0
    n = len(args)
    while i < n:
        c = args[i]
        if c in _SPACE and not in_quote:
            break
        if equals == 0 and c == "=":
            equals = i
        if c == '"':
            in_quote = not in_quote
        i += 1
    buf = list(args[:i])
    vstart = -1
    if equals:
        buf[equals] = "\0"
        vstart = equals + 1
        if vstart < i and buf[vstart] == '"':
            vstart += 1
            if buf[i - 1] == '"':
                buf[i - 1] = "\0"
    if quoted and i > 0 and buf[i - 1] == '"':
        buf[i - 1] = "\0"
    tok = "".join(buf)
    param = tok.split("\0", 1)[0]
    val = tok[vstart:].split("\0", 1)[0] if vstart >= 0 else None
    rest = args[i + 1:] if i < n else ""
    return param, val, skip_spaces(rest)


def parameq(a: str, b: str) -> bool:
    """Parameter names are equal with '-' and '_' interchangeable."""
    return a.replace("-", "_") == b.replace("-", "_")


UnknownHandler = Callable[[str, str | None], int]


def parse_args(doing: str, args: str, params: list[KernelParam], log: Printk,
               unknown: UnknownHandler | None = None, min_level: int = -32768,
               max_level: int = 32767,
               on_unsafe: Callable[[KernelParam], None] | None = None) -> tuple[int, str | None]:
    """The kernel's parse_args(): (0 or the last -errno, the text after "--" or None).

    Every error is logged and parsing goes on; the last error is returned.
    """
    args = skip_spaces(args.split("\0", 1)[0])
    err = 0
    while args:
        param, val, args = next_arg(args)
        if val is None and param == "--":
            return err, (None if err else args)
        ret = _parse_one(param, val, params, log, unknown, min_level, max_level, on_unsafe)
        if ret == 0:
            continue
        if val is not None and any(kp.type == "array" and parameq(param, kp.name)
                                   for kp in params):
            val = val.split(",", 1)[0]  # param_array() cut it at each comma it passed
        if ret == -errno.ENOENT:
            log.err(f"{doing}: Unknown parameter `{param}'")
        elif ret == -errno.ENOSPC:
            log.err(f"{doing}: `{val or ''}' too large for parameter `{param}'")
        else:
            log.err(f"{doing}: `{val or ''}' invalid for parameter `{param}'")
        err = ret
    return err, None


def _parse_one(param: str, val: str | None, params: list[KernelParam], log: Printk,
               unknown: UnknownHandler | None, min_level: int, max_level: int,
               on_unsafe: Callable[[KernelParam], None] | None) -> int:
    for kp in params:
        if parameq(param, kp.name):
            if kp.level < min_level or kp.level > max_level:
                return 0
            if val is None and not kp.noarg:
                return -errno.EINVAL
            if kp.flags & KERNEL_PARAM_FL_UNSAFE:
                log.notice(f"Setting dangerous option {kp.name} - tainting kernel")
                if on_unsafe is not None:
                    on_unsafe(kp)
            return param_set(kp, val, log)
    if unknown is not None:
        return unknown(param, val)
    return -errno.ENOENT


def sysfs_store(kp: KernelParam, text: str, log: Printk,
                on_unsafe: Callable[[KernelParam], None] | None = None) -> int:
    """A write to /sys/module/<mod>/parameters/<name>: 0 or -errno.

    sysfs hands the setter the written bytes as they are (a trailing newline
    included); kstrto* accept one trailing newline, strings keep it.
    """
    if not kp.writable:
        return -errno.EACCES
    if kp.flags & KERNEL_PARAM_FL_UNSAFE:
        log.notice(f"Setting dangerous option {kp.name} - tainting kernel")
        if on_unsafe is not None:
            on_unsafe(kp)
    return param_set(kp, text.split("\0", 1)[0], log)


@dataclass
class ParamSpec:
    """How a module declares a parameter in its __param section (before values)."""

    name: str
    type: str
    perm: int
    flags: int = 0
    level: int = -1
    value: Any = None
    maxlen: int = 0
    elem_type: str = ""
    max: int = 0
    num: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def instantiate(self) -> KernelParam:
        value = self.value
        if value is None and self.type not in ("charp", "", "array"):
            value = default_value(self.type)
        if self.type == "array" and value is None:
            value = [default_value(self.elem_type)] * self.max
        return KernelParam(self.name, self.type, self.perm, value, self.flags, self.level,
                           self.maxlen, self.elem_type, self.max, self.num)
