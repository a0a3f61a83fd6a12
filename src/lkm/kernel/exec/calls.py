"""The kernel calling module code: mod->init (do_one_initcall), mod->exit (delete_module),
parameter ops (parse_args at load, the sysfs files), as kernel/module/main.c,
init/main.c and kernel/params.c call them.

A call that faults is printed as the kernel prints it (:mod:`oops`) and kills the calling
process (:class:`lkm.errors.ProcessKilled`); a call that never returns ends after the
instruction budget with the soft-lockup report; a kernel function the virtual kernel
does not implement ends the call with :class:`NotImplementedByVirtualKernel`.
"""

from __future__ import annotations

import errno
import signal
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lkm.errors import ProcessKilled
from lkm.kernel.api.core import signed
from lkm.kernel.exec.faults import BudgetExhausted, ExecFault, Panic

if TYPE_CHECKING:
    from lkm.kernel.exec.runtime import Runtime
    from lkm.kernel.module.state import Module
    from lkm.kernel.params import KernelParam
    from lkm.kernel.printk import Printk

KERN_ERR, KERN_NOTICE = 3, 5
TAINT_USER = 6
KERNEL_PARAM_FL_UNSAFE = 1
HUNG_TASK_TIMEOUT = 120


def enter(rt: Runtime, path: str) -> None:
    """A system call enters the kernel: the clock, the watchdog, interrupts on."""
    from lkm.kernel.api import time as ktime

    rt.path = path
    ktime.clock(rt.kernel).enter()
    rt.touch_softlockup()
    rt.irqs_enabled = True
    rt.printk_open = None


def call(rt: Runtime, addr: int, args: Sequence[int] = ()) -> int:
    """An outermost call into module code, its faults turned into the kernel's reports."""
    from lkm.kernel.api.printk import printk
    from lkm.kernel.exec import oops

    try:
        return rt.call(addr, args)
    except BudgetExhausted as e:
        if e.budget == 0:  # waits for something nothing will ever do
            t = rt.current()
            printk(rt.kernel, KERN_ERR, f"INFO: task {t.comm}:{t.pid} blocked for more "
                                             f"than {HUNG_TASK_TIMEOUT} seconds.")
        elif not rt.softlockup_reported:
            from lkm.kernel.api import time as ktime
            from lkm.kernel.exec.runtime import PAUSE

            stuck = (ktime.clock(rt.kernel).mono_ns - rt.softlockup_touch) // 10**9
            rt.machine.step_after(PAUSE)
            oops.soft_lockup(rt, max(stuck, 2 * rt.watchdog_thresh), rt.machine.registers())
        raise ProcessKilled(signal.SIGKILL) from None
    except Panic as e:
        raise ProcessKilled(oops.panic(rt, e)) from None
    except ExecFault as f:
        raise ProcessKilled(oops.die(rt, f)) from None


# -- do_init_module / delete_module ------------------------------------------------------------

def run_init(rt: Runtime, mod: Module) -> int:
    """do_one_initcall(mod->init) after parse_args() gave the parameters to their ops."""
    from lkm.kernel.api.sched import preempt_add, preempt_count
    from lkm.kernel.exec import oops

    mm = mod.memory
    assert mm is not None
    rt.attach(mod.name, mm)
    enter(rt, "init")
    err = apply_args(rt, mod)
    if err or mm.init is None:
        return err
    before = preempt_count(rt.kernel)
    ret = signed(call(rt, mm.init), 32)
    msg = ""
    after = preempt_count(rt.kernel)
    if after != before:
        msg = "preemption imbalance "
        preempt_add(rt.kernel, before - after)
    if not rt.irqs_enabled:
        msg += "disabled interrupts "
        rt.irqs_enabled = True
    if msg:
        oops.initcall_imbalance(rt, mm.init, msg.rstrip())
    if ret > 0:
        suspicious_return(rt, mod, ret)
        return 0
    return ret


def suspicious_return(rt: Runtime, mod: Module, ret: int) -> None:
    """do_init_module(): a positive return is loaded anyway, with a warning and a stack
    dump (which is why the warning is printed here rather than by the loader)."""
    from lkm.kernel.api.printk import printk
    from lkm.kernel.exec import oops

    printk(rt.kernel, 4, f"do_init_module: '{mod.name}'->init suspiciously returned {ret}, "
                         "it should follow 0/-E convention\ndo_init_module: loading module "
                         "anyway...")
    oops.dump_stack_print_info(rt)
    oops.call_trace(rt, [], oops.text_of(rt).stacks.get("init_positive", ()), skip=2)


