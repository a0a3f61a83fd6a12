"""The boot CPU as arch/x86/kernel/cpu/common.c describes it (``boot_cpu_data``).

The QEMU machine the real kernels were recorded on: a family 6 CPU with 64-byte cache
lines, 48 virtual and 40 physical address bits.  The capability words are left empty:
static_cpu_has()/boot_cpu_has() in module code take their "feature absent" path, which
is always a correct one.
"""

from __future__ import annotations

from lkm.kernel.api.core import Kernel, kdata

_FIELDS = (("x86", 1, 6), ("x86_vendor", 1, 0), ("x86_model", 1, 6), ("x86_virt_bits", 1, 48),
           ("x86_phys_bits", 1, 40), ("x86_cache_alignment", 4, 64),
           ("x86_clflush_size", 2, 64), ("x86_max_cores", 2, 1), ("booted_cores", 2, 1),
           ("loops_per_jiffy", 8, 4_000_000), ("initialized", 1, 1))


def _size(k: Kernel) -> int:
    return k.layouts.sizeof("cpuinfo_x86")


@kdata("boot_cpu_data", _size, align=64)
def _boot_cpu_data(k: Kernel, addr: int) -> None:
    for name, size, value in _FIELDS:
        try:
            off = k.layouts.offsetof("cpuinfo_x86", name)
        except LookupError:
            continue
        k.mem.write(addr + off, value.to_bytes(size, "little"))
    for name, text in (("x86_vendor_id", b"GenuineIntel"),
                       ("x86_model_id", b"QEMU Virtual CPU version 2.5+")):
        try:
            k.mem.write(addr + k.layouts.offsetof("cpuinfo_x86", name), text)
        except LookupError:
            continue
