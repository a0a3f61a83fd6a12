"""Modules seen from module code (kernel/module/main.c): references, symbol_get.

``THIS_MODULE`` is the address of a module's ``__this_module``; the reference count is the
loader's (what /sys/module/M/refcnt and lsmod show), so try_module_get() from code and
rmmod's refusal agree.  A call into another module's exported function needs nothing
here: the loader resolved it to that module's code.
"""

from __future__ import annotations

from typing import Any

from lkm.kernel.api.core import Kernel, kfunc

MODULE_STATE_GOING = 2


def module_at(k: Kernel, mod: int) -> Any:
    """The loader's Module whose struct module is at ``mod`` (None: not a module)."""
    for code in k.rt.code.values():
        if code.memory.this_module == mod:
            return k.rt.kstate.find_module(code.name, even_unformed=True)
    return None


@kfunc()
def try_module_get(k: Kernel, module: int) -> int:
    """module_is_live() && atomic_inc_not_zero(&module->refcnt)."""
    if not module:
        return 1
    m = module_at(k, module)
    if m is None or m.state == MODULE_STATE_GOING or m.refcnt <= 0:
        return 0
    m.refcnt += 1
    return 1


@kfunc()
def __module_get(k: Kernel, module: int) -> None:
    m = module_at(k, module) if module else None
    if m is not None:
        m.refcnt += 1


@kfunc()
def module_put(k: Kernel, module: int) -> None:
    m = module_at(k, module) if module else None
    if m is not None:
        m.refcnt -= 1


@kfunc()
def module_refcount(k: Kernel, mod: int) -> int:
    m = module_at(k, mod)
    return (m.refcount() if m is not None else 0) & 0xFFFFFFFF


def _export_owner(k: Kernel, name: str) -> tuple[Any, int] | None:
    for code in k.rt.code.values():
        m = k.rt.kstate.find_module(code.name)
        if m is not None and name in m.syms:
            s = code.memory.symbol(name)
            if s is not None:
                return m, s.addr
    return None


@kfunc()
def __symbol_get(k: Kernel, symbol: int) -> int:
    """The export's address, its owner's reference taken (strong_try_module_get)."""
    name = k.text(symbol, 256)
    found = _export_owner(k, name)
    if found is not None:
        m, addr = found
        if m.state == MODULE_STATE_GOING or m.refcnt <= 0:
            return 0
        m.refcnt += 1
        return addr
    if name in k.rt.profile.exports:
        return k.symbol(name)
    return 0


@kfunc()
def __symbol_put(k: Kernel, symbol: int) -> None:
    found = _export_owner(k, k.text(symbol, 256))
    if found is not None:
        found[0].refcnt -= 1


@kfunc()
def symbol_put_addr(k: Kernel, addr: int) -> None:
    for code in k.rt.code.values():
        if code.contains(addr):
            m = k.rt.kstate.find_module(code.name)
            if m is not None:
                m.refcnt -= 1
            return
