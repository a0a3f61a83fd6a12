"""Indicators in the symbols a module imports and the symbol names it holds as strings.

A module that wants what the kernel does not export imports it anyway (the load then
fails: "Unknown symbol"), or looks it up at run time by name: kallsyms_lookup_name() (not
exported since 5.7, so itself found through a kprobe on it: register_kprobe() with
``.symbol_name = "kallsyms_lookup_name"`` fills in its address), or a walk of
kallsyms.  The names found, as imports (undefined symbols) or as NUL-terminated strings in
its data, say what it is after: the system call table, the page-protection and
text-patching helpers (arch/x86/mm/pat/set_memory.c, arch/x86/kernel/alternative.c),
kprobes (kernel/kprobes.c) and ftrace hooks (kernel/trace/ftrace.c).

With the kernel's BTF, the targets of a module's static ``struct kprobe`` and
``struct kretprobe`` objects are read from the relocation of their ``symbol_name`` field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lkm.audit.findings import Evidence, Finding, finding
from lkm.elf import SHF_ALLOC, SHF_EXECINSTR, SHT_NOBITS, STT_OBJECT, ElfFile

R_X86_64_64 = 1

if TYPE_CHECKING:
    from lkm.btf import Btf

# symbol name -> finding id, for names imported or held as strings
NAMED: dict[str, str] = {
    "kallsyms_lookup_name": "symbol.kallsyms_lookup_name",
    "kallsyms_on_each_symbol": "symbol.kallsyms_walk",
    "kallsyms_on_each_match_symbol": "symbol.kallsyms_walk",
    "module_kallsyms_on_each_symbol": "symbol.kallsyms_walk",
    "sys_call_table": "symbol.sys_call_table",
    "ia32_sys_call_table": "symbol.sys_call_table",
    "x32_sys_call_table": "symbol.sys_call_table",
    "compat_sys_call_table": "symbol.sys_call_table",
    "set_memory_rw": "symbol.text_poke",
    "set_memory_x": "symbol.text_poke",
    "set_memory_rox": "symbol.text_poke",
    "text_poke": "symbol.text_poke",
    "text_poke_bp": "symbol.text_poke",
    "text_poke_copy": "symbol.text_poke",
    "text_poke_set": "symbol.text_poke",
    "text_poke_kgdb": "symbol.text_poke",
    "__text_poke": "symbol.text_poke",
    "update_mapping_prot": "symbol.text_poke",
}
# imported only: the registration functions
IMPORTED: dict[str, str] = {
    "register_kprobe": "symbol.kprobe",
    "register_kprobes": "symbol.kprobe",
    "register_kretprobe": "symbol.kprobe",
    "register_kretprobes": "symbol.kprobe",
    "register_ftrace_function": "symbol.ftrace",
    "ftrace_set_filter": "symbol.ftrace",
    "ftrace_set_filter_ip": "symbol.ftrace",
    "register_ftrace_direct": "symbol.ftrace",
    "register_ftrace_direct_multi": "symbol.ftrace",
}
# sections whose strings are symbol names for other reasons (imports, exports, types)
_NOT_DATA = ("__versions", "__ksymtab", "__ksymtab_gpl", "__ksymtab_strings", ".modinfo",
             ".gnu.linkonce.this_module", ".BTF", ".BTF.ext", "__kcrctab", "__kcrctab_gpl",
             "__version_ext_names")
MAX_EVIDENCE = 8
# every NAMED name contains one of these: a first search of a section for them is cheap
_STEMS = (b"kallsyms_", b"sys_call_table", b"set_memory_", b"text_poke", b"update_mapping")


def symbol_findings(elf: ElfFile, undefined: list[str], btf: Btf | None = None
                    ) -> list[Finding]:
    """Findings from the module's undefined symbols and the symbol names in its data."""
    hits: dict[str, list[Evidence]] = {}
    imported = set(undefined)
    for name in undefined:
        id_ = NAMED.get(name) or IMPORTED.get(name)
        if id_ is not None:
            hits.setdefault(id_, []).append(Evidence(f"imports {name}", name))
    named = _named_strings(elf)
    for name, section, offset in named:
        if name in imported:
            continue  # the import says it already
        hits.setdefault(NAMED[name], []).append(
            Evidence(f"names {name} in a string", name, section, offset))
    kprobes = imported & {"register_kprobe", "register_kprobes", "register_kretprobe",
                          "register_kretprobes"}
    if kprobes and btf is not None:
        for target, section, offset, obj in kprobe_targets(elf, btf):
            hits.setdefault("symbol.kprobe", []).append(
                Evidence(f"kprobe on {target}", obj, section, offset))
    out = []
    for id_, ev in hits.items():
        detail = ""
        if id_ == "symbol.kallsyms_lookup_name" and kprobes and \
                any(n == "kallsyms_lookup_name" for n, _, _ in named):
            detail = (f"its address found with a kprobe ({', '.join(sorted(kprobes))} and the "
                      "name as a string)")
        if len(ev) > MAX_EVIDENCE:
            detail = (f"{detail}; " if detail else "") + f"{len(ev)} places, {MAX_EVIDENCE} shown"
        out.append(finding(id_, *ev[:MAX_EVIDENCE], detail=detail))
    return out


