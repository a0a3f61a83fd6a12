"""The running virtual kernel: its address space, symbols, modules in memory, and calls.

:class:`Runtime` builds the kernel-like address space (native code, the stub area, kernel
data, the per-CPU area of CPU 0, a kernel stack), gives every kernel symbol a module
imports an address (:meth:`Runtime.symbol_address`: a stub for a function, memory for
data), maps the modules' relocated regions at the loader's addresses, and calls into
their code on the CPU (:class:`~lkm.kernel.exec.machine.Machine`, created on the first
call so that nothing imports unicorn before code runs).  A stub executing dispatches to
the kernel function registered under its name (:mod:`lkm.kernel.api`); a name nothing
implements raises :class:`~lkm.kernel.exec.faults.NotImplementedByVirtualKernel` naming
the call site.  ``ud2`` is BUG/WARN through the module's ``__bug_table`` (lib/bug.c).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lkm.kernel.api import core as api
from lkm.kernel.exec import abi_x86_64 as abi
from lkm.kernel.exec.faults import (
    BUGFLAG_DONE,
    BUGFLAG_ONCE,
    ExecFault,
    InvalidOpcode,
    KernelBug,
    NotImplementedByVirtualKernel,
    decode_bug_table,
)
from lkm.kernel.exec.memory import PAGE_SIZE, AddressSpace, Mapping, MemoryFault, page_align
from lkm.kernel.printk import Printk

if TYPE_CHECKING:
    from lkm.kernel.exec.machine import Machine
    from lkm.kernel.module.state import KernelState, ModuleMemory

KDATA_CHUNK = 0x10000
PAUSE = b"\xf3\x90"  # cpu_relax(): the instruction a busy wait is interrupted after
FIXED_PERCPU = 0x40  # struct fixed_percpu_data: gs_base[40], stack_canary at 0x28
STACK_CANARY = 0x5A3C0FF1CE5EED00  # the boot's canary (any value without a NUL low byte)


class CpuProxy:
    """The CPU as kernel functions see it (the machine is made on first use)."""

    def __init__(self, rt: Runtime) -> None:
        self._rt = rt

    def arg(self, i: int) -> int:
        return self._rt.machine.arg(i)

    def args(self, first: int = 0) -> abi.Args:
        return self._rt.machine.args(first)

    def call(self, addr: int, args: Sequence[int] = (), budget: int | None = None) -> int:
        return self._rt.call(addr, args, budget)

    def jump(self, addr: int) -> None:
        self._rt.machine.jump(addr)

    def reg(self, name: str) -> int:
        return self._rt.machine.reg(name)

    @property
    def frame(self) -> Any:
        return self._rt.machine.frame


class LoadedCode:
    """A module's code and symbols as the runtime keeps them (kallsyms, __bug_table)."""

    def __init__(self, name: str, memory: ModuleMemory) -> None:
        self.name = name
        self.memory = memory
        self.mappings: dict[int, Mapping] = {}  # region base -> mapping
        self._syms: list[tuple[int, str]] | None = None

    def symbols(self) -> list[tuple[int, str]]:
        """(address, name) of the symbols kallsyms knows, in symtab order."""
        if self._syms is None:
            self._syms = [(s.addr, s.name) for s in self.memory.symbols
                          if s.name and s.shndx not in (0, 0xFFF1) and not s.name.startswith("$")
                          and s.type != 4]
        return self._syms

    def contains(self, addr: int) -> bool:
        return any(r.base <= addr < r.end for r in self.memory.regions)

    def lookup(self, addr: int, modern: bool = True) -> tuple[str, int, int] | None:
        """find_kallsyms_symbol(): the closest preceding symbol; its size reaches the next
        symbol or the end of the allocation holding ``addr`` (6.4+), of the layout's text
        (6.1: a data symbol's size wraps below zero there, as the kernel prints it)."""
        region = self.memory.region_at(addr)
        if region is None:
            return None
        nextval = region.end
        if not modern:
            want = "init_text" if region.kind.startswith("init") else "text"
            text = next((r for r in self.memory.regions if r.kind == want), None)
            if text is not None:
                nextval = text.end
        best, bestval = None, 0
        for val, name in self.symbols():
            if val <= addr and val > bestval:
                best, bestval = name, val
            if addr < val < nextval:
                nextval = val
        if best is None:
            return None
        return best, addr - bestval, (nextval - bestval) & abi.MASK64


