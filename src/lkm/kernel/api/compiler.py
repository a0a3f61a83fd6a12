"""What the compiler emits calls to in Debian's builds, and the static-call trampolines.

- ``__fentry__`` (-mfentry, CONFIG_FUNCTION_TRACER): ftrace turns the calls into NOPs at
  load (kernel/trace/ftrace.c); here a ``ret``.
- ``__x86_return_thunk`` (CONFIG_RETHUNK, arch/x86/lib/retpoline.S): every ``ret`` of module
  code is a jump to it; natively a ``ret``.
- ``__x86_indirect_thunk_<reg>`` (CONFIG_RETPOLINE): an indirect call or jump through a
  register; natively ``jmp *%reg``.
- ``__stack_chk_fail`` (-fstack-protector-strong, kernel/panic.c): the canary changed.
- ``__SCT__<name>`` (static calls, include/linux/static_call.h): the trampolines of
  preemption points (``might_resched``, ``cond_resched``, ``preempt_schedule``) return at
  once here: nothing else is ever runnable.
"""

from __future__ import annotations

from lkm.kernel.api.core import Kernel, kfunc, native
from lkm.kernel.api.panic import kernel_panic

RET = b"\xc3"
XOR_EAX_RET = b"\x31\xc0\xc3"

native("__fentry__", RET)
native("__x86_return_thunk", RET)
# arch/x86/include/asm/GEN-for-each-reg.h: jmp *%reg is ff /4 (41 ff for r8-r15)
for _i, _reg in enumerate(("rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi")):
    native(f"__x86_indirect_thunk_{_reg}", bytes((0xFF, 0xE0 | _i)))
    native(f"__x86_indirect_thunk_r{_i + 8}", bytes((0x41, 0xFF, 0xE0 | _i)))
for _name in ("might_resched", "preempt_schedule", "preempt_schedule_notrace"):
    native(f"__SCT__{_name}", RET)
native("__SCT__cond_resched", XOR_EAX_RET)


@kfunc()
def __stack_chk_fail(k: Kernel) -> None:
    """kernel/panic.c: panic("stack-protector: Kernel stack is corrupted in: %pB")."""
    kernel_panic(k, f"stack-protector: Kernel stack is corrupted in: {k.site(k.caller)}")


@kfunc("__cond_resched")
def _cond_resched(k: Kernel) -> int:
    """kernel/sched/core.c: nothing else wants the CPU."""
    return 0
