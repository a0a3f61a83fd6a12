"""Faults and warnings as the x86-64 kernel prints them (arch/x86/kernel/dumpstack.c,
arch/x86/mm/fault.c, kernel/panic.c __warn, lib/dump_stack.c, kernel/watchdog.c,
kernel/sched/core.c __schedule_bug, kernel/module/main.c print_modules).

Each record goes to the kernel log at the level the kernel uses.  The register dump shows
the emulated CPU's registers; the call trace is the module's own frames (return addresses
on the stack, each checked to follow a call to the frame below it), then the real
kernel's frames of the system call the code runs under (:mod:`kernel_text`), then the
user-space registers at syscall entry.  Taints: D after an oops, W after a warning, L
after a soft lockup; the kernel's text versions differ as 6.1 and 6.12 differ
("Oops: " prefixes, "UID: 0", the verbose taint line).
"""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

from lkm.kernel import taint as T
from lkm.kernel.api.printk import printk
from lkm.kernel.exec import abi_x86_64 as abi
from lkm.kernel.exec.faults import (
    X86_PF_INSTR,
    X86_PF_PROT,
    X86_PF_RSVD,
    X86_PF_USER,
    X86_PF_WRITE,
    Breakpoint,
    DivideError,
    ExecFault,
    GeneralProtection,
    InvalidOpcode,
    KernelBug,
    PageFault,
    Panic,
)
from lkm.kernel.exec.kernel_text import KernelText, kernel_text
from lkm.kernel.exec.memory import MemoryFault

if TYPE_CHECKING:
    from lkm.kernel.exec.runtime import Runtime

KERN_EMERG, KERN_ALERT, KERN_CRIT, KERN_ERR, KERN_WARNING = 0, 1, 2, 3, 4
KERN_INFO, KERN_DEFAULT = 6, 4
CUT_HERE = "------------[ cut here ]------------"
HARDWARE = "QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014"
TAINT_DIE, TAINT_WARN, TAINT_SOFTLOCKUP = 7, 9, 14
TAINT_NAMES = ("PROPRIETARY_MODULE", "FORCED_MODULE", "CPU_OUT_OF_SPEC", "FORCED_RMMOD",
               "MACHINE_CHECK", "BAD_PAGE", "USER", "DIE", "OVERRIDDEN_ACPI_TABLE", "WARN",
               "CRAP", "FIRMWARE_WORKAROUND", "OOT_MODULE", "UNSIGNED_MODULE", "SOFTLOCKUP",
               "LIVEPATCH", "AUX", "RANDSTRUCT", "TEST")
# what user space looked like at syscall entry (kmod's insmod/rmmod: glibc's syscall())
USER_RIP = 0x7F2A1C913829
USER_CODE = ("08 89 e8 5b 5d c3 66 2e 0f 1f 84 00 00 00 00 00 90 48 89 f8 48 89 f7 48 89 d6 "
             "48 89 ca 4d 89 c2 4d 89 c8 4c 8b 4c 24 08 0f 05 <48> 3d 01 f0 ff ff 73 01 c3 48 "
             "8b 0d a7 15 0d 00 f7 d8 64 89 01 48")


def _out(rt: Runtime, level: int, text: str) -> None:
    printk(rt.kernel, level, text)


def text_of(rt: Runtime) -> KernelText:
    return kernel_text(rt.profile.release, rt.profile.version)


def _debian_version(rt: Runtime) -> str:
    v = rt.uts_version
    i = v.find("Debian ")
    return v[i + 7:].split(" ", 1)[0] if i >= 0 else ""


# -- lib/dump_stack.c, kernel/module/main.c ---------------------------------------------------

def dump_stack_print_info(rt: Runtime, level: int = KERN_DEFAULT) -> None:
    kt = text_of(rt)
    t = rt.current()
    uid = "UID: 0 " if kt.uid_in_cpu_line else ""
    first = rt.uts_version.split(" ", 1)[0] or "#1"
    deb = _debian_version(rt)
    tail = f"  Debian {deb}" if deb else ""
    _out(rt, level, f"CPU: 0 {uid}PID: {t.pid} Comm: {t.comm[:15]} "
                    f"{T.print_tainted(rt.kstate.tainted)} {rt.profile.release} {first}{tail}")
    if kt.verbose_taint and rt.kstate.tainted:
        names = [f"[{c}]={TAINT_NAMES[i]}" for i, (c, _f, _m) in enumerate(T.TAINT_FLAGS)
                 if rt.kstate.tainted >> i & 1 and i < len(TAINT_NAMES)]
        _out(rt, level, "Tainted: " + ", ".join(names))
    _out(rt, level, f"Hardware name: {HARDWARE}")


