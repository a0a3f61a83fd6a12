"""KASAN's reports on slab misuse (mm/kasan/report.c, mm/kasan/generic.c) and kmemleak's
list of unreferenced objects (mm/kmemleak.c), for the opt-in KASAN mode of the virtual
kernel (``lkm virtual create --kasan``; :attr:`ExecKernelState.kasan`).

No Debian kernel is built with KASAN or kmemleak, so these texts come from the kernel
source, not from a recorded transcript: the report's lines are the ones report.c prints
(the ``====`` rulers, ``BUG: KASAN: <type> in <ip>``, the stack dump, ``Allocated by task
N:`` / ``Freed by task N:`` with their stacks, the object's cache and the offset of the
buggy address, the shadow bytes around it), with two simplifications: the stacks hold the
module's frames and the system call's, not KASAN's own functions (their offsets are facts
of a KASAN build nobody recorded), and ``The buggy address belongs to the physical page``
(dump_page()) is left out.  A report taints the kernel B (TAINT_BAD_PAGE) and the access
or free goes on as KASAN lets it: the bad kfree() is ignored, the access happens.

Modules built for Debian's kernels carry no KASAN instrumentation; the use-after-free and
out-of-bounds checks (:func:`check_access`) are made by the virtual CPU on the module's
accesses to slab memory.
"""

from __future__ import annotations

from typing import Any

from lkm.kernel.api.core import Kernel, substate

KASAN_GRANULE_SIZE = 8
META_BYTES_PER_ROW = 16  # shadow bytes per row of "Memory state around the buggy address"
META_ROWS_AROUND_ADDR = 2
KASAN_SLAB_REDZONE = 0xFC
KASAN_SLAB_FREE = 0xFB
KASAN_PAGE_REDZONE = 0xFE
TAINT_BAD_PAGE = 5
KERN_ERR = 3
RULER = "=" * 66


def enabled(k: Kernel) -> bool:
    """KASAN's checks (the allocation tracks kept too)."""
    return bool(getattr(k.rt.kstate, "kasan", False))


def tracking(k: Kernel) -> bool:
    """Allocations tracked: for KASAN, or for kmemleak's list at unload."""
    return enabled(k) or bool(getattr(k.rt.kstate, "kmemleak", False))


@substate("kasan")
class Kasan:
    """Per object: its requested size and the tracks (pid, stack) of its allocation and
    free (kasan_save_alloc_info / kasan_save_free_info); whether a report was made
    (report_enabled(): one report per boot without kasan_multi_shot)."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.size: dict[int, int] = {}
        self.alloc: dict[int, tuple[int, list[str]]] = {}
        self.origin: dict[int, tuple[str, int, list[int]]] = {}  # comm, jiffies, frames
        self.freed: dict[int, tuple[int, list[str]]] = {}
        self.reported = False
        self.busy = False

    def to_json(self) -> dict[str, Any]:
        return {"size": sorted(self.size.items()),
                "alloc": [[a, p, s] for a, (p, s) in sorted(self.alloc.items())],
                "freed": [[a, p, s] for a, (p, s) in sorted(self.freed.items())],
                "origin": [[a, c, j, f] for a, (c, j, f) in sorted(self.origin.items())],
                "reported": self.reported}

    @classmethod
    def from_json(cls, k: Kernel, d: dict[str, Any]) -> Kasan:
        s = cls(k)
        s.size = {int(a): int(n) for a, n in d["size"]}
        s.alloc = {int(a): (int(p), list(st)) for a, p, st in d["alloc"]}
        s.freed = {int(a): (int(p), list(st)) for a, p, st in d["freed"]}
        s.origin = {int(a): (str(c), int(j), [int(x) for x in f])
                    for a, c, j, f in d.get("origin", [])}
        s.reported = bool(d.get("reported", False))
        return s


def books(k: Kernel) -> Kasan:
    return k.sub(Kasan)


def _stack(k: Kernel) -> list[str]:
    """The stack of the kernel function in progress: its caller's frames (the module's),
    then the system call's (stack_depot_save() of kasan_save_stack(), KASAN's frames left
    out)."""
    from lkm.kernel.exec import oops

    rt = k.rt
    return [rt.symbolize_return(a) for a in _frames(k)] + list(oops.syscall_frames(rt))


def _frames(k: Kernel) -> list[int]:
    """The module's return addresses above the kernel function in progress."""
    from lkm.kernel.exec import oops

    rt = k.rt
    if not rt.machine.frames:  # the kernel's own allocation, no module code under way
        return []
    regs = rt.stub_regs()
    frames = oops.unwind(rt, regs.get("rsp", 0), regs.get("rip", 0))
    return frames or [k.caller]


def allocated(k: Kernel, obj: int, size: int) -> None:
    b = books(k)
    b.size[obj] = size
    b.freed.pop(obj, None)
    if not b.busy:  # not the kernel's own allocations on the way (the task's)
        b.alloc[obj] = _track_now(k, b)
        b.busy = True
        try:
            from lkm.kernel.api import time as ktime

            frames = _frames(k) if _allocator_call(k) else []
            if frames:  # module code allocated it: kmemleak's create_object()
                b.origin[obj] = (k.rt.current().comm, ktime.clock(k).jiffies(), frames)
        finally:
            b.busy = False


