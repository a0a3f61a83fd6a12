"""A module's parameters: its ``__param`` array decoded, and its arguments applied
(kernel/module/main.c find_module_sections() and the parse_args() call of
load_module(); the parsing itself is kernel/params.c, :mod:`lkm.kernel.params`).

struct kernel_param on 64-bit: name (8), mod (8), ops (8), perm (u16), level (s8),
flags (u8), pad (4), arg (8) = 40 bytes; the type is read from the ops symbol the
entry's relocation names (param_ops_int, param_array_ops, ...), the initial value
from where ``arg`` points.
"""

from __future__ import annotations

import struct
from typing import Any

from lkm.kernel.module.internal import LoadError, LoadInfo
from lkm.kernel.module.state import KernelState, Module
from lkm.kernel.module.taint import taint_unsafe_param
from lkm.kernel.params import KernelParam, ParamSpec, parse_args
from lkm.kernel.printk import Printk

KERNEL_PARAM_SIZE = 40
_OPS = {"param_ops_byte": "byte", "param_ops_short": "short", "param_ops_ushort": "ushort",
        "param_ops_int": "int", "param_ops_uint": "uint", "param_ops_long": "long",
        "param_ops_ulong": "ulong", "param_ops_ullong": "ullong", "param_ops_hexint": "hexint",
        "param_ops_bool": "bool", "param_ops_invbool": "invbool", "param_ops_bint": "bint",
        "param_ops_bool_enable_only": "bool_enable_only", "param_ops_charp": "charp",
        "param_ops_string": "string", "param_array_ops": "array"}
_SIZES = {"byte": (1, False), "short": (2, True), "ushort": (2, False), "int": (4, True),
          "uint": (4, False), "long": (8, True), "ulong": (8, False), "ullong": (8, False),
          "hexint": (4, False), "bint": (4, True)}
_MAX_ARRAY = 4096


def _read_value(info: LoadInfo, typ: str, sec: int, off: int) -> Any:
    if not 0 < sec < info.shnum:
        return None
    if typ == "charp":
        t = info.reloc_target(sec, off)
        if t is None or not t[0]:
            return None
        return info.string_at(t[0], t[1])
    data = info.sec_bytes(sec)
    if typ in ("bool", "invbool", "bool_enable_only"):
        return bool(data[off]) if 0 <= off < len(data) else False
    size, signed = _SIZES.get(typ, (4, True))
    raw = data[off:off + size] if off >= 0 else b""
    if len(raw) < size:
        return 0
    return int.from_bytes(raw, "little", signed=signed)


def _ops_type(info: LoadInfo, sec: int, off: int) -> str:
    ops = info.reloc_target(sec, off)
    return _OPS.get(ops[2], "") if ops is not None and not ops[0] else ""


def _string_param(info: LoadInfo, spec: ParamSpec, sec: int, off: int) -> None:
    """struct kparam_string {unsigned int maxlen; char *string}."""
    data = info.sec_bytes(sec)
    spec.maxlen = struct.unpack_from("<I", data, off)[0] if len(data) >= off + 4 else 0
    st = info.reloc_target(sec, off + 8)
    spec.value = info.string_at(st[0], st[1]) if st is not None and st[0] else ""


def _array_param(info: LoadInfo, spec: ParamSpec, sec: int, off: int) -> None:
    """struct kparam_array {unsigned int max, elemsize; unsigned int *num; ops; elem}."""
    data = info.sec_bytes(sec)
    mx, elemsize = struct.unpack_from("<II", data, off) if len(data) >= off + 8 else (0, 0)
    spec.elem_type = _ops_type(info, sec, off + 16)
    spec.max = mx
    nump = info.reloc_target(sec, off + 8)
    if nump is not None and nump[0]:
        spec.num = _read_value(info, "uint", nump[0], nump[1])
    elem = info.reloc_target(sec, off + 24)
    vals = []
    for e in range(min(mx, _MAX_ARRAY)):
        if elem is not None and elem[0]:
            vals.append(_read_value(info, spec.elem_type, elem[0], elem[1] + e * elemsize))
        else:
            vals.append(None)
    spec.value = vals


def module_params(info: LoadInfo) -> list[ParamSpec]:
    """The module's struct kernel_param array (__param), with initial values."""
    kp = info.find_sec("__param")
    if not kp:
        return []
    raw = info.sec_bytes(kp)
    out: list[ParamSpec] = []
    for j in range(info.sechdrs[kp].sh_size // KERNEL_PARAM_SIZE):
        o = j * KERNEL_PARAM_SIZE
        t = info.reloc_target(kp, o)
        name = info.string_at(t[0], t[1]) if t is not None and t[0] else ""
        perm, level, pflags = struct.unpack_from("<HbB", raw, o + 24) if len(raw) >= o + 28 \
            else (0, -1, 0)
        spec = ParamSpec(name, _ops_type(info, kp, o + 16), perm, pflags, level)
        arg = info.reloc_target(kp, o + 32)
        if arg is not None and arg[0]:
            sec, off = arg[0], arg[1]
            if spec.type == "string":
                _string_param(info, spec, sec, off)
            elif spec.type == "array":
                _array_param(info, spec, sec, off)
            elif spec.type:
                spec.value = _read_value(info, spec.type, sec, off)
        out.append(spec)
    return out


def parse_module_args(k: KernelState, mod: Module, args: str, log: Printk) -> None:
    """load_module()'s parse_args() with unknown_module_param_cb(): unknown parameters
    are reported and ignored (async_probe and, with dynamic debug, dyndbg silently)."""
    dyndbg = k.profile.enabled("DYNAMIC_DEBUG")

    def unknown(param: str, val: str | None) -> int:
        if param == "async_probe":
            return 0
        p = param.split(".", 1)[1] if "." in param else param
        if dyndbg and p == "dyndbg":
            return 0
        log.warn(f"{mod.name}: unknown parameter '{param}' ignored")
        return 0

    def unsafe(_kp: KernelParam) -> None:
        taint_unsafe_param(k, log)

    err, after = parse_args(mod.name, args, mod.params, log, unknown, on_unsafe=unsafe)
    if err:
        raise LoadError(err)
    if after is not None:
        log.warn(f"{mod.name}: parameters '{after}' after `--' ignored")
