"""The kernel API and the runtime around it, on a small made-up kernel (no trees needed).

A :class:`Runtime` over a profile of no real kernel and hand-written struct layouts; module
code is hand-assembled x86-64 placed as a module's text, calling the kernel through its
stubs, as a relocated module would.
"""

from __future__ import annotations

import signal
import struct
from typing import ClassVar

import pytest

from lkm.errors import ProcessKilled
from lkm.kernel.api import slab, string
from lkm.kernel.exec import abi_x86_64 as abi
from lkm.kernel.exec import calls, snapshot
from lkm.kernel.exec.faults import KernelBug, NotImplementedByVirtualKernel
from lkm.kernel.exec.runtime import Runtime
from lkm.kernel.exec.structs import FieldInfo, LayoutLookupError
from lkm.kernel.module.state import (
    MODULE_STATE_COMING,
    KernelState,
    Module,
    ModuleMemory,
    ModuleSymbol,
    Region,
)
from lkm.kernel.profile import KernelProfile

TEXT = abi.MODULES_VADDR + 0x400000
DATA = TEXT + 0x2000


class FakeLayouts:
    """The few struct layouts the API asks for, made up but consistent."""

    OFFSETS: ClassVar[dict[tuple[str, str], int]] = {
        ("task_struct", "pid"): 0x970, ("task_struct", "tgid"): 0x974,
        ("task_struct", "comm"): 0xBA0, ("task_struct", "stack"): 0x20,
        ("task_struct", "real_cred"): 0xB80, ("task_struct", "cred"): 0xB88,
        ("task_struct", "rcu_read_lock_nesting"): 0x80,
        ("cred", "usage"): 0, ("cred", "cap_permitted"): 0x30, ("cred", "cap_effective"): 0x38,
        ("cred", "cap_bset"): 0x40, ("cred", "cap_inheritable"): 0x28,
        ("kernel_param", "arg"): 32, ("kernel_param", "ops"): 16,
        ("kernel_param_ops", "flags"): 0, ("kernel_param_ops", "set"): 8,
        ("kernel_param_ops", "get"): 16, ("kernel_param_ops", "free"): 24,
        ("mutex", "wait_lock"): 8, ("mutex", "wait_list"): 16,
    }
    SIZES: ClassVar[dict[str, int]] = {"task_struct": 0x2640, "cred": 176, "kernel_param": 40,
             "paravirt_patch_template": 16}

    def offsetof(self, struct_: int | str, path: str) -> int:
        return self.OFFSETS[(str(struct_), path)]

    def sizeof(self, t: int | str) -> int:
        if t not in self.SIZES:
            raise LayoutLookupError(f"no type {t}")
        return self.SIZES[str(t)]

    def field(self, struct_: int | str, path: str) -> FieldInfo:
        return FieldInfo(8 * self.offsetof(struct_, path), 0, 8)

    def enum(self, name: str) -> dict[str, int]:
        return {"NR_KMALLOC_TYPES": 4}

    def nested_members(self, struct_: str) -> list[tuple[str, int]]:
        return [("irq.save_fl", 0), ("irq.irq_disable", 8)]

    def save(self) -> None:
        pass


def make_runtime(code: bytes = b"", symbols: list[tuple[str, int]] = (),  # type: ignore[assignment]
                 data: bytes = b"", sections: dict[str, int] | None = None,
                 ) -> tuple[Runtime, Module]:
    profile = KernelProfile("6.1.0-test", (6, 1, 0), "6.1.0-test SMP mod_unload",
                            config={"HZ": "250", "SMP": "y"})
    k = KernelState(profile)
    rt = Runtime(k, FakeLayouts(), comm="insmod")
    mod = Module("lkm_fake", state=MODULE_STATE_COMING, refcnt=2)
    text = Region("text", TEXT, 0x1000, "rx")
    text.place(0, lambda: code)
    rw = Region("data", DATA, 0x1000, "rw")
    rw.place(0, lambda: data)
    mod.memory = ModuleMemory(
        regions=[text, rw],
        symbols=[ModuleSymbol(n, a, 0, 0x12, 1) for n, a in symbols],
        this_module=DATA + 0x800, sections=sections or {})
    k.modules.insert(0, mod)
    rt.attach(mod.name, mod.memory)
    return rt, mod


def call_to(at: int, target: int) -> bytes:
    return b"\xe8" + struct.pack("<i", target - (at + 5))


def mov_rdi(v: int) -> bytes:
    """movabs rdi, imm64"""
    return b"\x48\xbf" + struct.pack("<Q", v)


# -- slab -------------------------------------------------------------------------------------

def test_kmalloc_sizes_zeroing_and_reuse() -> None:
    rt, _ = make_runtime()
    k = rt.kernel
    a = slab.__kmalloc(k, 100, 0)
    assert slab.ksize(k, a) == 128
    assert k.mem.read(a, 100) == bytes(100)  # init_on_alloc
    k.mem.write(a, b"x" * 100)
    slab.kfree(k, a)
    b = slab.__kmalloc(k, 65, 0)
    assert slab.ksize(k, b) == 96
    c = slab.__kmalloc(k, 120, 0)
    assert c == a and k.mem.read(c, 100) == bytes(100)  # LIFO freelist, zeroed again
    assert slab.__kmalloc(k, 0, 0) == slab.ZERO_SIZE_PTR
    slab.kfree(k, 0)
    slab.kfree(k, slab.ZERO_SIZE_PTR)
    big = slab.__kmalloc(k, 20000, 0)
    assert slab.ksize(k, big) == 8 * 4096


