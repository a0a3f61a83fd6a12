"""The virtual kernel: a kernel's module state kept in a directory.

``VirtualKernel.create(DIR, source)`` builds a kernel profile and an empty state
("booted" now, with a command line).  Every operation takes an exclusive
``fcntl`` lock on ``DIR/lock``, reads ``DIR/state.json``, applies the kernel's
logic (:mod:`lkm.kernel.loader`) and writes the new state to a temporary file
renamed over the old one, so concurrent lkm processes serialise and a killed
process leaves either the old or the new state.  Views are rendered as the
kernel renders them (``/proc/modules``, ``/sys/module/...``); readdir order is
kernfs's (name hash).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lkm.compress import decompress, detect
from lkm.errors import CompressionError, KernelError, LkmError
from lkm.kernel import taint as T
from lkm.kernel.backend import KernelBackend
from lkm.kernel.exec.state import ExecKernelState, exec_enter, exec_error
from lkm.kernel.module.main import (
    STATE_PROC,
    STATE_SYSFS,
    delete_module,
    kmsg_escape,
    load_module,
)
from lkm.kernel.module.state import MODULE_STATE_UNFORMED, KernelState, Module
from lkm.kernel.params import kstrtobool, param_get, sysfs_store
from lkm.kernel.printk import KERN_INFO, KERN_NOTICE, LogRecord, Printk, record_text_max
from lkm.kernel.profile import KernelProfile, ProfileError
from lkm.kernel.uapi import (
    MODULE_INIT_COMPRESSED_FILE,
    MODULE_INIT_IGNORE_MODVERSIONS,
    MODULE_INIT_IGNORE_VERMAGIC,
    O_NONBLOCK,
)

STATE_FORMAT = 1
LOG_MAX = 20000  # records kept (the kernel's ring buffer is bounded too)


class VirtualKernelError(LkmError):
    """A directory is not (or cannot become) a virtual kernel."""


# -- kernfs readdir order -----------------------------------------------------------------

def kernfs_name_hash(name: str) -> int:
    """fs/kernfs/dir.c kernfs_name_hash() with a NULL namespace."""
    h = 0
    m = (1 << 64) - 1
    for b in name.encode("utf-8", "surrogateescape"):
        c = b if b < 0x80 else (b - 256) & m  # plain char is signed on x86
        h = ((h + (c << 4) + (c >> 4)) * 11) & m
    h = ((h * 0x61C8864680B583EB) & m) >> 32
    h &= 0x7FFFFFFF
    if h < 2:
        h += 2
    if h >= 0x7FFFFFFF:
        h = 0x7FFFFFFE
    return h


def kernfs_order(names: list[str]) -> list[str]:
    """Entries in the order readdir returns them from a sysfs directory."""
    return sorted(set(names), key=lambda n: (kernfs_name_hash(n), n))


# -- the kernel command line --------------------------------------------------------------

def apply_cmdline(k: KernelState, cmdline: str) -> list[tuple[int, str]]:
    """Boot-time settings the loader depends on; returns the boot log lines they print."""
    from lkm.kernel.params import next_arg, skip_spaces

    k.cmdline = cmdline.strip()
    lines: list[tuple[int, str]] = []
    args = skip_spaces(cmdline)
    while args:
        param, val, args = next_arg(args)
        p = param.replace("-", "_")
        if p == "module.sig_enforce":
            rv, b = kstrtobool("1" if val is None else val)
            if rv == 0 and b:
                k.sig_enforce = True
        elif p == "module_blacklist":
            k.module_blacklist = val
        elif p == "lockdown" and val in ("integrity", "confidentiality"):
            k.lockdown = 1 if val == "integrity" else 2
            lines.append((KERN_NOTICE, "Kernel is locked down from command line; see man "
                                       "kernel_lockdown.7"))
        elif p == "nomodule":
            k.modules_disabled = True
        elif (p == "mitigations" and val == "off") or (p in ("spectre_v2", "nospectre_v2")
                                                       and val in (None, "off")):
            k.spectre_v2_mitigated = False
    return lines


# -- state persistence --------------------------------------------------------------------

def _state_to_json(k: KernelState, log: list[LogRecord], boot: float, seq: int
                   ) -> dict[str, Any]:
    return {"format": STATE_FORMAT, "boot": boot, "seq": seq, **k.to_json(),
            "log": [r.to_json() for r in log[-LOG_MAX:]]}


def _state_from_json(d: dict[str, Any], profile: KernelProfile,
                     state_type: type[KernelState] = KernelState
                     ) -> tuple[KernelState, list[LogRecord], float, int]:
    if d.get("format") != STATE_FORMAT:
        raise VirtualKernelError("unsupported state format")
    k = state_type(profile)
    k.load_json(d)
    log = [LogRecord.from_json(r) for r in d["log"]]
    return k, log, float(d["boot"]), int(d["seq"])


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


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
        d = dm.Depmod(str(out), profile.release, log=quiet)
        d.cfg = dm.load_config(profile.release, None, quiet)
        d.search()
        d.build_array()
        d.load()
        d.write(str(out))
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
        self._k: KernelState | None = None
        self._log: list[LogRecord] = []
        self._boot = 0.0
        self._seq = 0
        self._key: tuple[int, int, int] | None = None

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
        with vk._lock():
            profile.save(d / "profile.json")
            k = vk.state_type(profile)
            k.sig_enforce = profile.enabled("MODULE_SIG_FORCE")
            boot_lines = apply_cmdline(k, cmdline)
            if init_results:
                k.init_results.update(init_results)
            vk._k, vk._boot, vk._seq = k, time.time(), 0
            vk._log = []
            vk._append([(KERN_NOTICE, f"Linux version {profile.release} (lkm virtual kernel)"),
                        (KERN_INFO, f"Command line: {k.cmdline}"), *boot_lines], at=0)
            vk._save()
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

    # -- locking and state ---------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self, exclusive: bool = True) -> Iterator[None]:
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def _load(self, fresh: bool = False) -> KernelState:
        """Read state.json (parsed again only when the file changed)."""
        path = self.dir / "state.json"
        try:
            with open(path, "rb") as f:
                st = os.fstat(f.fileno())
                key = (st.st_ino, st.st_mtime_ns, st.st_size)
                if not fresh and self._k is not None and key == self._key:
                    return self._k
                d = json.loads(f.read())
            self._k, self._log, self._boot, self._seq = _state_from_json(
                d, self.profile, self.state_type)
            self._key = key
        except (OSError, ValueError, KeyError, TypeError, AssertionError, AttributeError,
                IndexError) as e:
            raise VirtualKernelError(f"{self.dir}: corrupt state: {e}") from e
        return self._k

    def _save(self) -> None:
        assert self._k is not None
        data = json.dumps(_state_to_json(self._k, self._log, self._boot, self._seq),
                          separators=(",", ":")).encode()
        _write_atomic(self.dir / "state.json", data)

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[KernelState]:
        with self._lock():
            k = self._load(fresh=True)
            if isinstance(k, ExecKernelState):
                k.attach(self.dir, self._boot)
            try:
                yield k
            finally:
                if isinstance(k, ExecKernelState):
                    k.commit()
                self._save()
                self._key = None

    def state(self) -> KernelState:
        """A snapshot of the state (read under a shared lock)."""
        with self._lock(exclusive=False):
            return self._load()

    def _append(self, lines: list[tuple[int, str]], at: float | None = None) -> None:
        """Store printk records.  A text longer than a record holds is cut, loses its
        final newline and so stays unfinalized (unseen by readers) until the next record,
        as the kernel's printk ring buffer does."""
        if not lines:
            return
        now = time.time() if at is None else self._boot + at
        usec = max(0, int((now - self._boot) * 1e6))
        if self._log and self._log[-1].pending:
            last = self._log[-1]
            self._log[-1] = LogRecord(last.level, last.text, last.seq, last.usec)
        limit = record_text_max(self.profile.version)
        for level, text in lines:
            if self._log and self._log[-1].pending:
                last = self._log[-1]
                self._log[-1] = LogRecord(last.level, last.text, last.seq, last.usec)
            self._seq += 1
            esc = kmsg_escape(text[:limit])
            self._log.append(LogRecord(level, esc, self._seq, usec, len(text) > limit))

    # -- syscalls ------------------------------------------------------------------------
    def finit_module(self, path: str, params: str, flags: int = 0) -> None:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            import stat

            st = os.fstat(fd)
            if flags & ~(MODULE_INIT_IGNORE_MODVERSIONS | MODULE_INIT_IGNORE_VERMAGIC
                         | MODULE_INIT_COMPRESSED_FILE):
                raise KernelError(errno.EINVAL)
            if not stat.S_ISREG(st.st_mode) or st.st_size <= 0:
                raise KernelError(errno.EINVAL)
            if st.st_size > 0x7FFFFFFF:
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
        with self._transaction() as k:
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
                self._append(log.records)

    def _decompress(self, data: bytes, log: Printk) -> bytes:
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
        with self._transaction() as k:
            if k.modules_disabled:
                raise KernelError(errno.EPERM)
            log = Printk(k.once)
            exec_enter(k, log, "rmmod")
            try:
                delete_module(k, name, flags, log)
            finally:
                self._append(log.records)

    def release(self) -> str:
        return self.profile.release

    def module_dir(self) -> str | None:
        return self.profile.module_dir

    def clear_log(self) -> None:
        """dmesg -C: empty the log buffer."""
        with self._transaction():
            self._log = []

    def log_records(self) -> list[LogRecord]:
        with self._lock(exclusive=False):
            self._load()
        return [r for r in self._log if not r.pending]

    # -- views ---------------------------------------------------------------------------
    def read_text(self, path: str) -> str:
        p = _norm(path)
        if "/parameters/" in p and p.startswith("/sys/module/"):
            with self._transaction() as k:  # a parameter's get may be module code
                log = Printk(k.once)
                exec_enter(k, log, self.comm)
                try:
                    return render(k, p)
                finally:
                    self._append(log.records)
        k = self.state()
        return render(k, p)

    def list_dir(self, path: str) -> list[str]:
        k = self.state()
        return listing(k, _norm(path))

    def write_text(self, path: str, value: str) -> None:
        """A write(2) to a /sys or /proc file; raises OSError with the kernel's errno."""
        p = _norm(path)
        with self._transaction() as k:
            log = Printk(k.once)
            exec_enter(k, log, self.comm)
            try:
                write(k, p, value, log)
            finally:
                self._append(log.records)


