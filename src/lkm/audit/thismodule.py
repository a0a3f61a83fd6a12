"""Indicators of a module tampering with its own ``struct module`` (THIS_MODULE).

A module reaches its own struct module through ``__this_module`` (the object modpost puts
in .gnu.linkonce.this_module).  Passing THIS_MODULE around (file_operations.owner,
try_module_get) refers to offset 0 and is normal; what hides a loaded module touches
particular fields (include/linux/module.h):

- ``list``: ``list_del(&THIS_MODULE->list)`` unlinks it from the ``modules`` list, so it
  leaves /proc/modules, lsmod and /proc/kallsyms (kernel/module/procfs.c, kallsyms.c);
- ``mkobj.kobj`` handed to ``kobject_del`` in the same function removes /sys/module/<name>
  (kernel/module/sysfs.c);
- ``sect_attrs``/``notes_attrs`` (/sys/module/<name>/sections, notes) and ``kallsyms``.

The relocations against ``__this_module`` (or its section's symbol) are found by searching
the RELA entries' r_info words for the symbol, without decoding every relocation; the field
is the relocation's addend (plus, for a PC-relative one, the distance from the relocated
bytes to the end of the instruction, read from its disassembly).  Field offsets come from
the kernel's BTF (lkm.kernel.layouts); without it only ``list`` is known: it follows the
``state`` enum in every version, at one pointer's size.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

from lkm.audit.disasm import Text, texts
from lkm.audit.findings import Evidence, Finding, finding
from lkm.elf import EM_X86_64, SHF_ALLOC, SHF_EXECINSTR, SHT_RELA, ElfFile

if TYPE_CHECKING:
    from lkm.btf import Btf

# arch/x86/include/asm/elf.h relocation types: absolute and PC-relative
R_X86_64_64, R_X86_64_PC32, R_X86_64_PLT32 = 1, 2, 4
R_X86_64_32, R_X86_64_32S, R_X86_64_PC64 = 10, 11, 24
_ABSOLUTE = (R_X86_64_64, R_X86_64_32, R_X86_64_32S)
_RELATIVE = (R_X86_64_PC32, R_X86_64_PLT32, R_X86_64_PC64)
_REFS = (R_X86_64_64, R_X86_64_32S, R_X86_64_PC32)  # what compilers emit for data references
MAX_EVIDENCE = 8
Buffer = bytes | bytearray | mmap.mmap


class Field(NamedTuple):
    start: int
    end: int
    name: str
    id: str  # the finding


@dataclass(frozen=True)
class ModuleLayout:
    """The watched fields of struct module in one kernel."""

    fields: tuple[Field, ...]

    def field_at(self, offset: int) -> Field | None:
        return next((f for f in self.fields if f.start <= offset < f.end), None)


def module_layout(btf: Btf | None, pointer_size: int = 8) -> ModuleLayout:
    """The fields to watch, from the kernel's BTF (None: ``list`` alone)."""
    if btf is None:
        return ModuleLayout((Field(pointer_size, 3 * pointer_size, "list", "module.list"),))
    from lkm.btf import BtfLookupError

    want = (("list", "list_head", "module.list"), ("mkobj", "module_kobject", "module.kobject"),
            ("sect_attrs", None, "module.sysfs_attrs"), ("notes_attrs", None,
                                                         "module.sysfs_attrs"),
            ("kallsyms", None, "module.kallsyms"), ("core_kallsyms", "mod_kallsyms",
                                                    "module.kallsyms"))
    fields = []
    for name, type_, id_ in want:
        try:
            start = btf.offsetof("module", name)
            size = btf.sizeof(type_) if type_ else btf.pointer_size
        except BtfLookupError:  # a kernel without the field (no CONFIG_KALLSYMS, ...)
            continue
        fields.append(Field(start, start + size, name, id_))
    return ModuleLayout(tuple(fields))


class Reloc(NamedTuple):
    section: int  # the section relocated
    offset: int
    type: int
    symbol: int
    addend: int


def relocations_against(elf: ElfFile, symbols: set[int], types: tuple[int, ...],
                        targets: set[int] | None = None, content: Buffer | None = None
                        ) -> Iterator[Reloc]:
    """The RELA entries of ``types`` naming one of ``symbols`` (x86-64, ELF64 LE), in the
    relocation sections of ``targets`` (None: all).  ``content``, the buffer the ELF was
    read from, is searched in place when given (bytes or mmap)."""
    if not symbols or elf.elfclass != 64 or not elf.little_endian:
        return
    keys = [struct.pack("<Q", s << 32 | t) for s in symbols for t in types]
    for sec in elf.sections:
        if sec.type != SHT_RELA or not sec.size or sec.size % 24 or \
                not 0 < sec.info < elf.e_shnum or \
                (targets is not None and sec.info not in targets):
            continue
        if content is not None and sec.offset + sec.size <= len(content):
            buf, base = content, sec.offset
        else:
            buf, base = bytes(sec.data()), 0
        end = base + sec.size
        for key in keys:
            pos = buf.find(key, base, end)
            while pos >= 0:
                if (pos - base) % 24 == 8:
                    r_offset, info, addend = struct.unpack_from("<QQq", buf, pos - 8)
                    yield Reloc(sec.info, r_offset, info & 0xFFFFFFFF, info >> 32, addend)
                pos = buf.find(key, pos + 1, end)