def test_freed_object_holds_the_hardened_freelist_pointer() -> None:
    rt, _ = make_runtime()
    k = rt.kernel
    obj = slab.__kmalloc(k, 32, 0)
    k.mem.write(obj, bytes(range(32)))
    slab.kfree(k, obj)
    after = k.mem.read(obj, 32)
    assert after[:16] == bytes(range(16)) and after[24:] == bytes(range(24, 32))
    assert after[16:24] != bytes(range(16, 24))  # s->offset = 32 / 2


def test_double_kfree_is_slubs_bug() -> None:
    rt, _ = make_runtime()
    k = rt.kernel
    rt.machine  # noqa: B018 - a call frame is needed for the caller
    obj = slab.__kmalloc(k, 64, 0)
    slab.kfree(k, obj)
    with pytest.raises(KernelBug) as ei:
        rt.machine.frames.append(type("F", (), {"caller": TEXT, "addr": 0, "regs": [],
                                                "rsp": 0})())
        slab.kfree(k, obj)
    assert ei.value.file == "mm/slub.c" and ei.value.function == "kfree"


def test_krealloc() -> None:
    rt, _ = make_runtime()
    k = rt.kernel
    p = slab.__kmalloc(k, 10, 0)
    k.mem.write(p, b"0123456789")
    assert slab.krealloc(k, p, 16, 0) == p  # kmalloc-16 has room
    q = slab.krealloc(k, p, 100, 0)
    assert q != p and k.mem.read(q, 10) == b"0123456789"
    assert slab.krealloc(k, q, 0, 0) == slab.ZERO_SIZE_PTR


# -- strings ----------------------------------------------------------------------------------

def test_string_functions() -> None:
    rt, _ = make_runtime()
    k = rt.kernel
    src = slab.__kmalloc(k, 64, 0)
    dst = slab.__kmalloc(k, 64, 0)
    k.mem.write(src, b"much too long\0")
    assert string.strscpy(k, dst, src, 8) == (-7) & abi.MASK64
    assert k.cstr(dst) == b"much to"
    assert string.strscpy(k, dst, src, 64) == 13
    assert string.strlen(k, src) == 13
    assert string.strchr(k, src, ord("t")) == src + 5
    k.mem.write(src, b"0x1f\0")
    assert string.kstrtoint(k, src, 0, dst) == 0 and k.mem.read_s32(dst) == 31
    assert string.kstrtoint(k, src, 10, dst) == (-22) & 0xFFFFFFFF
    k.mem.write(src, b"99999999999\0")
    assert string.kstrtoint(k, src, 0, dst) == (-34) & 0xFFFFFFFF
    string.memset(k, dst, 0xAB, 4)
    assert k.mem.read(dst, 4) == b"\xab" * 4


# -- module code calling the kernel ---------------------------------------------------------------

def test_printk_levels_and_continuation() -> None:
    fmt1 = DATA + 0x100
    fmt2 = DATA + 0x140
    code_holder: list[bytes] = [b""]
    rt, mod = make_runtime(data=b"")
    pk = rt.symbol_address("_printk")
    code = mov_rdi(fmt1) + b"\xbe\x2a\x00\x00\x00"  # mov esi, 42
    code += call_to(TEXT + len(code), pk)
    code += mov_rdi(fmt2) + call_to(TEXT + len(code) + 10, pk) + b"\xc3"
    code_holder[0] = code
    assert mod.memory is not None
    text = mod.memory.regions[0]
    text.data[:len(code)] = code
    rt.mem.write(fmt1, b"\x013answer: %d\0")
    rt.mem.write(fmt2, b"\x01c and more\n\0")
    rt.call(TEXT)
    assert rt.printk.records == [(3, "answer: 42 and more")]


def test_unimplemented_function_names_itself_and_the_call_site() -> None:
    rt, mod = make_runtime(symbols=[("lkm_fake_init", TEXT)])
    stub = rt.symbol_address("no_such_kernel_function")
    code = b"\x90" * 4 + call_to(TEXT + 4, stub) + b"\xc3"
    assert mod.memory is not None
    mod.memory.regions[0].data[:len(code)] = code
    with pytest.raises(NotImplementedByVirtualKernel) as ei:
        rt.call(TEXT)
    assert ei.value.name == "no_such_kernel_function"
    assert ei.value.site == "lkm_fake_init+0x4"
    assert "does not implement" in str(ei.value)


