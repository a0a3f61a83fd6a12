"""pv_ops with native behaviour (arch/x86/kernel/paravirt.c, arch/x86/include/asm/irqflags.h).

Module code calls paravirt operations indirectly through ``pv_ops`` (the kernel patches
most call sites at load; unpatched, the table must hold the native functions).  The
table's layout is the kernel's ``struct paravirt_patch_template`` from its BTF; each slot
points at the stub of the native function the kernel installs there, and an operation
with no native here at a stub named ``pv_ops.<group>.<op>``, which nothing implements.

Interrupt state is one flag of the virtual CPU (enabled at syscall entry): save_fl
returns EFLAGS with or without X86_EFLAGS_IF.
"""

from __future__ import annotations

from typing import Any

from lkm.kernel.api.core import Kernel, kdata, kfunc
from lkm.kernel.exec import abi_x86_64 as abi

NATIVE_OPS = {
    "irq.save_fl": "native_save_fl", "irq.irq_disable": "native_irq_disable",
    "irq.irq_enable": "native_irq_enable", "irq.safe_halt": "native_safe_halt",
    "lock.queued_spin_unlock": "__native_queued_spin_unlock",
    "lock.queued_spin_lock_slowpath": "native_queued_spin_lock_slowpath",
    "lock.wait": "paravirt_nop", "lock.kick": "paravirt_nop",
    "lock.vcpu_is_preempted": "__native_vcpu_is_preempted",
    "cpu.io_delay": "native_io_delay", "cpu.read_cr0": "native_read_cr0",
    "cpu.wbinvd": "native_wbinvd", "mmu.read_cr2": "native_read_cr2",
    "mmu.flush_tlb_user": "native_flush_tlb_local",
    "mmu.flush_tlb_kernel": "native_flush_tlb_global",
    "mmu.flush_tlb_one_user": "native_flush_tlb_one_user",
}


def irqs_enabled(k: Kernel) -> bool:
    return bool(getattr(k.rt, "irqs_enabled", True))


def set_irqs(k: Kernel, enabled: bool) -> None:
    k.rt.irqs_enabled = enabled


def save_flags(k: Kernel) -> int:
    return abi.EFLAGS_AT_CALL if irqs_enabled(k) else abi.EFLAGS_AT_CALL & ~abi.X86_EFLAGS_IF


def _pv_ops_size(k: Kernel) -> int:
    return k.layouts.sizeof("paravirt_patch_template")


@kdata("pv_ops", _pv_ops_size, align=64)
def _pv_ops(k: Kernel, addr: int) -> None:
    lay: Any = k.layouts
    for path, off in lay.nested_members("paravirt_patch_template"):
        k.mem.write_u64(addr + off, k.symbol(NATIVE_OPS.get(path, f"pv_ops.{path}")))


@kfunc()
def native_save_fl(k: Kernel) -> int:
    return save_flags(k)


@kfunc()
def native_irq_disable(k: Kernel) -> None:
    set_irqs(k, False)


@kfunc()
def native_irq_enable(k: Kernel) -> None:
    set_irqs(k, True)


@kfunc("native_io_delay", "native_wbinvd", "native_flush_tlb_local",
       "native_flush_tlb_global", "native_flush_tlb_one_user")
def paravirt_nop(k: Kernel) -> None:
    """Nothing to do on one virtual CPU."""


@kfunc()
def __native_queued_spin_unlock(k: Kernel, lock: int) -> None:
    """smp_store_release(&lock->locked, 0)."""
    k.mem.write_u8(lock, 0)


@kfunc()
def __native_vcpu_is_preempted(k: Kernel, cpu: int) -> int:
    return 0


@kfunc()
def native_read_cr0(k: Kernel) -> int:
    return abi.CR0


@kfunc()
def native_read_cr2(k: Kernel) -> int:
    return 0
