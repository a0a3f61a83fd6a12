"""``lkm check``: would these modules load into that kernel, and why not.

Each module is loaded, after the dependencies the tree's indexes name (modules.dep
for a module of the tree; modules.symbols for the unresolved symbols of a module
file), into a fresh in-memory virtual kernel of the profile.  A result per module
loaded: whether it loaded, the errno, the kernel's log lines, the taints.
"""

from __future__ import annotations

import errno as _errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lkm.compress import detect, read_module
from lkm.errors import FormatError, KernelError, LkmError, ModuleNotFound
from lkm.kernel import taint as T
from lkm.kernel.cmdline import apply_cmdline
from lkm.kernel.module.main import load_module
from lkm.kernel.module.state import KernelState
from lkm.kernel.profile import KernelProfile


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

    def to_json(self) -> dict[str, Any]:
        return {"module": self.module, "loaded": self.loaded,
                "errno": _errno.errorcode.get(self.errno, str(self.errno))
                if self.errno is not None else None,
                "messages": self.messages, "taint": self.taint, "tainted": self.tainted}


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
                 init_results: dict[str, int] | None = None, flags: int = 0) -> None:
        self.profile = profile
        self.k = KernelState(profile)
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
        try:
            res = load_module(self.k, image, self.args_for(name, job.dependency_of is None),
                              self.flags, path=job.path)
        except KernelError as e:
            added = self.k.tainted & ~before
            return CheckResult(name, False, e.errno, e.messages, T.letters(added),
                               self.k.tainted, job.path, job.dependency_of)
        mod = res.module
        added = self.k.tainted & ~before
        return CheckResult(mod.name, True, None, res.messages,
                           T.letters(mod.taints | added), self.k.tainted, job.path,
                           job.dependency_of)

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
