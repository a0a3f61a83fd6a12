"""``lkm check``: would these modules load into that kernel, and why not.

Each module is loaded, after the dependencies the tree's indexes name (modules.dep
for a module of the tree; modules.symbols for the unresolved symbols of a module
file), into a fresh in-memory virtual kernel of the profile.  A result per module
loaded: whether it loaded, the errno, the kernel's log lines, the taints.

With ``run`` (``lkm check``'s default) the module's code runs
(:class:`~lkm.kernel.exec.state.ExecKernelState`):
init at load, exit at the unload that follows the loads (:meth:`Checker.unload_all`),
so the verdict is the one the real kernel gives -- init's return value, its oops (the
loading process killed), or "not emulated" when the code calls a kernel function the
virtual kernel does not implement.  Without it (``--no-run``; the library's default, as
``lkm audit`` uses it) the verdict is static: init is taken to return 0 (or what
``--init`` says).
"""

from __future__ import annotations

import errno as _errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lkm.compress import detect, read_module
from lkm.errors import FormatError, KernelError, LkmError, ModuleNotFound, ProcessKilled
from lkm.kernel import taint as T
from lkm.kernel.cmdline import apply_cmdline
from lkm.kernel.exec.faults import NotImplementedByVirtualKernel
from lkm.kernel.exec.state import ExecKernelState
from lkm.kernel.module.main import delete_module, load_module
from lkm.kernel.module.state import KernelState
from lkm.kernel.printk import Printk
from lkm.kernel.profile import KernelProfile

# verdicts
LOADS, FAILS, KILLED, NOT_EMULATED = "loads", "fails", "killed", "not emulated"


@dataclass
class CheckResult:
    """The verdict on one module."""

    module: str
    loaded: bool
    errno: int | None
    messages: list[str]
    taint: str  # letters: the module's taints and those this load set
    tainted: int  # the kernel's taint mask afterwards
    path: str | None = None
    dependency_of: str | None = None
    verdict: str = ""  # LOADS, FAILS, KILLED or NOT_EMULATED ("" : from ``loaded``)
    ran: bool = False  # the module's init ran in the virtual kernel
    records: list[tuple[int, str]] = field(default_factory=list)  # (level, text)
    missing: str | None = None  # NOT_EMULATED: the kernel function
    site: str | None = None  # NOT_EMULATED: where it is called from (``init+0x24``)
    missing_data: bool = False  # NOT_EMULATED: ``missing`` is kernel data, not a function
    signal: int | None = None  # KILLED: the signal the loading process died of
    not_run: str | None = None  # why the code could not run (a profile without BTF)
    exit: CheckResult | None = None  # the unload after the loads (exit ran)
    leaks: list[str] = field(default_factory=list)  # exit: kmemleak's unreferenced objects

    def __post_init__(self) -> None:
        if not self.verdict:
            self.verdict = LOADS if self.loaded else FAILS

    def summary(self, ok: str = "loads") -> str:
        """The verdict in words (``loads``, ``fails: ENOMEM (...)``, ``not emulated: ...``)."""
        if self.verdict == NOT_EMULATED:
            verb = "uses the data" if self.missing_data else "calls"
            return f"not emulated: {verb} {self.missing} (from {self.site})"
        if self.verdict == KILLED:
            return f"killed: the kernel killed the process (signal {self.signal})" + \
                (f", taints {self.taint}" if self.taint else "")
        if self.loaded:
            return ok + (f", taints {self.taint}" if self.taint else "")
        code = self.errno or 0
        return f"fails: {_errno.errorcode.get(code, str(code))} ({os.strerror(code)})"

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "module": self.module, "loaded": self.loaded, "verdict": self.verdict,
            "errno": _errno.errorcode.get(self.errno, str(self.errno))
            if self.errno is not None else None,
            "messages": self.messages, "taint": self.taint, "tainted": self.tainted,
            "ran": self.ran, "log": [{"level": lv, "text": t} for lv, t in self.records]}
        if self.verdict == NOT_EMULATED:
            d["missing"] = {"data" if self.missing_data else "function": self.missing,
                            "site": self.site}
        if self.signal is not None:
            d["signal"] = self.signal
        if self.not_run:
            d["not_run"] = self.not_run
        if self.exit is not None:
            d["exit"] = self.exit.to_json()
        if self.leaks:
            d["leaks"] = self.leaks
        return d


@dataclass
class _Job:
    name: str
    path: str
    args: str = ""
    dependency_of: str | None = None
    deps: list[str] = field(default_factory=list)


def _modname(path: str) -> str:
    base = os.path.basename(path)
    return base.split(".", 1)[0].replace("-", "_")


def _read_image(path: str) -> bytes:
    data, _kind = read_module(path)
    try:
        return bytes(data)
    finally:
        close = getattr(data, "close", None)
        if close is not None:
            close()


