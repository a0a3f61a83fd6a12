"""Locks on one CPU with one task (kernel/locking/mutex.c, spinlock.c, qspinlock.c,
kernel/rcu/tree_plugin.h, lib/refcount.c).

Nothing else runs, so an uncontended lock is taken at once and a lock already held can
never be released: taking it again hangs for ever (the call is abandoned, as the budget
ends a loop that never returns).  Spinlocks count in the per-CPU preemption count (which
module code reads: preempt_count(), in_atomic()); the _irq variants switch the virtual
CPU's interrupt flag; a mutex's owner is the current task_struct, as mutex_is_locked()
reads it.
"""

from __future__ import annotations

from lkm.kernel.api.core import Kernel, kfunc
from lkm.kernel.api.paravirt import save_flags, set_irqs
from lkm.kernel.api.sched import preempt_add, task
from lkm.kernel.exec.faults import BudgetExhausted

SOFTIRQ_DISABLE_OFFSET = 0x200
MUTEX_FLAGS = 0x07
X86_EFLAGS_IF = 0x200


def hang(k: Kernel, what: str) -> None:
    """The task waits for something that nothing will ever do."""
    e = BudgetExhausted(k.caller, 0)
    e.args = (f"{what}: waits for ever",)
    raise e


# -- mutexes -----------------------------------------------------------------------------

def _owner(k: Kernel, lock: int) -> int:
    return k.mem.read_u64(lock) & ~MUTEX_FLAGS


@kfunc()
def __mutex_init(k: Kernel, lock: int, name: int, key: int) -> None:
    """Owner NULL, an empty wait list (pointing at itself)."""
    lay = k.layouts
    k.mem.write_u64(lock, 0)
    k.mem.write_u32(lock + lay.offsetof("mutex", "wait_lock"), 0)
    wl = lock + lay.offsetof("mutex", "wait_list")
    k.mem.write_u64(wl, wl)
    k.mem.write_u64(wl + 8, wl)


@kfunc("mutex_lock_io", "mutex_lock_nested")
def mutex_lock(k: Kernel, lock: int) -> None:
    if _owner(k, lock):
        hang(k, "mutex_lock")
    k.mem.write_u64(lock, task(k).addr)


@kfunc("mutex_lock_killable", "mutex_lock_interruptible_nested", "mutex_lock_killable_nested")
def mutex_lock_interruptible(k: Kernel, lock: int) -> int:
    mutex_lock(k, lock)
    return 0


@kfunc()
def mutex_trylock(k: Kernel, lock: int) -> int:
    if _owner(k, lock):
        return 0
    k.mem.write_u64(lock, task(k).addr)
    return 1


@kfunc()
def mutex_unlock(k: Kernel, lock: int) -> None:
    k.mem.write_u64(lock, 0)


@kfunc()
def mutex_is_locked(k: Kernel, lock: int) -> int:
    return int(bool(_owner(k, lock)))


@kfunc()
def atomic_dec_and_mutex_lock(k: Kernel, cnt: int, lock: int) -> int:
    v = k.mem.read_s32(cnt) - 1
    k.mem.write_u32(cnt, v)
    if v:
        return 0
    mutex_lock(k, lock)
    return 1


# -- spinlocks (queued spinlocks: the locked byte is the lock's first) ----------------------

def _spin_take(k: Kernel, lock: int) -> None:
    if k.mem.read_u8(lock):
        hang(k, "spin_lock")
    k.mem.write_u8(lock, 1)


@kfunc()
def native_queued_spin_lock_slowpath(k: Kernel, lock: int, val: int) -> None:
    """Reached only when the lock is held: by this very task, on the only CPU."""
    hang(k, "queued_spin_lock")


@kfunc("_raw_write_lock", "_raw_read_lock")
def _raw_spin_lock(k: Kernel, lock: int) -> None:
    preempt_add(k, 1)
    _spin_take(k, lock)


@kfunc("_raw_write_unlock", "_raw_read_unlock")
def _raw_spin_unlock(k: Kernel, lock: int) -> None:
    k.mem.write_u8(lock, 0)
    preempt_add(k, -1)


@kfunc("_raw_write_lock_irqsave", "_raw_read_lock_irqsave")
def _raw_spin_lock_irqsave(k: Kernel, lock: int) -> int:
    flags = save_flags(k)
    set_irqs(k, False)
    preempt_add(k, 1)
    _spin_take(k, lock)
    return flags


@kfunc("_raw_write_unlock_irqrestore", "_raw_read_unlock_irqrestore")
def _raw_spin_unlock_irqrestore(k: Kernel, lock: int, flags: int) -> None:
    k.mem.write_u8(lock, 0)
    if flags & X86_EFLAGS_IF:
        set_irqs(k, True)
    preempt_add(k, -1)


