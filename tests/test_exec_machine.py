"""The machine on hand-assembled x86-64 code: calls, stubs, nesting, faults, the budget.

The byte sequences are written out (no assembler); each names its instructions.
"""

from __future__ import annotations

import struct

import pytest

from lkm.kernel.exec import abi_x86_64 as abi
from lkm.kernel.exec.faults import (
    X86_PF_INSTR,
    X86_PF_PROT,
    X86_PF_WRITE,
    BudgetExhausted,
    DivideError,
    GeneralProtection,
    PageFault,
)
from lkm.kernel.exec.machine import Machine
from lkm.kernel.exec.memory import AddressSpace, MemoryFault

TEXT = abi.MODULES_VADDR + 0x200000
DATA = TEXT + 0x10000


def rel32(at_next: int, target: int) -> bytes:
    return struct.pack("<i", target - at_next)


def call_rel(at: int, target: int) -> bytes:
    """call target (e8 rel32), placed at ``at``."""
    return b"\xe8" + rel32(at + 5, target)


class Rig:
    """An address space with module text/data, a stack, per-CPU data and a stub area;
    stubs are Python callables by slot."""

    def __init__(self, code: bytes, budget: int = 100_000) -> None:
        self.mem = AddressSpace()
        self.text = self.mem.map("text", TEXT, bytearray(code.ljust(0x1000, b"\xcc")), "rx")
        self.data = self.mem.map("data", DATA, 0x1000, "rw")
        self.mem.map("stack", abi.STACK_BASE + 0x1000, abi.THREAD_SIZE, "rw")
        self.mem.map("percpu", abi.PERCPU_BASE, 0x1000, "rw")
        self.mem.map("stubs", abi.STUB_BASE, bytearray(b"\xcc" * 0x2000), "x")
        self.stubs: dict[int, object] = {}
        self.traps: list[int] = []
        self.m = Machine(self.mem, self.on_stub, self.on_trap, budget=budget)
        self.m.new_stack(abi.STACK_BASE + 0x1000 + abi.THREAD_SIZE)

    def stub(self, n: int) -> int:
        return abi.STUB_BASE + 0x100 + n * abi.STUB_SLOT

    def on_stub(self, addr: int) -> int | None:
        fn = self.stubs[addr]
        return fn(self.m)  # type: ignore[operator,no-any-return]

    def on_trap(self, rip: int) -> int:
        self.traps.append(rip)
        return rip + 2


def test_plain_call() -> None:
    # lea eax, [rdi+rdi*1+1]; ret
    r = Rig(b"\x8d\x44\x3f\x01\xc3")
    assert r.m.call(TEXT, [20]) == 41
    assert r.m.call(TEXT, [1]) == 3


def test_stub_arguments_past_the_sixth() -> None:
    # push 8; push 7; mov r9d,6 ... call stub; add rsp,16; ret
    s = Rig(b"")
    code = b"\x6a\x08\x6a\x07"
    for reg, v in ((b"\xbf", 1), (b"\xbe", 2), (b"\xba", 3), (b"\xb9", 4)):
        code += reg + struct.pack("<I", v)  # mov edi/esi/edx/ecx, imm32
    code += b"\x41\xb8" + struct.pack("<I", 5) + b"\x41\xb9" + struct.pack("<I", 6)
    code += call_rel(TEXT + len(code), s.stub(0)) + b"\x48\x83\xc4\x10\xc3"
    r = Rig(code)
    seen: list[int] = []

    def handler(m: Machine) -> int:
        seen.extend(m.arg(i) for i in range(8))
        a = m.args(2)
        assert [a.next() for _ in range(6)] == [3, 4, 5, 6, 7, 8]
        return 99

    r.stubs[r.stub(0)] = handler
    assert r.m.call(TEXT) == 99
    assert seen == [1, 2, 3, 4, 5, 6, 7, 8]


def test_outermost_call_passes_stack_arguments() -> None:
    # mov rax, [rsp+16]; ret   (the 8th argument)
    r = Rig(b"\x48\x8b\x44\x24\x10\xc3")
    assert r.m.call(TEXT, [0, 0, 0, 0, 0, 0, 7, 0x1234]) == 0x1234


def test_nested_call_back_into_module_code() -> None:
    # f: push rbx; mov ebx,1000; mov rdi,<cb>; call stub; add eax,ebx; pop rbx; ret
    # cb (TEXT+0x100): lea eax,[rdi+rdi]; ret
    s = Rig(b"")
    cb = TEXT + 0x100
    code = b"\x53\xbb" + struct.pack("<I", 1000)
    code += b"\x48\xc7\xc7" + struct.pack("<i", cb - (1 << 64))
    code += call_rel(TEXT + len(code), s.stub(1)) + b"\x01\xd8\x5b\xc3"
    r = Rig(code.ljust(0x100, b"\xcc") + b"\x8d\x04\x3f\xc3")
    calls: list[int] = []

    def handler(m: Machine) -> int:
        calls.append(m.frame.caller)
        fn = m.arg(0)
        return m.call(fn, [21]) + m.call(fn, [1])

    r.stubs[r.stub(1)] = handler
    assert r.m.call(TEXT) == 1044
    assert calls == [TEXT + len(code) - 4]  # the return address: after the call
    assert r.m.depth == 0


def test_thunk_jumps() -> None:
    # mov eax, <target>; call stub(indirect thunk); ret ; target: mov eax,7; ret
    s = Rig(b"")
    target = TEXT + 0x80
    code = b"\x48\xc7\xc0" + struct.pack("<i", target - (1 << 64))
    code += call_rel(TEXT + len(code), s.stub(2)) + b"\xc3"
    r = Rig(code.ljust(0x80, b"\xcc") + b"\xb8\x07\x00\x00\x00\xc3")
    r.stubs[r.stub(2)] = lambda m: m.jump(m.reg("rax"))
    assert r.m.call(TEXT) == 7


