"""Boot a kernel tree's own kernel under QEMU and run one command (or a script) in it.

``run(find_kernel(TREE), ["insmod", "./foo.ko"])`` boots the tree's kernel with an
initramfs (lkm.initramfs) of a static busybox, an /init and the tree's own 9p/virtio
modules.  The guest's /init mounts the host's root file system read-only over
virtio-9p and chroots into it, so that a host path names the same file inside the
guest and the host's programs (kmod's tools, lkm, python) run as they are.  Inside
the chroot:

- /lib/modules holds only ``<release>``: the tree's module directory, with depmod's
  indexes (built by lkm's depmod, next to lkm's kernel profiles, when the tree has
  none: see :func:`_indexed_module_dir`), so ``modprobe NAME`` works at once;
- /proc, /sys, /dev (with /dev/shm and /dev/pts) are the guest's;
- /var/tmp (``$TMPDIR``), /run and /dev/shm are guest tmpfs: the writable scratch.
  Everything else is the host's, read-only (/tmp and /etc/modprobe.d too): nothing
  the command does reaches the host.

The command runs as root under the host's /bin/sh with the host's working directory,
stdin /dev/null, its stdout and stderr collected apart.  The result also holds the
kernel log records that appeared while it ran (with their levels), the taint mask and
/proc/modules afterwards.  KVM is used when /dev/kvm is usable, else TCG.

A few things differ from a normal boot of the package: the kernel is booted through
its PVH entry when it has one (the ELF vmlinux inside vmlinuz, extracted once and
cached: no in-guest decompression, which costs seconds under TCG; so no KASLR of the
kernel text), and the command line starts with :data:`BASE_CMDLINE`.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shlex
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lkm.errors import LkmError
from lkm.kernel.printk import LEVEL_NAMES, LogRecord

# Under emulation on a busy host the clocksource watchdog, the lockup detectors and RCU
# stall checks print at random moments; these options keep them quiet (module loading is
# unaffected).  panic=-1 with QEMU's -no-reboot ends the run at a panic.
BASE_CMDLINE = ("console=ttyS0 quiet panic=-1 tsc=reliable nowatchdog"
                " rcupdate.rcu_cpu_stall_suppress=1")
BOOT_TIMEOUT = 300.0  # seconds from QEMU's start to the command's
MARK = "@@LKM-VM "
PANIC = "Kernel panic - not syncing"
KVM_GET_API_VERSION = 0xAE00  # include/uapi/linux/kvm.h
KVM_CREATE_VM = 0xAE01
KVM_API_VERSION = 12
PR_SET_PDEATHSIG = 1  # include/uapi/linux/prctl.h
XEN_ELFNOTE_PHYS32_ENTRY = 18  # include/xen/interface/elfnote.h: the PVH entry point


class VmError(LkmError):
    """The guest did not run the command to its end.

    ``console`` is the kernel console's text; ``stdout``/``stderr`` what the command had
    printed (if it had started).
    """

    result = "error"

    def __init__(self, message: str, console: str = "", stdout: bytes = b"",
                 stderr: bytes = b"") -> None:
        super().__init__(message)
        self.console = console
        self.stdout = stdout
        self.stderr = stderr

    def console_tail(self, lines: int = 20) -> list[str]:
        """The console's last non-empty lines."""
        return [line for line in self.console.splitlines() if line.strip()][-lines:]

    def to_json(self) -> dict[str, Any]:
        return {"result": self.result, "error": str(self), "console": self.console_tail(),
                "stdout": _text(self.stdout), "stderr": _text(self.stderr)}


class MissingTool(VmError):
    """A program the guest needs is not installed; ``package`` is Debian's package for it."""

    def __init__(self, message: str, package: str) -> None:
        super().__init__(f"{message}: install the Debian package {package}")
        self.package = package


class QemuFailed(VmError):
    """QEMU ended before the guest kernel printed anything (e.g. KVM refused the CPU)."""


class VmTimeout(VmError):
    """The guest did not boot, or the command did not end, in time: the guest was stopped."""

    result = "timeout"


class VmPanic(VmError):
    """The guest kernel panicked."""

    result = "panic"


# --- the kernel -----------------------------------------------------------------------------

@dataclass(frozen=True)
class BootKernel:
    """What a boot needs of a kernel: its image, its release and its module directory."""

    release: str
    vmlinuz: Path
    module_dir: Path  # with depmod's indexes; the guest's /lib/modules/<release>