ALLOCATORS = ("__kmalloc", "kmalloc", "kmem_cache_alloc", "krealloc", "kmemdup", "kstrdup",
              "kstrndup", "kasprintf", "kvasprintf", "kvmalloc", "__kvmalloc")


def _allocator_call(k: Kernel) -> bool:
    """Whether the kernel function module code called is an allocator (not one that
    allocates for the kernel's own books, as the first printk making the task does)."""
    rt = k.rt
    if not rt.machine.frames:
        return False
    name = rt.names.get(rt.machine.frames[-1].addr, "")
    return bool(name) and name.startswith(ALLOCATORS)


def freed(k: Kernel, obj: int) -> None:
    b = books(k)
    b.origin.pop(obj, None)
    if not b.busy:
        b.freed[obj] = _track_now(k, b)


def _track_now(k: Kernel, b: Kasan) -> tuple[int, list[str]]:
    b.busy = True
    try:
        return k.rt.current().pid, _stack(k)
    finally:
        b.busy = False


# -- the report ----------------------------------------------------------------------------

def _err(k: Kernel, text: str) -> None:
    from lkm.kernel.api.printk import printk

    printk(k, KERN_ERR, text)


def _track(k: Kernel, what: str, track: tuple[int, list[str]] | None) -> None:
    """print_track()."""
    if track is None:
        return
    pid, stack = track
    _err(k, f"{what} by task {pid}:")
    for f in stack:
        _err(k, f" {f}")
    _err(k, "")


def _shadow(k: Kernel, addr: int) -> int:
    """The shadow byte of the granule holding ``addr`` (generic KASAN's encoding: 0 all
    accessible, 1-7 that many first bytes, else the kind of poison)."""
    from lkm.kernel.api import slab as _slab

    addr -= addr % KASAN_GRANULE_SIZE

    s = _slab.slab(k)
    c = s.owner(addr)
    if c is None:
        return KASAN_PAGE_REDZONE
    base = addr - (addr - _slab_base(s, addr)) % c.size
    b = books(k)
    if base in b.freed or base not in c.live:
        return KASAN_SLAB_FREE if base in b.freed else KASAN_SLAB_REDZONE
    size = b.size.get(base, c.object_size)
    off = addr - base
    if off >= size:
        return KASAN_SLAB_REDZONE
    left = size - off
    return 0 if left >= KASAN_GRANULE_SIZE else left


def _slab_base(s: Any, addr: int) -> int:
    from lkm.kernel.api.slab import SLAB_ORDER_BYTES
    from lkm.kernel.exec.memory import PAGE_SIZE

    page = addr & ~(PAGE_SIZE - 1)
    c = s.page_cache.get(page >> 12)
    while s.page_cache.get((page - PAGE_SIZE) >> 12) == c and \
            (addr - (page - PAGE_SIZE)) < SLAB_ORDER_BYTES:
        page -= PAGE_SIZE
    return page


def _memory_state(k: Kernel, addr: int) -> None:
    """print_memory_metadata(): the shadow rows around the first bad address."""
    span = META_BYTES_PER_ROW * KASAN_GRANULE_SIZE
    row = addr - addr % span - META_ROWS_AROUND_ADDR * span
    _err(k, "Memory state around the buggy address:")
    for i in range(-META_ROWS_AROUND_ADDR, META_ROWS_AROUND_ADDR + 1):
        shadow = [_shadow(k, row + j * KASAN_GRANULE_SIZE) for j in range(META_BYTES_PER_ROW)]
        mark = ">" if i == 0 else " "
        _err(k, f"{mark}{row:016x}: " + " ".join(f"{v:02x}" for v in shadow))
        if row <= addr < row + span:
            col = 3 + 16 + (addr - row) // KASAN_GRANULE_SIZE * 3 + 1
            _err(k, "^".rjust(col))
        row += span


def _modern(k: Kernel) -> bool:
    """The report as 6.3+ prints it ("Free of addr", "slab-use-after-free", the region
    described by its allocated size and state) rather than as 6.1 does.  (Of the kernels
    the virtual kernel models, 6.1 has the old texts and 6.12 the new.)"""
    return k.version[:2] >= (6, 3)