def test_gs_canary() -> None:
    # mov rax, gs:0x28; ret
    r = Rig(b"\x65\x48\x8b\x04\x25\x28\x00\x00\x00\xc3")
    r.mem.write_u64(abi.PERCPU_BASE + 0x28, 0x1122334455667788)
    assert r.m.call(TEXT) == 0x1122334455667788


def test_write_to_text_faults() -> None:
    # mov byte [rip+0x10], al
    r = Rig(b"\x88\x05\x10\x00\x00\x00\xc3")
    with pytest.raises(PageFault) as ei:
        r.m.call(TEXT)
    f = ei.value
    assert f.address == TEXT + 6 + 0x10
    assert f.error_code == X86_PF_PROT | X86_PF_WRITE
    assert f.rip == TEXT
    assert f.regs["rip"] == TEXT


def test_null_read_and_write() -> None:
    # xor eax,eax; mov rax,[rax+8]; ret
    r = Rig(b"\x31\xc0\x48\x8b\x40\x08\xc3")
    with pytest.raises(PageFault) as ei:
        r.m.call(TEXT)
    assert (ei.value.address, ei.value.error_code, ei.value.rip) == (8, 0, TEXT + 2)
    # mov dword [rdi+0x10], 1 with rdi = 0
    r = Rig(b"\xc7\x47\x10\x01\x00\x00\x00\xc3")
    with pytest.raises(PageFault) as ei:
        r.m.call(TEXT, [0])
    assert (ei.value.address, ei.value.error_code) == (0x10, X86_PF_WRITE)
    # the machine is usable after a fault
    r2 = Rig(b"\x8d\x44\x3f\x01\xc3")
    assert r2.m.call(TEXT, [1]) == 3


def test_null_call() -> None:
    # xor eax,eax; call rax
    r = Rig(b"\x31\xc0\xff\xd0\xc3")
    with pytest.raises(PageFault) as ei:
        r.m.call(TEXT)
    assert (ei.value.address, ei.value.error_code, ei.value.rip) == (0, X86_PF_INSTR, 0)


def test_data_page_is_writable_and_shared() -> None:
    # mov qword [rdi], rsi; ret
    r = Rig(b"\x48\x89\x37\xc3")
    r.m.call(TEXT, [DATA + 0x18, 0xABCDEF])
    assert r.mem.read_u64(DATA + 0x18) == 0xABCDEF
    assert r.data.data[0x18:0x1B] == b"\xef\xcd\xab"


def test_stub_area_is_not_readable() -> None:
    # mov rax, [rdi]
    r = Rig(b"\x48\x8b\x07\xc3")
    with pytest.raises(PageFault) as ei:
        r.m.call(TEXT, [abi.STUB_BASE + 0x100])
    assert ei.value.error_code == X86_PF_PROT
    with pytest.raises(MemoryFault):
        r.mem.read(abi.STUB_BASE, 1)


def test_non_canonical_is_a_gp() -> None:
    # mov rax, [rdi]
    r = Rig(b"\x48\x8b\x07\xc3")
    with pytest.raises(GeneralProtection) as ei:
        r.m.call(TEXT, [0xDEAD000000000100])
    assert ei.value.address == 0xDEAD000000000100


def test_divide_error() -> None:
    # xor ecx,ecx; div ecx
    r = Rig(b"\x31\xc9\xf7\xf1\xc3")
    with pytest.raises(DivideError) as ei:
        r.m.call(TEXT)
    assert ei.value.rip == TEXT + 2


def test_ud2_resumes_where_the_trap_handler_says() -> None:
    # ud2; mov eax,5; ret
    r = Rig(b"\x0f\x0b\xb8\x05\x00\x00\x00\xc3")
    assert r.m.call(TEXT) == 5
    assert r.traps == [TEXT]


def test_budget() -> None:
    # jmp $
    r = Rig(b"\xeb\xfe", budget=5000)
    with pytest.raises(BudgetExhausted) as ei:
        r.m.call(TEXT)
    assert ei.value.rip == TEXT
    r.text.data[0:2] = b"\x90\xc3"  # not seen until the translation is dropped
    r.mem.protect(r.text, "rx")
    r.m.uc.ctl_flush_tb()
    assert r.m.call(TEXT) is not None


def test_handler_errors_propagate_through_nesting() -> None:
    s = Rig(b"")
    cb = TEXT + 0x100
    code = b"\x48\xc7\xc7" + struct.pack("<i", cb - (1 << 64))
    code += call_rel(TEXT + len(code), s.stub(1)) + b"\xc3"
    # cb: call stub(3); ret
    cbcode = call_rel(cb, s.stub(3)) + b"\xc3"
    r = Rig(code.ljust(0x100, b"\xcc") + cbcode)

    class Boom(Exception):
        pass

    def inner(_m: Machine) -> int:
        raise Boom

    r.stubs[r.stub(1)] = lambda m: m.call(m.arg(0))
    r.stubs[r.stub(3)] = inner
    with pytest.raises(Boom):
        r.m.call(TEXT)
    assert r.m.depth == 0 and r.m.frames == []
    r.stubs[r.stub(3)] = lambda m: 5
    assert r.m.call(TEXT) == 5


def test_unmap_then_fault() -> None:
    r = Rig(b"\x8b\x07\xc3")  # mov eax,[rdi]; ret
    r.mem.write_u32(DATA, 77)
    assert r.m.call(TEXT, [DATA]) == 77
    r.mem.unmap(r.data)
    with pytest.raises(PageFault) as ei:
        r.m.call(TEXT, [DATA + 4])
    assert ei.value.address == DATA + 4