class Checker:
    """Loads modules into a fresh virtual kernel of ``profile``."""

    def __init__(self, profile: KernelProfile, cmdline: str = "",
                 params: list[str] | None = None, moddir: str | Any | None = None,
                 init_results: dict[str, int] | None = None, flags: int = 0,
                 run: bool = False, kasan: bool = False, leaks: bool = False) -> None:
        self.profile = profile
        self.k = _kernel_state(profile, run, kasan, leaks)
        self.loaded: list[str] = []  # load order
        self.k.sig_enforce = profile.enabled("MODULE_SIG_FORCE")
        apply_cmdline(self.k, cmdline)
        if init_results:
            self.k.init_results.update(init_results)
        self.flags = flags
        self.moddir_path = moddir
        self._moddir: Any = None
        self.params: dict[str | None, list[str]] = {}
        for p in params or []:
            name, _, _val = p.partition("=")
            if "." in name:
                mod, _, rest = p.partition(".")
                self.params.setdefault(mod.replace("-", "_"), []).append(rest)
            else:
                self.params.setdefault(None, []).append(p)

    # -- the module directory ------------------------------------------------------------
    def moddir(self) -> Any:
        """The module directory, made when first needed (``moddir`` may be a callable)."""
        if self._moddir is None and self.moddir_path:
            from lkm.kmod.moddir import ModuleDir

            path = self.moddir_path() if callable(self.moddir_path) else self.moddir_path
            self.moddir_path = path
            if path:
                self._moddir = ModuleDir(path)
        return self._moddir

    def _resolve(self, arg: str) -> _Job:
        if os.path.sep in arg or os.path.isfile(arg) or arg.endswith((".ko", ".ko.xz",
                                                                        ".ko.zst", ".ko.gz")):
            if not os.path.isfile(arg):
                raise ModuleNotFound(f"{arg}: No such file or directory")
            return _Job(_modname(arg), arg)
        md = self.moddir()
        if md is None:
            raise ModuleNotFound(f"Module {arg} not found (no module directory for this kernel)")
        entry = md.lookup_name(arg.replace("-", "_"))
        if entry is None or entry.path is None:
            if md.is_builtin(arg.replace("-", "_")):
                raise ModuleNotFound(f"Module {arg} is builtin")
            raise ModuleNotFound(f"Module {arg} not found in directory {md.dirname}")
        return _Job(arg.replace("-", "_"), entry.path, deps=list(entry.deps))

    def _deps_of_file(self, job: _Job) -> list[str]:
        """Dependencies of a module file: providers of its unresolved symbols."""
        from lkm.module import ModuleFile

        try:
            with ModuleFile.open(job.path) as m:
                wanted = [s for s in m.undefined_symbols if s not in m.weak_undefined
                          and s not in self.profile.exports]
        except (LkmError, OSError):
            return []
        if not wanted:
            return []
        md = self.moddir()
        if md is None:
            return []
        order: list[str] = []  # load order
        for sym in wanted:
            if sym in self.profile.exports:
                continue
            for provider in md.lookup_symbol(sym):
                entry = md.lookup_name(provider)
                if entry is None or entry.path is None:
                    continue
                for d in [*reversed(entry.deps), entry.path]:
                    if d not in order:
                        order.append(d)
                break
        # as modules.dep lists them: dependents first, loaded from the end
        return list(reversed(order))

    # -- loading -------------------------------------------------------------------------
    def plan(self, args: list[str]) -> list[_Job]:
        """The modules to load, dependencies first, each once."""
        jobs: list[_Job] = []
        seen: set[str] = set()
        for arg in args:
            top = self._resolve(arg)
            deps = top.deps if top.deps else self._deps_of_file(top)
            for dpath in reversed(deps):
                name = _modname(dpath)
                if name in seen or name == top.name:
                    continue
                seen.add(name)
                jobs.append(_Job(name, dpath, dependency_of=top.name))
            seen.add(top.name)
            jobs.append(top)
        return jobs

    def args_for(self, name: str, top_level: bool) -> str:
        opts = list(self.params.get(name, []))
        if top_level:
            opts += self.params.get(None, [])
        return " ".join(opts)

    def load(self, job: _Job) -> CheckResult:
        before = self.k.tainted
        try:
            image = _read_image(job.path)
        except (OSError, FormatError) as e:
            err = getattr(e, "errno", None) or _errno.EINVAL
            return CheckResult(job.name, False, err, [str(e)], "", self.k.tainted, job.path,
                               job.dependency_of)
        name = job.name
        log = Printk(self.k.once)
        _enter(self.k, log, "insmod")
        try:
            res = load_module(self.k, image, self.args_for(name, job.dependency_of is None),
                              self.flags, path=job.path, log=log)
        except KernelError as e:
            added = self.k.tainted & ~before
            r = CheckResult(name, False, e.errno, e.messages, T.letters(added),
                            self.k.tainted, job.path, job.dependency_of)
            return self._ran(r, name, log, e.errno)
        except ProcessKilled as e:
            added = self.k.tainted & ~before
            r = CheckResult(name, False, None, e.messages, T.letters(added), self.k.tainted,
                            job.path, job.dependency_of, verdict=KILLED, signal=e.signal)
            return self._ran(r, name, log, None)
        mod = res.module
        self.loaded.append(mod.name)
        added = self.k.tainted & ~before
        r = CheckResult(mod.name, True, None, res.messages, T.letters(mod.taints | added),
                        self.k.tainted, job.path, job.dependency_of)
        return self._ran(r, mod.name, log, None)

    def _ran(self, r: CheckResult, name: str, log: Printk, err: int | None) -> CheckResult:
        """What running the code added: its log records, whether it ran, what it missed."""
        r.records = list(log.records)
        k = self.k
        if not isinstance(k, ExecKernelState):
            return r
        r.ran = k.code_ran
        r.not_run = None if r.ran else k.cannot_run
        missing = k.exec_error
        if missing is not None and err == _errno.ENOSYS:
            r.verdict, r.missing, r.site = NOT_EMULATED, missing.name, missing.site
            r.missing_data = missing.data
        return r

    def attach_exits(self, results: list[CheckResult]) -> None:
        """Unload what loaded (:meth:`unload_all`); each result gets its exit's."""
        by_name = {r.module: r for r in results if r.loaded}
        for ex in self.unload_all():
            if ex.module in by_name:
                by_name[ex.module].exit = ex

    def unload_all(self) -> list[CheckResult]:
        """rmmod of what loaded, newest first: each exit runs (its verdict and log)."""
        out: list[CheckResult] = []
        for name in reversed(self.loaded):
            mod = self.k.find_module(name)
            if mod is None:
                continue
            before = self.k.tainted
            log = Printk(self.k.once)
            _enter(self.k, log, "rmmod")
            try:
                delete_module(self.k, name, log=log)
                r = CheckResult(name, True, None, list(log.lines), "", self.k.tainted)
            except KernelError as e:
                r = CheckResult(name, False, e.errno, e.messages, "", self.k.tainted)
            except ProcessKilled as e:
                r = CheckResult(name, False, None, e.messages, "", self.k.tainted,
                                verdict=KILLED, signal=e.signal)
            except NotImplementedByVirtualKernel as e:  # exit called it: the module stays
                r = CheckResult(name, False, _errno.ENOSYS, list(log.lines), "",
                                self.k.tainted, verdict=NOT_EMULATED, missing=e.name,
                                site=e.site, missing_data=e.data)
            r.taint = T.letters(self.k.tainted & ~before)
            r = self._ran(r, name, log, r.errno)
            if r.loaded and isinstance(self.k, ExecKernelState):
                r.leaks = self.k.unreferenced(name)
            out.append(r)
        self.loaded = [n for n in self.loaded if self.k.find_module(n) is not None]
        return out

    def run(self, args: list[str]) -> list[CheckResult]:
        results: list[CheckResult] = []
        for arg in args:
            try:
                jobs = self.plan([arg])
            except (ModuleNotFound, OSError) as e:
                results.append(CheckResult(arg, False, _errno.ENOENT, [str(e)], "",
                                           self.k.tainted))
                continue
            for job in jobs:
                if job.dependency_of is not None and self.k.find_module(job.name) is not None:
                    continue
                results.append(self.load(job))
        return results