def print_modules(rt: Runtime) -> None:
    parts = ["Modules linked in:"]
    for m in rt.kstate.modules:
        if m.state == 3:
            continue
        flags = T.module_flags_taint(m.taints)
        state = {1: "+", 2: "-"}.get(m.state, "")
        parts.append(f" {m.name}" + (f"({flags}{state})" if flags or state else ""))
    last = rt.last_unloaded()
    if last:
        parts.append(f" [last unloaded: {last}]")
    _out(rt, KERN_DEFAULT, "".join(parts))


def print_oops_end_marker(rt: Runtime) -> None:
    _out(rt, KERN_WARNING, "---[ end trace 0000000000000000 ]---")


# -- registers and the stack (arch/x86/kernel/process_64.c, dumpstack.c) -----------------------

def _code_line(rt: Runtime, rip: int) -> str:
    """show_opcodes(): 42 bytes before rip, the one at rip in <>, 21 after."""
    try:
        before = rt.mem.read(rip - 42, 42)
    except MemoryFault:
        return f"Code: Unable to access opcode bytes at {rip - 42:#x}."
    try:
        after = rt.mem.read(rip, 22)
    except MemoryFault:
        return f"Code: Unable to access opcode bytes at {rip:#x}."
    return "Code: " + " ".join(f"{b:02x}" for b in before) + f" <{after[0]:02x}> " + \
        " ".join(f"{b:02x}" for b in after[1:])


def show_regs(rt: Runtime, regs: dict[str, int], rip_text: str, cr2: int = 0) -> None:
    r = {k: v & abi.MASK64 for k, v in regs.items()}
    rip = r.get("rip", 0)
    _out(rt, KERN_DEFAULT, f"RIP: 0010:{rip_text}")
    _out(rt, KERN_DEFAULT, _code_line(rt, rip) if rip_text.endswith("]") else
         f"Code: Unable to access opcode bytes at {rip - 42:#x}.")
    _out(rt, KERN_DEFAULT, f"RSP: 0018:{r.get('rsp', 0):016x} EFLAGS: {r.get('eflags', 0):08x}")
    names = abi.SHOW_REGS
    for i in range(0, len(names), 3):
        _out(rt, KERN_DEFAULT, " ".join(f"{n.upper()}: {r.get(n, 0):016x}"
                                        for n in names[i:i + 3]).replace("R8:", "R08:")
             .replace("R9:", "R09:"))
    _out(rt, KERN_DEFAULT, f"FS:  {0x7F2A1C811040:016x}(0000) GS:{abi.PERCPU_BASE:016x}(0000)"
                           f" knlGS:{0:016x}")
    _out(rt, KERN_DEFAULT, f"CS:  0010 DS: 0000 ES: 0000 CR0: {abi.CR0:016x}")
    _out(rt, KERN_DEFAULT, f"CR2: {cr2:016x} CR3: {0x62A2000:016x} CR4: {0x6F0:016x}")


def _user_regs(rt: Runtime) -> None:
    nr = text_of(rt).syscall_nr.get("delete_module" if rt.path == "exit" else "finit_module", 0)
    _out(rt, KERN_DEFAULT, f"RIP: 0033:{USER_RIP:#x}")
    _out(rt, KERN_DEFAULT, f"Code: {USER_CODE}")
    _out(rt, KERN_DEFAULT, f"RSP: 002b:{0x7FFC3B814DA8:016x} EFLAGS: 00000246 "
                           f"ORIG_RAX: {nr:016x}")
    vals = {"rax": 0xFFFFFFFFFFFFFFDA, "rcx": USER_RIP, "rdi": 3, "r10": 3, "r11": 0x246}
    names = abi.SHOW_REGS
    for i in range(0, len(names), 3):
        _out(rt, KERN_DEFAULT, " ".join(f"{n.upper()}: {vals.get(n, 0):016x}"
                                        for n in names[i:i + 3]).replace("R8:", "R08:")
             .replace("R9:", "R09:"))


def syscall_frames(rt: Runtime) -> tuple[str, ...]:
    kt = text_of(rt)
    return kt.exit if rt.path == "exit" else kt.init if rt.path == "init" else ()


def call_trace(rt: Runtime, module_frames: list[int], kernel: tuple[str, ...] = (),
               skip: int = 0) -> None:
    """show_trace_log_lvl(): the frames, innermost first, and the user registers."""
    _out(rt, KERN_DEFAULT, "Call Trace:")
    _out(rt, KERN_DEFAULT, " <TASK>")
    for f in kernel:
        _out(rt, KERN_DEFAULT, f" {f}")
    for a in module_frames:
        _out(rt, KERN_DEFAULT, f" {rt.symbolize_return(a)}")
    frames = syscall_frames(rt)[skip:]
    for f in frames:
        _out(rt, KERN_DEFAULT, f" {f}")
    if frames:
        _user_regs(rt)
    _out(rt, KERN_DEFAULT, " </TASK>")