def _this_module_symbols(elf: ElfFile) -> dict[int, int]:
    """Symbol index -> value of ``__this_module`` (global: references from the module's
    code name it, never the section's symbol)."""
    out: dict[int, int] = {}
    for i in elf.symbol_indexes_with_prefix(b"__this_module"):
        s = elf.symbol(i)
        if s.name == "__this_module":
            out[i] = s.value
    return out


def _watched_sections(elf: ElfFile) -> set[int]:
    """Code and data sections: where a reference to a field of struct module can be (not
    the tables of __mcount_loc, .orc_unwind_ip, __jump_table... whose relocations are many)."""
    return {sec.index for sec in elf.sections if sec.flags & SHF_ALLOC and (
        sec.flags & SHF_EXECINSTR or sec.name.startswith(_DATA))}


_DATA = (".data", ".rodata", ".bss", ".init.data", ".exit.data", ".ref.data")


def thismodule_findings(elf: ElfFile, layout: ModuleLayout, content: Buffer | None = None
                        ) -> list[Finding]:
    """References to the watched fields of the module's own struct module (``content``: the
    buffer ``elf`` reads, searched in place)."""
    if elf.e_machine != EM_X86_64:
        return []
    syms = _this_module_symbols(elf)
    if not syms:
        return []
    code = {t.index: t for t in texts(elf)}
    hits: dict[str, list[Evidence]] = {}
    kobject: list[tuple[Text, int, Evidence]] = []
    for r in relocations_against(elf, set(syms), _REFS, _watched_sections(elf), content):
        text = code.get(r.section)
        offset = _field_offset(r, syms[r.symbol], layout, text)
        f = layout.field_at(offset) if offset is not None else None
        if f is None:
            continue
        inside = offset - f.start if offset is not None else 0
        what = f"refers to THIS_MODULE->{f.name}" + (f"+{inside:#x}" if inside else "")
        insn = text.insn_at(r.offset) if text is not None else None
        func = text.function_at(r.offset)[2] if text is not None else ""
        ev = Evidence(what, func or None, elf.sections[r.section].name, r.offset,
                      f"{insn}  # __this_module+{offset:#x}" if insn else None)
        if f.id == "module.kobject":
            if text is not None:
                kobject.append((text, r.offset, ev))
            continue
        hits.setdefault(f.id, []).append(ev)
    out = [finding(id_, *sorted(ev, key=_place)[:MAX_EVIDENCE],
                   detail=_more(len(ev), min(len(ev), MAX_EVIDENCE)))
           for id_, ev in hits.items()]
    if kobject:
        deleted = _kobject_del_calls(elf, kobject, content)
        if deleted:
            out.append(finding("module.kobject", *deleted[:MAX_EVIDENCE],
                               detail=_more(len(deleted), min(len(deleted), MAX_EVIDENCE))))
    return out


def _place(e: Evidence) -> tuple[str, int]:
    return e.section or "", e.offset or 0


def _more(count: int, shown: int) -> str:
    return f"{count} places, {shown} shown" if count > shown else ""


def _field_offset(r: Reloc, value: int, layout: ModuleLayout, text: Text | None) -> int | None:
    """The struct module offset a relocation refers to (None: not a watched field)."""
    base = value + r.addend
    if r.type in _ABSOLUTE:
        return base
    # S + A - P: the addend is the field less the distance from P to the instruction's end
    # (4 for a plain disp32, more when an immediate follows it)
    if text is None or not any(layout.field_at(base + k) for k in range(4, 9)):
        return None
    insn = text.insn_at(r.offset)
    if insn is None:
        return None
    return base + (insn.end - r.offset)


def _kobject_del_calls(elf: ElfFile, refs: list[tuple[Text, int, Evidence]],
                       content: Buffer | None) -> list[Evidence]:
    """The THIS_MODULE->mkobj references in a function that also calls kobject_del."""
    targets = {i for i in elf.symbol_indexes_with_prefix(b"kobject_del")
               if elf.symbol(i).name == "kobject_del"}
    calls = [(r.section, r.offset) for r in
             relocations_against(elf, targets, (R_X86_64_PLT32, R_X86_64_PC32),
                                 {t.index for t, _, _ in refs}, content)]
    out = []
    for text, offset, ev in refs:
        start, end, _ = text.function_at(offset)
        call = next((o for s, o in calls if s == text.index and start <= o < end), None)
        if call is not None:
            out.append(Evidence(f"{ev.text}, and calls kobject_del at {text.name}+{call:#x}",
                                ev.symbol, ev.section, ev.offset, ev.insn))
    return out