def _describe(k: Kernel, addr: int, frames: list[int], kind: str = "") -> None:
    """print_address_description() for a slab address: dump_stack_lvl(KERN_ERR) (the
    module's frames and the system call's), the object's tracks and place."""
    from lkm.kernel.api import slab as _slab
    from lkm.kernel.exec import oops

    rt = k.rt
    oops.dump_stack_print_info(rt, KERN_ERR)
    oops.call_trace(rt, frames, level=KERN_ERR)
    _err(k, "")
    s = _slab.slab(k)
    c = s.owner(addr)
    if c is None:
        return
    obj = addr - (addr - _slab_base(s, addr)) % c.size
    b = books(k)
    _track(k, "Allocated", b.alloc.get(obj))
    _track(k, "Freed", b.freed.get(obj))
    _err(k, f"The buggy address belongs to the object at {obj:016x}\n"
            f" which belongs to the cache {c.name} of size {c.object_size}")
    size, state = c.object_size, ""
    if _modern(k):
        size = b.size.get(obj, c.object_size)
        state = {"slab-out-of-bounds": "allocated ", "slab-use-after-free": "freed "}.get(
            kind, "")
    if addr < obj:
        rel, n = "to the left", obj - addr
    elif addr >= obj + size:
        rel, n = "to the right", addr - (obj + size)
    else:
        rel, n = "inside", addr - obj
    _err(k, f"The buggy address is located {n} bytes {rel} of\n"
            f" {state}{size}-byte region [{obj:016x}, {obj + size:016x})")
    _err(k, "")


def _start(k: Kernel) -> bool:
    """start_report(), with report_enabled()'s once-per-boot rule."""
    b = books(k)
    if b.reported:
        return False
    b.reported = True
    _err(k, RULER)
    return True


def _end(k: Kernel) -> None:
    """end_report(): the ruler, taint B (lock debugging off)."""
    _err(k, RULER)
    rt = k.rt
    rt.kstate.add_taint(TAINT_BAD_PAGE, rt.printk, now_unreliable=True)


def invalid_free(k: Kernel, obj: int) -> None:
    """kasan_report_invalid_free(): a kfree() of an object that is not allocated."""
    if not _start(k):
        return
    rt = k.rt
    double = obj in books(k).freed
    _err(k, f"BUG: KASAN: {'double-free' if double else 'invalid-free'} in "
            f"{rt.symbolize(k.caller)}")
    if _modern(k):
        t = rt.current()
        _err(k, f"Free of addr {obj:016x} by task {t.comm}/{t.pid}")
    _err(k, "")
    _describe(k, obj, _frames(k))
    _memory_state(k, obj)
    _end(k)


def check_access(k: Kernel, addr: int, size: int, write: bool, ip: int,
                 frames: list[int]) -> None:
    """kasan_report() for an access of module code to slab memory that is freed
    (slab-use-after-free; 6.1: use-after-free) or past the object (slab-out-of-bounds)."""
    bad = next((a for a in range(addr, addr + size) if _bad(k, a)), None)
    if bad is None or not _start(k):
        return
    rt = k.rt
    shadow = _shadow(k, bad)
    if shadow == KASAN_SLAB_FREE:
        kind = "slab-use-after-free" if _modern(k) else "use-after-free"
    else:
        kind = "slab-out-of-bounds"
    _err(k, f"BUG: KASAN: {kind} in {rt.symbolize(ip)}")
    t = rt.current()
    _err(k, f"{'Write' if write else 'Read'} of size {size} at addr {addr:016x} by task "
            f"{t.comm}/{t.pid}")
    _err(k, "")
    _describe(k, addr, frames, kind)
    _memory_state(k, bad)
    _end(k)


def suspicious(k: Kernel, addr: int, size: int) -> bool:
    """Whether an access may be reported (cheap: no report made yet, a slab page)."""
    from lkm.kernel.api import slab as _slab

    return not books(k).reported and _slab.slab(k).owner(addr) is not None and \
        any(_bad(k, a) for a in range(addr, addr + size))


def _bad(k: Kernel, a: int) -> bool:
    v = _shadow(k, a)
    return v != 0 and (v >= 0x80 or a % KASAN_GRANULE_SIZE >= v)


# -- kmemleak --------------------------------------------------------------------------------

def unreferenced(k: Kernel, module: str) -> list[str]:
    """The objects module code allocated and nobody freed, as kmemleak's report lists
    them (print_unreferenced(): the object, its task and jiffies, the first 32 bytes, the
    backtrace), when ``module`` is unloaded.  Every such object counts as unreferenced:
    no scan for pointers to it is made.  The backtrace holds the module's frames."""
    from lkm.kernel.api import slab as _slab
    from lkm.kernel.api.hexdump import hex_line

    b = books(k)
    s = _slab.slab(k)
    rt = k.rt
    out: list[str] = []
    for obj, (comm, jiffies, frames) in sorted(b.origin.items()):
        syms = [b.alloc.get(obj, (0, []))[1]]
        if not any(f"[{module}]" in x for x in syms[0]):
            continue
        c = s.owner(obj)
        if c is None or obj not in c.live:
            continue
        size = b.size.get(obj, c.object_size)
        pid = b.alloc[obj][0]
        out.append(f"unreferenced object 0x{obj:016x} (size {size}):")
        out.append(f'  comm "{comm}", pid {pid}, jiffies {jiffies}')
        n = min(size, 32)
        out.append(f"  hex dump (first {n} bytes):")
        data = rt.mem.read(obj, n)
        for i in range(0, n, 16):
            out.append("    " + hex_line(data[i:i + 16], 16, 1, True))
        out.append("  backtrace:")
        texts = [x for x in syms[0] if f"[{module}]" in x]
        for addr, text in zip(frames, texts, strict=False):
            out.append(f"    [<{addr:016x}>] {text}")
    return out