def _norm(path: str) -> str:
    parts = [x for x in path.split("/") if x and x != "."]
    out: list[str] = []
    for x in parts:
        if x == "..":
            if out:
                out.pop()
        else:
            out.append(x)
    return "/" + "/".join(out)


LOCKDOWN_PATH = "/sys/kernel/security/lockdown"
LOCKDOWN_LEVELS = ("none", "integrity", "confidentiality")


def _oserr(err: int, path: str) -> OSError:
    return OSError(err, os.strerror(err), path)


def _live_modules(k: KernelState) -> list[Module]:
    return [m for m in k.modules if m.state != MODULE_STATE_UNFORMED]


def proc_modules_line(m: Module) -> str:
    """One line of /proc/modules (m_show)."""
    users = "".join(f"{u}," for u in m.sources)
    if m.has_init and not m.has_exit:
        users += "[permanent],"
    line = (f"{m.name} {m.core_size + m.init_size} {m.refcount()} {users or '-'} "
            f"{STATE_PROC.get(m.state, 'Live')} 0x{m.base:016x}")
    if m.taints:
        flags = T.module_flags_taint(m.taints)
        if m.state == 2:
            flags += "-"
        elif m.state == 1:
            flags += "+"
        line += f" ({flags})"
    return line + "\n"


