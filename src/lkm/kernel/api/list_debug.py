"""CONFIG_DEBUG_LIST's checks (lib/list_debug.c): list_add() and list_del() call them
out of line (6.1: ``__list_add_valid``, ``__list_del_entry_valid``; 6.12 the
``_or_report`` names).  A corrupted list prints the kernel's message and, as Debian sets
CONFIG_BUG_ON_DATA_CORRUPTION, is a BUG in lib/list_debug.c."""

from __future__ import annotations

from lkm.kernel.api.core import Kernel, kfunc
from lkm.kernel.exec.faults import KernelBug

LIST_POISON1 = 0xDEAD000000000100
LIST_POISON2 = 0xDEAD000000000122
DEL = "__list_del_entry_valid"


def _corrupt(k: Kernel, text: str, line: int, fn: str = "__list_add_valid") -> int:
    k.log.err(text)
    raise KernelBug("lib/list_debug.c", line, k.caller, function=fn)


@kfunc("__list_add_valid_or_report")
def __list_add_valid(k: Kernel, new: int, prev: int, next: int) -> int:
    """lib/list_debug.c."""
    m = k.mem
    if not prev:
        return _corrupt(k, "list_add corruption. prev is NULL.", 26)
    if not next:
        return _corrupt(k, "list_add corruption. next is NULL.", 26)
    if m.read_u64(next + 8) != prev:
        return _corrupt(k, f"list_add corruption. next->prev should be prev ({prev:016x}), "
                        f"but was {m.read_u64(next + 8):016x}. (next={next:016x}).", 29)
    if m.read_u64(prev) != next:
        return _corrupt(k, f"list_add corruption. prev->next should be next ({next:016x}), "
                        f"but was {m.read_u64(prev):016x}. (prev={prev:016x}).", 32)
    if new in (prev, next):
        return _corrupt(k, f"list_add double add: new={new:016x}, prev={prev:016x}, "
                        f"next={next:016x}.", 35)
    return 1


@kfunc("__list_del_entry_valid_or_report")
def __list_del_entry_valid(k: Kernel, entry: int) -> int:
    """lib/list_debug.c."""
    m = k.mem
    prev, next = m.read_u64(entry + 8), m.read_u64(entry)
    if next == LIST_POISON1:
        return _corrupt(k, f"list_del corruption, {entry:016x}->next is LIST_POISON1 "
                        f"({LIST_POISON1:016x})", 51, DEL)
    if prev == LIST_POISON2:
        return _corrupt(k, f"list_del corruption, {entry:016x}->prev is LIST_POISON2 "
                        f"({LIST_POISON2:016x})", 54, DEL)
    if not next or not prev:
        return _corrupt(k, f"list_del corruption, {entry:016x}->"
                        f"{'next' if not next else 'prev'} is NULL", 48, DEL)
    if m.read_u64(prev) != entry:
        return _corrupt(k, f"list_del corruption. prev->next should be {entry:016x}, but "
                        f"was {m.read_u64(prev):016x}. (prev={prev:016x})", 57, DEL)
    if m.read_u64(next + 8) != entry:
        return _corrupt(k, f"list_del corruption. next->prev should be {entry:016x}, but "
                        f"was {m.read_u64(next + 8):016x}. (next={next:016x})", 60, DEL)
    return 1