def unwind(rt: Runtime, rsp: int, pc: int) -> list[int]:
    """Return addresses above ``rsp``, each right after a call to the function holding the
    frame below it (or to an indirect-call thunk): the module frames of this call."""
    out: list[int] = []
    func = rt.function_start(pc)
    thunks = rt.thunk_addresses()
    a = rsp
    top = rt.stack.end
    while a < top:
        try:
            v = rt.mem.read_u64(a)
        except MemoryFault:
            break
        a += 8
        if v == abi.RET_TRAP:
            break
        if not rt.in_module_text(v):
            continue
        try:
            code = rt.mem.read(v - 5, 5)
        except MemoryFault:
            continue
        if code[0] != 0xE8:
            continue
        target = (v + int.from_bytes(code[1:], "little", signed=True)) & abi.MASK64
        if target == func or target in thunks:
            out.append(v)
            func = rt.function_start(v - 1)
    return out


# -- oopses (die, page_fault_oops) ---------------------------------------------------------------

def _pf_lines(rt: Runtime, f: PageFault) -> None:
    addr, ec = f.address, f.error_code
    if addr < 4096 and not ec & X86_PF_USER:
        _out(rt, KERN_ALERT, f"BUG: kernel NULL pointer dereference, address: {addr:016x}")
    else:
        _out(rt, KERN_ALERT, f"BUG: unable to handle page fault for address: {addr:016x}")
    who = "user" if ec & X86_PF_USER else "supervisor"
    what = "instruction fetch" if ec & X86_PF_INSTR else \
        "write access" if ec & X86_PF_WRITE else "read access"
    _out(rt, KERN_ALERT, f"#PF: {who} {what} in kernel mode")
    why = "reserved bit violation" if ec & X86_PF_RSVD else \
        "permissions violation" if ec & X86_PF_PROT else "not-present page"
    _out(rt, KERN_ALERT, f"#PF: error_code(0x{ec:04x}) - {why}")
    _out(rt, KERN_INFO, "PGD 0 P4D 0 " if addr >> 47 == 0 else
         "PGD 2a0e067 P4D 2a0e067 PUD 2a10063 PMD 0 ")


def die(rt: Runtime, f: ExecFault) -> int:
    """Print the oops for a fault of module code; the signal the task dies of."""
    kt = text_of(rt)
    rt.kstate.debug_locks = False  # oops_enter(): debug_locks_off(), silently
    regs = dict(f.regs)
    rip = regs.get("rip", f.rip)
    sig = signal.SIGSEGV
    site: str | None = None
    cr2 = 0
    if isinstance(f, PageFault):
        _pf_lines(rt, f)
        head, err, sig, cr2 = "Oops", f.error_code, signal.SIGKILL, f.address
    elif isinstance(f, KernelBug):
        _out(rt, KERN_WARNING, CUT_HERE)
        if f.function:
            site = kt.sites.get("slab_double_free") if f.function == "kfree" else None
            line = kt.lines.get("slab_double_free", f.line) if f.function == "kfree" else f.line
            _out(rt, KERN_CRIT, f"kernel BUG at {f.file}:{line}!")
        elif f.file:
            _out(rt, KERN_CRIT, f"kernel BUG at {f.file}:{f.line}!")
        else:
            _out(rt, KERN_CRIT, f"Kernel BUG at {rt.symbolize(rip)} "
                                "[verbose debug info unavailable]")
        head, err = "invalid opcode", 0
    elif isinstance(f, InvalidOpcode):
        head, err = "invalid opcode", 0
    elif isinstance(f, DivideError):
        head, err = "divide error", 0
    elif isinstance(f, Breakpoint):
        head, err = "int3", 0
    elif isinstance(f, GeneralProtection):
        if f.address is not None:
            head = f"general protection fault, probably for non-canonical address " \
                   f"{f.address:#018x}"
        else:
            head = "general protection fault"
        err = 0
    else:
        head, err = "Oops", 0
    rt.die_counter += 1
    _out(rt, KERN_DEFAULT, f"{kt.oops_prefix}{head}: {err:04x} [#{rt.die_counter}] "
                           "PREEMPT SMP NOPTI")
    dump_stack_print_info(rt)
    if site is not None:
        rip_text = site
        frames = [regs.get("caller", f.rip), *unwind(rt, regs.get("rsp", 0) + 8, f.rip)]
    else:
        rip_text = rt.symbolize(rip)
        frames = unwind(rt, regs.get("rsp", 0), rip)
    show_regs(rt, regs, rip_text, cr2)
    call_trace(rt, frames)
    print_modules(rt)
    if isinstance(f, PageFault):
        _out(rt, KERN_DEFAULT, f"CR2: {f.address:016x}")
    print_oops_end_marker(rt)
    show_regs(rt, regs, rip_text, cr2)
    rt.kstate.add_taint(TAINT_DIE, rt.printk)
    return sig


