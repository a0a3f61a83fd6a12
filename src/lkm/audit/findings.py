"""What ``lkm audit`` reports: findings (an id, a severity, evidence) and per-module reports.

Every finding id is listed once, in :data:`CATALOG`, with its severity and what it means;
the indicator files (code, symbols, thismodule, verdict, live) only say where they saw it.
The ids use the kernel's words: ``taint.oot_module`` is TAINT_OOT_MODULE,
``module.list`` is ``struct module``'s ``list`` field.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from lkm.kernel import taint as T


class Severity(enum.IntEnum):
    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3

    def __str__(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Evidence:
    """Where an indicator was seen: a symbol, a section and offset, an instruction."""

    text: str  # what was seen, in words ("imports kallsyms_lookup_name")
    symbol: str | None = None  # the symbol named, or the function containing the place
    section: str | None = None
    offset: int | None = None
    insn: str | None = None  # the disassembled instruction

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in (("text", self.text), ("symbol", self.symbol),
                                  ("section", self.section), ("offset", self.offset),
                                  ("insn", self.insn)) if v is not None}

    def render(self) -> str:
        where = ""
        if self.section is not None:
            where = f"{self.section}+{self.offset or 0:#x}"
            if self.symbol and self.symbol not in self.text:
                where += f" <{self.symbol}>"
            where += ": "
        insn = f": {self.insn}" if self.insn else ""
        return f"{where}{self.text}{insn}"


# id -> (severity, summary)
CATALOG: dict[str, tuple[Severity, str]] = {
    # what loading it would do (kernel/module/main.c, signing.c)
    "load.refused": (Severity.MEDIUM, "the kernel would refuse to load it"),
    "signature.invalid": (Severity.HIGH, "its signature does not verify"),
    # symbols it imports or looks up by name
    "symbol.kallsyms_lookup_name": (Severity.HIGH,
                                    "resolves unexported symbols through kallsyms_lookup_name"),
    "symbol.kallsyms_walk": (Severity.MEDIUM, "walks the kernel's symbol table"),
    "symbol.sys_call_table": (Severity.HIGH, "refers to the system call table"),
    "symbol.text_poke": (Severity.HIGH,
                         "changes kernel page protections or patches kernel text"),
    "symbol.kprobe": (Severity.MEDIUM, "hooks kernel functions with kprobes"),
    "symbol.ftrace": (Severity.MEDIUM, "hooks kernel functions with ftrace"),
    # its code (arch/x86: native_write_cr0, load_idt, store_idt, wrmsr)
    "code.cr0_write": (Severity.HIGH, "writes CR0 (can clear CR0.WP to patch read-only memory)"),
    "code.cr4_write": (Severity.HIGH, "writes CR4 (can clear SMEP/SMAP/UMIP/pinned bits)"),
    "code.lidt": (Severity.HIGH, "loads an interrupt descriptor table (lidt)"),
    "code.sidt": (Severity.MEDIUM, "reads the interrupt descriptor table's address (sidt)"),
    "code.msr_lstar": (Severity.MEDIUM,
                       "uses MSR_LSTAR, the system call entry point (0xc0000082)"),
    # its own struct module (include/linux/module.h, kernel/module/sysfs.c, kallsyms.c)
    "module.list": (Severity.HIGH,
                    "touches its own struct module list entry (unlinking hides it from "
                    "/proc/modules and lsmod)"),
    "module.kobject": (Severity.HIGH,
                       "deletes its own module kobject (hides it from /sys/module)"),
    "module.sysfs_attrs": (Severity.MEDIUM,
                           "touches its own sect_attrs/notes_attrs (/sys/module/*/sections)"),
    "module.kallsyms": (Severity.MEDIUM,
                        "touches its own kallsyms (hides its symbols from /proc/kallsyms)"),
    # a running kernel (lkm audit --live)
    "live.hidden_proc_modules": (Severity.HIGH,
                                 "a module in /sys/module is missing from /proc/modules"),
    "live.hidden_sysfs": (Severity.HIGH, "a module in /proc/modules is missing from /sys/module"),
    "live.kallsyms_only": (Severity.HIGH,
                           "/proc/kallsyms has symbols of a module listed nowhere else"),
    "live.no_kallsyms": (Severity.MEDIUM, "a loaded module has no symbols in /proc/kallsyms"),
    "live.signature": (Severity.MEDIUM, "a loaded module's file is not validly signed"),
    "live.no_file": (Severity.LOW, "a loaded module has no file in the module directory"),
    "live.sig_enforce": (Severity.LOW, "unsigned modules may be loaded (sig_enforce is off)"),
    "live.lockdown": (Severity.LOW, "kernel lockdown is off"),
    "live.kptr_restrict": (Severity.LOW, "kernel addresses are shown to every user"),
    "live.modprobe_path": (Severity.HIGH,
                           "the modprobe helper the kernel runs as root can be replaced"),
    "live.modprobe_unusual": (Severity.MEDIUM, "the kernel's modprobe helper is not modprobe"),
    "live.tainted": (Severity.INFO, "the kernel is tainted"),
}

# taint bits a module load sets (add_taint_module), as findings: taint.<flag name>
_TAINT_SEVERITY = {T.TAINT_PROPRIETARY_MODULE: Severity.LOW, T.TAINT_FORCED_MODULE: Severity.MEDIUM,
                   T.TAINT_CRAP: Severity.LOW, T.TAINT_OOT_MODULE: Severity.LOW,
                   T.TAINT_UNSIGNED_MODULE: Severity.MEDIUM, T.TAINT_LIVEPATCH: Severity.MEDIUM,
                   T.TAINT_TEST: Severity.LOW}
for _f in T.TAINT_FLAG_TABLE:
    CATALOG[f"taint.{_f.name.lower()}"] = (_TAINT_SEVERITY.get(_f.bit, Severity.LOW),
                                           f"loading it taints the kernel: {_f.c_true} "
                                           f"({_f.description})")


def taint_id(bit: int) -> str:
    """The finding id of a taint bit: ``taint.oot_module`` for TAINT_OOT_MODULE."""
    return f"taint.{T.TAINT_FLAG_TABLE[bit].name.lower()}"


@dataclass(frozen=True)
class Finding:
    """One indicator, its severity from the catalog, and where it was seen."""

    id: str
    evidence: tuple[Evidence, ...] = ()
    detail: str = ""  # what this instance adds to the catalog's summary

    @property
    def severity(self) -> Severity:
        return CATALOG[self.id][0]

    @property
    def summary(self) -> str:
        return CATALOG[self.id][1]

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "severity": str(self.severity),
                             "summary": self.summary}
        if self.detail:
            d["detail"] = self.detail
        d["evidence"] = [e.to_json() for e in self.evidence]
        return d


def finding(id: str, *evidence: Evidence, detail: str = "") -> Finding:
    """A finding of a catalogued id (KeyError for an unknown one)."""
    if id not in CATALOG:
        raise KeyError(f"unknown finding id {id!r}")
    return Finding(id, tuple(evidence), detail)


@dataclass
class LoadVerdict:
    """What loading the module into a fresh kernel of the profile would do (lkm check)."""

    loaded: bool
    errno: str | None  # "ENOEXEC"...
    taint: str  # letters of the taints the load sets
    messages: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"loaded": self.loaded, "errno": self.errno, "taint": self.taint,
                "messages": self.messages}


@dataclass
class SignatureState:
    """lkm.signing's verdict on the module's signature against the kernel's keys."""

    status: str  # lkm.signing.Status value: "valid", "unsigned", "unknown key", ...
    reason: str
    signer: str | None = None
    keys_known: bool = True  # False: the kernel's certificates were not available

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "reason": self.reason, "signer": self.signer,
                "keys_known": self.keys_known}