def _kernel_state(profile: KernelProfile, run: bool, kasan: bool,
                  leaks: bool) -> KernelState:
    """A fresh kernel: one that runs module code when ``run`` (and the profile allows),
    with KASAN's checks when ``kasan``, tracking allocations for kmemleak's list at
    unload when ``leaks``."""
    if not run:
        return KernelState(profile)
    return ExecKernelState(profile, kasan=kasan, kmemleak=leaks)


def _enter(k: KernelState, log: Printk, comm: str) -> None:
    from lkm.kernel.exec.state import exec_enter

    exec_enter(k, log, comm)


def is_compressed(path: str) -> bool:
    with open(path, "rb") as f:
        return detect(f.read(8)) is not None


def module_dir_for(profile: KernelProfile) -> str | None:
    """A module directory with indexes for the profile's tree (made once, cached)."""
    from lkm.kernel.profile import _cache_dir
    from lkm.kernel.virtual import prepare_module_dir

    if profile.module_dir is None:
        return None
    if (Path(profile.module_dir) / "modules.dep.bin").is_file():
        return profile.module_dir
    import hashlib

    key = hashlib.sha256(f"{profile.module_dir}\0{profile.release}".encode()).hexdigest()[:24]
    return prepare_module_dir(profile, _cache_dir() / f"moddir-{key}")