def _module_entries(m: Module) -> dict[str, str | None]:
    """name -> file text (None for a directory) of /sys/module/<loaded module>/."""
    e: dict[str, str | None] = {
        "coresize": f"{m.core_size}\n", "initsize": f"{m.init_size}\n",
        "initstate": f"{STATE_SYSFS.get(m.state, 'unknown')}\n", "refcnt": f"{m.refcount()}\n",
        "taint": T.module_flags_taint(m.taints) + "\n", "uevent": None, "holders": None,
    }
    e["uevent"] = ""
    if m.version is not None:
        e["version"] = m.version + "\n"
    if m.srcversion is not None:
        e["srcversion"] = m.srcversion + "\n"
    if any(p.perm for p in m.params):
        e["parameters"] = None
    if m.sections:
        e["sections"] = None
    if m.notes:
        e["notes"] = None
    return e


def render(k: KernelState, path: str) -> str:
    """The text of a /proc or /sys file of the virtual kernel."""
    p = path
    if p == "/proc/modules":
        return "".join(proc_modules_line(m) for m in _live_modules(k))
    if p == "/proc/sys/kernel/tainted":
        return f"{k.tainted}\n"
    if p == "/proc/cmdline":
        return k.cmdline + "\n"
    if p == "/proc/sys/kernel/modules_disabled":
        return f"{int(k.modules_disabled)}\n"
    if p == "/sys/module/compression" and k.profile.compression:
        return k.profile.compression + "\n"
    if p == "/sys/module/module/parameters/sig_enforce":
        return "Y\n" if k.sig_enforce else "N\n"
    if p == LOCKDOWN_PATH and k.profile.enabled("SECURITY_LOCKDOWN_LSM"):
        return " ".join(f"[{n}]" if i == k.lockdown else n
                        for i, n in enumerate(LOCKDOWN_LEVELS)) + "\n"
    parts = p.strip("/").split("/")
    if len(parts) >= 3 and parts[0] == "sys" and parts[1] == "module":
        m = k.find_module(parts[2])
        if m is not None:
            return _render_module(m, parts[3:], p, k)
        if parts[2] in k.profile.builtin_sysfs or parts[2] == "module":
            if parts[3:] == ["uevent"]:
                raise _oserr(errno.EACCES, p)
            if len(parts) == 3 or parts[3:] == ["parameters"]:
                raise _oserr(errno.EISDIR, p)
    if p in ("/proc", "/sys", "/sys/module", "/proc/sys", "/proc/sys/kernel"):
        raise _oserr(errno.EISDIR, p)
    raise _oserr(errno.ENOENT, p)


