"""The calling task and CPU 0's per-CPU data (kernel/sched/core.c, arch/x86/kernel/cpu/common.c,
kernel/capability.c).

``current`` is the per-CPU ``current_task`` (6.1) or ``pcpu_hot.current_task`` (6.4+),
pointing at a ``struct task_struct`` laid out by the kernel's BTF with the process's pid
and comm (the tool that made the syscall: ``insmod``, ``modprobe``, ``rmmod``).  The
preemption count is per-CPU too (``__preempt_count`` / ``pcpu_hot.preempt_count``), with
x86's inverted PREEMPT_NEED_RESCHED bit: 0x80000000 is "preemptible, nothing pending".
One CPU: ``cpu_number`` 0, the online/possible masks with bit 0.  The caller is root:
capable() is true.
"""

from __future__ import annotations

from typing import Any

from lkm.kernel.api.core import Kernel, kdata, kfunc, substate
from lkm.kernel.exec import abi_x86_64 as abi

PREEMPT_NEED_RESCHED = 0x80000000
PREEMPT_ENABLED = PREEMPT_NEED_RESCHED
FIRST_PID = 1000
NR_CPUS_BITS = 8192
TASK_FALLBACK_SIZE = 0x3000


@substate("sched")
class Sched:
    """The pid counter (one new task per process that enters the kernel)."""

    def __init__(self, k: Kernel) -> None:
        self.next_pid = FIRST_PID

    def to_json(self) -> dict[str, Any]:
        return {"next_pid": self.next_pid}

    @classmethod
    def from_json(cls, k: Kernel, d: dict[str, Any]) -> Sched:
        s = cls(k)
        s.next_pid = int(d["next_pid"])
        return s


class Task:
    """This process's task_struct (not persisted: a new process is a new task)."""

    def __init__(self, k: Kernel, comm: str) -> None:
        from lkm.kernel.api.slab import slab

        lay = k.layouts
        self.pid = k.sub(Sched).next_pid
        k.sub(Sched).next_pid += 1
        self.comm = comm
        size = lay.sizeof("task_struct")
        self.addr = slab(k).kmalloc_large(size)
        mem = k.mem
        mem.write_u32(self.addr + lay.offsetof("task_struct", "pid"), self.pid)
        mem.write_u32(self.addr + lay.offsetof("task_struct", "tgid"), self.pid)
        mem.write(self.addr + lay.offsetof("task_struct", "comm"),
                  comm.encode()[:15].ljust(16, b"\0"))
        stack = k.rt.stack.base
        mem.write_u64(self.addr + lay.offsetof("task_struct", "stack"), stack)
        cred = slab(k).kmalloc(lay.sizeof("cred"), 0)
        caps = (1 << 41) - 1  # CAP_FULL_SET of the kernel's CAP_LAST_CAP (40)
        for f in ("cap_inheritable", "cap_permitted", "cap_effective", "cap_bset"):
            if f != "cap_inheritable":
                mem.write_u64(cred + lay.offsetof("cred", f), caps)
        mem.write_u32(cred + lay.offsetof("cred", "usage"), 1)
        for f in ("real_cred", "cred"):
            mem.write_u64(self.addr + lay.offsetof("task_struct", f), cred)


def task(k: Kernel) -> Task:
    t: Task | None = getattr(k.rt, "task", None)
    if t is None:
        t = Task(k, k.rt.comm)
        k.rt.task = t
    return t


def _pcpu_hot(k: Kernel) -> int | None:
    """The address of pcpu_hot (6.4+), or None when this kernel has none."""
    try:
        k.layouts.sizeof("pcpu_hot")
    except LookupError:  # no such struct before 6.4
        return None
    return k.rt.percpu_address("pcpu_hot")  # type: ignore[no-any-return]


def preempt_count_address(k: Kernel) -> int:
    hot = _pcpu_hot(k)
    if hot is not None:
        return hot + k.layouts.offsetof("pcpu_hot", "preempt_count")
    return abi.PERCPU_BASE + k.symbol("__preempt_count")


def preempt_count(k: Kernel) -> int:
    """preempt_count(): the count without the NEED_RESCHED bit."""
    return k.mem.read_u32(preempt_count_address(k)) & ~PREEMPT_NEED_RESCHED & 0xFFFFFFFF