@dataclass
class ModuleReport:
    """Everything ``lkm audit`` says about one module file."""

    path: str
    name: str
    findings: list[Finding] = field(default_factory=list)
    verdict: LoadVerdict | None = None
    signature: SignatureState | None = None
    error: str | None = None  # the file could not be read as a module

    @property
    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "module": self.name, "error": self.error,
                "verdict": self.verdict.to_json() if self.verdict else None,
                "signature": self.signature.to_json() if self.signature else None,
                "findings": [f.to_json() for f in self.findings]}

    def render(self) -> str:
        """The report as text: a headline, then one block per finding."""
        if self.error is not None:
            return f"{self.path}: ERROR: {self.error}\n"
        head = []
        if self.verdict is not None:
            v = self.verdict
            head.append(("loads" if v.loaded else f"refused ({v.errno})") +
                        (f", taints {v.taint}" if v.taint else ""))
        if self.signature is not None:
            s = self.signature
            sig = s.status + (f" by {s.signer}" if s.signer else "")
            unknown = not s.keys_known and s.status != "unsigned"
            head.append(f"signature {sig}" + (" (kernel keys unknown)" if unknown else ""))
        out = [f"{self.path}: {', '.join(head) if head else 'audited'}\n"]
        for f in sorted(self.findings, key=lambda f: (-f.severity, f.id)):
            detail = f": {f.detail}" if f.detail else ""
            out.append(f"  [{f.severity}] {f.id}: {f.summary}{detail}\n")
            out.extend(f"      {e.render()}\n" for e in f.evidence)
        return "".join(out)