def _render_module(m: Module, rest: list[str], p: str, k: KernelState | None = None) -> str:
    entries = _module_entries(m)
    if not rest:
        raise _oserr(errno.EISDIR, p)
    name = rest[0]
    if name not in entries:
        raise _oserr(errno.ENOENT, p)
    if len(rest) == 1:
        text = entries[name]
        if name == "uevent":
            raise _oserr(errno.EACCES, p)
        if text is None:
            raise _oserr(errno.EISDIR, p)
        return text
    if len(rest) != 2:
        raise _oserr(errno.ENOENT, p)
    leaf = rest[1]
    if name == "parameters":
        for kp in m.params:
            if kp.perm and kp.name == leaf:
                if not kp.perm & 0o444:
                    raise _oserr(errno.EACCES, p)
                shown = k.param_show(m, kp) if isinstance(k, ExecKernelState) else None
                return param_get(kp) if shown is None else shown
    elif name == "holders":
        if leaf in m.sources:
            raise _oserr(errno.EISDIR, p)
    elif name == "sections":
        for sname, addr in m.sections:
            if sname == leaf:
                return f"0x{addr:016x}\n"
    elif name == "notes":
        for nname, data in m.notes:
            if nname == leaf:
                return data.decode("latin-1")
    raise _oserr(errno.ENOENT, p)


