"""Indicators in a module's machine code: CR0/CR4 writes, lidt/sidt, MSR_LSTAR.

What a module needs to patch the kernel beneath the kernel's own interfaces
(arch/x86/include/asm/special_insns.h native_write_cr0/native_write_cr4,
asm/desc.h native_load_idt/store_idt, asm/msr-index.h MSR_LSTAR): ``mov %reg,%cr0``
(clearing CR0.WP makes read-only pages writable), ``mov %reg,%cr4``, ``lidt``, ``sidt``,
and the system call entry MSR.  Debian's kernels build with PARAVIRT_XXL, so their own
modules reach CR and MSR writes through pv_ops calls, not these instructions.

The executable sections' bytes are searched for the opcodes; each candidate is confirmed
by disassembling its function (lkm.audit.disasm), so an opcode's bytes inside another
instruction never count.
"""

from __future__ import annotations

import re

from lkm.audit.disasm import Insn, Text, texts
from lkm.audit.findings import Evidence, Finding, finding
from lkm.elf import ElfFile

MSR_LSTAR = 0xC0000082
X86_CR0_WP = 1 << 16
MAX_EVIDENCE = 8

# 0f 22 /r: mov to CRn; 0f 01 /1, /3 (memory operand): sidt, lidt; the LSTAR immediate
_CANDIDATES = re.compile(rb"\x0f[\x22\x01]|\x82\x00\x00\xc0")
_WP_CLEAR = re.compile(r"^\$(0xfffffffffffeffff|-0x10001|0xfffeffff)\b")


def _what(data: bytes, pos: int) -> str | None:
    """The indicator the candidate bytes at ``pos`` would be, before disassembly."""
    if data[pos] == 0x82:
        return "code.msr_lstar"
    if pos + 2 >= len(data):
        return None
    modrm = data[pos + 2]
    reg = modrm >> 3 & 7
    if data[pos + 1] == 0x22:
        return {0: "code.cr0_write", 4: "code.cr4_write"}.get(reg)
    if modrm >> 6 == 3:  # 0f 01 with a register operand: clac, stac, vmcall, rdtscp...
        return None
    return {1: "code.sidt", 3: "code.lidt"}.get(reg)


def _confirm(kind: str, insn: Insn) -> bool:
    m, ops = insn.mnemonic, insn.op_str
    if kind == "code.cr0_write":
        return m.startswith("mov") and ops.endswith("%cr0")
    if kind == "code.cr4_write":
        return m.startswith("mov") and ops.endswith("%cr4")
    if kind == "code.lidt":
        return m.startswith("lidt")
    if kind == "code.sidt":
        return m.startswith("sidt")
    # a register loaded with the MSR number (rdmsr/wrmsr take it in %ecx, native_write_msr
    # and the pv_ops calls in %edi), not a comparison of an MSR number (kvm's MSR switch)
    return m.startswith("mov") and ops.startswith(f"${MSR_LSTAR:#x},")


def _detail(kind: str, text: Text, insn: Insn) -> str:
    """What the function around the instruction adds: a CR0.WP clear, the MSR access."""
    insns = text.function_insns(insn.offset)
    if kind == "code.cr0_write" and any(
            (i.mnemonic.startswith("and") and _WP_CLEAR.match(i.op_str)) or
            (i.mnemonic.startswith("btr") and i.op_str.startswith("$0x10,"))
            for i in insns if i.offset < insn.offset):
        return "clears CR0.WP before writing CR0"
    if kind == "code.msr_lstar":
        after = [i.mnemonic for i in insns if i.offset > insn.offset][:16]
        if "wrmsr" in after:
            return "writes MSR_LSTAR (wrmsr)"
        if "rdmsr" in after:
            return "reads MSR_LSTAR (rdmsr)"
    return ""


def code_findings(elf: ElfFile) -> list[Finding]:
    """The code indicators of a module (x86-64 only; other machines give none)."""
    seen: dict[str, list[Evidence]] = {}
    details: dict[str, str] = {}
    counts: dict[str, int] = {}
    for text in texts(elf):
        data = text.data
        for m in _CANDIDATES.finditer(data):
            kind = _what(data, m.start())
            if kind is None:
                continue
            insn = text.insn_at(m.start())
            if insn is None or not _confirm(kind, insn):
                continue
            counts[kind] = counts.get(kind, 0) + 1
            ev = seen.setdefault(kind, [])
            detail = _detail(kind, text, insn)
            if detail and not details.get(kind):
                details[kind] = detail
            if len(ev) < MAX_EVIDENCE:
                _, _, func = text.function_at(insn.offset)
                ev.append(Evidence(_WORDS[kind], func or None, text.name, insn.offset,
                                   str(insn)))
    out = []
    for kind, ev in seen.items():
        more = counts[kind] - len(ev)
        detail = details.get(kind, "")
        if more > 0:
            detail = f"{detail}; " if detail else ""
            detail += f"{counts[kind]} places, {len(ev)} shown"
        out.append(finding(kind, *ev, detail=detail))
    return out


_WORDS = {"code.cr0_write": "writes CR0", "code.cr4_write": "writes CR4",
          "code.lidt": "loads the IDT register", "code.sidt": "stores the IDT register",
          "code.msr_lstar": "names MSR_LSTAR"}
