"""The virtual kernel's state when module code runs: the loader's hooks, implemented.

:class:`ExecKernelState` is the :class:`~lkm.kernel.module.state.KernelState` the virtual
kernel reads its state into.  Its hooks run the module's code when the kernel profile
has BTF (struct layouts): ``symbol_address`` gives kernel functions stub addresses and
kernel data real memory, ``run_init`` / ``run_exit`` call mod->init / mod->exit.  A module
named in ``init_results`` (``--init MODULE=RET``) is not run: the override stands, as
before.  Without BTF nothing runs either (:attr:`cannot_run` says why).

The runtime is made on first use and restored from the directory's snapshot
(``exec-<generation>.snap``, the generation kept in state.json), and :meth:`commit`
writes a new snapshot before state.json is written.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lkm.kernel.module.state import MODULE_STATE_UNFORMED, KernelState, Module
from lkm.kernel.printk import Printk

if TYPE_CHECKING:
    from lkm.kernel.exec.faults import NotImplementedByVirtualKernel
    from lkm.kernel.exec.runtime import Runtime
    from lkm.kernel.params import KernelParam


@dataclass
class ExecKernelState(KernelState):
    """KernelState whose hooks run module code (see the module docstring)."""

    exec_generation: int = 0
    directory: Path | None = field(default=None, compare=False, repr=False)
    boot: float = field(default=0.0, compare=False, repr=False)
    comm: str = field(default="insmod", compare=False, repr=False)
    log: Printk | None = field(default=None, compare=False, repr=False)
    exec_error: NotImplementedByVirtualKernel | None = field(default=None, compare=False,
                                                             repr=False)
    _rt: Runtime | None = field(default=None, compare=False, repr=False)
    _why: str | None = field(default=None, compare=False, repr=False)
    _dirty: bool = field(default=False, compare=False, repr=False)

    # -- the runtime -----------------------------------------------------------------------
    def attach(self, directory: str | os.PathLike[str], boot: float) -> None:
        """The directory this state lives in (its snapshot) and the boot time."""
        self.directory = Path(directory)
        self.boot = boot

    def enter(self, log: Printk, comm: str) -> None:
        """A system call starts: its log sink and the calling process's name."""
        self.log = log
        self.comm = comm
        self.exec_error = None
        if self._rt is not None:
            self._rt.printk = log
            if self._rt.comm != comm:
                self._rt.comm, self._rt.task = comm, None

    @property
    def cannot_run(self) -> str | None:
        """Why module code cannot run on this kernel (None: it can)."""
        if self._why is None and self._rt is None:
            try:
                from lkm.kernel.exec.structs import StructLayouts

                sl = StructLayouts(self.profile)
                if not sl.known:
                    sl.btf()
                self._why = ""
            except Exception as e:
                self._why = str(e) or type(e).__name__
        return self._why or None

    def runtime(self) -> Runtime:
        if self._rt is None:
            from lkm.kernel.exec import snapshot
            from lkm.kernel.exec.runtime import Runtime
            from lkm.kernel.exec.structs import StructLayouts

            rt = Runtime(self, StructLayouts(self.profile), comm=self.comm, boot=self.boot,
                         uts_version=_uts_version(self.profile))
            if self.log is not None:
                rt.printk = self.log
            path = self._snapshot_path(self.exec_generation)
            if path is not None and self.exec_generation and path.is_file():
                snapshot.load(rt, path)
            self._rt = rt
        self._dirty = True
        return self._rt

    def _snapshot_path(self, gen: int) -> Path | None:
        return self.directory / f"exec-{gen}.snap" if self.directory is not None else None

    def commit(self) -> None:
        """Write the snapshot of a runtime this process used (before state.json)."""
        rt = self._rt
        if rt is not None:
            rt.layouts.save()
        if rt is None or not self._dirty or self.directory is None:
            return
        from lkm.kernel.exec import snapshot

        for name in list(rt.code):
            mod = self.find_module(name, even_unformed=True)
            if mod is None or mod.memory is None:
                rt.detach(name)
            else:
                rt.attach(name, mod.memory)
        old = self.exec_generation
        self.exec_generation += 1
        path = self._snapshot_path(self.exec_generation)
        assert path is not None
        snapshot.save(rt, path)
        for p in self.directory.glob("exec-*.snap"):
            if p != path and p.name != f"exec-{old}.snap":
                p.unlink(missing_ok=True)
        self._dirty = False

    def runs(self, mod: Module) -> bool:
        return mod.name not in self.init_results and self.cannot_run is None

    # -- the hooks -------------------------------------------------------------------------
    def symbol_address(self, name: str) -> int:
        loading = self.modules[0] if self.modules else None
        if loading is None or loading.state != MODULE_STATE_UNFORMED or not self.runs(loading):
            return super().symbol_address(name)
        return self.runtime().symbol_address(name)

    def run_init(self, mod: Module) -> int:
        if not self.runs(mod) or mod.memory is None:
            return super().run_init(mod)
        from lkm.kernel.exec import calls
        from lkm.kernel.exec.faults import NotImplementedByVirtualKernel

        try:
            return calls.run_init(self.runtime(), mod)
        except NotImplementedByVirtualKernel as e:
            self.exec_error = e
            return -errno.ENOSYS

    def run_exit(self, mod: Module) -> None:
        if self.runtime_for(mod) is None:
            return super().run_exit(mod)
        from lkm.kernel.exec import calls

        calls.run_exit(self.runtime(), mod)
        return None

    def runtime_for(self, mod: Module) -> Runtime | None:
        """The runtime holding ``mod``'s memory (restored from the snapshot if need be)."""
        if mod.name in self.init_results or self.cannot_run is not None:
            return None
        if mod.memory is None and not self.exec_generation:
            return None
        rt = self.runtime()
        return rt if mod.memory is not None else None

    # -- parameters through their ops ----------------------------------------------------------
    def param_show(self, mod: Module, kp: KernelParam) -> str | None:
        rt = self.runtime_for(mod)
        if rt is None:
            return None
        from lkm.kernel.exec import calls

        return calls.param_show(rt, mod, kp)

    def param_store(self, mod: Module, kp: KernelParam, text: str, log: Printk) -> int | None:
        rt = self.runtime_for(mod)
        if rt is None:
            return None
        from lkm.kernel.exec import calls

        return calls.param_store(rt, mod, kp, text, log)

    def proc_write(self, path: str, value: str) -> bool:
        """/proc/sys/kernel/watchdog and watchdog_thresh (kernel/watchdog.c)."""
        if path not in ("/proc/sys/kernel/watchdog_thresh", "/proc/sys/kernel/watchdog"):
            return False
        from lkm.kernel.params import kstrtoll

        rv, v = kstrtoll(value.strip(), 10)
        if rv or not 0 <= v <= (60 if path.endswith("thresh") else 1):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), path)
        rt = self.runtime()
        if path.endswith("thresh"):
            rt.watchdog_thresh = int(v)
        else:
            rt.watchdog = bool(v)
        return True

    # -- persistence -----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        d = super().to_json()
        d["exec_generation"] = self.exec_generation
        return d

    def load_json(self, d: dict[str, Any]) -> None:
        super().load_json(d)
        self.exec_generation = int(d.get("exec_generation", 0))


def _uts_version(profile: Any) -> str:
    """init_utsname()->version: the bzImage's version string after the release."""
    from lkm import kimage

    try:
        image = kimage.locate_vmlinuz(profile.source)
        with open(image, "rb") as f:
            head = f.read(0x10000)
        v = kimage.kernel_version(head) or ""
    except Exception:
        return "#1"
    if v.startswith(profile.release):
        v = v[len(profile.release):].strip()
    i = v.find("#")
    return v[i:] if i >= 0 else v


def exec_enter(k: KernelState, log: Printk, comm: str) -> None:
    """For the virtual kernel: a system call begins (no-op for a plain KernelState)."""
    if isinstance(k, ExecKernelState):
        k.enter(log, comm)


def exec_error(k: KernelState) -> NotImplementedByVirtualKernel | None:
    return k.exec_error if isinstance(k, ExecKernelState) else None
