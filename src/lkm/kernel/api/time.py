"""Time on a virtual clock (kernel/time/timekeeping.c, kernel/time/time.c, kernel/time/timer.c,
arch/x86/lib/delay.c).

The monotonic clock is the real time since the virtual kernel's boot at the start of the
syscall plus the virtual time spent in it: sleeps and delays advance it at once, and the
CPU's timer interrupt (every :data:`lkm.kernel.exec.machine.TICK` instructions) adds a
jiffy, so that a busy loop waiting on ``jiffies`` ends.  ``jiffies`` is data module code
reads directly: it starts where the kernel's does, 300 s before the 32-bit wrap
(INITIAL_JIFFIES), and advances at CONFIG_HZ.
"""

from __future__ import annotations

import time as _time
from typing import Any

from lkm.kernel.api.core import Kernel, kdata, kdata_alias, kfunc, substate

NSEC_PER_SEC = 1_000_000_000
NSEC_PER_MSEC = 1_000_000
NSEC_PER_USEC = 1_000
MAX_JIFFY_OFFSET = ((1 << 63) - 1) >> 1
TK_OFFS_REAL, TK_OFFS_BOOT, TK_OFFS_TAI = 0, 1, 2


def hz(k: Kernel) -> int:
    return int(k.rt.profile.config.get("HZ", "250"))


def initial_jiffies(k: Kernel) -> int:
    return ((-300 * hz(k)) & 0xFFFFFFFF)


