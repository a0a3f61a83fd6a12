"""Bitmap searches (lib/find_bit.c): the first/next set or zero bit of an unsigned long
array, ``size`` when there is none."""

from __future__ import annotations

from lkm.kernel.api.core import Kernel, kfunc


def _bits(k: Kernel, addr: int, size: int) -> int:
    n = (size + 63) // 64
    v = int.from_bytes(k.mem.read(addr, 8 * n), "little") if n else 0
    return v & ((1 << size) - 1)


def _next(v: int, size: int, start: int) -> int:
    if start >= size:
        return size
    v >>= start
    if not v:
        return size
    return min(size, start + ((v & -v).bit_length() - 1))


@kfunc()
def _find_next_bit(k: Kernel, addr: int, size: int, offset: int) -> int:
    return _next(_bits(k, addr, size), size, offset)


@kfunc()
def _find_next_zero_bit(k: Kernel, addr: int, size: int, offset: int) -> int:
    return _next(~_bits(k, addr, size) & ((1 << size) - 1), size, offset)


@kfunc()
def _find_first_bit(k: Kernel, addr: int, size: int) -> int:
    return _next(_bits(k, addr, size), size, 0)


@kfunc()
def _find_first_zero_bit(k: Kernel, addr: int, size: int) -> int:
    return _next(~_bits(k, addr, size) & ((1 << size) - 1), size, 0)


@kfunc()
def _find_last_bit(k: Kernel, addr: int, size: int) -> int:
    v = _bits(k, addr, size)
    return v.bit_length() - 1 if v else size


@kfunc()
def _find_next_and_bit(k: Kernel, addr1: int, addr2: int, size: int, offset: int) -> int:
    return _next(_bits(k, addr1, size) & _bits(k, addr2, size), size, offset)


@kfunc()
def _find_next_andnot_bit(k: Kernel, addr1: int, addr2: int, size: int, offset: int) -> int:
    return _next(_bits(k, addr1, size) & ~_bits(k, addr2, size), size, offset)
