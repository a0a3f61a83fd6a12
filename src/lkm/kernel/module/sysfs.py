"""/sys/module (kernel/module/sysfs.c, kernel/params.c's module_kset, decompress.c).

A loaded module's directory holds uevent, initstate, coresize, initsize, taint,
refcnt, version and srcversion (when given), holders/, parameters/ (the parameters
with perm != 0), sections/ and notes/.  A built-in with sysfs presence has
parameters/ and uevent; ``module`` itself has parameters/sig_enforce.  Paths come
split ("sys", "module", name, ...); failures are OSError with kernfs's errno.
"""

from __future__ import annotations

import errno

from lkm.kernel import taint as T
from lkm.kernel.kernfs import kernfs_error, kernfs_order
from lkm.kernel.module.state import (
    MODULE_STATE_COMING,
    MODULE_STATE_GOING,
    MODULE_STATE_LIVE,
    MODULE_STATE_UNFORMED,
    KernelState,
    Module,
)
from lkm.kernel.module.taint import taint_unsafe_param
from lkm.kernel.params import KernelParam, kstrtobool, param_get, sysfs_store
from lkm.kernel.printk import Printk

SIG_ENFORCE = "/sys/module/module/parameters/sig_enforce"
COMPRESSION = "/sys/module/compression"
STATE_NAMES = {MODULE_STATE_LIVE: "live", MODULE_STATE_COMING: "coming",
               MODULE_STATE_GOING: "going"}


def module_entries(m: Module) -> dict[str, str | None]:
    """name -> file text (None for a directory) of /sys/module/<loaded module>/."""
    e: dict[str, str | None] = {
        "coresize": f"{m.core_size}\n", "initsize": f"{m.init_size}\n",
        "initstate": f"{STATE_NAMES.get(m.state, 'unknown')}\n",
        "refcnt": f"{m.refcount()}\n", "taint": T.module_flags_taint(m.taints) + "\n",
        "uevent": "", "holders": None,
    }
    if m.version is not None:
        e["version"] = m.version + "\n"
    if m.srcversion is not None:
        e["srcversion"] = m.srcversion + "\n"
    if any(p.perm for p in m.params):
        e["parameters"] = None
    if m.sections:
        e["sections"] = None
    if m.notes:
        e["notes"] = None
    return e


def _has_builtin_dir(k: KernelState, name: str) -> bool:
    return name in k.profile.builtin_sysfs or name == "module"


def read(k: KernelState, parts: list[str], path: str) -> str | None:
    """The text of a /sys/module file; None when the path is not one of this tree's."""
    if path == SIG_ENFORCE:
        return "Y\n" if k.sig_enforce else "N\n"
    if path == COMPRESSION and k.profile.compression:
        return k.profile.compression + "\n"
    if len(parts) < 3:
        return None
    m = k.find_module(parts[2])
    if m is not None:
        return _read_module(m, parts[3:], path, k)
    if _has_builtin_dir(k, parts[2]):
        if parts[3:] == ["uevent"]:
            raise kernfs_error(errno.EACCES, path)
        if len(parts) == 3 or parts[3:] == ["parameters"]:
            raise kernfs_error(errno.EISDIR, path)
    return None


def _visible_param(m: Module, name: str) -> KernelParam | None:
    for kp in m.params:
        if kp.perm and kp.name == name:
            return kp
    return None


def _read_module(m: Module, rest: list[str], path: str, k: KernelState | None = None) -> str:
    entries = module_entries(m)
    if not rest:
        raise kernfs_error(errno.EISDIR, path)
    name = rest[0]
    if name not in entries:
        raise kernfs_error(errno.ENOENT, path)
    if len(rest) == 1:
        text = entries[name]
        if name == "uevent":
            raise kernfs_error(errno.EACCES, path)
        if text is None:
            raise kernfs_error(errno.EISDIR, path)
        return text
    if len(rest) != 2:
        raise kernfs_error(errno.ENOENT, path)
    leaf = rest[1]
    if name == "parameters":
        kp = _visible_param(m, leaf)
        if kp is not None:
            if not kp.perm & 0o444:
                raise kernfs_error(errno.EACCES, path)
            from lkm.kernel.exec.state import ExecKernelState  # the module's ops->get

            shown = k.param_show(m, kp) if isinstance(k, ExecKernelState) else None
            return param_get(kp) if shown is None else shown
    elif name == "holders":
        if leaf in m.sources:
            raise kernfs_error(errno.EISDIR, path)
    elif name == "sections":
        for sname, addr in m.sections:
            if sname == leaf:
                return f"0x{addr:016x}\n"
    elif name == "notes":
        for nname, data in m.notes:
            if nname == leaf:
                return data.decode("latin-1")
    raise kernfs_error(errno.ENOENT, path)


def listdir(k: KernelState, parts: list[str], path: str) -> list[str] | None:
    """The entries of a /sys/module directory in readdir order; None when not ours."""
    if parts == ["sys", "module"]:
        names = [m.name for m in k.modules if m.state != MODULE_STATE_UNFORMED]
        names += [*k.profile.builtin_sysfs, "module"]
        if k.profile.compression:
            names.append("compression")
        return kernfs_order(names)
    if len(parts) < 3:
        return None
    m = k.find_module(parts[2])
    if m is not None:
        return _listdir_module(m, parts, path)
    if _has_builtin_dir(k, parts[2]):
        if len(parts) == 3:
            return kernfs_order(["parameters", "uevent"])
        if parts[3:] == ["parameters"]:
            return ["sig_enforce"] if parts[2] == "module" else []
    return None


def _listdir_module(m: Module, parts: list[str], path: str) -> list[str] | None:
    entries = module_entries(m)
    if len(parts) == 3:
        return kernfs_order(list(entries))
    sub = parts[3]
    if len(parts) == 4 and sub in entries:
        if entries[sub] is not None:
            raise kernfs_error(errno.ENOTDIR, path)
        if sub == "holders":
            return kernfs_order(m.sources)
        if sub == "parameters":
            return kernfs_order([p.name for p in m.params if p.perm])
        if sub == "sections":
            return kernfs_order([s for s, _ in m.sections])
        return kernfs_order([n for n, _ in m.notes])
    return None


def write(k: KernelState, parts: list[str], path: str, value: str, log: Printk) -> bool:
    """A write to a /sys/module file, validated as the kernel does; False when the path
    is not a writable file of this tree."""
    if path == SIG_ENFORCE:
        # param_set_bool_enable_only(): it can be set, never cleared
        rv, b = kstrtobool(value)
        if rv:
            raise kernfs_error(-rv, path)
        if not b and k.sig_enforce:
            raise kernfs_error(errno.EROFS, path)
        if b:
            k.sig_enforce = True
        return True
    if len(parts) == 5 and parts[3] == "parameters":
        m = k.find_module(parts[2])
        kp = _visible_param(m, parts[4]) if m is not None else None
        if m is not None and kp is not None:
            from lkm.kernel.exec.state import ExecKernelState  # the module's ops->set

            stored = k.param_store(m, kp, value, log) if isinstance(k, ExecKernelState) \
                else None
            rv = sysfs_store(kp, value, log, on_unsafe=lambda _kp: taint_unsafe_param(k, log)) \
                if stored is None else stored
            if rv:
                raise kernfs_error(-rv, path)
            return True
    return False