@kfunc("_raw_write_lock_irq", "_raw_read_lock_irq")
def _raw_spin_lock_irq(k: Kernel, lock: int) -> None:
    set_irqs(k, False)
    preempt_add(k, 1)
    _spin_take(k, lock)


@kfunc("_raw_write_unlock_irq", "_raw_read_unlock_irq")
def _raw_spin_unlock_irq(k: Kernel, lock: int) -> None:
    k.mem.write_u8(lock, 0)
    set_irqs(k, True)
    preempt_add(k, -1)


@kfunc("_raw_write_lock_bh", "_raw_read_lock_bh")
def _raw_spin_lock_bh(k: Kernel, lock: int) -> None:
    preempt_add(k, SOFTIRQ_DISABLE_OFFSET)
    _spin_take(k, lock)


@kfunc("_raw_write_unlock_bh", "_raw_read_unlock_bh")
def _raw_spin_unlock_bh(k: Kernel, lock: int) -> None:
    k.mem.write_u8(lock, 0)
    preempt_add(k, -SOFTIRQ_DISABLE_OFFSET)


@kfunc("_raw_write_trylock", "_raw_read_trylock")
def _raw_spin_trylock(k: Kernel, lock: int) -> int:
    if k.mem.read_u8(lock):
        return 0
    preempt_add(k, 1)
    k.mem.write_u8(lock, 1)
    return 1


@kfunc()
def __local_bh_enable_ip(k: Kernel, ip: int, cnt: int) -> None:
    """kernel/softirq.c: local_bh_enable()."""
    preempt_add(k, -(cnt & 0xFFFFFFFF))


@kfunc()
def __raw_spin_lock_init(k: Kernel, lock: int, name: int, key: int, inner: int) -> None:
    k.mem.write_u32(lock, 0)


# -- RCU -----------------------------------------------------------------------------------

@kfunc()
def __rcu_read_lock(k: Kernel) -> None:
    """kernel/rcu/tree_plugin.h: current->rcu_read_lock_nesting++."""
    a = task(k).addr + k.layouts.offsetof("task_struct", "rcu_read_lock_nesting")
    k.mem.write_u32(a, k.mem.read_u32(a) + 1)


@kfunc()
def __rcu_read_unlock(k: Kernel) -> None:
    a = task(k).addr + k.layouts.offsetof("task_struct", "rcu_read_lock_nesting")
    k.mem.write_u32(a, k.mem.read_u32(a) - 1)


@kfunc("synchronize_rcu_expedited", "rcu_barrier", "synchronize_srcu", "synchronize_net")
def synchronize_rcu(k: Kernel) -> None:
    """No reader can be running: a grace period passes at once."""


@kfunc()
def call_rcu(k: Kernel, head: int, func: int) -> None:
    """The grace period ends at once: the callback runs now."""
    k.cpu.call(func, [head])


@kfunc()
def irqs_disabled_flags(k: Kernel, flags: int) -> int:
    return int(not flags & X86_EFLAGS_IF)


# -- lib/refcount.c --------------------------------------------------------------------------

REFCOUNT_SATURATED = 0xC0000000
_REFCOUNT_WARN = ("saturated; leaking memory", "saturated; leaking memory",
                  "addition on 0; use-after-free", "underflow; use-after-free",
                  "decrement hit 0; leaking memory")
REFCOUNT_WARN_LINE = {(6, 1): 28, (6, 12): 28}


@kfunc()
def refcount_warn_saturate(k: Kernel, r: int, t: int) -> None:
    """refcount_set(r, REFCOUNT_SATURATED), then WARN_ONCE("refcount_t: <event>.")."""
    from lkm.kernel.exec import oops

    k.mem.write_u32(r, REFCOUNT_SATURATED)
    t &= 0xFFFFFFFF
    what = _REFCOUNT_WARN[t] if t < len(_REFCOUNT_WARN) else "unknown saturation event!?"
    key = f"refcount_warn_saturate:{t}"
    if key in k.rt.kstate.once:
        return
    k.rt.kstate.once.add(key)
    oops.kernel_warn(k.rt, "lib/refcount.c", REFCOUNT_WARN_LINE.get(k.version[:2], 0),
                     "refcount_warn_saturate", f"refcount_t: {what}.")


@kfunc()
def refcount_dec_and_mutex_lock(k: Kernel, r: int, lock: int) -> int:
    return atomic_dec_and_mutex_lock(k, r, lock)


@kfunc()
def refcount_dec_not_one(k: Kernel, r: int) -> int:
    v = k.mem.read_u32(r)
    if v == REFCOUNT_SATURATED:
        return 1
    if v == 1:
        return 0
    k.mem.write_u32(r, v - 1)
    return 1


@kfunc()
def refcount_dec_and_lock(k: Kernel, r: int, lock: int) -> int:
    if refcount_dec_not_one(k, r):
        return 0
    _raw_spin_lock(k, lock)
    k.mem.write_u32(r, 0)
    return 1