def _bug_module(flags: int) -> tuple[Runtime, Module]:
    """ud2 at TEXT+1 with a __bug_table entry (file, line 7, flags) at DATA."""
    code = b"\x90\x0f\x0b\xb8\x05\x00\x00\x00\xc3"  # nop; ud2; mov eax, 5; ret
    file_at = DATA + 0x40
    entry = struct.pack("<iiHH", (TEXT + 1) - DATA, file_at - (DATA + 4), 7, flags)
    data = entry.ljust(0x40, b"\0") + b"drivers/fake.c\0"
    return make_runtime(code, [("fake_init", TEXT)], data, {"__bug_table": DATA})


def test_warn_prints_and_resumes() -> None:
    rt, _ = _bug_module(flags=1)  # BUGFLAG_WARNING
    assert calls.call(rt, TEXT) == 5
    texts = [t for _lv, t in rt.printk.records]
    assert "------------[ cut here ]------------" in texts
    assert any(t.startswith("WARNING: CPU: 0 PID: ") and
               t.endswith("at drivers/fake.c:7 fake_init+0x1/0x1000 [lkm_fake]")
               for t in texts)
    assert "Modules linked in: lkm_fake(+)" in texts
    assert texts[-1] == "---[ end trace 0000000000000000 ]---"
    assert rt.kstate.test_taint(9)  # W


def test_bug_kills_the_caller() -> None:
    rt, _ = _bug_module(flags=0)
    with pytest.raises(ProcessKilled) as ei:
        calls.call(rt, TEXT)
    assert ei.value.signal == signal.SIGSEGV
    texts = [t for _lv, t in rt.printk.records]
    assert (2, "kernel BUG at drivers/fake.c:7!") in rt.printk.records
    assert "invalid opcode: 0000 [#1] PREEMPT SMP NOPTI" in texts
    assert "RIP: 0010:fake_init+0x1/0x1000 [lkm_fake]" in texts
    assert rt.kstate.test_taint(7)  # D


def test_null_read_oops() -> None:
    code = b"\x31\xc0\x48\x8b\x40\x08\xc3"  # xor eax,eax; mov rax,[rax+8]; ret
    rt, _ = make_runtime(code, [("fake_exit", TEXT)])
    rt.path = "exit"
    with pytest.raises(ProcessKilled) as ei:
        calls.call(rt, TEXT)
    assert ei.value.signal == signal.SIGKILL
    rec = rt.printk.records
    assert rec[0] == (1, "BUG: kernel NULL pointer dereference, address: 0000000000000008")
    assert rec[1] == (1, "#PF: supervisor read access in kernel mode")
    assert rec[2] == (1, "#PF: error_code(0x0000) - not-present page")
    assert (4, "RIP: 0010:fake_exit+0x2/0x1000 [lkm_fake]") in rec
    assert (4, " __do_sys_delete_module+0x1b9/0x330") in rec
    assert (4, "CR2: 0000000000000008") in rec


def test_endless_loop_is_a_soft_lockup() -> None:
    rt, _ = make_runtime(b"\xf3\x90\xeb\xfc", [("spin", TEXT)])  # pause; jmp -4
    rt.machine.budget = 20_000_000
    rt.machine.tick = 10_000
    rt.watchdog_thresh = 1
    with pytest.raises(ProcessKilled):
        calls.call(rt, TEXT)
    texts = [t for _lv, t in rt.printk.records]
    assert any(t.startswith("watchdog: BUG: soft lockup - CPU#0 stuck for ") for t in texts)
    assert "RIP: 0010:spin+0x2/0x1000 [lkm_fake]" in texts  # after the pause
    assert rt.kstate.test_taint(14)  # L


def test_jiffies_start_before_the_wrap_and_msleep_advances_them() -> None:
    from lkm.kernel.api import time as ktime

    rt, _ = make_runtime()
    addr = rt.symbol_address("jiffies")
    assert rt.symbol_address("jiffies_64") == addr
    j0 = rt.mem.read_u64(addr)
    assert 0 <= j0 - ((-300 * 250) & 0xFFFFFFFF) < 250 * 3600
    rt.machine.frames.append(type("F", (), {"caller": TEXT, "addr": 0, "regs": [],
                                            "rsp": 0})())
    ktime.msleep(rt.kernel, 100)
    assert rt.mem.read_u64(addr) - j0 >= 26


def test_snapshot_round_trip() -> None:
    rt, mod = make_runtime(b"\xc3", [("f", TEXT)], b"hello")
    obj = slab.__kmalloc(rt.kernel, 48, 0)
    rt.mem.write(obj, b"persisted")
    rt.mem.write(DATA + 8, b"changed")
    jif = rt.symbol_address("jiffies")
    blob = snapshot.dumps(rt)
    assert len(blob) < 20000
    rt2 = Runtime(rt.kstate, FakeLayouts())
    mod.memory = None
    snapshot.loads(rt2, blob)
    assert mod.memory is not None
    assert rt2.mem.read(obj, 9) == b"persisted"
    assert rt2.mem.read(DATA, 15) == b"hello\0\0\0changed"
    assert rt2.symbol_address("jiffies") == jif
    assert slab.ksize(rt2.kernel, obj) == 64
    assert rt2.kallsyms(TEXT) == ("f", 0, 0x1000, "lkm_fake")
