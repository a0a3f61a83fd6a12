"""The x86-64 kernel ABI module code follows, and the address layout it runs in.

Calling convention (System V AMD64 as the kernel builds it, -mno-red-zone): integer
arguments in rdi, rsi, rdx, rcx, r8, r9, then on the stack at [rsp+8], [rsp+16], ... at
function entry; the result in rax; rbx, rbp, r12-r15 preserved.  Variadic functions take
the same registers; ``va_list`` is the 24-byte struct {gp_offset, fp_offset,
overflow_arg_area, reg_save_area} (vprintk, vsnprintf, seq_vprintf).

Address layout (Documentation/arch/x86/x86_64/mm.rst, 4-level paging, KASLR off): the
direct map at 0xffff888000000000 (kmalloc memory, per-CPU areas), vmalloc space at
0xffffc90000000000 (kernel stacks, vmalloc), the kernel image from 0xffffffff81000000
(stubs standing for kernel functions, kernel data), modules at 0xffffffffc0000000 (the top
2 GiB, so that ``mov $sym, %reg`` with its R_X86_64_32S relocation works, and the image
within +-2 GiB for PC32/PLT32).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

ARCH = "x86_64"

PAGE_OFFSET = 0xFFFF888000000000
VMALLOC_START = 0xFFFFC90000000000
VMEMMAP_START = 0xFFFFEA0000000000
KERNEL_TEXT = 0xFFFFFFFF81000000
MODULES_VADDR = 0xFFFFFFFFC0000000
MODULES_END = 0xFFFFFFFFFF000000

# the virtual kernel's own image: native code, the stub area, data; per-CPU, stacks, heap
NATIVE_BASE = KERNEL_TEXT  # real x86 code (return thunks, pv_ops natives): 64 KiB
STUB_BASE = KERNEL_TEXT + 0x100000  # one 16-byte slot per kernel function: 4 MiB
STUB_SIZE = 0x400000
STUB_SLOT = 16
RET_TRAP = STUB_BASE + 8  # where a call from outside returns to (not a page boundary)
KDATA_BASE = 0xFFFFFFFF82A00000  # kernel data symbols (jiffies, kmalloc_caches, ...)
KDATA_SIZE = 0x400000
PERCPU_BASE = PAGE_OFFSET + 0x7DC00000  # the GS base of CPU 0
PERCPU_SIZE = 0x40000
HEAP_BASE = PAGE_OFFSET + 0x100000000  # slab pages
HEAP_SIZE = 0x40000000
VMALLOC_BASE = VMALLOC_START + 0x100000000  # vmalloc() and big allocations
STACK_BASE = VMALLOC_START + 0x8000000  # kernel stacks, each with a guard page below
THREAD_SIZE = 0x4000  # 16 KiB (KASAN off)

ARG_REGS = ("rdi", "rsi", "rdx", "rcx", "r8", "r9")
CALLEE_SAVED = ("rbx", "rbp", "r12", "r13", "r14", "r15")
RETURN_REG = "rax"
PC_REG = "rip"
SP_REG = "rsp"
# the registers __show_regs() prints, in its order
SHOW_REGS = ("rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rbp", "r8", "r9", "r10", "r11",
             "r12", "r13", "r14", "r15")
ALL_REGS = (*SHOW_REGS, "rsp", "rip", "eflags")

MASK64 = (1 << 64) - 1
KERNEL_CS = 0x10
KERNEL_DS = 0x18
X86_EFLAGS_IF = 0x200
EFLAGS_AT_CALL = 0x246  # IF, ZF, PF: what a syscall path typically shows
CR0 = 0x80050033
CR4 = 0x00770EF0

Reader = Callable[[int], int]  # reads a u64 at an address


def to_signed(v: int, bits: int = 64) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def stack_arg_address(rsp_at_entry: int, index: int) -> int:
    """Where integer argument ``index`` (0-based, >= 6) is at function entry."""
    return rsp_at_entry + 8 + 8 * (index - len(ARG_REGS))


def entry_stack(top: int, nstack: int) -> int:
    """The rsp at entry of a call made from a stack whose free top is ``top``: 16-byte
    aligned before the call pushes its return address, arguments past the sixth above it."""
    sp = (top - 8 * nstack) & ~0xF
    return sp - 8


class Args:
    """The integer arguments of the current call, in order, from ``first`` on: registers,
    then the stack (the view a variadic function such as _printk has of ``...``)."""

    def __init__(self, regs: list[int], rsp: int, read_u64: Reader, first: int = 0) -> None:
        self._regs = regs
        self._rsp = rsp
        self._read = read_u64
        self.index = first

    def next(self) -> int:
        i = self.index
        self.index += 1
        if i < len(ARG_REGS):
            return self._regs[i]
        return self._read(stack_arg_address(self._rsp, i))


@dataclass
class VaList:
    """A ``va_list`` read from memory (gcc's x86-64 layout): integer arguments come from
    the register save area while gp_offset < 48, then from the overflow area."""

    addr: int
    read_u64: Reader
    read_u32: Reader

    def __post_init__(self) -> None:
        self.gp_offset = self.read_u32(self.addr)
        self.fp_offset = self.read_u32(self.addr + 4)
        self.overflow = self.read_u64(self.addr + 8)
        self.reg_save = self.read_u64(self.addr + 16)

    def next(self) -> int:
        if self.gp_offset < 8 * len(ARG_REGS):
            v = self.read_u64(self.reg_save + self.gp_offset)
            self.gp_offset += 8
            return v
        v = self.read_u64(self.overflow)
        self.overflow += 8
        return v
