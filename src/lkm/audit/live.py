"""A running (or virtual) kernel's module posture, and a cross-view of its modules.

Everything is read through the backend interface (lkm.kernel.backend), so ``--virtual``
audits a virtual kernel the same way; a view the kernel does not offer is reported as
unknown.  The cross-view compares three lists the kernel keeps apart:

- /proc/modules walks the ``modules`` list (kernel/module/procfs.c);
- /sys/module/<name>/ exists while the module's kobject does (kernel/module/sysfs.c), with
  an ``initstate`` file for loadable modules only;
- /proc/kallsyms shows module symbols as ``name [module]``, also from the ``modules`` list
  (kernel/module/kallsyms.c).

A module that unlinked itself from the list is in /sys/module only; one that deleted its
kobject is in /proc/modules only.  The posture: sig_enforce, the lockdown level,
modules_disabled, kptr_restrict, the modprobe helper (kernel/module/kmod.c
modprobe_path) and whether it can be replaced, the taint mask, and the signature of every
loaded module's file (lkm.signing) with the kernel's per-module taint.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lkm.audit.findings import Evidence, Finding, finding
from lkm.kernel import taint as T

if TYPE_CHECKING:
    from lkm.kernel.backend import KernelBackend
    from lkm.signing import Keyring

_KALLSYMS_MODULE = re.compile(rb"\t\[([^\]\s]+)\]$", re.M)
_PSEUDO = ("bpf", "__builtin__")  # [bpf], [__builtin__ftrace], [__builtin__kprobes]
MODPROBE_NAMES = ("modprobe", "kmod", "lkm")  # what /sbin/modprobe resolves to


@dataclass
class LoadedState:
    """One module as the views show it, and its file's signature."""

    name: str
    in_proc: bool
    in_sysfs: bool
    kallsyms: int  # its symbols in /proc/kallsyms (-1: not readable)
    taint: str  # /sys/module/<name>/taint, else /proc/modules' flags
    file: str | None = None
    signature: str | None = None  # lkm.signing status
    signer: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Posture:
    """What ``lkm audit --live`` reports."""

    release: str
    settings: dict[str, str | None] = field(default_factory=dict)  # name -> value, None unknown
    tainted: int | None = None
    modules: list[LoadedState] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    keys_known: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"release": self.release, "settings": self.settings, "tainted": self.tainted,
                "tainted_string": None if self.tainted is None else
                T.print_tainted_for(self.tainted, _version(self.release)),
                "keys_known": self.keys_known, "modules": [m.to_json() for m in self.modules],
                "findings": [f.to_json() for f in self.findings]}