def _data_sections(elf: ElfFile) -> list[tuple[int, str]]:
    return [(sec.index, sec.name) for sec in elf.sections
            if sec.flags & SHF_ALLOC and not sec.flags & SHF_EXECINSTR and
            sec.type != SHT_NOBITS and sec.size and sec.name not in _NOT_DATA]


def _named_strings(elf: ElfFile) -> list[tuple[str, str, int]]:
    """(name, section, offset) of each NUL-terminated string in the module's data that is
    one of the NAMED symbols."""
    out = []
    for index, secname in _data_sections(elf):
        data = bytes(elf.section_data(index))
        stems = [stem for stem in _STEMS if stem in data]
        if not stems:
            continue
        for name in (n for n in NAMED if any(s in n.encode() for s in stems)):
            key = name.encode() + b"\0"
            pos = data.find(key)
            while pos >= 0:
                if pos == 0 or data[pos - 1] == 0:
                    out.append((name, secname, pos))
                pos = data.find(key, pos + 1)
    return out


def kprobe_targets(elf: ElfFile, btf: Btf) -> list[tuple[str, str, int, str]]:
    """(target, section, offset, object) of the module's static struct kprobe/kretprobe
    objects: the string their symbol_name field points to (include/linux/kprobes.h)."""
    from lkm.btf import BtfLookupError

    shapes = []
    for struct_, path in (("kprobe", "symbol_name"), ("kretprobe", "kp.symbol_name")):
        try:
            shapes.append((btf.sizeof(struct_), btf.offsetof(struct_, path)))
        except BtfLookupError:
            continue
    sizes = dict(shapes)
    fields: dict[tuple[int, int], str] = {}  # (section, offset of symbol_name) -> object
    for s in elf.symbols()[1:]:
        if s.type == STT_OBJECT and s.size in sizes:
            fields[(s.shndx, s.value + sizes[s.size])] = s.name
    if not fields:
        return []
    sections = {sec for sec, _ in fields}
    symbols = elf.symbols()
    out = []
    for sec in elf.sections:
        if sec.index not in sections:
            continue
        for rel in (r for i in elf.relocation_sections_for(sec.index)
                    for r in elf.relocations(i)):
            obj = fields.get((sec.index, rel.offset))
            if obj is None or rel.type != R_X86_64_64:
                continue
            try:
                target = symbols[rel.symbol]
                name = _cstring(elf, target.shndx, target.value + rel.addend)
            except (ValueError, IndexError):
                continue
            out.append((name, sec.name, rel.offset, obj))
    return out


def _cstring(elf: ElfFile, shndx: int, offset: int) -> str:
    data = bytes(elf.section_data(shndx))
    if not 0 <= offset < len(data):
        raise ValueError("outside its section")
    end = data.find(b"\0", offset)
    return data[offset:end if end >= 0 else len(data)].decode("utf-8", "replace")