def find_kernel(spec: str) -> BootKernel:
    """The kernel named as ``lkm check --kernel`` names one: a linux-image tree, a
    vmlinuz (next to its tree), a saved profile or "running" (lkm.kernel.profile)."""
    from lkm import kimage
    from lkm.errors import FormatError
    from lkm.kernel.profile import load_cached

    profile = load_cached(spec)
    if profile.kind == "headers":
        raise VmError(f"{spec}: a linux-headers tree has no kernel image to boot")
    try:
        vmlinuz = kimage.locate_vmlinuz(profile.source)
    except FormatError as e:
        raise VmError(str(e)) from e
    if not vmlinuz.is_file():
        raise VmError(f"{vmlinuz}: No such file or directory")
    moddir = _indexed_module_dir(profile)
    if moddir is None:
        raise VmError(f"{spec}: no module directory (lib/modules/{profile.release}) for "
                      "this kernel: the guest needs its 9p and virtio modules")
    return BootKernel(profile.release, vmlinuz, Path(moddir))


def _indexed_module_dir(profile: Any) -> str | None:
    """The profile's module directory with depmod's indexes: the tree's own when it has
    them, else a copy indexed by lkm's depmod (made once, cached; the tree is never
    written).  The one place this module asks for depmod's work."""
    from lkm.kernel.check import module_dir_for

    return module_dir_for(profile)


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lkm" / "vm"