def _version(release: str) -> tuple[int, ...] | None:
    m = re.match(r"(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _read(kernel: KernelBackend, path: str) -> str | None:
    try:
        return kernel.read_text(path).strip()
    except OSError:
        return None


def _sysfs_modules(kernel: KernelBackend) -> tuple[set[str], set[str]]:
    """(loadable modules, built-ins) with a /sys/module directory."""
    try:
        names = kernel.list_dir("/sys/module")
    except OSError:
        return set(), set()
    loadable: set[str] = set()
    builtin: set[str] = set()
    for n in names:
        (loadable if _read(kernel, f"/sys/module/{n}/initstate") is not None else builtin).add(n)
    return loadable, builtin


def _kallsyms(kernel: KernelBackend) -> dict[str, int] | None:
    """Module name -> its symbols in /proc/kallsyms; None when not readable."""
    try:
        text = kernel.read_text("/proc/kallsyms")
    except OSError:
        return None
    counts: dict[str, int] = {}
    for m in _KALLSYMS_MODULE.finditer(text.encode("utf-8", "surrogateescape")):
        name = m.group(1).decode("utf-8", "surrogateescape")
        if not name.startswith(_PSEUDO):
            counts[name] = counts.get(name, 0) + 1
    return counts


def posture(kernel: KernelBackend, keyring: Keyring | None = None,
            moddir: str | None = None) -> Posture:
    """The posture of ``kernel``; ``keyring``: the kernel's certificates (None: unknown, so
    signed modules count as signed by an unknown key); ``moddir``: where the loaded modules'
    files are (default: the kernel's module directory)."""
    p = Posture(kernel.release(), keys_known=keyring is not None)
    s = p.settings
    s["sig_enforce"] = _read(kernel, "/sys/module/module/parameters/sig_enforce")
    lockdown = _read(kernel, "/sys/kernel/security/lockdown")
    level = re.search(r"\[(\w+)\]", lockdown or "")
    s["lockdown"] = level.group(1) if level else lockdown
    s["modules_disabled"] = _read(kernel, "/proc/sys/kernel/modules_disabled")
    s["kptr_restrict"] = _read(kernel, "/proc/sys/kernel/kptr_restrict")
    s["modprobe"] = _read(kernel, "/proc/sys/kernel/modprobe")
    tainted = _read(kernel, "/proc/sys/kernel/tainted")
    p.tainted = int(tainted) if tainted and tainted.isdigit() else None
    _cross_view(kernel, p)
    _signatures(kernel, p, keyring, moddir)
    p.findings += _setting_findings(kernel, p)
    p.findings = merge(p.findings)
    return p


def merge(findings: list[Finding]) -> list[Finding]:
    """One finding per id, its evidence gathered in order."""
    by_id: dict[str, Finding] = {}
    for f in findings:
        got = by_id.get(f.id)
        if got is None:
            by_id[f.id] = f
        else:
            detail = got.detail if f.detail in ("", got.detail) else \
                "; ".join(d for d in (got.detail, f.detail) if d)
            by_id[f.id] = finding(f.id, *got.evidence, *f.evidence, detail=detail)
    return list(by_id.values())


def _cross_view(kernel: KernelBackend, p: Posture) -> None:
    try:
        listed = kernel.modules()
    except OSError:
        listed = []
    proc = {m.name: m for m in listed}
    loadable, _builtin = _sysfs_modules(kernel)
    syms = _kallsyms(kernel)
    p.settings["views"] = (f"/proc/modules {len(proc)}, /sys/module {len(loadable)} loadable, "
                           f"/proc/kallsyms " + ("unreadable" if syms is None else
                                                 f"{len(syms)} modules"))
    names = sorted(set(proc) | loadable | set(syms or {}))
    for name in names:
        taint = kernel.taint(name) if name in loadable else ""
        if not taint and name in proc:
            taint = proc[name].taint
        st = LoadedState(name, name in proc, name in loadable,
                         -1 if syms is None else syms.get(name, 0), taint)
        p.modules.append(st)
        seen = [v for v, ok in (("/proc/modules", st.in_proc), ("/sys/module", st.in_sysfs),
                                ("/proc/kallsyms", st.kallsyms > 0)) if ok]
        ev = Evidence(f"{name}: in {', '.join(seen)}; missing from " + ", ".join(
            v for v in ("/proc/modules", "/sys/module", "/proc/kallsyms")
            if v not in seen and (v != "/proc/kallsyms" or syms is not None)), name)
        if st.in_sysfs and not st.in_proc:
            state = _read(kernel, f"/sys/module/{name}/initstate")
            p.findings.append(finding("live.hidden_proc_modules", Evidence(
                f"{ev.text} (/sys/module/{name}/initstate: {state})", name)))
        elif st.in_proc and not st.in_sysfs:
            p.findings.append(finding("live.hidden_sysfs", ev))
        elif not st.in_proc and not st.in_sysfs:
            p.findings.append(finding("live.kallsyms_only", ev))
        elif syms and st.kallsyms == 0 and proc[name].state == "Live":
            p.findings.append(finding("live.no_kallsyms", ev))


def _signatures(kernel: KernelBackend, p: Posture, keyring: Keyring | None,
                moddir: str | None) -> None:
    from lkm.kmod.moddir import ModuleDir
    from lkm.signing import Keyring, verify_file

    where = moddir or kernel.module_dir() or os.path.join("/lib/modules", p.release)
    try:
        md: ModuleDir | None = ModuleDir(where)
    except OSError:
        md = None
    ring = keyring if keyring is not None else Keyring()
    for st in p.modules:
        entry = md.lookup_name(st.name) if md is not None else None
        if entry is None or entry.path is None or not os.path.isfile(entry.path):
            if st.in_proc or st.in_sysfs:
                p.findings.append(finding("live.no_file", Evidence(
                    f"{st.name}: no file in {where} (loaded from elsewhere, or renamed)",
                    st.name)))
            if "E" in st.taint:
                p.findings.append(finding("live.signature", Evidence(
                    f"{st.name}: taint E: the kernel found it unsigned or signed with a key "
                    "it does not trust", st.name)))
            continue
        st.file = entry.path
        v = verify_file(entry.path, ring)
        st.signature, st.signer = v.status.value, v.signer
        bad = v.status.value in ("unsigned", "rejected", "malformed") or \
            (v.status.value == "unknown key" and keyring is not None)
        if bad:
            kernel_says = " (the kernel's taint says E)" if "E" in st.taint else ""
            p.findings.append(finding("live.signature", Evidence(
                f"{st.name}: {entry.path}: {v.status.value}: {v.reason}{kernel_says}",
                st.name)))


def _setting_findings(kernel: KernelBackend, p: Posture) -> list[Finding]:
    s = p.settings
    out = []
    if s["sig_enforce"] == "N":
        out.append(finding("live.sig_enforce",
                           Evidence("/sys/module/module/parameters/sig_enforce: N")))
    elif s["sig_enforce"] is None and kernel.exists("/sys/module/module"):
        out.append(finding("live.sig_enforce", Evidence(
            "no /sys/module/module/parameters/sig_enforce"),
            detail="the kernel does not check module signatures (no CONFIG_MODULE_SIG)"))
    if s["lockdown"] == "none":
        out.append(finding("live.lockdown", Evidence("/sys/kernel/security/lockdown: none")))
    if s["kptr_restrict"] == "0":
        out.append(finding("live.kptr_restrict", Evidence("/proc/sys/kernel/kptr_restrict: 0")))
    if p.tainted:
        mods = [f"{m.name}({m.taint})" for m in p.modules if m.taint]
        out.append(finding("live.tainted", Evidence(
            f"/proc/sys/kernel/tainted: {p.tainted}: "
            f"{T.print_tainted_for(p.tainted, _version(p.release))}"),
            detail=("modules: " + " ".join(mods)) if mods else ""))
    path = s["modprobe"]
    from lkm.kernel.live import LiveKernel

    if path and isinstance(kernel, LiveKernel):
        s["modprobe_status"], f = modprobe_check(path)
        out += f
        try:  # root may point the kernel elsewhere (CONFIG_STATIC_USERMODEHELPER aside)
            st = os.stat("/proc/sys/kernel/modprobe")
            s["modprobe_sysctl"] = f"{stat.filemode(st.st_mode)} uid {st.st_uid}"
        except OSError:
            pass
    return out


def modprobe_check(path: str) -> tuple[str, list[Finding]]:
    """Whether the helper at ``path`` and every directory leading to it are root's alone
    (a directory others may write lets them replace the entry; a sticky one still lets them
    create it when missing), and what it resolves to."""
    weak = []
    full = os.path.abspath(path)
    parts = [p for p in full.split("/") if p]
    cur = "/"
    for i in range(len(parts) + 1):
        try:
            st: os.stat_result | None = os.lstat(cur)
        except OSError:
            st = None
        if st is None:
            break
        last = i == len(parts)
        child = None if last else os.path.join(cur, parts[i])
        if st.st_uid != 0:
            weak.append(f"{cur}: owner uid {st.st_uid}")
        elif not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o022:
            sticky = stat.S_ISDIR(st.st_mode) and st.st_mode & stat.S_ISVTX
            if not sticky or (child is not None and not os.path.lexists(child)):
                weak.append(f"{cur}: mode {stat.filemode(st.st_mode)}")
        if child is None:
            break
        cur = child
    real = os.path.realpath(path)
    exists = os.path.exists(real)
    findings = []
    if weak:
        findings.append(finding("live.modprobe_path", *(Evidence(w) for w in weak),
                                detail=f"{path} can be replaced by a non-root user"))
    if exists and os.path.basename(real) not in MODPROBE_NAMES:
        findings.append(finding("live.modprobe_unusual", Evidence(f"{path} -> {real}")))
    status = f"{path} -> {real}" if real != path else path
    status += "" if exists else " (missing)"
    status += ", replaceable by non-root" if weak else ", root's alone"
    return status, findings