def listing(k: KernelState, path: str) -> list[str]:
    """The entries of a /sys directory of the virtual kernel, in readdir order."""
    parts = path.strip("/").split("/")
    if parts == ["sys", "module"]:
        names = [m.name for m in _live_modules(k)] + list(k.profile.builtin_sysfs) + ["module"]
        if k.profile.compression:
            names.append("compression")
        return kernfs_order(names)
    if len(parts) >= 3 and parts[:2] == ["sys", "module"]:
        m = k.find_module(parts[2])
        if m is not None:
            entries = _module_entries(m)
            if len(parts) == 3:
                return kernfs_order(list(entries))
            sub = parts[3]
            if len(parts) == 4 and sub in entries and entries[sub] is None:
                if sub == "holders":
                    return kernfs_order(m.sources)
                if sub == "parameters":
                    return kernfs_order([p.name for p in m.params if p.perm])
                if sub == "sections":
                    return kernfs_order([s for s, _ in m.sections])
                if sub == "notes":
                    return kernfs_order([n for n, _ in m.notes])
            if len(parts) == 4 and sub in entries:
                raise _oserr(errno.ENOTDIR, path)
        elif parts[2] in k.profile.builtin_sysfs or parts[2] == "module":
            if len(parts) == 3:
                return kernfs_order(["parameters", "uevent"])
            if parts[3:] == ["parameters"] and parts[2] == "module":
                return ["sig_enforce"]
            if parts[3:] == ["parameters"]:
                return []
    raise _oserr(errno.ENOENT, path)


def write(k: KernelState, path: str, value: str, log: Printk) -> None:
    if isinstance(k, ExecKernelState) and k.proc_write(path, value):
        return
    """A write to a /sys or /proc file, validated as the kernel does."""
    if path == "/sys/module/module/parameters/sig_enforce":
        rv, b = kstrtobool(value)
        if rv:
            raise _oserr(-rv, path)
        if not b and k.sig_enforce:
            raise _oserr(errno.EROFS, path)
        if b:
            k.sig_enforce = True
        return
    if path == LOCKDOWN_PATH and k.profile.enabled("SECURITY_LOCKDOWN_LSM"):
        state = value[:-1] if value.endswith("\n") else value
        err = errno.EINVAL
        for i, n in enumerate(LOCKDOWN_LEVELS):
            if state == n:
                if k.lockdown >= i:
                    err = errno.EPERM
                else:
                    k.lockdown = i
                    log.notice("Kernel is locked down from securityfs; see man "
                               "kernel_lockdown.7")
                    err = 0
        if err:
            raise _oserr(err, path)
        return
    if path == "/proc/sys/kernel/modules_disabled":
        # proc_dointvec_minmax with min = max = 1: only "1" is accepted, for good
        from lkm.kernel.params import kstrtoll

        rv, v = kstrtoll(value.strip(), 10)
        if rv or v != 1:
            raise _oserr(errno.EINVAL, path)
        k.modules_disabled = True
        return
    if path == "/proc/sys/kernel/tainted":
        from lkm.kernel.params import kstrtoull

        rv, v = kstrtoull(value.strip(), 10)
        if rv:
            raise _oserr(errno.EINVAL, path)
        for i in range(len(T.TAINT_FLAGS)):
            if v >> i & 1:
                k.add_taint(i, log)
        return
    parts = path.strip("/").split("/")
    if len(parts) == 5 and parts[:2] == ["sys", "module"] and parts[3] == "parameters":
        m = k.find_module(parts[2])
        if m is not None:
            for kp in m.params:
                if kp.perm and kp.name == parts[4]:
                    def unsafe(_kp: object) -> None:
                        k.add_taint(T.TAINT_USER, log)
                    stored = k.param_store(m, kp, value, log) \
                        if isinstance(k, ExecKernelState) else None
                    rv = sysfs_store(kp, value, log, on_unsafe=unsafe) if stored is None \
                        else stored
                    if rv:
                        raise _oserr(-rv, path)
                    return
    try:
        render(k, path)
    except OSError:
        raise
    raise _oserr(errno.EACCES, path)
