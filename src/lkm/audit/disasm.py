"""Disassembly of a module's executable sections, on demand (capstone, x86-64).

The indicators search the section bytes first (C speed) and disassemble only the function
around a candidate, from the function's start, so that a byte pattern inside another
instruction (an immediate, a displacement) is never mistaken for an instruction.  A
function is the code between a symbol of the section and the next one (STT_FUNC and
labels; the section's start when none precedes).  capstone is imported on first use.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any, NamedTuple

from lkm.elf import (
    EM_X86_64,
    SHF_ALLOC,
    SHF_EXECINSTR,
    SHT_PROGBITS,
    STT_FILE,
    STT_SECTION,
    ElfFile,
)

_cs: Any = None


def _capstone() -> Any:
    """A capstone x86-64 disassembler in AT&T syntax (objdump's), made once per process."""
    global _cs
    if _cs is None:
        import capstone

        cs = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        cs.syntax = capstone.CS_OPT_SYNTAX_ATT
        cs.skipdata = False
        _cs = cs
    return _cs


class Insn(NamedTuple):
    """One instruction: its offset in the section, size, mnemonic and operands."""

    offset: int
    size: int
    mnemonic: str
    op_str: str

    @property
    def end(self) -> int:
        return self.offset + self.size

    def __str__(self) -> str:
        return f"{self.mnemonic} {self.op_str}".rstrip()


class Text:
    """One executable section: its bytes, its function starts, its instructions."""

    def __init__(self, elf: ElfFile, index: int, name: str, symbols: _Starts) -> None:
        self.elf = elf
        self.index = index
        self.name = name
        self.data = bytes(elf.section_data(index))
        self._symbols = symbols
        self._starts: list[tuple[int, str]] | None = None
        self._offsets: list[int] = []
        self._cache: dict[int, list[Insn]] = {}

    def function_at(self, offset: int) -> tuple[int, int, str]:
        """(start, end, name) of the function containing ``offset`` ("" if unnamed)."""
        if self._starts is None:
            self._starts = sorted(set(self._symbols.of(self.index)) | {(0, "")})
            self._offsets = [s for s, _ in self._starts]
        i = bisect.bisect_right(self._offsets, offset) - 1
        start, name = self._starts[i]
        end = self._offsets[i + 1] if i + 1 < len(self._offsets) else len(self.data)
        return start, end, name

    def function_insns(self, offset: int) -> list[Insn]:
        """The instructions of the function containing ``offset`` (up to the first bytes
        capstone cannot decode)."""
        start, end, _ = self.function_at(offset)
        got = self._cache.get(start)
        if got is None:
            got = [Insn(a, s, m, o) for a, s, m, o in
                   _capstone().disasm_lite(self.data[start:end], start)]
            self._cache[start] = got
        return got

    def insn_at(self, offset: int) -> Insn | None:
        """The instruction whose bytes include ``offset``, or None when no instruction of
        the function's decoding covers it."""
        insns = self.function_insns(offset)
        i = bisect.bisect_right([x.offset for x in insns], offset) - 1
        if i >= 0 and insns[i].offset <= offset < insns[i].end:
            return insns[i]
        return None


def texts(elf: ElfFile) -> Iterator[Text]:
    """The executable (SHF_ALLOC|SHF_EXECINSTR, PROGBITS) sections of an x86-64 module."""
    if elf.e_machine != EM_X86_64:
        return
    symbols = _Starts(elf)
    for sec in elf.sections:
        if sec.type != SHT_PROGBITS or sec.flags & (SHF_ALLOC | SHF_EXECINSTR) != \
                SHF_ALLOC | SHF_EXECINSTR or not sec.size:
            continue
        yield Text(elf, sec.index, sec.name, symbols)


class _Starts:
    """The symbols of each section as function starts, read from .symtab when first asked."""

    def __init__(self, elf: ElfFile) -> None:
        self.elf = elf
        self._by_section: dict[int, list[tuple[int, str]]] | None = None

    def of(self, index: int) -> list[tuple[int, str]]:
        if self._by_section is None:
            out: dict[int, list[tuple[int, str]]] = {}
            for s in self.elf.symbols()[1:]:
                if s.type in (STT_SECTION, STT_FILE) or not s.name or s.name.startswith(".L"):
                    continue
                out.setdefault(s.shndx, []).append((s.value, s.name))
            self._by_section = out
        return self._by_section.get(index, [])
