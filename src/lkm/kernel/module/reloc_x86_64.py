"""x86-64 relocations (arch/x86/kernel/module.c apply_relocate_add()).

Applies one SHT_RELA section to its target section's bytes as they lie in memory.
The types of Debian's modules: NONE, 64, PC32, PLT32, 32, 32S, PC64.  The kernel
refuses a target that is not zero before the write ("the relocation target must be
zero" also catches layout overlaps) and a 32/32S value that does not fit; which of
the two it checks first, and how it words the first, changed in 6.3
(history.relocation_overflow_first).
"""

from __future__ import annotations

import errno
import struct

from lkm.kernel.module import history
from lkm.kernel.module.internal import RELA_SIZE, LoadError
from lkm.kernel.printk import Printk

R_X86_64_NONE, R_X86_64_64, R_X86_64_PC32, R_X86_64_PLT32 = 0, 1, 2, 4
R_X86_64_32, R_X86_64_32S, R_X86_64_PC64 = 10, 11, 24

_SIZE = {R_X86_64_64: 8, R_X86_64_32: 4, R_X86_64_32S: 4, R_X86_64_PC32: 4,
         R_X86_64_PLT32: 4, R_X86_64_PC64: 8}
_PCREL = frozenset({R_X86_64_PC32, R_X86_64_PLT32, R_X86_64_PC64})
_ZERO = {4: bytes(4), 8: bytes(8)}
_M64 = (1 << 64) - 1
_RELA = struct.Struct("<QQq")


def apply_relocate_add(version: tuple[int, int, int], modname: str, rela: bytes,
                       target: bytearray, base: int, sym_values: list[int],
                       log: Printk) -> None:
    """Apply the Elf64_Rela entries in ``rela`` to ``target`` (the section's bytes,
    at address ``base``), the symbols at ``sym_values``; raise LoadError(ENOEXEC)."""
    overflow_first = history.relocation_overflow_first(version)
    nsyms = len(sym_values)
    tlen = len(target)
    for off, rinfo, addend in _RELA.iter_unpack(rela[:len(rela) // RELA_SIZE * RELA_SIZE]):
        rtype = rinfo & 0xFFFFFFFF
        if rtype == R_X86_64_NONE:
            continue
        size = _SIZE.get(rtype)
        if size is None:
            log.err(f"module: {modname}: Unknown rela relocation: {rtype}")
            raise LoadError(errno.ENOEXEC)
        symidx = rinfo >> 32
        val = ((sym_values[symidx] if symidx < nsyms else 0) + addend) & _M64
        if rtype in _PCREL:
            val = (val - base - off) & _M64
        inside = off + size <= tlen
        nonzero = inside and target[off:off + size] != _ZERO[size]
        overflow = False
        if rtype == R_X86_64_32:
            overflow = val >> 32 != 0
        elif rtype == R_X86_64_32S:
            overflow = not (val < 0x80000000 or val >= 0xFFFFFFFF80000000)
        if nonzero or overflow:
            _bad_relocation(modname, rtype, base + off, val, nonzero, overflow,
                            overflow_first, log)
        if inside:
            target[off:off + size] = (val & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def _bad_relocation(modname: str, rtype: int, loc: int, val: int, nonzero: bool,
                    overflow: bool, overflow_first: bool, log: Printk) -> None:
    ptr = f"{loc & 0xFFFFFFFF:016x}"  # %p: hashed; the tests hide 16-digit addresses
    if overflow_first and overflow:
        _overflow(modname, rtype, val, log)
    if nonzero:
        what = "Invalid" if overflow_first else "Skipping invalid"
        log.err(f"module: x86/modules: {what} relocation target, existing value is nonzero "
                f"for type {rtype}, loc {ptr}, val {val:x}")
        raise LoadError(errno.ENOEXEC)
    _overflow(modname, rtype, val, log)


def _overflow(modname: str, rtype: int, val: int, log: Printk) -> None:
    log.err(f"module: overflow in relocation type {rtype} val {val:x}")
    log.err(f"module: `{modname}' likely not compiled with -mcmodel=kernel")
    raise LoadError(errno.ENOEXEC)
