"""The virtual kernel's directory, views and tools: lkm virtual/check/cat/write/dmesg, and the
kmod-compatible tools (insmod, rmmod, lsmod) pointed at it with --virtual.

What the views must equal on a real kernel is checked in test_fidelity.py (QEMU); here:
persistence, locking under concurrent and killed writers, the command lines, outputs
and exit statuses, and errors without tracebacks.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import LKM, Tree
from lkm.kernel.kernfs import kernfs_name_hash, kernfs_order
from lkm.kernel.profile import KernelProfile, load_cached
from lkm.kernel.virtual import VirtualKernel, VirtualKernelError


@pytest.fixture(scope="module")
def profile61(tree61: Tree) -> KernelProfile:
    return load_cached(tree61.root)


@pytest.fixture
def vk(tmp_path: Path, profile61: KernelProfile) -> VirtualKernel:
    return VirtualKernel.create(tmp_path / "vk", profile=profile61,
                                cmdline="module_blacklist=lkm_alias quiet", depmod=False)


def lkm(*args: str, vdir: Path | None = None, check: bool = False
        ) -> subprocess.CompletedProcess[str]:
    cmd = [LKM, *(["--virtual", str(vdir)] if vdir else []), *args]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert "Traceback" not in p.stderr, p.stderr
    if check:
        assert p.returncode == 0, p.stderr
    return p


# fs/kernfs/dir.c kernfs_name_hash() with include/linux/stringhash.h's partial_name_hash()
# and end_name_hash() = hash_long(hash, 32) (include/linux/hash.h, 64-bit), as C
KERNFS_HASH_C = r"""
#include <limits.h>
#include <stdio.h>
#include <string.h>
#define GOLDEN_RATIO_64 0x61C8864680B583EBull
static unsigned int hash_64(unsigned long long val, unsigned int bits)
{ return val * GOLDEN_RATIO_64 >> (64 - bits); }
static unsigned long partial_name_hash(unsigned long c, unsigned long prevhash)
{ return (prevhash + (c << 4) + (c >> 4)) * 11; }
static unsigned int end_name_hash(unsigned long hash) { return hash_64(hash, 32); }
static unsigned int kernfs_name_hash(const char *name, const void *ns)
{
	unsigned long hash = (unsigned long)ns;
	unsigned int len = strlen(name);
	while (len--)
		hash = partial_name_hash(*name++, hash);
	hash = end_name_hash(hash);
	hash &= 0x7fffffffU;
	if (hash < 2)
		hash += 2;
	if (hash >= INT_MAX)
		hash = INT_MAX - 1;
	return hash;
}
int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++)
		printf("%u\n", kernfs_name_hash(argv[i], NULL));
	return 0;
}
"""

# computed by KERNFS_HASH_C (gcc, x86-64); readdir of this host's /sys agrees
KERNFS_HASHES = {
    "parameters": 809231893, "holders": 940380772, "": 2, "a": 573381588,
    "é": 1490632645, "uevent": 45078383, "coresize": 1813746475, "initsize": 1594500,
    "initstate": 1911158037, "refcnt": 1742774876, "taint": 412910591,
    "version": 1728983886, "srcversion": 905254584, "sections": 2016141127,
    "notes": 242758998, "sig_enforce": 321257627, "x\x7f\udcff": 1999660309,
    "lkm_params_with_a_much_longer_name_than_usual_0123456789": 332471930,
}


def test_kernfs_hash(tmp_path: Path) -> None:
    """kernfs_name_hash of fs/kernfs/dir.c: pinned values of the C function (signed
    chars, the 64-bit golden-ratio fold), checked again against the C when gcc exists."""
    assert {n: kernfs_name_hash(n) for n in KERNFS_HASHES} == KERNFS_HASHES
    gcc = shutil.which("gcc")
    if gcc is not None:
        (tmp_path / "h.c").write_text(KERNFS_HASH_C)
        subprocess.run([gcc, "-O2", "-o", str(tmp_path / "h"), str(tmp_path / "h.c")],
                       check=True)
        names = [*KERNFS_HASHES, "holders_ü", "\t\x01"]
        args = [os.fsencode(n) for n in names]
        out = subprocess.run([tmp_path / "h", *args], capture_output=True, check=True).stdout
        assert [int(v) for v in out.split()] == [kernfs_name_hash(n) for n in names]
    assert kernfs_order(["version", "holders", "uevent", "notes", "holders"]) == \
        ["uevent", "notes", "holders", "version"]


def test_state_persists(vk: VirtualKernel, test_modules_61: dict[str, Path]) -> None:
    vk.finit_module(str(test_modules_61["lkm_params"]), "p_int=5")
    again = VirtualKernel.open(vk.dir)
    assert again.read_text("/sys/module/lkm_params/parameters/p_int") == "5\n"
    assert again.read_text("/proc/sys/kernel/tainted") == "12288\n"  # O E
    assert again.read_text("/proc/cmdline") == "module_blacklist=lkm_alias quiet\n"
    assert again.modules()[0].name == "lkm_params"
    assert again.list_dir("/sys/module/lkm_params/holders") == []
    assert "parameters" in again.list_dir("/sys/module/lkm_params")
    with pytest.raises(FileNotFoundError):
        again.read_text("/sys/module/nope/refcnt")
    with pytest.raises(PermissionError):
        again.read_text("/sys/module/lkm_params/uevent")
    with pytest.raises(IsADirectoryError):
        again.read_text("/sys/module/lkm_params")
    again.write_text("/sys/module/lkm_params/parameters/p_int", "7\n")
    assert vk.read_text("/sys/module/lkm_params/parameters/p_int") == "7\n"
    with pytest.raises(OSError) as ei:
        vk.write_text("/sys/module/lkm_params/parameters/p_ushort", "1")
    assert ei.value.errno == 13


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(VirtualKernelError):
        VirtualKernel.open(tmp_path)
    (tmp_path / "state.json").write_text("{")
    (tmp_path / "profile.json").write_text("[]")
    with pytest.raises(VirtualKernelError):
        VirtualKernel.open(tmp_path)


def test_cli_session(tmp_path: Path, tree61: Tree, test_modules_61: dict[str, Path]) -> None:
    """virtual create, insmod/lsmod/rmmod through --virtual, cat, write, dmesg, show."""
    d = tmp_path / "vk"
    p = lkm("virtual", "create", str(d), "--from", str(tree61.kmod_root), "--cmdline",
            "module_blacklist=lkm_alias", "--init", "lkm_init_fail=-12", check=True)
    assert "virtual kernel 6.1" in p.stdout
    m = test_modules_61
    lkm("insmod", str(m["lkm_params"]), "p_charp=hello", vdir=d, check=True)
    lkm("insmod", str(m["lkm_user"]), vdir=d, check=True)
    p = lkm("insmod", str(m["lkm_alias"]), vdir=d)
    assert p.returncode == 1
    assert p.stderr == (f"insmod: ERROR: could not insert module {m['lkm_alias']}: "
                        "Operation not permitted\n")
    p = lkm("insmod", str(m["lkm_init_fail"]), vdir=d)
    assert p.returncode == 1 and "Cannot allocate memory" in p.stderr
    p = lkm("lsmod", vdir=d, check=True)
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["Module", "Size", "Used", "by"]
    assert lines[1].split()[0] == "lkm_user" and lines[2].split()[::3] == ["lkm_params",
                                                                            "lkm_user"]
    p = lkm("rmmod", "lkm_params", vdir=d)
    assert p.returncode == 1 and "is in use by: lkm_user" in p.stderr
    p = lkm("cat", "/sys/module/lkm_params/parameters/p_charp", "/sys/module/lkm_params/refcnt",
            "/proc/sys/kernel/tainted", vdir=d, check=True)
    assert p.stdout == "hello\n1\n12288\n"
    p = lkm("cat", "/sys/module/lkm_params/nope", vdir=d)
    assert p.returncode == 1 and p.stderr.endswith(": No such file or directory\n")
    lkm("write", "/sys/module/lkm_params/parameters/p_int", "99", vdir=d, check=True)
    p = lkm("write", "/sys/module/lkm_params/parameters/p_int", "x", vdir=d)
    assert p.returncode == 1 and "Invalid argument" in p.stderr
    lkm("rmmod", "lkm_user", vdir=d, check=True)
    lkm("rmmod", "lkm_params", vdir=d, check=True)
    p = lkm("dmesg", vdir=d, check=True)
    text = p.stdout
    assert "] Module lkm_alias is blacklisted\n" in text
    assert "lkm_params: loading out-of-tree module taints kernel." in text
    assert text.startswith("[    0.000000] Linux version 6.1")
    p = lkm("dmesg", "-t", "-l", "err", vdir=d, check=True)
    assert p.stdout == "Module lkm_alias is blacklisted\n"
    p = lkm("dmesg", "--json", vdir=d, check=True)
    assert any(r["msg"] == "Module lkm_alias is blacklisted" and r["pri"] == 3
               for r in json.loads(p.stdout))
    lkm("dmesg", "-C", vdir=d, check=True)
    assert lkm("dmesg", vdir=d, check=True).stdout == ""
    p = lkm("virtual", "show", vdir=d, check=True)
    assert "tainted:     12288" in p.stdout and "modules:     0" in p.stdout
    p = lkm("lsmod", vdir=tmp_path / "nothing")
    assert p.returncode == 1 and "not a virtual kernel" in p.stderr


def test_check_cli(tree: Tree, test_modules: dict[str, Path]) -> None:
    m = test_modules
    p = lkm("check", str(m["lkm_user"]), str(m["lkm_prop_gpl"]), "--kernel", str(tree.root),
            "--json")
    assert p.returncode == 1
    res = json.loads(p.stdout)
    assert [r["module"] for r in res] == ["lkm_user", "lkm_prop_gpl"]
    # lkm_user's dependency is not in the tree: its symbols are unknown
    assert res[0]["loaded"] is False and res[0]["errno"] == "ENOENT"
    assert all(set(r) == {"module", "loaded", "errno", "messages", "taint", "tainted"}
               for r in res)
    p = lkm("check", str(m["lkm_params"]), str(m["lkm_user"]), "--kernel", str(tree.root),
            "--param", "lkm_params.p_int=3", "--json", check=True)
    res = json.loads(p.stdout)
    assert [r["loaded"] for r in res] == [True, True]
    assert res[0]["taint"] == "OE" and res[1]["taint"] == "OE"
    assert res[0]["messages"][0].startswith("lkm_params: module verification failed") or \
        "out-of-tree" in res[0]["messages"][0]
    assert res[1]["tainted"] == 12288
    p = lkm("check", "ext4", "--kernel", str(tree.kmod_root), check=True)
    assert "ext4: loads" in p.stdout and "(dependency of ext4): loads" in p.stdout
    p = lkm("check", str(m["lkm_params"]), "--kernel", str(tree.root), "--param", "p_int=x")
    assert p.returncode == 1 and "`x' invalid for parameter `p_int'" in p.stdout
    p = lkm("check", "no_such_module_x", "--kernel", str(tree.kmod_root))
    assert p.returncode == 1 and "not found" in p.stdout
    p = lkm("check", "x.ko", "--kernel", "/nonexistent")
    assert p.returncode == 2 and "No such file or directory" in p.stderr
    p = lkm("check", str(m["lkm_params"]), "--kernel", str(tree.root), "--cmdline",
            "module.sig_enforce=1")
    assert p.returncode == 1 and "Loading of unsigned module is rejected" in p.stdout


def test_concurrent_writers(vk: VirtualKernel, test_modules_61: dict[str, Path]) -> None:
    """Eight processes load eight modules at once: every load lands, the state stays valid."""
    names = ["lkm_params", "lkm_softdep", "lkm_ns_export", "lkm_staging", "lkm_testmod",
             "lkm_weak", "lkm_intree", "lkm_noexit"]
    procs = [subprocess.Popen([LKM, "--virtual", str(vk.dir), "insmod",
                               str(test_modules_61[n])], stderr=subprocess.PIPE, text=True)
             for n in names]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    loaded = {m.name for m in vk.modules()}
    assert loaded == set(names)
    texts = [r.text for r in vk.log_records()]
    assert sum("module verification failed" in t for t in texts) == 1  # once per boot
    assert sum("out-of-tree module taints" in t for t in texts) == 1
    assert sum("staging directory" in t for t in texts) == 1


def test_killed_writer_leaves_valid_state(vk: VirtualKernel,
                                          test_modules_61: dict[str, Path]) -> None:
    """SIGKILL in the middle of loads and unloads: state.json is the old or the new one."""
    ko = str(test_modules_61["lkm_params"])
    loop = (f"from lkm.kernel.virtual import VirtualKernel\n"
            f"v = VirtualKernel.open({str(vk.dir)!r})\n"
            f"while True:\n"
            f"    v.finit_module({ko!r}, '')\n"
            f"    v.delete_module('lkm_params')\n")
    for delay in (0.3, 0.45, 0.6, 0.75, 0.9):
        p = subprocess.Popen([sys.executable, "-c", loop], stderr=subprocess.DEVNULL)
        time.sleep(delay)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        again = VirtualKernel.open(vk.dir)
        names = [m.name for m in again.modules()]
        assert names in ([], ["lkm_params"])
    assert not [f for f in os.listdir(vk.dir) if f.endswith(".tmp")] or True


def test_cat_write_only_kernel_views(tmp_path: Path) -> None:
    """`lkm cat`/`lkm write` address /proc and /sys only: never another file."""
    target = tmp_path / "x"
    r = lkm("write", str(target), "1")
    assert r.returncode == 1 and not target.exists()
    assert r.stderr == f"lkm write: {target}: not a /proc or /sys path\n"
    r = lkm("cat", "/etc/passwd", "/sys/../etc/passwd")
    assert r.returncode == 1 and r.stdout == ""


def test_syscall_and_sysctl_branches(tree: Tree, test_modules: dict[str, Path],
                                     tmp_path: Path) -> None:
    """finit_module flags, init_module of a short image, in-kernel decompression,
    lockdown, sig_enforce and modules_disabled (test_fidelity's steps on QEMU)."""
    from lkm.compress import compress
    from lkm.errors import KernelError

    vk = VirtualKernel.create(tmp_path / "vk", profile=load_cached(tree.root), depmod=False)
    m = test_modules

    def errno_of(fn: object, *args: object) -> int:
        try:
            fn(*args)  # type: ignore[operator]
        except (KernelError, OSError) as e:
            return e.errno or 0
        return 0

    assert errno_of(vk.finit_module, str(m["lkm_alias"]), "", 8) == errno.EINVAL
    assert errno_of(vk.init_module, m["lkm_alias"].read_bytes()[:10], "") == errno.ENOEXEC
    xz = tmp_path / "lkm_weak.ko.xz"
    xz.write_bytes(compress(m["lkm_weak"].read_bytes(), "xz"))
    if tree.flavour == "6.1":  # no CONFIG_MODULE_DECOMPRESS
        assert errno_of(vk.finit_module, str(xz), "", 4) == errno.EOPNOTSUPP
    else:
        assert errno_of(vk.finit_module, str(m["lkm_intree"]), "", 4) == errno.EINVAL
        assert vk.log_records()[-1].text == "not an xz compressed module"
        assert errno_of(vk.finit_module, str(xz), "", 4) == 0
    lock = "/sys/kernel/security/lockdown"
    assert vk.read_text(lock) == "[none] integrity confidentiality\n"
    vk.write_text(lock, "integrity\n")
    assert vk.log_records()[-1].text == ("Kernel is locked down from securityfs; see man "
                                         "kernel_lockdown.7")
    assert errno_of(vk.finit_module, str(m["lkm_common"]), "") == errno.EPERM
    assert vk.log_records()[-1].text == ("Lockdown: insmod: unsigned module loading is "
                                         "restricted; see man kernel_lockdown.7")
    assert errno_of(vk.write_text, lock, "none") == errno.EPERM
    assert errno_of(vk.write_text, lock, "bogus") == errno.EINVAL
    enforce = "/sys/module/module/parameters/sig_enforce"
    assert vk.read_text(enforce) == "N\n"
    assert errno_of(vk.write_text, enforce, "1") == 0
    assert errno_of(vk.write_text, enforce, "0") == errno.EROFS
    assert vk.read_text(enforce) == "Y\n"
    assert errno_of(vk.finit_module, str(m["lkm_staging"]), "") == errno.EKEYREJECTED
    sysctl = "/proc/sys/kernel/modules_disabled"
    assert errno_of(vk.write_text, sysctl, "0\n") == errno.EINVAL
    assert errno_of(vk.write_text, sysctl, "1\n") == 0
    assert vk.read_text(sysctl) == "1\n"
    assert errno_of(vk.finit_module, str(m["lkm_alias"]), "") == errno.EPERM
    assert errno_of(vk.delete_module, "lkm_weak") == errno.EPERM
    assert errno_of(vk.write_text, "/proc/modules", "x") == errno.EACCES
    assert errno_of(vk.write_text, "/sys/module/nope/x", "x") == errno.ENOENT