def preempt_add(k: Kernel, n: int) -> None:
    a = preempt_count_address(k)
    k.mem.write_u32(a, k.mem.read_u32(a) + n)


# -- per-CPU data ----------------------------------------------------------------------------

@kdata("current_task", 8, percpu=True)
def _current_task(k: Kernel, addr: int) -> None:
    k.mem.write_u64(addr, task(k).addr)


@kdata("__preempt_count", 4, percpu=True, align=4)
def _preempt_count(k: Kernel, addr: int) -> None:
    k.mem.write_u32(addr, PREEMPT_ENABLED)


def _pcpu_hot_size(k: Kernel) -> int:
    return k.layouts.sizeof("pcpu_hot")


@kdata("pcpu_hot", _pcpu_hot_size, percpu=True, align=64)
def _init_pcpu_hot(k: Kernel, addr: int) -> None:
    lay = k.layouts
    k.mem.write_u64(addr + lay.offsetof("pcpu_hot", "current_task"), task(k).addr)
    k.mem.write_u32(addr + lay.offsetof("pcpu_hot", "preempt_count"), PREEMPT_ENABLED)
    k.mem.write_u64(addr + lay.offsetof("pcpu_hot", "top_of_stack"), k.rt.stack.end)


@kdata("cpu_number", 4, percpu=True, align=4)
def _cpu_number(k: Kernel, addr: int) -> None:
    """CPU 0."""


@kdata("this_cpu_off", 8, percpu=True)
def _this_cpu_off(k: Kernel, addr: int) -> None:
    k.mem.write_u64(addr, abi.PERCPU_BASE)


@kdata("__per_cpu_offset", 8 * NR_CPUS_BITS)
def _per_cpu_offset(k: Kernel, addr: int) -> None:
    k.mem.write_u64(addr, abi.PERCPU_BASE)


@kdata("nr_cpu_ids", 4, align=4)
def _nr_cpu_ids(k: Kernel, addr: int) -> None:
    k.mem.write_u32(addr, 1)


def _cpu_mask(k: Kernel, addr: int) -> None:
    k.mem.write_u8(addr, 1)


for _mask in ("__cpu_online_mask", "__cpu_possible_mask", "__cpu_present_mask",
              "__cpu_active_mask"):
    kdata(_mask, NR_CPUS_BITS // 8)(_cpu_mask)


# -- functions -------------------------------------------------------------------------------

@kfunc("ns_capable", "ns_capable_noaudit", "capable_wrt_inode_uidgid", "file_ns_capable",
       "has_capability", "has_capability_noaudit")
def capable(k: Kernel, cap: int) -> int:
    """kernel/capability.c: the virtual kernel's callers are root (CAP_SYS_MODULE...)."""
    return 1


@kfunc()
def get_task_comm(k: Kernel, buf: int, tsk: int) -> int:
    off = k.layouts.offsetof("task_struct", "comm")
    k.mem.write(buf, k.mem.read(tsk + off, 16))
    return buf


@kfunc()
def __get_task_comm(k: Kernel, buf: int, buf_size: int, tsk: int) -> int:
    off = k.layouts.offsetof("task_struct", "comm")
    n = min(buf_size, 16)
    if n:
        k.mem.write(buf, k.mem.read(tsk + off, n - 1) + b"\0")
    return buf


@kfunc()
def __task_pid_nr_ns(k: Kernel, tsk: int, type_: int, ns: int) -> int:
    return int(k.mem.read_u32(tsk + k.layouts.offsetof("task_struct", "pid")))


def schedule_debug(k: Kernel) -> None:
    """schedule_debug(): sleeping with a count held is "scheduling while atomic"."""
    from lkm.kernel.exec import oops

    count = preempt_count(k)
    if count:
        t = task(k)
        oops.schedule_bug(k.rt, t.comm, t.pid, count + 1, k.caller)
        preempt_add(k, -count)  # preempt_count_set(PREEMPT_DISABLED), less schedule's own
    k.rt.touch_softlockup()


@kfunc("io_schedule")
def schedule(k: Kernel) -> None:
    """kernel/sched/core.c: nothing else runs; the clock does not move."""
    schedule_debug(k)


@kfunc()
def wake_up_process(k: Kernel, p: int) -> int:
    return 1


@kfunc("yield")
def yield_(k: Kernel) -> None:
    schedule_debug(k)
