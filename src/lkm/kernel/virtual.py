"""The virtual kernel: a kernel's module state kept in a directory.

``VirtualKernel.create(DIR, source)`` builds a kernel profile and an empty state
("booted" now, with a command line).  Every operation runs on the state of
:mod:`lkm.kernel.store` (locked, read, changed, written atomically) with the kernel's
logic: the loader of :mod:`lkm.kernel.module` for the syscalls, the views of
:mod:`lkm.kernel.views` (/proc/modules, /sys/module, ...) for reads and writes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lkm.compress import decompress, detect
from lkm.errors import CompressionError, KernelError, LkmError
from lkm.kernel import views
from lkm.kernel.backend import KernelBackend
from lkm.kernel.cmdline import apply_cmdline
from lkm.kernel.exec.state import ExecKernelState, exec_enter, exec_error
from lkm.kernel.module.state import KernelState
from lkm.kernel.printk import (
    KERN_INFO,
    KERN_NOTICE,
    LogRecord,
    Printk,
    append_records,
    record_text_max,
)
from lkm.kernel.profile import KernelProfile, ProfileError
from lkm.kernel.store import Snapshot, StateStore, VirtualKernelError
from lkm.kernel.uapi import MODULE_INIT_COMPRESSED_FILE, MODULE_INIT_FLAGS, O_NONBLOCK

__all__ = ["VirtualKernel", "VirtualKernelError", "prepare_module_dir"]

FILE_SIZE_MAX = 0x7FFFFFFF  # INT_MAX: kernel_read_file()'s limit


def prepare_module_dir(profile: KernelProfile, dest_root: str | os.PathLike[str],
                       log: Any = None) -> str | None:
    """A module directory with depmod's indexes for the profile's tree.

    The tree's own directory when it has modules.dep.bin; else
    ``dest_root/lib/modules/<release>``, whose ``kernel`` links to the tree's modules
    and whose indexes lkm's depmod writes (the tree is never written).
    """
    src = profile.module_dir
    if src is None:
        return None
    if (Path(src) / "modules.dep.bin").is_file():
        return src
    from lkm import depmod as dm

    out = Path(dest_root) / "lib" / "modules" / profile.release
    if (out / "modules.dep.bin").is_file():
        return str(out)
    out.mkdir(parents=True, exist_ok=True)
    for name in ("kernel", "updates", "extra", "modules.builtin", "modules.builtin.modinfo",
                 "modules.order"):
        target = Path(src) / name
        link = out / name
        if target.exists() and not link.exists():
            os.symlink(target, link)

    def quiet(prio: int, msg: str) -> None:
        if log is not None:
            log(prio, msg)

    try:
        dm.run(str(out), profile.release, log=quiet)
    except (LkmError, OSError) as e:
        raise VirtualKernelError(f"depmod of {src} failed: {e}") from e
    return str(out)



class VirtualKernel(KernelBackend):
    """A kernel whose modules, taints, parameters and log live in a directory.

    ``state_type`` is the :class:`KernelState` class the state is read into: a subclass
    with its own symbol_address/run_init/run_exit hooks runs module code.
    """

    state_type: type[KernelState] = ExecKernelState

    def __init__(self, directory: str | os.PathLike[str], profile: KernelProfile) -> None:
        self.dir = Path(directory)
        self.profile = profile
        self.comm = "insmod"
        self.store = StateStore(self.dir, profile, self.state_type)

    # -- creation and opening ------------------------------------------------------------
    @classmethod
    def create(cls, directory: str | os.PathLike[str], source: str | os.PathLike[str] | None = None,
               cmdline: str = "", profile: KernelProfile | None = None,
               init_results: dict[str, int] | None = None,
               depmod: bool = True) -> VirtualKernel:
        """Make DIR a fresh virtual kernel of the kernel at ``source`` (or ``profile``)."""
        d = Path(directory)
        if profile is None:
            if source is None:
                raise VirtualKernelError("no kernel given")
            from lkm.kernel.profile import load_cached

            try:
                profile = load_cached(source)
            except ProfileError as e:
                raise VirtualKernelError(str(e)) from e
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise VirtualKernelError(f"{d}: {e.strerror}") from e
        if depmod and profile.module_dir is not None:
            profile.module_dir = prepare_module_dir(profile, d)
        vk = cls(d, profile)
        with vk.store.lock():
            profile.save(d / "profile.json")
            k = vk.state_type(profile)
            k.sig_enforce = profile.enabled("MODULE_SIG_FORCE")
            boot_lines = apply_cmdline(k, cmdline)
            if init_results:
                k.init_results.update(init_results)
            snap = Snapshot(k, [], time.time(), 0)
            vk._append(snap, [(KERN_NOTICE, f"Linux version {profile.release} (lkm virtual "
                                             "kernel)"),
                              (KERN_INFO, f"Command line: {k.cmdline}"), *boot_lines], at=0)
            vk.store.write(snap)
        return vk

    @classmethod
    def open(cls, directory: str | os.PathLike[str]) -> VirtualKernel:
        d = Path(directory)
        if not (d / "state.json").is_file() or not (d / "profile.json").is_file():
            raise VirtualKernelError(f"{d}: not a virtual kernel (run 'lkm virtual create')")
        try:
            profile = KernelProfile.load(d / "profile.json")
        except ProfileError as e:
            raise VirtualKernelError(str(e)) from e
        return cls(d, profile)

    # -- state ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Snapshot]:
        """The store's transaction; module code's memory is kept beside the state (its
        snapshot written before the state that names it)."""
        with self.store.transaction() as snap:
            k = snap.kernel
            if isinstance(k, ExecKernelState):
                k.attach(self.dir, snap.boot)
            try:
                yield snap
            finally:
                if isinstance(k, ExecKernelState):
                    k.commit()

    def state(self) -> KernelState:
        """A snapshot of the state (read under a shared lock)."""
        with self.store.lock(exclusive=False):
            return self.store.read().kernel

    def _append(self, snap: Snapshot, lines: list[tuple[int, str]],
                at: float | None = None) -> None:
        """Store printk records, stamped now (or ``at`` seconds after boot)."""
        now = time.time() if at is None else snap.boot + at
        usec = max(0, int((now - snap.boot) * 1e6))
        snap.seq = append_records(snap.log, snap.seq, lines, usec,
                                  record_text_max(self.profile.version))

    # -- syscalls ------------------------------------------------------------------------
    def finit_module(self, path: str, params: str, flags: int = 0) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if flags & ~MODULE_INIT_FLAGS:
                raise KernelError(errno.EINVAL)
            if not stat.S_ISREG(st.st_mode) or st.st_size <= 0:
                raise KernelError(errno.EINVAL)
            if st.st_size > FILE_SIZE_MAX:
                raise KernelError(errno.EFBIG)
            with os.fdopen(os.dup(fd), "rb") as f:
                data = f.read()
        finally:
            os.close(fd)
        self._load_image(data, params, flags, path)

    def init_module(self, image: bytes, params: str) -> None:
        if len(image) < 64:
            raise KernelError(errno.ENOEXEC)
        self._load_image(bytes(image), params, 0, None)

    def _load_image(self, data: bytes, params: str, flags: int, path: str | None) -> None:
        from lkm.kernel.module.main import load_module  # not needed to read the views

        with self._transaction() as snap:
            k = snap.kernel
            if k.modules_disabled:
                raise KernelError(errno.EPERM)
            log = Printk(k.once)
            exec_enter(k, log, self.comm)
            try:
                if flags & MODULE_INIT_COMPRESSED_FILE:
                    data = self._decompress(data, log)
                load_module(k, data, params.split("\0", 1)[0], flags, comm=self.comm,
                            path=path, log=log)
            except KernelError as e:
                missing = exec_error(k)
                if missing is not None and e.errno == errno.ENOSYS:
                    raise missing from None
                raise
            finally:
                self._append(snap, log.records)

    def _decompress(self, data: bytes, log: Printk) -> bytes:
        """kernel/module/decompress.c: the kernel's one format, checked by its magic."""
        kind = self.profile.compression
        if kind is None:
            raise KernelError(errno.EOPNOTSUPP)
        if detect(data) != kind:
            log.err(f"not a{'n' if kind == 'xz' else ''} {kind} compressed module")
            raise KernelError(errno.EINVAL, messages=log.lines)
        try:
            return decompress(data, kind)
        except CompressionError as e:
            log.err(f"decompression failed with status {e}")
            raise KernelError(errno.EINVAL, messages=log.lines) from None

    def delete_module(self, name: str, flags: int = O_NONBLOCK) -> None:
        from lkm.kernel.module.main import delete_module

        with self._transaction() as snap:
            k = snap.kernel
            if k.modules_disabled:
                raise KernelError(errno.EPERM)
            log = Printk(k.once)
            exec_enter(k, log, "rmmod")
            try:
                delete_module(k, name, flags, log)
            finally:
                self._append(snap, log.records)

    def release(self) -> str:
        return self.profile.release

    def module_dir(self) -> str | None:
        return self.profile.module_dir

    def clear_log(self) -> None:
        """dmesg -C: empty the log buffer."""
        with self.store.transaction() as snap:
            snap.log = []

    def log_records(self) -> list[LogRecord]:
        with self.store.lock(exclusive=False):
            snap = self.store.read()
        return [r for r in snap.log if not r.pending]

    # -- views ---------------------------------------------------------------------------
    def read_text(self, path: str) -> str:
        p = views.normalize(path)
        if p.startswith("/sys/module/") and "/parameters/" in p:
            with self._transaction() as snap:  # a parameter's get may be module code
                log = Printk(snap.kernel.once)
                exec_enter(snap.kernel, log, self.comm)
                try:
                    return views.read(snap.kernel, p)
                finally:
                    self._append(snap, log.records)
        return views.read(self.state(), p)

    def list_dir(self, path: str) -> list[str]:
        return views.listdir(self.state(), views.normalize(path))

    def write_text(self, path: str, value: str) -> None:
        """A write(2) to a /sys or /proc file; raises OSError with the kernel's errno."""
        p = views.normalize(path)
        with self._transaction() as snap:
            log = Printk(snap.kernel.once)
            exec_enter(snap.kernel, log, self.comm)
            try:
                views.write(snap.kernel, p, value, log)
            finally:
                self._append(snap, log.records)
