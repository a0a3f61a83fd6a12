"""Auditing module files: one report per file, many files in parallel processes.

An :class:`Auditor` holds what auditing against one kernel needs (its profile, the struct
layouts of its BTF, the load verdicts' virtual kernel) and reports on one file at a time;
:func:`audit_files` runs one Auditor per process over a list of files (fork: nothing is
pickled but the reports).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from lkm.audit.code import code_findings
from lkm.audit.findings import ModuleReport
from lkm.audit.symbols import symbol_findings
from lkm.audit.thismodule import module_layout, thismodule_findings
from lkm.audit.verdict import VerdictMaker, taint_findings
from lkm.errors import LkmError

if TYPE_CHECKING:
    from lkm.btf import Btf
    from lkm.kernel.profile import KernelProfile


class Auditor:
    """Audits module files against ``profile`` (None: code and symbol indicators only)."""

    def __init__(self, profile: KernelProfile | None, moddir: Any = None,
                 verdicts: bool = True) -> None:
        self.profile = profile
        self.btf = _btf(profile)
        self.layout = module_layout(self.btf)
        self.verdicts = VerdictMaker(profile, moddir) if profile is not None and verdicts \
            else None

    def audit(self, path: str | os.PathLike[str]) -> ModuleReport:
        """The report on one module file (an unreadable file gives a report with an error)."""
        from lkm.module import ModuleFile, modname_from_path

        p = os.fspath(path)
        try:
            mod = ModuleFile.open(p)
        except (OSError, LkmError) as e:
            return ModuleReport(p, modname_from_path(p), error=_message(e))
        with mod:
            try:
                return self._audit(p, mod)
            except LkmError as e:
                return ModuleReport(p, modname_from_path(p), error=str(e))
            except (ValueError, IndexError, KeyError, struct.error) as e:
                # offsets of a malformed file the readers let through: a finding-free report
                return ModuleReport(p, modname_from_path(p), error=f"malformed module: {e!r}")

    def _audit(self, path: str, mod: Any) -> ModuleReport:
        elf = mod.elf
        report = ModuleReport(path, mod.name)
        if self.verdicts is not None:
            report.signature = self.verdicts.signature(mod)
            report.verdict, mask = self.verdicts.verdict(path, mod.name)
            report.findings += taint_findings(mod, report.verdict, mask, report.signature)
        report.findings += symbol_findings(elf, mod.undefined_symbols, self.btf)
        report.findings += code_findings(elf)
        report.findings += thismodule_findings(elf, self.layout, mod.content)
        return report


def _message(e: Exception) -> str:
    if isinstance(e, OSError) and e.strerror:
        return f"{e.strerror}"
    return str(e)


def _btf(profile: KernelProfile | None) -> Btf | None:
    """The kernel's BTF, or None when the profile has none (a headers tree)."""
    if profile is None:
        return None
    from lkm.kernel.layouts import layouts

    try:
        return layouts(profile)
    except LkmError:
        return None


_worker: Auditor | None = None


def _init_worker(profile: KernelProfile | None, moddir: Any, verdicts: bool) -> None:
    global _worker
    _worker = Auditor(profile, moddir, verdicts)


def _work(path: str) -> ModuleReport:
    assert _worker is not None
    return _worker.audit(path)


def audit_files(paths: Sequence[str | os.PathLike[str]], profile: KernelProfile | None,
                moddir: Any = None, verdicts: bool = True, jobs: int | None = None,
                progress: Callable[[int, int], None] | None = None) -> Iterator[ModuleReport]:
    """Reports on ``paths``, in order; ``jobs`` processes (default: the CPUs for many files,
    else 1); ``progress(done, total)`` after each."""
    files = [os.fspath(p) for p in paths]
    if jobs is None:
        jobs = (os.cpu_count() or 1) if len(files) >= 32 else 1
    if callable(moddir) and jobs > 1:
        moddir = moddir()  # made once, before the workers start
    if jobs <= 1 or not hasattr(os, "fork"):
        auditor = Auditor(profile, moddir, verdicts)
        for i, f in enumerate(files):
            yield auditor.audit(f)
            if progress is not None:
                progress(i + 1, len(files))
        return
    import multiprocessing

    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(jobs, initializer=_init_worker, initargs=(profile, moddir, verdicts)) as pool:
        for i, report in enumerate(pool.imap(_work, files, chunksize=4)):
            yield report
            if progress is not None:
                progress(i + 1, len(files))
