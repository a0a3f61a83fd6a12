"""How a call into module code can end other than by returning, as typed exceptions.

The kernel's traps (arch/x86/kernel/traps.c, arch/x86/mm/fault.c): a page fault with its
address and #PF error code, an invalid opcode (``ud2``: BUG() and WARN() through the
module's ``__bug_table``, lib/bug.c), a general-protection fault, a divide error; and the
virtual kernel's own limits: the instruction budget (the soft-lockup watchdog's case) and
a kernel function it does not implement.  Each carries the instruction pointer, so that
:mod:`lkm.kernel.exec.oops` can print ``RIP: 0010:func+off/size [module]``.

x86 specifics (the error code bits, the ``__bug_table`` entry of
CONFIG_GENERIC_BUG_RELATIVE_POINTERS) are named so; arm64 would add its own.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from lkm.errors import LkmError

# arch/x86/include/asm/trap_pf.h: enum x86_pf_error_code
X86_PF_PROT = 1 << 0
X86_PF_WRITE = 1 << 1
X86_PF_USER = 1 << 2
X86_PF_RSVD = 1 << 3
X86_PF_INSTR = 1 << 4
X86_PF_PK = 1 << 5

# include/asm-generic/bug.h
BUGFLAG_WARNING = 1 << 0
BUGFLAG_ONCE = 1 << 1
BUGFLAG_DONE = 1 << 2
BUGFLAG_NO_CUT_HERE = 1 << 3

UD2 = b"\x0f\x0b"


class ExecFault(LkmError):
    """A call into module code ended in a trap; ``rip`` is where (0 when unknown)."""

    def __init__(self, message: str, rip: int = 0) -> None:
        super().__init__(message)
        self.rip = rip
        self.regs: dict[str, int] = {}  # the CPU registers at the trap, for the oops
        self.stack: list[int] = []  # return addresses found on the stack, innermost first


class PageFault(ExecFault):
    """#PF: ``address`` (CR2) and the hardware error code."""

    def __init__(self, address: int, error_code: int, rip: int = 0) -> None:
        super().__init__(f"page fault at {address:#x} (error code {error_code:#x})", rip)
        self.address = address
        self.error_code = error_code


class GeneralProtection(ExecFault):
    """#GP, e.g. a non-canonical address (``address`` when known)."""

    def __init__(self, rip: int = 0, address: int | None = None) -> None:
        super().__init__("general protection fault", rip)
        self.address = address


class InvalidOpcode(ExecFault):
    """#UD that is not a BUG()/WARN() site."""

    def __init__(self, rip: int = 0) -> None:
        super().__init__("invalid opcode", rip)


class DivideError(ExecFault):
    """#DE."""

    def __init__(self, rip: int = 0) -> None:
        super().__init__("divide error", rip)


class Breakpoint(ExecFault):
    """An int3 module code executed (not a kprobe: nothing handles it)."""

    def __init__(self, rip: int = 0) -> None:
        super().__init__("int3", rip)


class KernelBug(ExecFault):
    """BUG(): ``kernel BUG at file:line!`` then the invalid-opcode oops.

    Raised for a module's BUG_ON through its ``__bug_table``, and by the kernel API for a
    BUG the kernel itself hits (``function`` then names the vmlinux function, e.g. SLUB's
    freelist check), where ``rip`` is the module's call site.
    """

    def __init__(self, file: str | None, line: int, rip: int = 0,
                 function: str | None = None) -> None:
        where = f"{file}:{line}" if file else "unknown"
        super().__init__(f"kernel BUG at {where}!", rip)
        self.file = file
        self.line = line
        self.function = function


class Panic(ExecFault):
    """panic(): ``Kernel panic - not syncing: <message>``."""

    def __init__(self, text: str, rip: int = 0) -> None:
        super().__init__(f"Kernel panic - not syncing: {text}", rip)
        self.text = text


class BudgetExhausted(ExecFault):
    """The call ran its whole instruction budget without returning (a lockup)."""

    def __init__(self, rip: int, budget: int) -> None:
        super().__init__(f"no return after {budget} instructions", rip)
        self.budget = budget


class NotImplementedByVirtualKernel(LkmError):
    """Module code called (or read) a kernel symbol the virtual kernel does not implement.

    ``name`` is the symbol, ``site`` the call site as the kernel names code addresses
    (``lkm_foo_init+0x24``), ``caller`` its address.
    """

    def __init__(self, name: str, caller: int = 0, site: str = "", data: bool = False) -> None:
        self.name = name
        self.caller = caller
        self.site = site
        self.data = data
        what = "data" if data else "function"
        at = f" (called from {site})" if site else f" (called from {caller:#x})" if caller \
            else ""
        super().__init__(f"the virtual kernel does not implement the kernel {what} "
                         f"{name}{at}")


def pf_error_code(write: bool, fetch: bool, present: bool) -> int:
    """The #PF error code of a supervisor-mode access."""
    return (X86_PF_PROT if present else 0) | (X86_PF_WRITE if write else 0) \
        | (X86_PF_INSTR if fetch else 0)


def canonical(addr: int) -> bool:
    """A 48-bit (4-level paging) canonical address."""
    top = addr >> 47
    return top == 0 or top == (1 << 17) - 1


# -- __bug_table (lib/bug.c, CONFIG_GENERIC_BUG_RELATIVE_POINTERS) ---------------------

BUG_ENTRY = struct.Struct("<iiHH")  # bug_addr_disp, file_disp, line, flags


@dataclass(frozen=True)
class BugEntry:
    """A decoded struct bug_entry: the ud2's address, the file name's, line and flags."""

    bug_addr: int
    file_addr: int
    line: int
    flags: int

    @property
    def warning(self) -> bool:
        return bool(self.flags & BUGFLAG_WARNING)


def decode_bug_table(data: bytes, base: int) -> list[BugEntry]:
    """The entries of a relocated ``__bug_table`` whose bytes are at address ``base``."""
    out = []
    n = len(data) // BUG_ENTRY.size
    for i in range(n):
        at = base + i * BUG_ENTRY.size
        disp, fdisp, line, flags = BUG_ENTRY.unpack_from(data, i * BUG_ENTRY.size)
        file_addr = (at + 4 + fdisp) & 0xFFFFFFFFFFFFFFFF if fdisp else 0
        out.append(BugEntry((at + disp) & 0xFFFFFFFFFFFFFFFF, file_addr, line, flags))
    return out
