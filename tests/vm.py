"""Boot a fetched Debian kernel under QEMU (TCG) and run a shell script as root in it.

``run_in_vm(tree, script)`` boots the kernel of ``tree.vmlinuz`` (by default the vmlinux
inside it, through its PVH entry: see ``kernel_image``) with an initramfs holding a
static busybox, an /init and the tree's own 9p/virtio modules (decompressed on the
host, loaded with their dependencies first). The guest then sees:

- ``/host``: the host's root file system, read-only over virtio-9p (cache=loose: fast,
  but host files changed during the run may not be seen), with the guest's
  /proc, /sys and /dev bind-mounted on /host/proc, /host/sys, /host/dev, so that
  ``chroot /host /sbin/modprobe ...`` (kmod) and ``chroot /host "$LKM" ...`` (lkm)
  act on the guest kernel;
- ``/host/lib/modules``: a tmpfs holding only ``<release>``, a bind mount of the
  module tree given as ``moddir`` (default: the tree's kmod-indexed copy,
  ``tree.kmod_moddir``, so modprobe works at once; ``tree_with_modules`` makes one
  holding test modules too). Inside the chroot, the tools find the tree at their
  default place; no -b/-d options are needed. With ``writable_modules=True`` it is
  an overlay (tmpfs upper), so depmod can write;
- ``/host/var/tmp``: a writable tmpfs scratch (the host's /var/tmp is hidden);
- the job directory: a host directory shared read-write, at ``/job`` in the guest
  and at its own host path (``$JOB``) inside the chroot. ``files`` are written
  there before the boot; what the script writes there is on the host afterwards
  (pass ``workdir`` to keep it).

The script runs under busybox sh with cwd /job, stdin /dev/null, its stdout and
stderr on a second serial port (/dev/ttyS1, raw) between start and exit markers;
the kernel console (ttyS0) is kept apart in ``VmResult.console``. ``chroot``
changes to /, so use absolute paths ($JOB/...) in chrooted commands.

Exported to the script: RELEASE, TREE (the tree's root), MODDIR
(/lib/modules/$RELEASE), JOB, LKM (the lkm executable), LKM_REPO (the repository),
PYTHON (the venv's python), TMPDIR=/var/tmp, PYTHONDONTWRITEBYTECODE=1. Host paths
are the same inside the chroot. The function ``lkm_case NAME`` prints a case marker;
``split_cases`` cuts the output at these markers (many cases per boot).

The host's /etc/modprobe.d applies inside the chroot; a script wanting a clean
configuration can mount a tmpfs over /host/etc/modprobe.d.

No KVM: ``-accel tcg`` (LKM_VM_ACCEL overrides, e.g. ``kvm``).
"""

from __future__ import annotations

import gzip
import lzma
import os
import re
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

REPO = Path(__file__).resolve().parent.parent
START = "@@LKM-VM-START"
EXIT = "@@LKM-VM-EXIT"
FAIL = "@@LKM-VM-FAIL"
CASE = "@@LKM-CASE "
# What the guest needs to mount the host's root: modules named here, with their
# dependencies read from the tree; those built into the kernel are skipped.
HOSTFS_MODULES = ("virtio_pci", "9pnet_virtio", "9p")
# The kernel command line before run_in_vm's ``append``. Under TCG on a busy host the
# clocksource watchdog, the lockup detectors and RCU stall checks print to the kernel
# log at random moments; these options keep them quiet (module loading is unaffected).
BASE_CMDLINE = ("console=ttyS0 quiet panic=-1 tsc=reliable nowatchdog"
                " rcupdate.rcu_cpu_stall_suppress=1")
OVERLAY_MODULES = ("overlay",)


class TreeLike(Protocol):
    """What run_in_vm needs of tests/conftest.py's Tree."""

    @property
    def root(self) -> Path: ...
    @property
    def release(self) -> str: ...
    @property
    def moddir(self) -> Path: ...
    @property
    def kmod_moddir(self) -> Path: ...
    @property
    def vmlinuz(self) -> Path: ...


