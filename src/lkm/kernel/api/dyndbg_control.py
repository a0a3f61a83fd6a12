"""/proc/dynamic_debug/control (lib/dynamic_debug.c ddebug_proc_show/ddebug_proc_write):
the pr_debug sites of the loaded modules, one line each, and queries written to it.

The kernel's own sites (vmlinux's __dyndbg) are not known to the virtual kernel: the file
lists the modules' sites, oldest module first as ddebug_tables holds them.
"""

from __future__ import annotations

import errno
import os
from typing import Any

from lkm.kernel.api.dynamic_debug import FLAG_CHARS, exec_queries, sites

CONTROL = "/proc/dynamic_debug/control"
FLAG_ORDER = "pmfslt"
_ESCAPES = {"\t": "\\t", "\r": "\\r", "\n": "\\n"}


def describe_flags(flags: int) -> str:
    """ddebug_describe_flags(): the letters of the set flags, ``_`` for none."""
    return "".join(c for c in FLAG_ORDER if flags & FLAG_CHARS[c]) or "_"


def _live(kstate: Any) -> list[Any]:
    from lkm.kernel.module.state import MODULE_STATE_UNFORMED

    return [m for m in reversed(kstate.modules)
            if m.state != MODULE_STATE_UNFORMED and m.memory is not None]


def read_control(kstate: Any) -> str | None:
    from lkm.kernel.api.procfs import _kernel_of

    k = _kernel_of(kstate)
    if k is None or not kstate.profile.enabled("DYNAMIC_DEBUG"):
        return None
    out = ["# filename:lineno [module]function flags format\n"]
    for m in _live(kstate):
        for s in sites(k, m.memory, m.name):
            fmt = "".join(_ESCAPES.get(c, c) for c in s.format)
            out.append(f"{s.filename}:{s.lineno} [{s.modname}]{s.function} "
                       f"={describe_flags(s.flags)} \"{fmt}\"\n")
    return "".join(out)


def write_control(kstate: Any, value: str) -> bool:
    from lkm.kernel.api.procfs import _kernel_of

    k = _kernel_of(kstate)
    if k is None or not kstate.profile.enabled("DYNAMIC_DEBUG"):
        return False
    for q in value.replace("\n", ";").split(";"):
        words = q.split()
        if not words:
            continue
        spec = words[-1]
        if spec[:1] not in ("+", "-", "=") or any(c not in FLAG_CHARS for c in spec[1:]) \
                or len(words) % 2 == 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), CONTROL)
        for m in _live(kstate):
            exec_queries(k, m.memory, m.name, q)
    return True
