"""I/O port and memory regions (kernel/resource.c): __request_region() succeeds for a range
no device holds, giving a ``struct resource`` (start, end, name, flags | IORESOURCE_BUSY),
and fails (NULL) over a range the QEMU PC's devices hold (its /proc/ioports: DMA, PICs,
timer, keyboard, RTC, ATA, VGA, serial, fw_cfg, ACPI PM, SMBus, PCI config); a range
already requested is busy too.  __release_region() frees it."""

from __future__ import annotations

from typing import Any

from lkm.kernel.api.core import Kernel, kdata, kfunc, substate
from lkm.kernel.api.slab import slab

IORESOURCE_IO = 0x100
IORESOURCE_BUSY = 0x80000000
QEMU_IOPORTS = ((0x0, 0x1F), (0x20, 0x21), (0x40, 0x43), (0x50, 0x53), (0x60, 0x60),
                (0x64, 0x64), (0x70, 0x77), (0x80, 0x8F), (0xA0, 0xA1), (0xC0, 0xDF),
                (0xF0, 0xFF), (0x170, 0x177), (0x1F0, 0x1F7), (0x376, 0x376),
                (0x3C0, 0x3DF), (0x3F6, 0x3F6), (0x3F8, 0x3FF), (0x510, 0x51B),
                (0x600, 0x63F), (0x700, 0x70F), (0xCF8, 0xCFF))


@substate("resource")
class Resources:
    """Regions modules requested: [resource address, parent, start, end]."""

    def __init__(self, k: Kernel | None = None) -> None:
        self.held: list[list[int]] = []

    def to_json(self) -> list[list[int]]:
        return self.held

    @classmethod
    def from_json(cls, k: Kernel | None, d: list[Any]) -> Resources:
        s = cls(k)
        s.held = [list(h) for h in d]
        return s


def _root(name: bytes, end: int, flags: int) -> Any:
    def init(k: Kernel, addr: int) -> None:
        lay = k.layouts
        k.mem.write_u64(addr + lay.offsetof("resource", "start"), 0)
        k.mem.write_u64(addr + lay.offsetof("resource", "end"), end)
        k.mem.write_u64(addr + lay.offsetof("resource", "name"), k.rt.kdata_scratch(name))
        k.mem.write_u64(addr + lay.offsetof("resource", "flags"), flags)
    return init


kdata("ioport_resource", lambda k: k.layouts.sizeof("resource"))(
    _root(b"PCI IO\0", 0xFFFF, IORESOURCE_IO))
kdata("iomem_resource", lambda k: k.layouts.sizeof("resource"))(
    _root(b"PCI mem\0", (1 << 40) - 1, 0x200))


@kfunc()
def __request_region(k: Kernel, parent: int, start: int, n: int, name: int,
                     flags: int) -> int:
    """kernel/resource.c."""
    end = start + n - 1
    s = k.sub(Resources)
    if parent == k.symbol("ioport_resource") and \
            any(a <= end and start <= b for a, b in QEMU_IOPORTS):
        return 0
    if any(h[1] == parent and h[2] <= end and start <= h[3] for h in s.held):
        return 0
    lay = k.layouts
    res = slab(k).kmalloc(lay.sizeof("resource"), 0)
    k.mem.write_u64(res + lay.offsetof("resource", "start"), start)
    k.mem.write_u64(res + lay.offsetof("resource", "end"), end)
    k.mem.write_u64(res + lay.offsetof("resource", "name"), name)
    pflags = k.mem.read_u64(parent + lay.offsetof("resource", "flags"))
    k.mem.write_u64(res + lay.offsetof("resource", "flags"),
                    (pflags & 0x1F00) | flags | IORESOURCE_BUSY)
    k.mem.write_u64(res + lay.offsetof("resource", "parent"), parent)
    s.held.append([res, parent, start, end])
    return res


@kfunc()
def __release_region(k: Kernel, parent: int, start: int, n: int) -> None:
    """kernel/resource.c: "Trying to free nonexistent resource <...>" when not held."""
    s = k.sub(Resources)
    for h in s.held:
        if h[1] == parent and h[2] == start and h[3] == start + n - 1:
            s.held.remove(h)
            slab(k).kfree(h[0])
            return
    k.log.warn(f"Trying to free nonexistent resource <{start:016x}-{start + n - 1:016x}>")
