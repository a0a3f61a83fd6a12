"""List debugging (lib/list_debug.c, CONFIG_DEBUG_LIST): the checks list_add() and
list_del() make before they touch the list.  A corrupted list is reported as the kernel
reports it (a one-line error; the kernel then BUGs, here the operation is refused), the
6.1 names returning true when the operation may go on, 6.12's ``*_or_report`` likewise.
"""

from __future__ import annotations

from lkm.kernel.api.core import Kernel, kfunc

LIST_POISON1 = 0xDEAD000000000100
LIST_POISON2 = 0xDEAD000000000122


@kfunc("__list_add_valid_or_report")
def __list_add_valid(k: Kernel, new: int, prev: int, next: int) -> int:
    """__list_add_valid(): next->prev == prev, prev->next == next, new not in either."""
    m = k.mem
    if not prev or not next:
        k.log.err(f"list_add corruption. {'prev' if not prev else 'next'} is NULL.")
        return 0
    if m.read_u64(next + 8) != prev:
        k.log.err(f"list_add corruption. next->prev should be prev ({prev:016x}), but was "
                  f"{m.read_u64(next + 8):016x}. (next={next:016x}).")
        return 0
    if m.read_u64(prev) != next:
        k.log.err(f"list_add corruption. prev->next should be next ({next:016x}), but was "
                  f"{m.read_u64(prev):016x}. (prev={prev:016x}).")
        return 0
    if new in (prev, next):
        k.log.err(f"list_add double add: new={new:016x}, prev={prev:016x}, next={next:016x}.")
        return 0
    return 1


@kfunc("__list_del_entry_valid_or_report")
def __list_del_entry_valid(k: Kernel, entry: int) -> int:
    m = k.mem
    nxt, prev = m.read_u64(entry), m.read_u64(entry + 8)
    if nxt == LIST_POISON1:
        k.log.err(f"list_del corruption, {entry:016x}->next is LIST_POISON1 ({nxt:016x})")
        return 0
    if prev == LIST_POISON2:
        k.log.err(f"list_del corruption, {entry:016x}->prev is LIST_POISON2 ({prev:016x})")
        return 0
    if m.read_u64(prev) != entry:
        k.log.err(f"list_del corruption. prev->next should be {entry:016x}, but was "
                  f"{m.read_u64(prev):016x}. (prev={prev:016x})")
        return 0
    if m.read_u64(nxt + 8) != entry:
        k.log.err(f"list_del corruption. next->prev should be {entry:016x}, but was "
                  f"{m.read_u64(nxt + 8):016x}. (next={nxt:016x})")
        return 0
    return 1