def has_pvh_entry(vmlinux: bytes) -> bool:
    """Whether an ELF64 vmlinux carries the Xen PVH entry note (QEMU then boots it as is)."""
    if vmlinux[:5] != b"\x7fELF\x02" or len(vmlinux) < 64:
        return False
    phoff, = struct.unpack_from("<Q", vmlinux, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", vmlinux, 0x36)
    for i in range(phnum):
        at = phoff + i * phentsize
        if at + 56 > len(vmlinux):
            return False
        p_type, _flags, p_offset, _va, _pa, p_filesz = struct.unpack_from("<IIQQQQ", vmlinux, at)
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_offset, min(p_offset + p_filesz, len(vmlinux))
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", vmlinux, pos)
            name = vmlinux[pos + 12:pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def boot_image(vmlinuz: Path) -> Path:
    """The file QEMU boots: the vmlinux inside ``vmlinuz`` if it has a PVH entry (extracted
    once, cached by the image's path, size and time), else ``vmlinuz`` itself."""
    from lkm import kimage

    st = vmlinuz.stat()
    key = hashlib.sha256(f"{vmlinuz.resolve()}\0{st.st_size}\0{st.st_mtime_ns}".encode())
    out = _cache_dir() / f"vmlinux-{key.hexdigest()[:24]}"
    nopvh = out.with_name(out.name + ".nopvh")
    if out.is_file():
        return out
    if nopvh.exists():
        return vmlinuz
    try:
        vmlinux = kimage.vmlinux_from_bzimage(vmlinuz.read_bytes())
    except LkmError:
        vmlinux = b""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if not has_pvh_entry(vmlinux):
            nopvh.touch()
            return vmlinuz
        tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
        tmp.write_bytes(vmlinux)
        tmp.replace(out)
    except OSError:  # no cache: boot the compressed image
        return vmlinuz
    return out


# --- the command ----------------------------------------------------------------------------

# host variables the command keeps (the rest of its environment is set below)
PASSED_ENV = ("PATH", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "VIRTUAL_ENV",
              "PYTHONPATH")


def command_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The command's environment: the host's PATH and locale, root's identity, the scratch
    as TMPDIR, and ``extra``."""
    env = {k: os.environ[k] for k in PASSED_ENV if k in os.environ}
    path = env.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(":")
    path += [d for d in ("/usr/local/sbin", "/usr/sbin", "/sbin") if d not in path]
    env.update(PATH=":".join(path), HOME="/root", USER="root", LOGNAME="root", TERM="dumb",
               TMPDIR="/var/tmp", PYTHONDONTWRITEBYTECODE="1", LKM_VM="1")
    env.update(extra or {})
    return env


def command_script(argv: Sequence[str], cwd: str, env: Mapping[str, str],
                   script: bool = False) -> str:
    """The sh script the guest runs in the chroot: the environment, the working directory,
    then ``argv`` (with ``script``: the copied script file run by sh, ``argv`` its
    arguments)."""
    lines = [f"export {k}={shlex.quote(v)}" for k, v in env.items()
             if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", k)]
    why = shlex.quote(f"lkm vm: cannot enter {cwd} in the guest: running in /")
    lines.append(f"cd -- {shlex.quote(cwd)} 2>/dev/null || {{ echo {why} >&2; cd /; }}")
    words = " ".join(shlex.quote(a) for a in argv)
    if script:
        lines.append(f"exec /bin/sh /run/lkm-vm/script {words}".rstrip())
    else:
        lines.append(f"exec {words}")
    return "\n".join(lines) + "\n"


# --- results --------------------------------------------------------------------------------

_RAW = re.compile(r"<(\d+)>(?:\[\s*(\d+)\.(\d+)\] ?)?(.*)")


def parse_raw_log(text: str) -> list[LogRecord]:
    """Records of ``dmesg -r`` output (``<prio>[secs.usecs] text``; prio = facility*8 +
    level, as the syslog(2) buffer gives them: kernel/printk/printk.c info_print_prefix)."""
    records: list[LogRecord] = []
    for line in text.splitlines():
        m = _RAW.fullmatch(line)
        if m is None:
            if records:  # a line without a prefix: part of the previous record
                last = records.pop()
                records.append(LogRecord(last.level, f"{last.text}\n{line}", usec=last.usec))
            continue
        usec = int(m.group(2)) * 1_000_000 + int(m.group(3).ljust(6, "0")[:6]) \
            if m.group(2) else 0
        records.append(LogRecord(int(m.group(1)) & 7, m.group(4), usec=usec))
    return records


def new_records(before: list[LogRecord], after: list[LogRecord]) -> list[LogRecord]:
    """The records of ``after`` not in ``before`` (the log read again later: grown, wrapped
    or cleared meanwhile)."""
    if after[:len(before)] == before:
        return after[len(before):]
    last = before[-1].usec if before else -1
    seen = set(before)
    return [r for r in after if r.usec > last or (r.usec == last and r not in seen)]


@dataclass(frozen=True)
class LoadedModule:
    """A line of /proc/modules (kernel/module/procfs.c m_show)."""

    name: str
    size: int
    refcount: int | None  # None: "-" (no unload support)
    used_by: tuple[str, ...]
    state: str  # Live, Loading, Unloading
    taints: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "size": self.size, "refcount": self.refcount,
                "used_by": list(self.used_by), "state": self.state, "taints": self.taints}


def parse_proc_modules(text: str) -> list[LoadedModule]:
    out = []
    for line in text.splitlines():
        f = line.split()
        if len(f) < 5:
            continue
        taints = f[6].strip("()") if len(f) > 6 else ""
        out.append(LoadedModule(f[0], int(f[1]), int(f[2]) if f[2].isdigit() else None,
                                tuple(d for d in f[3].split(",") if d and d != "-"), f[4],
                                taints))
    return out


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


@dataclass(frozen=True)
class VmResult:
    """What the command did in the guest."""

    status: int  # its exit status (128 + signal when killed)
    stdout: bytes
    stderr: bytes
    log: list[LogRecord]  # kernel log records that appeared while it ran
    tainted: int  # /proc/sys/kernel/tainted afterwards
    modules: list[LoadedModule]  # /proc/modules afterwards
    release: str
    accel: str  # "kvm" or "tcg"
    cmdline: str
    console: str = ""
    boot_seconds: float = 0.0  # host seconds from QEMU's start to the command's
    seconds: float = 0.0  # host wall-clock time of the whole run
    command: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        from lkm.kernel.taint import letters

        return {"result": "exited", "status": self.status, "stdout": _text(self.stdout),
                "stderr": _text(self.stderr),
                "log": [{"level": r.level, "priority": LEVEL_NAMES[r.level],
                         "time": r.usec / 1e6, "text": r.text} for r in self.log],
                "tainted": self.tainted, "taint": letters(self.tainted),
                "modules": [m.to_json() for m in self.modules], "kernel": self.release,
                "accel": self.accel, "cmdline": self.cmdline, "command": self.command,
                "boot_seconds": round(self.boot_seconds, 3), "seconds": round(self.seconds, 3)}


# --- running --------------------------------------------------------------------------------

def kvm_usable() -> bool:
    """Whether the CPU has hardware virtualisation (vmx, svm) and /dev/kvm opens and makes
    a VM (else QEMU emulates: TCG)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f
                          if line.startswith("flags")), [])
    except OSError:
        flags = []
    if "vmx" not in flags and "svm" not in flags:
        return False
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        if fcntl.ioctl(fd, KVM_GET_API_VERSION) != KVM_API_VERSION:
            return False
        os.close(fcntl.ioctl(fd, KVM_CREATE_VM, 0))
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def find_qemu() -> str:
    qemu = shutil.which("qemu-system-x86_64")
    if qemu is None:
        raise MissingTool("qemu-system-x86_64 not found", "qemu-system-x86")
    return qemu