@dataclass(frozen=True)
class VmResult:
    """The script's exit status and output, and the guest's kernel console."""

    rc: int
    output: str
    console: str
    boot_seconds: float  # guest uptime when the script started
    seconds: float  # host wall-clock time of the whole run


class VmError(RuntimeError):
    """The guest did not run the script to its end (boot failure, crash, timeout)."""

    def __init__(self, message: str, output: str = "", console: str = "") -> None:
        tail = console[-3000:]
        super().__init__(f"{message}\n--- output ---\n{output[-3000:]}\n--- console ---\n{tail}")
        self.output = output
        self.console = console


class VmTimeout(VmError):
    """The guest did not finish within the timeout."""


# --- the initramfs -------------------------------------------------------------------

def _cpio_entry(name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0),
                ino: int = 0) -> bytes:
    """One entry of a "newc" cpio archive."""
    nameb = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(nameb), 0)
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + nameb
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def cpio_archive(entries: list[tuple[str, int, bytes]],
                 devices: Mapping[str, tuple[int, int]] = {}) -> bytes:
    """A newc archive of (name, mode, data) entries and character devices, with trailer."""
    out = [_cpio_entry(n, m, d, ino=i + 1) for i, (n, m, d) in enumerate(entries)]
    for j, (name, rdev) in enumerate(devices.items()):
        out.append(_cpio_entry(name, 0o20600, rdev=rdev, ino=len(entries) + j + 1))
    out.append(_cpio_entry("TRAILER!!!", 0))
    return b"".join(out)


def _module_files(moddir: Path) -> dict[str, Path]:
    """Module name -> file, for every module of a tree."""
    files: dict[str, Path] = {}
    for p in (moddir / "kernel").rglob("*.ko*"):
        name = p.name.split(".ko", 1)[0].replace("-", "_")
        files[name] = p
    return files


def _builtin(moddir: Path) -> set[str]:
    try:
        text = (moddir / "modules.builtin").read_text()
    except FileNotFoundError:
        return set()
    return {Path(line).name.split(".ko", 1)[0].replace("-", "_") for line in text.split()}


def read_module(path: Path) -> bytes:
    """The ELF image of a module file, decompressed (.ko, .ko.xz, .ko.gz, .ko.zst)."""
    data = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(data)
    if path.name.endswith(".gz"):
        return gzip.decompress(data)
    if path.name.endswith(".zst"):
        return subprocess.run(["zstd", "-dcq", str(path)], capture_output=True,
                              check=True).stdout
    return data


_DEPENDS = re.compile(rb"(?:^|\0)depends=([^\0]*)\0")