def panic(rt: Runtime, f: Panic) -> int:
    rt.kstate.debug_locks = False
    _out(rt, KERN_EMERG, f"Kernel panic - not syncing: {f.text}")
    dump_stack_print_info(rt)
    call_trace(rt, unwind(rt, f.regs.get("rsp", 0), f.rip))
    _out(rt, KERN_EMERG, f"---[ end Kernel panic - not syncing: {f.text} ]---")
    return signal.SIGKILL


# -- warnings (kernel/panic.c __warn) -------------------------------------------------------------

def warn(rt: Runtime, file: str | None, line: int, rip: int, flags: int,
         regs: dict[str, int]) -> None:
    """A module's WARN: the ud2 at ``rip``; execution resumes after it."""
    from lkm.kernel.exec.faults import BUGFLAG_NO_CUT_HERE

    if not flags & BUGFLAG_NO_CUT_HERE:
        _out(rt, KERN_WARNING, CUT_HERE)
    where = f"{file}:{line} " if file else ""
    t = rt.current()
    _out(rt, KERN_WARNING, f"WARNING: CPU: 0 PID: {t.pid} at {where}{rt.symbolize(rip)}")
    print_modules(rt)
    dump_stack_print_info(rt)
    show_regs(rt, regs, rt.symbolize(rip))
    call_trace(rt, unwind(rt, regs.get("rsp", 0), rip))
    print_oops_end_marker(rt)
    rt.kstate.add_taint(TAINT_WARN, rt.printk)


def kernel_warn(rt: Runtime, file: str, line: int, site: str, message: str,
                regs: dict[str, int] | None = None, skip: int = 0) -> None:
    """A WARN(1, message) inside the kernel's own function ``site``."""
    _out(rt, KERN_WARNING, CUT_HERE)
    if message:
        _out(rt, KERN_WARNING, message)
    t = rt.current()
    _out(rt, KERN_WARNING, f"WARNING: CPU: 0 PID: {t.pid} at {file}:{line} {site}")
    print_modules(rt)
    dump_stack_print_info(rt)
    r = regs if regs is not None else rt.stub_regs()
    show_regs(rt, r, site)
    frames = [] if skip else ([r.get("caller", 0)] if r.get("caller") else [])
    call_trace(rt, frames, skip=skip)
    print_oops_end_marker(rt)
    rt.kstate.add_taint(TAINT_WARN, rt.printk)


def initcall_imbalance(rt: Runtime, fn: int, what: str) -> None:
    """do_one_initcall(): init returned with the preemption count or interrupts changed."""
    kt = text_of(rt)
    name = rt.symbolize(fn)
    kernel_warn(rt, "init/main.c", kt.lines.get("initcall_imbalance", 0),
                kt.sites.get("initcall_imbalance", "do_one_initcall"),
                f"initcall {name} returned with {what}", regs=rt.stub_regs(), skip=1)


def schedule_bug(rt: Runtime, comm: str, pid: int, count: int, caller: int,
                 via: str = "msleep") -> None:
    """__schedule_bug(): sleeping with preemption disabled."""
    _out(rt, KERN_ERR, f"BUG: scheduling while atomic: {comm}/{pid}/0x{count:08x}")
    print_modules(rt)
    dump_stack_print_info(rt)
    call_trace(rt, [caller, *unwind(rt, rt.stub_regs().get("rsp", 0) + 8, caller - 1)],
               text_of(rt).stacks.get(via, ()))
    rt.kstate.add_taint(TAINT_WARN, rt.printk)


def soft_lockup(rt: Runtime, seconds: int, regs: dict[str, int]) -> None:
    """watchdog_timer_fn(): the CPU ran kernel code for 2*watchdog_thresh seconds."""
    t = rt.current()
    _out(rt, KERN_EMERG, f"watchdog: BUG: soft lockup - CPU#0 stuck for {seconds}s! "
                         f"[{t.comm}:{t.pid}]")
    print_modules(rt)
    dump_stack_print_info(rt)
    rip = regs.get("rip", 0)
    show_regs(rt, regs, rt.symbolize(rip))
    call_trace(rt, unwind(rt, regs.get("rsp", 0), rip))
    rt.kstate.add_taint(TAINT_SOFTLOCKUP, rt.printk)
