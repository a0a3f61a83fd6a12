"""/proc/modules (kernel/module/procfs.c m_show()).

One line a module, newest first, UNFORMED modules hidden:
``name size refcount users state address [(taints)]`` where users are the modules
using it, each followed by a comma (``[permanent],`` for an init without exit; ``-``
for none), the state is Live/Loading/Unloading, and a tainted module's letters get
``+`` while loading and ``-`` while unloading (module_flags()).
"""

from __future__ import annotations

from lkm.kernel import taint as T
from lkm.kernel.module.state import (
    MODULE_STATE_COMING,
    MODULE_STATE_GOING,
    MODULE_STATE_LIVE,
    MODULE_STATE_UNFORMED,
    KernelState,
    Module,
)

STATE_NAMES = {MODULE_STATE_LIVE: "Live", MODULE_STATE_COMING: "Loading",
               MODULE_STATE_GOING: "Unloading"}


def module_flags(m: Module, show_state: bool = True) -> str:
    """module_flags(): "(letters)" with "-" while unloading and "+" while loading
    (also printed by print_modules() in an oops); "" for a live untainted module."""
    if not m.taints and not show_state:
        return ""
    if not m.taints and m.state not in (MODULE_STATE_GOING, MODULE_STATE_COMING):
        return ""
    flags = T.module_flags_taint(m.taints)
    if show_state and m.state == MODULE_STATE_GOING:
        flags += "-"
    elif show_state and m.state == MODULE_STATE_COMING:
        flags += "+"
    return f"({flags})"


def proc_modules_line(m: Module) -> str:
    """One line of /proc/modules (m_show())."""
    users = "".join(f"{u}," for u in m.sources)
    if m.has_init and not m.has_exit:
        users += "[permanent],"
    line = (f"{m.name} {m.core_size + m.init_size} {m.refcount()} {users or '-'} "
            f"{STATE_NAMES.get(m.state, 'Live')} 0x{m.base:016x}")
    if m.taints:  # m_show() shows the flags of tainted modules only
        line += " " + module_flags(m)
    return line + "\n"


def proc_modules(k: KernelState) -> str:
    """The text of /proc/modules."""
    return "".join(proc_modules_line(m) for m in k.modules if m.state != MODULE_STATE_UNFORMED)