def load_order(moddir: Path, wanted: tuple[str, ...]) -> list[tuple[str, bytes]]:
    """The modules to insmod (dependencies first) for ``wanted``, with their ELF images."""
    files = _module_files(moddir)
    builtin = _builtin(moddir)
    order: list[tuple[str, bytes]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        if name not in files:
            if name in builtin:
                return
            raise VmError(f"{name}: neither a module nor built into {moddir}")
        image = read_module(files[name])
        m = _DEPENDS.search(image)
        for dep in (m.group(1).decode().split(",") if m and m.group(1) else []):
            visit(dep.replace("-", "_"))
        order.append((name, image))

    for name in wanted:
        visit(name)
    return order


INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
out=/dev/ttyS1
stty -F $out raw -echo
fail() {
  echo "@FAIL@ $*" >$out
  echo "lkm-vm: $*"
  sync; poweroff -f
}
for m in $(cat /boot-mods/order); do
  insmod /boot-mods/$m.ko || fail "insmod $m failed"
done
o9p=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o $o9p,cache=none lkmjob /job || fail "cannot mount /job"
. /job/.env
mount -t 9p -o $o9p,ro,cache=loose hostroot /host || fail "cannot mount /host"
for d in proc sys dev; do mount --bind /$d /host/$d || fail "cannot bind /host/$d"; done
mount --bind "/host$LKM_VM_MODSRC" /moddir || fail "no module tree $LKM_VM_MODSRC"
mount -t tmpfs -o mode=755 modules /host/lib/modules || fail "cannot mount /host/lib/modules"
mkdir -p "/host/lib/modules/$RELEASE"
if [ -n "$LKM_VM_OVERLAY" ]; then
  mkdir -p /rw && mount -t tmpfs rw /rw && mkdir /rw/upper /rw/work
  mount -t overlay -o lowerdir=/moddir,upperdir=/rw/upper,workdir=/rw/work \
    moddir "/host/lib/modules/$RELEASE" || fail "cannot mount the overlay"
else
  mount --bind /moddir "/host/lib/modules/$RELEASE" || fail "cannot bind the module tree"
fi
mount -t tmpfs -o mode=1777 scratch /host/var/tmp || fail "cannot mount /host/var/tmp"
mkdir -p "/host$JOB" && mount --bind /job "/host$JOB" || fail "cannot bind $JOB"
mkdir -p "${JOB%/*}" && ln -s /job "$JOB" || fail "cannot link $JOB to /job"
cd /job
echo "@START@ $(cut -d' ' -f1 /proc/uptime)" >$out
sh -c '. /job/.env; lkm_case() { echo "@CASE@$*"; }; . /job/.script' </dev/null >$out 2>&1
echo "@EXIT@ $?" >$out
sync
poweroff -f
"""
for _token, _marker in (("@FAIL@", FAIL), ("@CASE@", CASE), ("@START@", START), ("@EXIT@", EXIT)):
    INIT = INIT.replace(_token, _marker)

_initramfs_cache: dict[tuple[str, bool], bytes] = {}


def _busybox() -> Path:
    for p in ("/bin/busybox", "/usr/bin/busybox"):
        if Path(p).is_file():
            return Path(p)
    raise VmError("busybox not found (install busybox-static)")


def initramfs(tree: TreeLike, overlay: bool = False) -> bytes:
    """The gzip-compressed initramfs for ``tree`` (cached per tree and process)."""
    key = (str(tree.root), overlay)
    if key not in _initramfs_cache:
        wanted = HOSTFS_MODULES + (OVERLAY_MODULES if overlay else ())
        mods = load_order(tree.moddir, wanted)
        entries: list[tuple[str, int, bytes]] = [
            (d, 0o40755, b"") for d in ("bin", "dev", "proc", "sys", "job", "host", "moddir",
                                        "boot-mods", "tmp", "root")]
        entries.append(("bin/busybox", 0o100755, _busybox().read_bytes()))
        entries.append(("init", 0o100755, INIT.encode()))
        entries += [(f"boot-mods/{name}.ko", 0o100644, image) for name, image in mods]
        entries.append(("boot-mods/order", 0o100644,
                        "".join(f"{name}\n" for name, _ in mods).encode()))
        archive = cpio_archive(entries, {"dev/console": (5, 1), "dev/null": (1, 3)})
        _initramfs_cache[key] = gzip.compress(archive, compresslevel=1)
    return _initramfs_cache[key]


# --- the kernel image --------------------------------------------------------------------

CACHE = Path(os.environ.get("LKM_TEST_CACHE", Path.home() / ".cache" / "lkm-tests"))
_PAYLOADS: tuple[tuple[bytes, str], ...] = ((b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"),
                                            (b"\x1f\x8b\x08", "gzip"))
XEN_ELFNOTE_PHYS32_ENTRY = 18


def _decompress_payload(data: bytes, kind: str) -> bytes:
    if kind == "xz":
        return lzma.LZMADecompressor().decompress(data)
    if kind == "zstd":
        import zstandard
        out: bytes = zstandard.ZstdDecompressor().decompressobj().decompress(data)
        return out
    d = __import__("zlib").decompressobj(31)
    return bytes(d.decompress(data))


def extract_vmlinux(bzimage: bytes) -> bytes | None:
    """The ELF vmlinux inside a bzImage (xz, zstd or gzip payload), or None."""
    for magic, kind in _PAYLOADS:
        at = bzimage.find(magic)
        while at >= 0:
            try:
                out = _decompress_payload(bzimage[at:], kind)
            except Exception:
                out = b""
            if out[:4] == b"\x7fELF":
                return out
            at = bzimage.find(magic, at + 1)
    return None


def has_pvh_entry(vmlinux: bytes) -> bool:
    """Whether an ELF64 vmlinux has the Xen PVH entry note QEMU needs to boot it directly."""
    if vmlinux[:5] != b"\x7fELF\x02":
        return False
    phoff, = struct.unpack_from("<Q", vmlinux, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", vmlinux, 0x36)
    for i in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(
            "<IIQQQQ", vmlinux, phoff + i * phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, ntype = struct.unpack_from("<III", vmlinux, pos)
            name = vmlinux[pos + 12:pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and ntype == XEN_ELFNOTE_PHYS32_ENTRY:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def kernel_image(tree: TreeLike, bzimage: bool = False) -> Path:
    """The file to boot: the vmlinux inside tree.vmlinuz (PVH entry; cached), else vmlinuz.

    QEMU boots an ELF vmlinux with a PVH note directly, skipping the in-guest
    decompression, which takes seconds under TCG (xz: about 8 s for 6.1). The
    kernel is the same; only the boot path differs (no decompressor, so no KASLR
    of the kernel text). ``bzimage=True`` or LKM_VM_BOOT=bzimage boots vmlinuz.
    """
    if bzimage or os.environ.get("LKM_VM_BOOT") == "bzimage":
        return tree.vmlinuz
    st = tree.vmlinuz.stat()
    out = CACHE / "vm" / tree.release / f"vmlinux-{st.st_size}-{st.st_mtime_ns}"
    nopvh = out.with_name(out.name + ".nopvh")
    if out.is_file():
        return out
    if nopvh.exists():
        return tree.vmlinuz
    out.parent.mkdir(parents=True, exist_ok=True)
    vmlinux = extract_vmlinux(tree.vmlinuz.read_bytes())
    if vmlinux is None or not has_pvh_entry(vmlinux):
        nopvh.touch()
        return tree.vmlinuz
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    tmp.write_bytes(vmlinux)
    tmp.replace(out)
    return out


# --- running ---------------------------------------------------------------------------

def lkm_executable() -> Path:
    """The lkm entry point of the repository's venv (or of the running interpreter's)."""
    for p in (REPO / ".venv" / "bin" / "lkm", Path(sys.executable).parent / "lkm"):
        if p.exists():
            return p
    found = shutil.which("lkm")
    return Path(found) if found else REPO / ".venv" / "bin" / "lkm"


def _default_moddir(tree: TreeLike) -> Path:
    if (tree.kmod_moddir / "modules.dep.bin").is_file():
        return tree.kmod_moddir
    return tree.moddir


def _write_files(job: Path, files: Mapping[str, bytes | Path]) -> None:
    for name, content in files.items():
        dst = job / name
        if dst.resolve().parent != job.resolve() and job.resolve() not in dst.resolve().parents:
            raise ValueError(f"{name}: not inside the job directory")
        dst.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            dst.write_bytes(content)
        elif content.is_dir():
            shutil.copytree(content, dst)
        else:
            shutil.copyfile(content, dst)


def tree_with_modules(tree: TreeLike, modules: Mapping[str, Path], dest: Path,
                      subdir: str = "extra", whole: bool = True) -> Path:
    """A module directory for run_in_vm's ``moddir``: ``tree``'s modules (hard links) plus
    ``modules`` (name -> .ko, copied into ``subdir``), indexed by kmod's depmod.

    With ``whole=False`` only the tree's top-level files (modules.order, modules.builtin,
    ...) are taken, not its kernel/ directory: much faster to index (no decompression of
    thousands of modules). Built under ``dest`` (dest/lib/modules/<release>); returns
    that directory.
    """
    src = tree.moddir
    out = dest / "lib" / "modules" / tree.release
    for dirpath, dirnames, filenames in os.walk(src):
        if not whole:
            dirnames.clear()
        target = out / Path(dirpath).relative_to(src)
        target.mkdir(parents=True, exist_ok=True)
        for name in filenames:
            try:
                os.link(Path(dirpath) / name, target / name)
            except OSError:
                shutil.copy2(Path(dirpath) / name, target / name)
    (out / subdir).mkdir(parents=True, exist_ok=True)
    for name, ko in modules.items():
        shutil.copyfile(ko, out / subdir / f"{name}.ko")
    p = subprocess.run(["/sbin/depmod", "-b", str(dest), tree.release], capture_output=True,
                       text=True)
    if p.returncode != 0:
        raise VmError(f"depmod -b {dest} failed: {p.stderr}")
    return out


def _env_file(tree: TreeLike, job: Path, moddir: Path, overlay: bool) -> str:
    lkm = lkm_executable()
    env = {
        "RELEASE": tree.release,
        "TREE": str(tree.root.resolve()),
        "MODDIR": f"/lib/modules/{tree.release}",
        "JOB": str(job.resolve()),
        "LKM": str(lkm),
        "LKM_REPO": str(REPO),
        "PYTHON": str(lkm.parent / "python"),
        "TMPDIR": "/var/tmp",
        "HOME": "/root",
        "PYTHONDONTWRITEBYTECODE": "1",
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "LKM_VM_MODSRC": str(moddir.resolve()),
        "LKM_VM_OVERLAY": "1" if overlay else "",
    }
    return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items())


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _parse_output(raw: str) -> tuple[str | None, int | None, float, str | None]:
    """(output, rc, boot seconds, failure) from the text of the output port."""
    raw = raw.replace("\r\n", "\n")
    fail = next((line[len(FAIL):].strip() for line in raw.splitlines()
                 if line.startswith(FAIL)), None)
    start = raw.find(START)
    if start < 0:
        return None, None, 0.0, fail
    eol = raw.find("\n", start)
    head = raw[start + len(START):eol].strip()
    boot = float(head) if re.fullmatch(r"[0-9.]+", head) else 0.0
    body = raw[eol + 1:]
    ends = list(re.finditer(re.escape(EXIT) + r" (\d+)\n?", body))
    if not ends:
        return body, None, boot, fail
    return body[:ends[-1].start()], int(ends[-1].group(1)), boot, fail


def run_in_vm(tree: TreeLike, script: str, files: Mapping[str, bytes | Path] | None = None,
              append: str = "", timeout: float = 300, *, moddir: Path | None = None,
              writable_modules: bool = False, workdir: Path | None = None,
              memory: int = 1024, bzimage: bool = False) -> VmResult:
    """Boot ``tree``'s kernel, run ``script`` (busybox sh) as root, return its status and output.

    ``append`` is added to the kernel command line; ``files`` (name -> bytes or host
    path) are placed in the job directory; ``moddir`` is the module tree mounted at
    /lib/modules/<release> inside the chroot; ``workdir`` keeps the job directory;
    ``bzimage`` boots vmlinuz itself instead of the vmlinux inside it (see kernel_image).
    """
    begin = time.monotonic()
    image = initramfs(tree, overlay=writable_modules)
    kernel = kernel_image(tree, bzimage)
    moddir = moddir or _default_moddir(tree)
    if not moddir.is_dir():
        raise ValueError(f"{moddir}: no such module directory")
    with tempfile.TemporaryDirectory(prefix="lkm-vm-") as td:
        tmp = Path(td)
        job = workdir if workdir is not None else tmp / "job"
        job.mkdir(parents=True, exist_ok=True)
        _write_files(job, files or {})
        (job / ".script").write_text(script)
        (job / ".env").write_text(_env_file(tree, job, moddir, writable_modules))
        initrd = tmp / "initrd.gz"
        initrd.write_bytes(image)
        console, output = tmp / "console", tmp / "output"
        cmdline = f"{BASE_CMDLINE} {append}".strip()
        cmd = ["qemu-system-x86_64", "-accel", os.environ.get("LKM_VM_ACCEL", "tcg"),
               "-m", str(memory), "-smp", "1", "-nodefaults", "-no-user-config",
               "-display", "none", "-monitor", "none", "-no-reboot",
               "-kernel", str(kernel), "-initrd", str(initrd), "-append", cmdline,
               "-serial", f"file:{console}", "-serial", f"file:{output}",
               "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,"
                          "multidevs=remap",
               "-virtfs", f"local,path={job},mount_tag=lkmjob,security_model=none"]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        try:
            qemu_out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise VmTimeout(f"the guest did not finish within {timeout} s",
                            _read(output), _read(console)) from None
        finally:
            if proc.poll() is None:  # interrupted: do not leave the guest running
                proc.kill()
                proc.wait()
        console_text = _read(console).replace("\r\n", "\n")
        body, rc, boot, fail = _parse_output(_read(output))
    seconds = time.monotonic() - begin
    if fail is not None:
        raise VmError(f"guest set-up failed: {fail}", body or "", console_text)
    if rc is None:
        qemu_msg = qemu_out.decode("utf-8", "replace")
        what = "never reached the script" if body is None else "stopped before the script ended"
        raise VmError(f"the guest {what} (qemu exit {proc.returncode}) {qemu_msg}",
                      body or "", console_text)
    return VmResult(rc, body or "", console_text, boot, seconds)


# --- kernel log helpers ----------------------------------------------------------------

_TIMESTAMP = re.compile(r"^\[\s*\d+\.\d+\]\s?", re.M)
_ADDRESS = re.compile(r"\b(?:0x)?(?:[0-9a-f]{16}|[0-9a-f]{8})\b")


def strip_timestamps(log: str) -> str:
    """Remove dmesg's "[   12.345678] " prefixes."""
    return _TIMESTAMP.sub("", log)