def _opt(path: Path) -> str:
    """A path as a QEMU option value (a comma is doubled)."""
    return str(path).replace(",", ",,")


def qemu_command(qemu: str, image: Path, initrd: Path, cmdline: str, accel: str, memory: int,
                 tmp: Path, job: Path) -> list[str]:
    return [qemu, "-accel", accel, *(["-cpu", "host"] if accel == "kvm" else []),
            "-m", str(memory), "-smp", "1", "-nodefaults", "-no-user-config",
            "-display", "none", "-monitor", "none", "-no-reboot",
            "-kernel", str(image), "-initrd", str(initrd), "-append", cmdline,
            "-chardev", f"file,id=console,path={_opt(tmp / 'console')}", "-serial",
            "chardev:console",
            "-chardev", f"file,id=control,path={_opt(tmp / 'control')}", "-serial",
            "chardev:control",
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,"
                       "multidevs=remap",
            "-virtfs", f"local,path={_opt(job)},mount_tag=lkmjob,security_model=none"]


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def _marks(control: Path) -> list[str]:
    text = _read(control).decode("utf-8", "replace").replace("\r", "")
    return [line[len(MARK):] for line in text.splitlines() if line.startswith(MARK)]


def _wait(proc: subprocess.Popen[bytes], tmp: Path, job: Path, timeout: float,
          boot_timeout: float) -> tuple[list[str], float]:
    """Wait for QEMU to end; stop it at the boot limit or ``timeout`` s after the command
    started.  Returns the guest's marks and the seconds QEMU took to reach the command."""
    begin = time.monotonic()
    started = 0.0
    done = 0.0
    while True:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=0.1)
        marks = _marks(tmp / "control")
        now = time.monotonic()
        if not started and any(m.startswith("START") for m in marks):
            started = now
        if not done and "DONE" in marks:
            done = now
        if proc.returncode is not None:
            return marks, started and started - begin
        why = ""
        if not started and now - begin > boot_timeout:
            why = f"the kernel did not reach the command within {boot_timeout:g} s"
        elif started and not done and now - started > timeout:
            why = f"the command did not end within {timeout:g} s"
        elif done and now - done > 30:  # poweroff did not end QEMU: the results are in
            proc.kill()
            proc.wait()
            return marks, started - begin
        if why:
            proc.kill()
            proc.wait()
            console = _read(tmp / "console").decode("utf-8", "replace")
            raise VmTimeout(f"{why}: guest stopped", console.replace("\r\n", "\n"),
                            _read(job / "stdout"), _read(job / "stderr"))


