"""Timers on the virtual clock (kernel/time/timer.c).

init_timer_key() sets the function and flags and unlinks the timer; add_timer() and
mod_timer() arm it for an absolute ``expires`` in jiffies (mod_timer: 1 when it was
pending); del_timer()/timer_delete() disarm (1 when it was pending).  :func:`run_timers`
runs the callbacks of those due at the clock's jiffies, oldest first; the clock's
advance calls it.  A pending timer is linked (``entry.pprev`` non-NULL) as
timer_pending() checks.
"""

from __future__ import annotations

from typing import Any

from lkm.kernel.api.core import Kernel, kfunc, substate


@substate("timer")
class Timers:
    """Armed timers: address -> expires."""

    def __init__(self, k: Kernel | None = None) -> None:
        self.armed: dict[int, int] = {}

    def to_json(self) -> list[list[int]]:
        return [[a, e] for a, e in self.armed.items()]

    @classmethod
    def from_json(cls, k: Kernel | None, d: list[Any]) -> Timers:
        s = cls(k)
        s.armed = {int(a): int(e) for a, e in d}
        return s


def _pprev(k: Kernel, t: int) -> int:
    return t + k.layouts.offsetof("timer_list", "entry") + 8


def _arm(k: Kernel, timer: int, expires: int) -> int:
    s = k.sub(Timers)
    was = timer in s.armed
    k.mem.write_u64(timer + k.layouts.offsetof("timer_list", "expires"), expires)
    s.armed[timer] = expires
    k.mem.write_u64(_pprev(k, timer), timer)  # any non-NULL: timer_pending()
    return int(was)


def _disarm(k: Kernel, timer: int) -> int:
    was = k.sub(Timers).armed.pop(timer, None) is not None
    k.mem.write_u64(_pprev(k, timer), 0)
    return int(was)


@kfunc()
def init_timer_key(k: Kernel, timer: int, func: int, flags: int, name: int, key: int) -> None:
    """kernel/time/timer.c."""
    lay = k.layouts
    k.mem.write_u64(timer + lay.offsetof("timer_list", "entry"), 0)
    k.mem.write_u64(_pprev(k, timer), 0)
    k.mem.write_u64(timer + lay.offsetof("timer_list", "function"), func)
    k.mem.write_u32(timer + lay.offsetof("timer_list", "flags"), flags)
    k.sub(Timers).armed.pop(timer, None)


@kfunc()
def add_timer(k: Kernel, timer: int) -> None:
    _arm(k, timer, k.mem.read_u64(timer + k.layouts.offsetof("timer_list", "expires")))


@kfunc("mod_timer_pending", "timer_reduce")
def mod_timer(k: Kernel, timer: int, expires: int) -> int:
    return _arm(k, timer, expires)


@kfunc("del_timer_sync", "timer_delete", "timer_delete_sync", "try_to_del_timer_sync",
       "timer_shutdown_sync", "timer_shutdown")
def del_timer(k: Kernel, timer: int) -> int:
    return _disarm(k, timer)


def run_timers(k: Kernel) -> int:
    """Run the timers due now (time_after_eq(jiffies, expires)); how many ran."""
    from lkm.kernel.api.time import clock

    s = k.sub(Timers)
    n = 0
    while True:
        now = clock(k).jiffies()
        due = sorted((e, t) for t, e in s.armed.items() if ((now - e) & (1 << 63)) == 0)
        if not due:
            return n
        _e, t = due[0]
        _disarm(k, t)
        func = k.mem.read_u64(t + k.layouts.offsetof("timer_list", "function"))
        k.cpu.call(func, [t])
        n += 1


def _round(k: Kernel, j: int, force_up: bool = False) -> int:
    """round_jiffies(): to a whole second (CPU 0's skew is 0), not into the past."""
    from lkm.kernel.api.time import clock, hz

    h = hz(k)
    original = j
    rem = j % h
    j = j - rem + h if rem >= h // 4 or force_up else j - rem
    return j if j - clock(k).jiffies() > 0 else original


@kfunc()
def round_jiffies(k: Kernel, j: int) -> int:
    return _round(k, j)


@kfunc()
def round_jiffies_relative(k: Kernel, j: int) -> int:
    from lkm.kernel.api.time import clock

    now = clock(k).jiffies()
    return (_round(k, j + now) - now) & ((1 << 64) - 1)


@kfunc()
def round_jiffies_up(k: Kernel, j: int) -> int:
    return _round(k, j, True)


@kfunc()
def round_jiffies_up_relative(k: Kernel, j: int) -> int:
    from lkm.kernel.api.time import clock

    now = clock(k).jiffies()
    return (_round(k, j + now, True) - now) & ((1 << 64) - 1)