def run_exit(rt: Runtime, mod: Module) -> None:
    mm = mod.memory
    if mm is None or mm.exit is None:
        return
    rt.attach(mod.name, mm)
    enter(rt, "exit")
    call(rt, mm.exit)
    from lkm.kernel import taint as T

    rt.last_unloaded_module = mod.name + (
        f"({T.module_flags_taint(mod.taints)})" if mod.taints else "")


# -- parameters (kernel/params.c) -----------------------------------------------------------------

def _kernel_params(rt: Runtime, mod: Module) -> list[tuple[KernelParam, int]]:
    """The module's struct kernel_param array, each with its address."""
    mm = mod.memory
    base = mm.sections.get("__param") if mm is not None else None
    if base is None:
        return []
    size = rt.layouts.sizeof("kernel_param")
    return [(kp, base + i * size) for i, kp in enumerate(mod.params)]


def _ops(rt: Runtime, kp_addr: int, op: str) -> int:
    lay = rt.layouts
    ops = rt.mem.read_u64(kp_addr + lay.offsetof("kernel_param", "ops"))
    return rt.mem.read_u64(ops + lay.offsetof("kernel_param_ops", op)) if ops else 0


def _cstring(rt: Runtime, text: str | None) -> int:
    from lkm.kernel.api.slab import kmalloc

    if text is None:
        return 0
    data = text.encode("utf-8", "surrogateescape") + b"\0"
    buf = kmalloc(rt.kernel, len(data))
    rt.mem.write(buf, data)
    return buf


def _set(rt: Runtime, kp_addr: int, text: str | None) -> int:
    fn = _ops(rt, kp_addr, "set")
    if not fn:
        return -errno.EPERM
    return signed(call(rt, fn, [_cstring(rt, text), kp_addr]), 32)


def apply_args(rt: Runtime, mod: Module) -> int:
    """parse_args(): each ``name=value`` of the module's arguments through its ops->set,
    in order; an error is printed as parse_args prints it, the last one returned."""
    from lkm.kernel.api.printk import printk
    from lkm.kernel.params import next_arg, parameq, skip_spaces

    kps = _kernel_params(rt, mod)
    args = skip_spaces(mod.args.split("\0", 1)[0])
    err = 0
    while args:
        param, val, args = next_arg(args)
        if val is None and param == "--":
            break
        if param.split(".", 1)[-1] == "dyndbg" and rt.profile.enabled("DYNAMIC_DEBUG"):
            from lkm.kernel.api.dynamic_debug import exec_queries

            assert mod.memory is not None
            exec_queries(rt.kernel, mod.memory, mod.name, val if val is not None else "+p")
            continue
        for kp, addr in kps:
            if parameq(param, kp.name):
                ret = _set(rt, addr, val)
                if ret:
                    what = "too large" if ret == -errno.ENOSPC else "invalid"
                    printk(rt.kernel, KERN_ERR, f"{mod.name}: `{val or ''}' {what} for "
                                                f"parameter `{param}'")
                    err = ret
                break
    return err


def param_show(rt: Runtime, mod: Module, kp: KernelParam) -> str | None:
    """param_attr_show(): ops->get into a page; None when the module has no memory here."""
    from lkm.kernel.api.slab import kmalloc

    for p, addr in _kernel_params(rt, mod):
        if p is kp or p.name == kp.name:
            fn = _ops(rt, addr, "get")
            if not fn:
                return None
            rt.attach(mod.name, mod.memory)  # type: ignore[arg-type]
            enter(rt, "param")
            buf = kmalloc(rt.kernel, 4096)
            n = signed(call(rt, fn, [buf, addr]), 32)
            if n < 0:
                raise OSError(-n, "")
            return rt.mem.read(buf, n).decode("utf-8", "surrogateescape")
    return None


def param_store(rt: Runtime, mod: Module, kp: KernelParam, text: str, log: Printk) -> int:
    """param_attr_store(): ops->set with the written bytes; 0 or -errno."""
    from lkm.kernel.params import param_set
    from lkm.kernel.printk import Printk as _P

    for p, addr in _kernel_params(rt, mod):
        if p is kp or p.name == kp.name:
            if not kp.writable:
                return -errno.EACCES
            if kp.flags & KERNEL_PARAM_FL_UNSAFE:
                log.notice(f"Setting dangerous option {kp.name} - tainting kernel")
                rt.kstate.add_taint(TAINT_USER, log)
            rt.attach(mod.name, mod.memory)  # type: ignore[arg-type]
            enter(rt, "param")
            rv = _set(rt, addr, text.split("\0", 1)[0])
            if rv == 0:
                param_set(kp, text.split("\0", 1)[0], _P())
            return rv
    return -errno.ENOENT