def run(kernel: BootKernel, argv: Sequence[str], *, script: Path | None = None,
        cmdline: str = "", memory: int = 1024, timeout: float = 120,
        boot_timeout: float = BOOT_TIMEOUT, accel: str = "auto", cwd: str | None = None,
        env: Mapping[str, str] | None = None) -> VmResult:
    """Boot ``kernel`` and run ``argv`` (or ``script`` with ``argv`` as its arguments) as
    root in the guest; see the module's docstring.

    ``cmdline`` is appended to :data:`BASE_CMDLINE`; ``accel`` is "auto" (KVM when usable,
    TCG when not or when QEMU fails to start a KVM guest), "kvm" or "tcg"; ``cwd``
    defaults to the current directory; ``env`` adds variables.  Raises VmTimeout,
    VmPanic, MissingTool or VmError when the command did not run to its end.
    """
    begin = time.monotonic()
    if not argv and script is None:
        raise VmError("no command to run")
    if accel not in ("auto", "kvm", "tcg"):
        raise VmError(f"unknown accelerator '{accel}' (auto, kvm or tcg)")
    script_text = None
    if script is not None:
        try:
            script_text = script.read_bytes()
        except OSError as e:
            raise VmError(f"{script}: {e.strerror}") from e
    qemu = find_qemu()
    image = boot_image(kernel.vmlinuz)
    full_cmdline = f"{BASE_CMDLINE} {cmdline}".strip()
    with tempfile.TemporaryDirectory(prefix="lkm-vm-") as td:
        tmp = Path(td)
        from lkm import initramfs

        (tmp / "initrd").write_bytes(initramfs.build(kernel.module_dir))
        cmd_text = command_script(argv, cwd or os.getcwd(), command_env(env),
                                  script_text is not None)

        def boot(accel: str) -> VmResult:
            job = tmp / f"job-{accel}"
            job.mkdir()
            (job / "env").write_text(f"LKM_VM_RELEASE={shlex.quote(kernel.release)}\n"
                                     f"LKM_VM_MODDIR={shlex.quote(str(kernel.module_dir))}\n")
            (job / "cmd").write_text(cmd_text)
            if script_text is not None:
                (job / "script").write_bytes(script_text)
            cmd = qemu_command(qemu, image, tmp / "initrd", full_cmdline, accel, memory, tmp,
                               job)
            return _result(_boot(cmd, tmp, job, timeout, boot_timeout), job, kernel, accel,
                           full_cmdline, _read(tmp / "console"), begin, argv)

        if accel != "auto":
            return boot(accel)
        if kvm_usable():
            try:
                return boot("kvm")
            except QemuFailed:
                pass
        return boot("tcg")


def _die_with_parent() -> None:
    """In QEMU's process before exec: killed when lkm ends, however it ends."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _boot(cmd: list[str], tmp: Path, job: Path, timeout: float, boot_timeout: float) -> float:
    """Run QEMU to its end; the seconds it took to reach the command (QemuFailed, VmPanic,
    VmError when the command did not end)."""
    for name in ("console", "control"):
        (tmp / name).write_bytes(b"")
    with open(tmp / "qemu.log", "wb") as qlog:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=qlog, stderr=qlog,
                                preexec_fn=_die_with_parent)
    try:
        marks, boot = _wait(proc, tmp, job, timeout, boot_timeout)
    finally:
        if proc.poll() is None:  # interrupted: never leave a guest running
            proc.kill()
            proc.wait()
    if "DONE" not in marks:
        console = _read(tmp / "console").decode("utf-8", "replace").replace("\r\n", "\n")
        _failed(marks, console, _read(tmp / "qemu.log"), proc.returncode, job)
    return boot


def _result(boot: float, job: Path, kernel: BootKernel, accel: str, cmdline: str,
            console: bytes, begin: float, argv: Sequence[str]) -> VmResult:
    """What the guest left in the job directory."""
    def text(name: str) -> str:
        return _read(job / name).decode("utf-8", "replace")

    log = new_records(parse_raw_log(text("dmesg.before")), parse_raw_log(text("dmesg.after")))
    return VmResult(int(text("status") or "255"), _read(job / "stdout"), _read(job / "stderr"),
                    log, int(text("tainted") or "0"), parse_proc_modules(text("modules")),
                    kernel.release, accel, cmdline,
                    console.decode("utf-8", "replace").replace("\r\n", "\n"),
                    boot, time.monotonic() - begin, list(argv))


def _failed(marks: list[str], console: str, qemu_log: bytes, rc: int | None, job: Path) -> None:
    """Raise the error for a guest that ended before its command did."""
    out, err = _read(job / "stdout"), _read(job / "stderr")
    fail = next((m[5:] for m in marks if m.startswith("FAIL ")), None)
    if PANIC in console:
        line = next(ln for ln in console.splitlines() if PANIC in ln)
        raise VmPanic(f"the guest kernel panicked: {line.split(PANIC, 1)[1].lstrip(': ')}",
                      console, out, err)
    if fail is not None:
        raise VmError(f"the guest's set-up failed: {fail}", console, out, err)
    qemu_msg = " ".join(qemu_log.decode("utf-8", "replace").split())
    started = any(m.startswith("START") for m in marks)
    what = "stopped before the command ended" if started else \
        "stopped before the command started"
    error = QemuFailed if not started and not console.strip() else VmError
    raise error(f"the guest {what} (qemu exit {rc}){': ' + qemu_msg if qemu_msg else ''}",
                console, out, err)
