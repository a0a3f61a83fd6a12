"""Wait queues and completions on one CPU without other tasks (kernel/sched/wait.c,
swait.c, completion.c).

Heads are initialised as the kernel does (an empty list, an unlocked lock).  Nothing else
runs while module code waits, so a wake-up finds no sleeper, complete() only counts, and
a wait for a completion nobody completed times out at once (the timeout variants return
0; the uninterruptible wait is what hangs in the kernel, here it returns).
"""

from __future__ import annotations

from lkm.kernel.api.core import Kernel, kfunc
from lkm.kernel.api.driver_base import init_list_head

UINT_MAX = 0xFFFFFFFF


@kfunc()
def __init_waitqueue_head(k: Kernel, wq_head: int, name: int, key: int) -> None:
    """kernel/sched/wait.c."""
    k.mem.write_u32(wq_head, 0)
    init_list_head(k, wq_head + k.layouts.offsetof("wait_queue_head", "head"))


@kfunc()
def __init_swait_queue_head(k: Kernel, q: int, name: int, key: int) -> None:
    """kernel/sched/swait.c."""
    k.mem.write_u32(q, 0)
    init_list_head(k, q + k.layouts.offsetof("swait_queue_head", "task_list"))


@kfunc("__wake_up_sync", "__wake_up_locked", "__wake_up_sync_key", "__wake_up_locked_key")
def __wake_up(k: Kernel, wq_head: int, mode: int, nr: int, key: int) -> int:
    return 0


def _done(k: Kernel, x: int) -> int:
    return x + k.layouts.offsetof("completion", "done")


@kfunc()
def complete(k: Kernel, x: int) -> None:
    """kernel/sched/completion.c: done++ (saturating at UINT_MAX)."""
    d = k.mem.read_u32(_done(k, x))
    if d != UINT_MAX:
        k.mem.write_u32(_done(k, x), d + 1)


@kfunc()
def complete_all(k: Kernel, x: int) -> None:
    k.mem.write_u32(_done(k, x), UINT_MAX)


def _take(k: Kernel, x: int) -> bool:
    d = k.mem.read_u32(_done(k, x))
    if not d:
        return False
    if d != UINT_MAX:
        k.mem.write_u32(_done(k, x), d - 1)
    return True


@kfunc("wait_for_completion_io", "wait_for_completion_killable",
       "wait_for_completion_interruptible")
def wait_for_completion(k: Kernel, x: int) -> int:
    _take(k, x)
    return 0


@kfunc("wait_for_completion_io_timeout", "wait_for_completion_interruptible_timeout",
       "wait_for_completion_killable_timeout")
def wait_for_completion_timeout(k: Kernel, x: int, timeout: int) -> int:
    """The remaining jiffies (at least 1) when done, else 0: the time ran out."""
    return max(1, timeout) if _take(k, x) else 0


@kfunc()
def try_wait_for_completion(k: Kernel, x: int) -> int:
    return int(_take(k, x))


@kfunc()
def completion_done(k: Kernel, x: int) -> int:
    return int(k.mem.read_u32(_done(k, x)) != 0)