@substate("time")
class Clock:
    """The boot's wall-clock time and the virtual time added to the real one."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.boot_real = float(getattr(k.rt, "boot", 0.0) or _time.time())
        self.offset_ns = 0
        self.entry_ns = 0
        self.enter()

    def to_json(self) -> dict[str, Any]:
        return {"boot": self.boot_real, "offset": self.offset_ns}

    @classmethod
    def from_json(cls, k: Kernel, d: dict[str, Any]) -> Clock:
        c = cls.__new__(cls)
        c.k = k
        c.boot_real = float(d["boot"])
        c.offset_ns = int(d["offset"])
        c.entry_ns = 0
        c.enter()
        return c

    def enter(self) -> None:
        """A syscall starts: the real time since boot, frozen for the call."""
        self.entry_ns = max(0, int((_time.time() - self.boot_real) * NSEC_PER_SEC))
        self.sync()

    @property
    def mono_ns(self) -> int:
        return self.entry_ns + self.offset_ns

    def advance(self, ns: int) -> None:
        self.offset_ns += max(0, ns)
        self.sync()

    def jiffies(self) -> int:
        return (initial_jiffies(self.k) + self.mono_ns * hz(self.k) // NSEC_PER_SEC) \
            & 0xFFFFFFFFFFFFFFFF

    def sync(self) -> None:
        addr = self.k.rt.symbols.get("jiffies")
        if addr is not None:
            self.k.mem.write_u64(addr, self.jiffies())

    def real_ns(self) -> int:
        return int(self.boot_real * NSEC_PER_SEC) + self.mono_ns


def clock(k: Kernel) -> Clock:
    return k.sub(Clock)


@kdata("jiffies", 8, align=64)
def _jiffies(k: Kernel, addr: int) -> None:
    k.mem.write_u64(addr, clock(k).jiffies())


kdata_alias("jiffies_64", "jiffies")


def tick(k: Kernel) -> None:
    """The timer interrupt: one jiffy passes."""
    clock(k).advance(NSEC_PER_SEC // hz(k))


# -- ktime (kernel/time/timekeeping.c) ---------------------------------------------------------

@kfunc("ktime_get_raw", "ktime_get_mono_fast_ns", "ktime_get_raw_fast_ns",
       "ktime_get_boot_fast_ns", "ktime_get_coarse")
def ktime_get(k: Kernel) -> int:
    return clock(k).mono_ns


@kfunc("ktime_get_coarse_with_offset")
def ktime_get_with_offset(k: Kernel, offs: int) -> int:
    c = clock(k)
    return c.real_ns() if offs & 0xFFFFFFFF in (TK_OFFS_REAL, TK_OFFS_TAI) else c.mono_ns


@kfunc("ktime_get_real_fast_ns", "ktime_get_coarse_real")
def ktime_get_real(k: Kernel) -> int:
    return clock(k).real_ns()


@kfunc()
def ktime_get_seconds(k: Kernel) -> int:
    return clock(k).mono_ns // NSEC_PER_SEC


@kfunc()
def ktime_get_real_seconds(k: Kernel) -> int:
    return clock(k).real_ns() // NSEC_PER_SEC


def _ts64(k: Kernel, ts: int, ns: int) -> None:
    k.mem.write_u64(ts, ns // NSEC_PER_SEC)
    k.mem.write_u64(ts + 8, ns % NSEC_PER_SEC)


@kfunc("ktime_get_raw_ts64")
def ktime_get_ts64(k: Kernel, ts: int) -> None:
    _ts64(k, ts, clock(k).mono_ns)


@kfunc("ktime_get_coarse_real_ts64")
def ktime_get_real_ts64(k: Kernel, ts: int) -> None:
    _ts64(k, ts, clock(k).real_ns())


@kfunc()
def ktime_get_boottime_ts64(k: Kernel, ts: int) -> None:
    _ts64(k, ts, clock(k).mono_ns)


# -- jiffies conversions (kernel/time/time.c) ------------------------------------------------

@kfunc()
def jiffies_to_msecs(k: Kernel, j: int) -> int:
    return (1000 // hz(k)) * (j & 0xFFFFFFFFFFFFFFFF) & 0xFFFFFFFF


@kfunc()
def jiffies_to_usecs(k: Kernel, j: int) -> int:
    return (1_000_000 // hz(k)) * (j & 0xFFFFFFFFFFFFFFFF) & 0xFFFFFFFF


@kfunc()
def __msecs_to_jiffies(k: Kernel, m: int) -> int:
    m &= 0xFFFFFFFF
    if m > 0x7FFFFFFF:
        return MAX_JIFFY_OFFSET
    return (m + (1000 // hz(k)) - 1) // (1000 // hz(k))


@kfunc()
def __usecs_to_jiffies(k: Kernel, u: int) -> int:
    u &= 0xFFFFFFFF
    per = 1_000_000 // hz(k)
    return (u + per - 1) // per


@kfunc()
def jiffies64_to_nsecs(k: Kernel, j: int) -> int:
    return j * (NSEC_PER_SEC // hz(k))


@kfunc()
def jiffies64_to_msecs(k: Kernel, j: int) -> int:
    return j * (1000 // hz(k))


@kfunc()
def nsecs_to_jiffies(k: Kernel, n: int) -> int:
    return n // (NSEC_PER_SEC // hz(k))


@kfunc()
def nsecs_to_jiffies64(k: Kernel, n: int) -> int:
    return n // (NSEC_PER_SEC // hz(k))


# -- sleeping and delays -----------------------------------------------------------------------

def _sleep_jiffies(k: Kernel, j: int) -> None:
    from lkm.kernel.api.sched import schedule_debug

    schedule_debug(k)
    clock(k).advance(j * (NSEC_PER_SEC // hz(k)))


@kfunc("msleep_interruptible")
def msleep(k: Kernel, msecs: int) -> int:
    """kernel/time/timer.c: msecs_to_jiffies(msecs) + 1 jiffies, at least."""
    _sleep_jiffies(k, __msecs_to_jiffies(k, msecs) + 1)
    return 0


@kfunc("schedule_timeout_interruptible", "schedule_timeout_uninterruptible",
       "schedule_timeout_killable", "schedule_timeout_idle")
def schedule_timeout(k: Kernel, timeout: int) -> int:
    if timeout & 0xFFFFFFFFFFFFFFFF >= MAX_JIFFY_OFFSET:
        from lkm.kernel.exec.faults import BudgetExhausted

        raise BudgetExhausted(k.caller, 0)  # sleeps for ever: nothing will wake it
    _sleep_jiffies(k, timeout)
    return 0


@kfunc()
def usleep_range_state(k: Kernel, min_: int, max_: int, state: int) -> None:
    """kernel/time/timer.c: sleeps min..max us (an hrtimer: the minimum here)."""
    from lkm.kernel.api.sched import schedule_debug

    schedule_debug(k)
    clock(k).advance(min_ * NSEC_PER_USEC)


@kfunc()
def __udelay(k: Kernel, usecs: int) -> None:
    """arch/x86/lib/delay.c: a busy wait, no scheduling."""
    clock(k).advance(usecs * NSEC_PER_USEC)


@kfunc()
def __ndelay(k: Kernel, nsecs: int) -> None:
    clock(k).advance(nsecs)


@kfunc()
def __const_udelay(k: Kernel, xloops: int) -> None:
    """xloops = usecs * 0x10c7 (2^32 / 10^6, rounded up): back to nanoseconds."""
    clock(k).advance((xloops & 0xFFFFFFFFFFFFFFFF) * 1000 // 0x10C7)
