"""Workqueues and delayed work (kernel/workqueue.c), run cooperatively.

alloc_workqueue() gives a ``struct workqueue_struct`` (its name set); the system
workqueues (``system_wq``...) are data pointers to such structs.  queue_work_on() sets the
work's PENDING bit (false when already pending) and keeps it on the pending list; the
virtual kernel has one CPU and no kworker thread, so pending work runs at the
well-defined points the API gives: flush_work(), flush_workqueue(), drain and
destroy_workqueue(), flush_delayed_work(), cancel_*_sync() of a running item (a cancel
of a pending one drops it, returning true), and :func:`run_pending` (called when the
virtual clock advances).  Delayed work is due ``delay`` jiffies later.
"""

from __future__ import annotations

from typing import Any

from lkm.kernel.api.core import Kernel, kdata, kfunc, substate
from lkm.kernel.api.slab import slab

WORK_STRUCT_PENDING = 1
SYSTEM_WQS = ("system_wq", "system_highpri_wq", "system_long_wq", "system_unbound_wq",
              "system_freezable_wq", "system_power_efficient_wq",
              "system_freezable_power_efficient_wq", "system_bh_wq", "system_bh_highpri_wq")


@substate("workqueue")
class Workqueues:
    """Workqueues by address (name) and the pending work: [work, wq, due jiffies or 0,
    the delayed_work (0: plain work)]."""

    def __init__(self, k: Kernel | None = None) -> None:
        self.wqs: dict[int, str] = {}
        self.pending: list[list[int]] = []

    def to_json(self) -> dict[str, Any]:
        return {"wqs": sorted(self.wqs.items()), "pending": self.pending}

    @classmethod
    def from_json(cls, k: Kernel | None, d: dict[str, Any]) -> Workqueues:
        s = cls(k)
        s.wqs = {int(a): str(n) for a, n in d["wqs"]}
        s.pending = [list(p) for p in d["pending"]]
        return s


def wq_state(k: Kernel) -> Workqueues:
    return k.sub(Workqueues)


def _new_wq(k: Kernel, name: str) -> int:
    lay = k.layouts
    wq = slab(k).kmalloc(lay.sizeof("workqueue_struct"), 0)
    raw = name.encode()[:23] + b"\0"
    k.mem.write(wq + lay.offsetof("workqueue_struct", "name"), raw)
    wq_state(k).wqs[wq] = name
    return wq


def _system_wq(name: str) -> Any:
    def init(k: Kernel, addr: int) -> None:
        k.mem.write_u64(addr, _new_wq(k, name.removeprefix("system_").removesuffix("_wq")
                                      if name != "system_wq" else "events"))
    return init


for _n in SYSTEM_WQS:
    kdata(_n, 8)(_system_wq(_n))


def _data(k: Kernel, work: int) -> int:
    return work + k.layouts.offsetof("work_struct", "data")


def _set_pending(k: Kernel, work: int) -> bool:
    """test_and_set_bit(WORK_STRUCT_PENDING_BIT): True if it was clear."""
    v = k.mem.read_u64(_data(k, work))
    if v & WORK_STRUCT_PENDING:
        return False
    k.mem.write_u64(_data(k, work), v | WORK_STRUCT_PENDING)
    return True


def _run(k: Kernel, item: list[int]) -> None:
    work = item[0]
    v = k.mem.read_u64(_data(k, work))
    k.mem.write_u64(_data(k, work), v & ~WORK_STRUCT_PENDING)
    func = k.mem.read_u64(work + k.layouts.offsetof("work_struct", "func"))
    k.cpu.call(func, [work])


def run_pending(k: Kernel, wq: int | None = None, work: int | None = None,
                due_only: bool = False) -> int:
    """Run the pending work (of ``wq``, or just ``work``; ``due_only``: delayed work whose
    time has come), in queueing order, including work queued meanwhile."""
    from lkm.kernel.api.time import clock

    s = wq_state(k)
    n = 0
    while True:
        now = clock(k).jiffies()
        todo = [p for p in s.pending
                if (wq is None or p[1] == wq) and (work is None or p[0] == work)
                and (not due_only or not p[2] or p[2] - now <= 0)]
        if not todo:
            return n
        item = todo[0]
        s.pending.remove(item)
        _run(k, item)
        n += 1


@kfunc("alloc_workqueue_noprof")
def alloc_workqueue(k: Kernel, fmt: int, flags: int, max_active: int) -> int:
    """kernel/workqueue.c (the name is the format's text: its arguments are not used)."""
    return _new_wq(k, k.text(fmt, 64))


@kfunc()
def destroy_workqueue(k: Kernel, wq: int) -> None:
    run_pending(k, wq)
    if wq_state(k).wqs.pop(wq, None) is not None:
        slab(k).kfree(wq)


@kfunc("__flush_workqueue", "drain_workqueue")
def flush_workqueue(k: Kernel, wq: int) -> None:
    run_pending(k, wq)


@kfunc()
def queue_work_on(k: Kernel, cpu: int, wq: int, work: int) -> int:
    if not _set_pending(k, work):
        return 0
    wq_state(k).pending.append([work, wq, 0, 0])
    return 1


@kfunc()
def queue_delayed_work_on(k: Kernel, cpu: int, wq: int, dwork: int, delay: int) -> int:
    from lkm.kernel.api.time import clock

    work = dwork + k.layouts.offsetof("delayed_work", "work")
    if not _set_pending(k, work):
        return 0
    due = (clock(k).jiffies() + delay) & ((1 << 64) - 1) if delay else 0
    wq_state(k).pending.append([work, wq, due, dwork])
    return 1


@kfunc()
def mod_delayed_work_on(k: Kernel, cpu: int, wq: int, dwork: int, delay: int) -> int:
    was = _cancel(k, dwork + k.layouts.offsetof("delayed_work", "work"))
    queue_delayed_work_on(k, cpu, wq, dwork, delay)
    return int(was)


def _cancel(k: Kernel, work: int) -> bool:
    s = wq_state(k)
    items = [p for p in s.pending if p[0] == work]
    for p in items:
        s.pending.remove(p)
    v = k.mem.read_u64(_data(k, work))
    k.mem.write_u64(_data(k, work), v & ~WORK_STRUCT_PENDING)
    return bool(items)


@kfunc("cancel_work")
def cancel_work_sync(k: Kernel, work: int) -> int:
    return int(_cancel(k, work))


@kfunc("cancel_delayed_work")
def cancel_delayed_work_sync(k: Kernel, dwork: int) -> int:
    return int(_cancel(k, dwork + k.layouts.offsetof("delayed_work", "work")))


@kfunc()
def flush_work(k: Kernel, work: int) -> int:
    return int(bool(run_pending(k, work=work)))


@kfunc()
def flush_delayed_work(k: Kernel, dwork: int) -> int:
    return flush_work(k, dwork + k.layouts.offsetof("delayed_work", "work"))


@kfunc()
def delayed_work_timer_fn(k: Kernel, t: int) -> None:
    """The timer function of a delayed work (its address is what INIT_DELAYED_WORK
    stores); the work is queued by queue_delayed_work_on here, so nothing to do."""
    return None


@kfunc()
def work_busy(k: Kernel, work: int) -> int:
    return int(any(p[0] == work for p in wq_state(k).pending))