class Runtime:
    """One virtual kernel's running part (per process; its memory persists through
    :mod:`lkm.kernel.exec.snapshot`)."""

    def __init__(self, kstate: KernelState, layouts: Any = None, comm: str = "insmod",
                 boot: float = 0.0, uts_version: str = "") -> None:
        self.kstate = kstate
        self.boot = boot
        self.uts_version = uts_version
        self.path = ""  # the system call module code runs under: "init", "exit", "param"
        self.die_counter = 0
        self.last_unloaded_module = ""
        self.watchdog_thresh = 10
        self.watchdog = "nowatchdog" not in kstate.cmdline.split()
        self.softlockup_touch = 0
        self.softlockup_reported = False
        self.irqs_enabled = True
        self.printk_open: Any = None
        self.printk_log: Any = None
        self.task: Any = None
        self.profile = kstate.profile
        self.layouts = layouts
        self.comm = comm
        self.mem = AddressSpace()
        self.symbols: dict[str, int] = {}
        self.names: dict[int, str] = {}  # address -> kernel symbol (stubs, natives, data)
        self.sizes: dict[str, int] = {}
        self.next_stub = abi.STUB_BASE + 0x100
        self.next_native = abi.NATIVE_BASE
        self.next_kdata = abi.KDATA_BASE
        self.kdata_end = abi.KDATA_BASE
        self.next_percpu = FIXED_PERCPU
        self.code: dict[str, LoadedCode] = {}
        self.printk = Printk(kstate.once)
        self.cpu_proxy = CpuProxy(self)
        self._machine: Machine | None = None
        self._bugs: dict[str, dict[int, tuple[int, int]]] = {}
        self.native = self.mem.map("native", abi.NATIVE_BASE, 0x10000, "rx")
        self.mem.map("stubs", abi.STUB_BASE, bytearray(b"\xcc" * abi.STUB_SIZE), "x")
        self.mem.map("percpu", abi.PERCPU_BASE, abi.PERCPU_SIZE, "rw")
        self.stack = self.mem.map("stack", abi.STACK_BASE + PAGE_SIZE, abi.THREAD_SIZE, "rw")
        self.mem.write_u64(abi.PERCPU_BASE + 0x28, STACK_CANARY)
        load_api()
        self.kernel = api.Kernel(self.mem, self)

    # -- the machine ---------------------------------------------------------------------
    @property
    def machine(self) -> Machine:
        if self._machine is None:
            from lkm.kernel.exec.machine import Machine

            self._machine = Machine(self.mem, self._on_stub, self._on_trap,
                                    on_tick=self._on_tick)
            self._machine.new_stack(self.stack.end)
        return self._machine

    def code_changed(self) -> None:
        """Module text was rewritten (jump labels): drop stale translations."""
        if self._machine is not None:
            self._machine.uc.ctl_flush_tb()

    def call(self, addr: int, args: Sequence[int] = (), budget: int | None = None) -> int:
        """Call code at ``addr`` (outermost: on a fresh kernel stack)."""
        return self.machine.call(addr, args, budget)

    def _on_tick(self, rip: int) -> None:
        """The timer interrupt: a jiffy passes; the soft-lockup watchdog looks."""
        from lkm.kernel.api import time as ktime
        from lkm.kernel.exec import oops

        ktime.tick(self.kernel)
        if not self.watchdog or not self.watchdog_thresh:
            return
        clock = ktime.clock(self.kernel)
        stuck = (clock.mono_ns - self.softlockup_touch) // ktime.NSEC_PER_SEC
        if stuck >= 2 * self.watchdog_thresh and not self.softlockup_reported:
            self.softlockup_reported = True
            self.machine.step_after(PAUSE)
            oops.soft_lockup(self, stuck, self.machine.registers())

    def touch_softlockup(self) -> None:
        """The task scheduled: the watchdog's timestamp is touched."""
        from lkm.kernel.api import time as ktime

        self.softlockup_touch = ktime.clock(self.kernel).mono_ns
        self.softlockup_reported = False

    def current(self) -> Any:
        from lkm.kernel.api.sched import task

        return task(self.kernel)

    def last_unloaded(self) -> str:
        return self.last_unloaded_module

    def stub_regs(self) -> dict[str, int]:
        """The registers as the kernel function in progress was entered."""
        m = self.machine
        regs = m.registers()
        if m.frames:
            f = m.frames[-1]
            regs.update(rip=f.addr, rsp=f.rsp, caller=f.caller)
            for name, v in zip(abi.ARG_REGS, f.regs, strict=False):
                regs[name] = v
        return regs

    def function_start(self, pc: int) -> int:
        found = self.kallsyms(pc)
        return pc - found[1] if found is not None else pc

    def thunk_addresses(self) -> set[int]:
        return {a for n, a in self.symbols.items() if n.startswith("__x86_indirect_thunk_")}

    def in_module_text(self, addr: int) -> bool:
        for code in self.code.values():
            r = code.memory.region_at(addr)
            if r is not None and "x" in r.perm:
                return True
        return False

    def symbolize_return(self, addr: int) -> str:
        """%pB of a return address: the symbol of the call (addr - 1), offset + 1."""
        found = self.kallsyms(addr - 1)
        if found is None:
            return f"0x{addr:x}"
        name, off, size, mod = found
        return f"{name}+{off + 1:#x}/{size:#x}" + (f" [{mod}]" if mod else "")

    # -- kernel symbols ------------------------------------------------------------------
    def symbol_address(self, name: str) -> int:
        """Where a kernel symbol is: data and native code get memory, every other name a
        stub slot (implemented or not: the call decides)."""
        got = self.symbols.get(name)
        if got is not None:
            return got
        for code in self.code.values():
            s = code.memory.symbol(name)
            if s is not None and s.bind != 0 and name in self._exports_of(code.name):
                return s.addr
        if name in api.DATA_ALIASES:
            addr = self.symbol_address(api.DATA_ALIASES[name])
        elif name in api.NATIVE:
            addr = self._place_native(name, api.NATIVE[name])
        elif name in api.DATA:
            addr = self._place_data(api.DATA[name])
        else:
            addr = self.next_stub
            self.next_stub += abi.STUB_SLOT
            if self.next_stub >= abi.STUB_BASE + abi.STUB_SIZE:
                raise MemoryError("stub area full")
            self.sizes[name] = abi.STUB_SLOT
        self.symbols[name] = addr
        if addr >= abi.KERNEL_TEXT:  # not a per-CPU offset
            self.names[addr] = name
        return addr

    def _exports_of(self, modname: str) -> dict[str, Any]:
        mod = self.kstate.find_module(modname, even_unformed=True)
        return mod.syms if mod is not None else {}

    def _place_native(self, name: str, code: bytes) -> int:
        addr = (self.next_native + 15) & ~15
        off = addr - abi.NATIVE_BASE
        self.native.data[off:off + len(code)] = code
        self.next_native = addr + len(code)
        self.sizes[name] = len(code)
        return addr

    def kdata_alloc(self, size: int, align: int = 8) -> int:
        """Memory in the kernel image's data (zeroed)."""
        addr = (self.next_kdata + align - 1) & ~(align - 1)
        end = addr + max(size, 1)
        while end > self.kdata_end:
            n = max(KDATA_CHUNK, page_align(end - self.kdata_end))
            self.mem.map("kdata", self.kdata_end, n, "rw")
            self.kdata_end += n
        self.next_kdata = end
        return addr

    def kdata_scratch(self, data: bytes) -> int:
        """Constant bytes in kernel data (a format string the kernel itself passes)."""
        key = f"scratch:{data!r}"
        got = self.symbols.get(key)
        if got is None:
            got = self.kdata_alloc(len(data), 8)
            self.mem.write(got, data)
            self.symbols[key] = got
        return got

    def percpu_address(self, name: str) -> int:
        """The address of a per-CPU variable of CPU 0 (its symbol is an offset)."""
        return abi.PERCPU_BASE + self.symbol_address(name)

    def percpu_alloc(self, size: int, align: int = 8) -> int:
        off = (self.next_percpu + align - 1) & ~(align - 1)
        self.next_percpu = off + size
        if self.next_percpu > abi.PERCPU_SIZE:
            raise MemoryError("per-CPU area full")
        return off

    def _place_data(self, d: api.KData) -> int:
        size = d.size(self.kernel) if callable(d.size) else d.size
        if d.percpu:
            addr = self.percpu_alloc(size, d.align)
            self.symbols[d.name] = addr
            if d.init is not None:
                d.init(self.kernel, abi.PERCPU_BASE + addr)
        else:
            addr = self.kdata_alloc(size, d.align)
            self.symbols[d.name] = addr
            if d.init is not None:
                d.init(self.kernel, addr)
        self.sizes[d.name] = size
        return addr

    # -- stubs and traps -----------------------------------------------------------------
    def _on_stub(self, addr: int) -> int | None:
        name = self.names.get(addr)
        f = api.FUNCTIONS.get(name) if name is not None else None
        if f is None and name is not None and name.startswith("__SCT__"):
            f = api.FUNCTIONS.get(name[7:])  # a static call's default target
        if f is None:
            caller = self.machine.frame.caller
            raise NotImplementedByVirtualKernel(name or f"{addr:#x}", caller,
                                                self.symbolize(caller - 5, sizes=False))
        m = self.machine
        try:
            if f.nargs <= 6:
                return f.fn(self.kernel, *m.frame.regs[:f.nargs])
            return f.fn(self.kernel, *(m.arg(i) for i in range(f.nargs)))
        except MemoryFault as e:
            raise self._kernel_fault(e, addr) from None

    def _on_trap(self, rip: int) -> int:
        """do_int3/handle_bug(): a ud2 at ``rip`` with a __bug_table entry is WARN (resume
        after it) or BUG; any other is an invalid opcode."""
        from lkm.kernel.exec import oops

        found = self.bug_entry(rip)
        if found is None:
            raise InvalidOpcode(rip)
        entry_addr, entry = found
        file = self.kernel.text(entry.file_addr) if entry.file_addr else None
        if not entry.warning:
            raise KernelBug(file, entry.line, rip)
        if entry.flags & BUGFLAG_ONCE:
            if entry.flags & BUGFLAG_DONE:
                return rip + 2
            self.mem.write_u16(entry_addr + 10, entry.flags | BUGFLAG_DONE)
        oops.warn(self, file, entry.line, rip, entry.flags, self.machine.registers())
        return rip + 2

    def bug_entry(self, rip: int) -> tuple[int, Any] | None:
        for code in self.code.values():
            if not code.contains(rip):
                continue
            base = code.memory.sections.get("__bug_table")
            if base is None:
                return None
            # the table's size is not kept: read entries while they point into the module
            at = base
            while True:
                try:
                    raw = self.mem.read(at, 12)
                except MemoryFault:
                    return None
                e = decode_bug_table(raw, at)[0]
                if e.bug_addr == rip:
                    return at, e
                if not code.contains(e.bug_addr):
                    return None
                at += 12
        return None

    # -- modules -------------------------------------------------------------------------
    def attach(self, name: str, memory: ModuleMemory) -> LoadedCode:
        """Map a module's regions at the loader's addresses, with its permissions."""
        code = self.code.get(name)
        if code is None or code.memory is not memory:
            if code is not None:
                self.detach(name)
            code = LoadedCode(name, memory)
            self.code[name] = code
        self.sync(code)
        return code

    def sync(self, code: LoadedCode) -> None:
        """Follow the loader: regions freed (init), permissions changed (ro_after_init)."""
        live = {r.base: r for r in code.memory.regions}
        for base, m in list(code.mappings.items()):
            r = live.get(base)
            if r is None:
                self.mem.unmap(m)
                del code.mappings[base]
            elif r.perm != m.perm:
                self.mem.protect(m, r.perm)
        for base, r in live.items():
            if base not in code.mappings:
                code.mappings[base] = self.mem.map(f"{code.name}:{r.kind}", base, r.data,
                                                   r.perm, kind="module")
        code._syms = None

    def detach(self, name: str) -> None:
        code = self.code.pop(name, None)
        if code is None:
            return
        for m in code.mappings.values():
            self.mem.unmap(m)

    # -- kallsyms ------------------------------------------------------------------------
    def kallsyms(self, addr: int) -> tuple[str, int, int, str | None] | None:
        from lkm.kernel.module.history import module_memory

        modern = module_memory(self.profile.version)
        for code in self.code.values():
            found = code.lookup(addr, modern)
            if found is not None:
                return found[0], found[1], found[2], code.name
        return self._kernel_symbol(addr)

    def _kernel_symbol(self, addr: int) -> tuple[str, int, int, str | None] | None:
        if not self.names:
            return None
        addrs = sorted(self.names)
        i = bisect.bisect_right(addrs, addr) - 1
        if i < 0:
            return None
        base = addrs[i]
        name = self.names[base]
        size = self.sizes.get(name, 0)
        from lkm.kernel.exec.kernel_text import kernel_text

        real = kernel_text(self.profile.release, self.profile.version).sizes.get(name)
        if real is not None:
            if addr >= base + size:
                return None
            return name, addr - base, real, None
        if addr >= base + max(size, 1):
            return None
        return name, addr - base, size, None

    def symbolize(self, addr: int, sizes: bool = True) -> str:
        """%pS: ``name+0xoff/0xsize [module]`` (without the size: ``name+0xoff``)."""
        found = self.kallsyms(addr)
        if found is None:
            return f"0x{addr:x}"
        name, off, size, mod = found
        text = f"{name}+{off:#x}/{size:#x}" if sizes else f"{name}+{off:#x}"
        return text + (f" [{mod}]" if mod and sizes else "")

    # -- taints and the log --------------------------------------------------------------
    def add_taint(self, flag: int) -> None:
        self.kstate.add_taint(flag, self.printk)

    def _kernel_fault(self, e: MemoryFault, stub: int) -> ExecFault:
        """A kernel function's access faulted: the page fault happens in that function."""
        from lkm.kernel.exec.faults import GeneralProtection, PageFault, canonical, pf_error_code

        f: ExecFault
        if not canonical(e.address):
            f = GeneralProtection(stub, e.address)
        else:
            f = PageFault(e.address, pf_error_code(e.write, e.fetch, e.present), stub)
        f.regs = self.machine.registers()
        f.regs["rip"] = stub
        return f


_loaded = False


def load_api() -> None:
    """Import every kernel API file (each registers its functions and data)."""
    global _loaded
    if _loaded:
        return
    import importlib

    for name in API_FILES:
        importlib.import_module(f"lkm.kernel.api.{name}")
    _loaded = True


API_FILES = ("compiler", "slab", "string", "printk", "hexdump", "sched", "time", "locking",
             "module", "moduleparam", "panic", "paravirt", "dynamic_debug", "cpu")