def normalise_addresses(text: str) -> str:
    """Replace kernel addresses (8 or 16 hex digits, with or without 0x) by <addr>."""
    return _ADDRESS.sub("<addr>", text)


def collapse_stack_dumps(lines: list[str]) -> list[str]:
    """Replace each dump_stack() block ("CPU: ... Comm: ..." to "</TASK>") by "<stack dump>"."""
    out: list[str] = []
    inside = False
    for line in lines:
        if not inside and line.startswith("CPU: ") and " Comm: " in line:
            inside = True
            out.append("<stack dump>")
        elif inside:
            inside = line.strip() != "</TASK>"
        else:
            out.append(line)
    return out


# Kernel log lines that come from the emulated machine's timing, not from what a test did.
NOISE = ("clocksource:", "tsc:", "hrtimer: interrupt took", "perf: interrupt took too long",
         "sched: RT throttling activated", "random:", "audit:")


def is_noise(line: str) -> bool:
    """Whether a (timestamp-free) kernel log line is timing noise of the emulated machine."""
    return line.startswith(NOISE)


def normalise_log(log: str, keep_dumps: bool = False, keep_noise: bool = False) -> list[str]:
    """dmesg text as lines without timestamps, addresses, trailing blanks and empty lines;
    stack dumps collapsed to "<stack dump>" unless ``keep_dumps``; NOISE dropped unless
    ``keep_noise``."""
    lines = [line.rstrip() for line in normalise_addresses(strip_timestamps(log)).splitlines()
             if line.strip()]
    if not keep_noise:
        lines = [line for line in lines if not is_noise(line)]
    return lines if keep_dumps else collapse_stack_dumps(lines)


def split_cases(output: str) -> dict[str, str]:
    """Cut script output at ``lkm_case NAME`` markers: NAME -> the text after it."""
    cases: dict[str, str] = {}
    name: str | None = None
    lines: list[str] = []
    for line in output.splitlines(keepends=True):
        if line.startswith(CASE):
            if name is not None:
                cases[name] = "".join(lines)
            name, lines = line[len(CASE):].strip(), []
        elif name is not None:
            lines.append(line)
    if name is not None:
        cases[name] = "".join(lines)
    return cases
