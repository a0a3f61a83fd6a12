"""The x86-64 CPU that runs module code: unicorn in virtual-TLB mode over an AddressSpace.

Kernel addresses are far above what unicorn can map physically, so every mapping of the
:class:`~lkm.kernel.exec.memory.AddressSpace` is placed in unicorn's physical memory (its
own ``bytearray``, shared, not copied) and a TLB-fill callback translates virtual pages
with the page permissions (a write to text, a read of the stub area, an unmapped page:
the fill fails and the call ends in a :class:`PageFault`; the fill only sees the page, so
the exact address comes from decoding the faulting instruction).

Kernel functions live in a stub area: executing a stub slot calls ``on_stub(address)``
(the kernel API, through :mod:`lkm.kernel.exec.runtime`), which reads the arguments
captured at entry and may call back into module code (:meth:`Machine.call` nests); the
machine then does the stub's ``ret`` itself.  ``ud2`` goes to ``on_trap`` (BUG/WARN).
Each outermost call gets a fresh kernel stack and an instruction budget.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable, Sequence
from typing import Any

from lkm.kernel.exec import abi_x86_64 as abi
from lkm.kernel.exec.faults import (
    Breakpoint,
    BudgetExhausted,
    DivideError,
    ExecFault,
    GeneralProtection,
    InvalidOpcode,
    PageFault,
    canonical,
    pf_error_code,
)
from lkm.kernel.exec.memory import PAGE_SHIFT, AddressSpace, Mapping

DEFAULT_BUDGET = 400_000_000  # instructions for one outermost call (a few s here)
TICK = 200_000  # instructions between two timer interrupts (one jiffy of virtual time)
STUB_CALLS_PER_TICK = 200  # kernel function calls that take as long (a loop polling one)
_U64 = struct.Struct("<Q")

StubHandler = Callable[[int], "int | None"]
TrapHandler = Callable[[int], int]  # ud2 at rip -> where to resume (or raises)
TickHandler = Callable[[int], None]  # the timer interrupt, at rip (may raise)


class Frame:
    """A kernel function call in progress: its arguments as they were at entry."""

    __slots__ = ("addr", "caller", "regs", "rsp")

    def __init__(self, addr: int, regs: list[int], rsp: int, caller: int) -> None:
        self.addr = addr
        self.regs = regs
        self.rsp = rsp
        self.caller = caller


class Machine:
    """One CPU (CPU 0) and its view of the address space."""

    def __init__(self, mem: AddressSpace, on_stub: StubHandler, on_trap: TrapHandler,
                 gs_base: int = abi.PERCPU_BASE, budget: int = DEFAULT_BUDGET,
                 on_tick: TickHandler | None = None, tick: int = TICK) -> None:
        import unicorn
        import unicorn.x86_const

        U: Any = unicorn
        X: Any = unicorn.x86_const
        self._U = U
        self.mem = mem
        self.on_stub = on_stub
        self.on_trap = on_trap
        self.budget = budget
        self.on_tick = on_tick
        self.tick = tick
        self.uc: Any = U.Uc(U.UC_ARCH_X86, U.UC_MODE_64)
        uc = self.uc
        uc.ctl_set_tlb_mode(U.UC_TLB_VIRTUAL)
        self._reg = {n: getattr(X, f"UC_X86_REG_{n.upper()}") for n in
                     (*abi.ALL_REGS, "gs_base", "cr0", "cr4", "cs", "ss", "ds", "es")}
        self._arg_ids = [self._reg[n] for n in abi.ARG_REGS] + [self._reg["rsp"]]
        self._perm = {"": 0, "r": U.UC_PROT_READ, "rw": U.UC_PROT_READ | U.UC_PROT_WRITE,
                      "rx": U.UC_PROT_READ | U.UC_PROT_EXEC, "x": U.UC_PROT_EXEC,
                      "rwx": U.UC_PROT_ALL}
        self._need = {U.UC_MEM_READ: "r", U.UC_MEM_WRITE: "w", U.UC_MEM_FETCH: "x"}
        self._phys: dict[int, int] = {}  # id(mapping) -> physical base
        self._buffers: dict[int, Any] = {}  # id(mapping) -> ctypes view keeping it mapped
        self._next_phys = 0x100000
        self._fault: tuple[int, int, bool] | None = None
        self._pending: BaseException | None = None
        self._jump: int | None = None
        self.frames: list[Frame] = []  # kernel function calls in progress, innermost last
        self.stub_calls = 0
        self.depth = 0
        self.stack_top = 0
        for m in mem.mappings:
            self._map(m)
        mem.listeners.append(self._on_change)
        uc.hook_add(U.UC_HOOK_TLB_FILL, self._tlb_fill)
        uc.hook_add(U.UC_HOOK_CODE, self._code, begin=abi.STUB_BASE,
                    end=abi.STUB_BASE + abi.STUB_SIZE - 1)
        uc.hook_add(U.UC_HOOK_INSN_INVALID, self._invalid)
        uc.hook_add(U.UC_HOOK_INTR, self._intr)
        uc.reg_write(self._reg["gs_base"], gs_base)
        uc.reg_write(self._reg["cr0"], abi.CR0)

    # -- the address space ---------------------------------------------------------------
    def _map(self, m: Mapping) -> None:
        size = len(m.data)
        buf = (ctypes.c_char * size).from_buffer(m.data)
        phys = self._next_phys
        self.uc.mem_map_ptr(phys, size, self._U.UC_PROT_ALL, ctypes.addressof(buf))
        self._next_phys += size + 0x1000  # never reused: no stale translation can match
        self._phys[id(m)] = phys
        self._buffers[id(m)] = buf

    def _on_change(self, what: str, m: Mapping) -> None:
        if what == "map":
            self._map(m)
            return
        if what == "unmap":
            phys = self._phys.pop(id(m))
            self.uc.mem_unmap(phys, len(m.data))
            del self._buffers[id(m)]
            self.uc.ctl_flush_tb()
        self.flush_tlb()

    def flush_tlb(self) -> None:
        self.uc.ctl(self._U.UC_CTL_TLB_FLUSH, self._U.UC_CTL_IO_WRITE)

    def _tlb_fill(self, uc: Any, vaddr: int, access: int, entry: Any, _ud: Any) -> bool:
        m = self.mem.pages.get(vaddr >> PAGE_SHIFT)
        if m is None or self._need.get(access, "r") not in m.perm:
            self._fault = (vaddr, access, m is not None)
            return False
        entry.paddr = self._phys[id(m)] + (vaddr - m.base)
        entry.perms = self._perm[m.perm]
        return True

    # -- registers -----------------------------------------------------------------------
    def reg(self, name: str) -> int:
        return int(self.uc.reg_read(self._reg[name]))

    def set_reg(self, name: str, value: int) -> None:
        self.uc.reg_write(self._reg[name], value & abi.MASK64)

    def registers(self) -> dict[str, int]:
        names = (*abi.ALL_REGS, "gs_base", "cr0", "cr4")
        vals = self.uc.reg_read_batch([self._reg[n] for n in names])
        return {n: int(v) for n, v in zip(names, vals, strict=True)}

    # -- the kernel function in progress (the stub's view) -----------------------------
    @property
    def frame(self) -> Frame:
        return self.frames[-1]

    def arg(self, i: int) -> int:
        f = self.frames[-1]
        if i < len(abi.ARG_REGS):
            return f.regs[i]
        return self.mem.read_u64(abi.stack_arg_address(f.rsp, i))

    def args(self, first: int = 0) -> abi.Args:
        f = self.frames[-1]
        return abi.Args(f.regs, f.rsp, self.mem.read_u64, first)

    def jump(self, addr: int) -> None:
        """End the current stub by jumping to ``addr`` (a thunk) instead of returning."""
        self._jump = addr

    def _code(self, uc: Any, address: int, _size: int, _ud: Any) -> None:
        if address == abi.RET_TRAP:
            return
        try:
            vals = uc.reg_read_batch(self._arg_ids)
            rsp = int(vals[-1])
            caller = self.mem.read_u64(rsp)
            self.frames.append(Frame(address, [int(v) for v in vals[:-1]], rsp, caller))
            try:
                self._jump = None
                ret = self.on_stub(address)
                jump, self._jump = self._jump, None
            finally:
                self.frames.pop()
            if ret is not None:
                uc.reg_write(self._reg["rax"], ret & abi.MASK64)
            if jump is not None:
                uc.reg_write(self._reg["rip"], jump)
            else:
                uc.reg_write(self._reg["rsp"], rsp + 8)
                uc.reg_write(self._reg["rip"], caller)
            self.stub_calls += 1
            if self.on_tick is not None and self.stub_calls >= STUB_CALLS_PER_TICK:
                self.stub_calls = 0
                uc.emu_stop()  # the timer interrupt comes due: _run takes it
        except BaseException as e:
            self._stop(e)

    def _stop(self, e: BaseException) -> None:
        if self._pending is None:
            self._pending = e
        self.uc.emu_stop()

    def _invalid(self, uc: Any, _ud: Any) -> bool:
        rip = self.reg("rip")
        try:
            resume = self.on_trap(rip)
        except BaseException as e:
            self._stop(e)
            return False
        uc.reg_write(self._reg["rip"], resume)
        return True

    def _intr(self, _uc: Any, intno: int, _ud: Any) -> None:
        rip = self.reg("rip")
        fault: ExecFault
        if intno == 0:
            fault = DivideError(rip)
        elif intno == 3:
            fault = Breakpoint(rip - 1)
        elif intno == 6:
            fault = InvalidOpcode(rip)
        else:
            fault = GeneralProtection(rip)
        self._stop(fault)

    # -- calls ---------------------------------------------------------------------------
    def new_stack(self, top: int) -> None:
        """Where the next outermost call's stack starts (a task's kernel stack top)."""
        self.stack_top = top

    def call(self, addr: int, args: Sequence[int] = (), budget: int | None = None) -> int:
        """Run the function at ``addr`` with integer ``args``; its rax.

        Nested inside a stub (a kernel function calling module code back) the call runs on
        the current stack below the caller's frame; callee-saved registers and rsp are
        restored afterwards.
        """
        uc = self.uc
        nested = self.depth > 0
        saved: list[int] = []
        if nested:
            saved = [self.reg(n) for n in (*abi.CALLEE_SAVED, "rsp")]
            top = saved[-1]
        else:
            top = self.stack_top
        extra = list(args[len(abi.ARG_REGS):])
        sp = abi.entry_stack(top, len(extra))
        self.mem.write(sp, _U64.pack(abi.RET_TRAP) + b"".join(
            _U64.pack(a & abi.MASK64) for a in extra))
        for name, val in zip(abi.ARG_REGS, args, strict=False):
            uc.reg_write(self._reg[name], val & abi.MASK64)
        uc.reg_write(self._reg["rsp"], sp)
        if not nested:
            uc.reg_write(self._reg["eflags"], abi.EFLAGS_AT_CALL)
        n = self.budget if budget is None else budget
        self.depth += 1
        try:
            self._run(addr, n)
        finally:
            self.depth -= 1
        result = self.reg("rax")
        if nested:
            for name, val in zip((*abi.CALLEE_SAVED, "rsp"), saved, strict=True):
                uc.reg_write(self._reg[name], val)
        return result

    def _run(self, addr: int, budget: int) -> None:
        """Run until the return trap, in slices of ``tick`` instructions with the timer
        interrupt between them; the budget bounds the whole call."""
        used = 0
        begin = addr
        while True:
            n = min(self.tick, budget - used) if self.on_tick is not None else budget - used
            self._fault = None
            err: Exception | None = None
            try:
                self.uc.emu_start(begin, abi.RET_TRAP, count=n)
            except self._U.UcError as e:
                err = e
            pending, self._pending = self._pending, None
            if pending is not None:
                raise pending
            if err is not None:
                raise self._fault_from(err) from None
            rip = self.reg("rip")
            if rip == abi.RET_TRAP:
                return
            used += n
            if used >= budget:
                raise self._annotate(BudgetExhausted(rip, budget))
            if self.on_tick is not None:
                self.on_tick(rip)
            begin = rip

    def step_after(self, code: bytes, limit: int = 64) -> None:
        """Single-step until the instruction just executed is ``code`` (an interrupt is
        taken at the end of a slow instruction such as ``pause``), at most ``limit``."""
        for _ in range(limit):
            rip = self.reg("rip")
            try:
                if self.mem.read(rip - len(code), len(code)) == code:
                    return
            except Exception:
                pass
            try:
                self.uc.emu_start(rip, abi.RET_TRAP, count=1)
            except self._U.UcError:
                return
            if self._pending is not None or self.reg("rip") == abi.RET_TRAP:
                return

    # -- faults --------------------------------------------------------------------------
    def _annotate(self, f: ExecFault) -> ExecFault:
        f.regs = self.registers()
        return f

    def _fault_from(self, err: Exception) -> ExecFault:
        rip = self.reg("rip")
        if self._fault is None:
            return self._annotate(GeneralProtection(rip))
        vpage, access, present = self._fault
        self._fault = None
        fetch = access == self._U.UC_MEM_FETCH
        write = access == self._U.UC_MEM_WRITE
        address = rip if fetch else self._data_address(rip, vpage)
        if not canonical(address):
            return self._annotate(GeneralProtection(rip, address))
        return self._annotate(PageFault(address, pf_error_code(write, fetch, present), rip))

    def _data_address(self, rip: int, vpage: int) -> int:
        """The address the instruction at ``rip`` accessed in page ``vpage`` (CR2)."""
        try:
            code = self.mem.read(rip, 15)
        except Exception:
            code = b""
        for ea in _effective_addresses(self, code, rip):
            if ea >> PAGE_SHIFT == vpage >> PAGE_SHIFT or not canonical(ea):
                return ea
        return vpage


def _effective_addresses(m: Machine, code: bytes, rip: int) -> list[int]:
    """The memory operands' addresses of the instruction ``code`` at ``rip`` (capstone)."""
    if not code:
        return []
    import capstone as C
    import capstone.x86 as CX

    md = C.Cs(C.CS_ARCH_X86, C.CS_MODE_64)
    md.detail = True
    out: list[int] = []
    for insn in md.disasm(code, rip, 1):
        for op in insn.operands:
            if op.type != CX.X86_OP_MEM:
                continue
            ea = op.mem.disp
            if op.mem.base:
                name = insn.reg_name(op.mem.base)
                ea += insn.address + insn.size if name == "rip" else _reg_by_name(m, name)
            if op.mem.index:
                ea += _reg_by_name(m, insn.reg_name(op.mem.index)) * op.mem.scale
            if op.mem.segment and insn.reg_name(op.mem.segment) == "gs":
                ea += m.reg("gs_base")
            out.append(ea & abi.MASK64)
        if insn.mnemonic.startswith(("push", "call")):
            out.append((m.reg("rsp") - 8) & abi.MASK64)
        elif insn.mnemonic.startswith(("pop", "ret")):
            out.append(m.reg("rsp"))
    return out


_SUBREG = {"e": 32, "": 64}


def _reg_by_name(m: Machine, name: str) -> int:
    """A 64- or 32-bit general register's value by capstone's name."""
    if name in m._reg:
        return m.reg(name)
    if name.startswith("e") and "r" + name[1:] in m._reg:
        return m.reg("r" + name[1:]) & 0xFFFFFFFF
    if name.startswith("r") and name.endswith("d") and name[:-1] in m._reg:
        return m.reg(name[:-1]) & 0xFFFFFFFF
    return 0
