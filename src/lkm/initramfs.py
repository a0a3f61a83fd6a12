"""The initramfs ``lkm vm`` boots: a static busybox, an /init and the 9p/virtio modules.

The archive is "newc" cpio (the format the kernel unpacks: init/initramfs.c), not
compressed (nothing to inflate in the guest, which under TCG costs more than the few
megabytes QEMU loads).  The /init (:data:`INIT`) loads the modules, mounts the host's
root and the job directory over virtio-9p, builds the chroot lkm.vm describes, runs the
job's command in it and leaves the results in the job directory; its progress goes to
the second serial port as :data:`lkm.vm.MARK` lines (START, DONE, FAIL).  While the
command runs, every kernel message is also printed on the console (console_loglevel 8),
so that a hang or a panic shows what came before it.
"""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Mapping, Sequence
from pathlib import Path

from lkm.vm import MARK, MissingTool, VmError

# What the guest needs to mount the host's root: these modules, after their dependencies.
HOSTFS_MODULES = ("virtio_pci", "9pnet_virtio", "9p")


def boot_modules(moddir: Path, wanted: Sequence[str] = HOSTFS_MODULES) -> list[tuple[str, bytes]]:
    """The modules to insmod for ``wanted``, dependencies first (modules.dep lists them
    farthest last), each once, as decompressed ELF images; built-in ones are skipped."""
    from lkm.compress import read_module
    from lkm.kmod.moddir import ModuleDir
    from lkm.kmod.names import normalize_name

    order: list[tuple[str, bytes]] = []
    seen: set[str] = set()
    with ModuleDir(str(moddir)) as md:
        for name in wanted:
            entry = md.lookup_name(name)
            if entry is None or entry.path is None:
                if md.is_builtin(name):
                    continue
                raise VmError(f"{name}: neither a module of {moddir} nor built in")
            for path in [*reversed(entry.deps), entry.path]:
                mod = normalize_name(os.path.basename(path))
                if mod in seen:
                    continue
                seen.add(mod)
                data, _kind = read_module(path)
                try:
                    order.append((mod, bytes(data)))
                finally:
                    close = getattr(data, "close", None)
                    if close is not None:
                        close()
    return order


def cpio_entry(name: str, mode: int, data: bytes = b"", ino: int = 0,
               rdev: tuple[int, int] = (0, 0)) -> bytes:
    """One member of a "newc" cpio archive (the initramfs format the kernel unpacks)."""
    nameb = name.encode() + b"\0"
    fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(nameb), 0)
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + nameb
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)


def cpio_archive(members: Sequence[tuple[str, int, bytes]],
                 devices: Mapping[str, tuple[int, int]] | None = None) -> bytes:
    """A newc archive of (name, mode, data) members and character devices, with trailer."""
    out = [cpio_entry(n, m, d, ino=i + 1) for i, (n, m, d) in enumerate(members)]
    for j, (name, rdev) in enumerate((devices or {}).items()):
        out.append(cpio_entry(name, 0o20600, ino=len(members) + j + 1, rdev=rdev))
    out.append(cpio_entry("TRAILER!!!", 0))
    return b"".join(out)


INIT = r"""#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
ctl=/dev/ttyS1
stty -F $ctl raw -echo 2>/dev/null
say() { echo "@MARK@$*" >$ctl; }
fail() { say "FAIL $*"; sync; poweroff -f; }
while read -r m; do insmod "/boot-mods/$m.ko" || fail "cannot load $m"; done </boot-mods/order
o=trans=virtio,version=9p2000.L,msize=262144
mount -t 9p -o $o,cache=none lkmjob /job || fail "cannot mount the job directory"
mount -t 9p -o $o,ro,cache=loose hostroot /host || fail "cannot mount the host's root"
. /job/env
mount --bind "/host$LKM_VM_MODDIR" /moddir || fail "no module directory $LKM_VM_MODDIR"
mkdir -p /dev/shm /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm && mount -t devpts devpts /dev/pts
for d in proc sys; do mount --bind /$d /host/$d || fail "cannot mount /$d"; done
mount --rbind /dev /host/dev || fail "cannot mount /dev"
mount -t tmpfs -o mode=755 modules /host/lib/modules || fail "cannot mount /lib/modules"
mkdir "/host/lib/modules/$LKM_VM_RELEASE"
mount --bind /moddir "/host/lib/modules/$LKM_VM_RELEASE" || fail "cannot mount the modules"
mount -t tmpfs -o mode=1777 scratch /host/var/tmp || fail "cannot mount /var/tmp"
mount -t tmpfs -o mode=755 run /host/run || fail "cannot mount /run"
mkdir /host/run/lkm-vm && cp /job/cmd /job/script /host/run/lkm-vm/ 2>/dev/null
[ -f /host/run/lkm-vm/cmd ] || fail "cannot copy the command"
dmesg -r >/job/dmesg.before
echo 8 >/proc/sys/kernel/printk
say "START $(cut -d' ' -f1 /proc/uptime)"
env -i /bin/chroot /host /bin/sh /run/lkm-vm/cmd </dev/null >/job/stdout 2>/job/stderr
echo $? >/job/status
dmesg -r >/job/dmesg.after
cat /proc/sys/kernel/tainted >/job/tainted
cat /proc/modules >/job/modules
say DONE
sync
poweroff -f
""".replace("@MARK@", MARK)


def find_busybox() -> Path:
    """The static busybox the initramfs runs (Debian's busybox-static)."""
    found = shutil.which("busybox")
    for cand in ("/bin/busybox", "/usr/bin/busybox", found):
        if cand and Path(cand).is_file():
            if not _is_static(Path(cand)):
                raise MissingTool(f"{cand} is not statically linked", "busybox-static")
            return Path(cand)
    raise MissingTool("busybox not found", "busybox-static")


def _is_static(path: Path) -> bool:
    """Whether an ELF64 executable has no program interpreter (PT_INTERP)."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head[:5] != b"\x7fELF\x02":
            return False
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3
               for i in range(len(table) // max(phentsize, 1)))


def build(moddir: Path, busybox: Path | None = None) -> bytes:
    """The initramfs for the kernel of module directory ``moddir``."""
    mods = boot_modules(moddir)
    busybox = busybox or find_busybox()
    members: list[tuple[str, int, bytes]] = [
        (d, 0o40755, b"") for d in ("bin", "dev", "proc", "sys", "job", "host", "moddir",
                                    "boot-mods", "tmp", "root")]
    members.append(("bin/busybox", 0o100755, busybox.read_bytes()))
    members.append(("init", 0o100755, INIT.encode()))
    members += [(f"boot-mods/{name}.ko", 0o100644, image) for name, image in mods]
    members.append(("boot-mods/order", 0o100644, "".join(f"{n}\n" for n, _ in mods).encode()))
    return cpio_archive(members, {"dev/console": (5, 1), "dev/null": (1, 3)})
