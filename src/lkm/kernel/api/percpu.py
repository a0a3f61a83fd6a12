"""Dynamic per-CPU memory (mm/percpu.c): __alloc_percpu() gives a zeroed chunk of the one
CPU's per-CPU area (a %gs-relative offset, what this_cpu_ptr() adds the per-CPU base
to); free_percpu() does not reuse it."""

from __future__ import annotations

from lkm.kernel.api.core import Kernel, kfunc
from lkm.kernel.exec import abi_x86_64 as abi


@kfunc("__alloc_percpu_gfp", "pcpu_alloc_noprof")
def __alloc_percpu(k: Kernel, size: int, align: int) -> int:
    """mm/percpu.c (the gfp argument of the _gfp variant is ignored)."""
    align = align if 0 < align <= 4096 and align & (align - 1) == 0 else 8
    off: int = k.rt.percpu_alloc(max(size, 1), max(align, 8))
    k.mem.write(abi.PERCPU_BASE + off, bytes(max(size, 1)))
    return off


@kfunc()
def free_percpu(k: Kernel, ptr: int) -> None:
    return None
