"""lkm's insmod, rmmod, lsmod and modprobe on a real kernel, side by side with kmod's.

Debian's kernel boots under QEMU (tests/vm.py) with a small module tree: a few real
modules with dependency chains, the test modules of tests/modules in extra/, and
kmod's depmod indexes.  Each case runs once with kmod's tool and once with lkm's
(the same state before each), and the two transcripts must be identical: exit
status, stdout, stderr and the state after (/proc/modules through kmod's lsmod,
parameters in /sys).  One boot per kernel runs every case.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import Tree
from vm import run_in_vm, split_cases

pytestmark = [
    pytest.mark.qemu, pytest.mark.trees, pytest.mark.kmod,
    pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                       reason="qemu-system-x86 not installed"),
]

# real modules whose dependency closure goes into the small tree
REAL = ("ext4", "xfs", "dummy", "bonding", "crc32c_generic", "crc32c_intel")
TEST = ("lkm_params", "lkm_user", "lkm_softdep", "lkm_alias", "lkm_noexit", "lkm_init_fail",
        "lkm_prop", "lkm_common")


def _dep_lines(moddir: Path) -> dict[str, tuple[str, list[str]]]:
    """Module name -> (relative path, dependency paths) from modules.dep."""
    out = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        path, _, deps = line.partition(":")
        name = Path(path).name.split(".")[0].replace("-", "_")
        out[name] = (path, deps.split())
    return out


def make_tree(tree: Tree, kos: dict[str, Path], root: Path) -> Path:
    """root/lib/modules/<release>: REAL with their dependencies, TEST in extra/, indexed by
    kmod's depmod.  Returns the module directory."""
    moddir = root / "lib" / "modules" / tree.release
    deps = _dep_lines(tree.kmod_moddir)
    wanted: set[str] = set()
    for name in REAL:
        if name in deps:
            path, more = deps[name]
            wanted.update([path, *more])
    for rel in sorted(wanted):
        dst = moddir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tree.kmod_moddir / rel, dst)
    (moddir / "extra").mkdir(parents=True, exist_ok=True)
    for name in TEST:
        if name in kos:
            shutil.copyfile(kos[name], moddir / "extra" / f"{name}.ko")
    for f in ("modules.order", "modules.builtin", "modules.builtin.modinfo"):
        if (tree.kmod_moddir / f).exists():
            shutil.copyfile(tree.kmod_moddir / f, moddir / f)
    subprocess.run(["/sbin/depmod", "-b", str(root), tree.release], check=True,
                   capture_output=True)
    return moddir


# A case is a shell function body using $T (K: kmod's tools, L: lkm's) run once per tool;
# `run CMD...` prints the exit status, stdout and stderr; `state` prints kmod's lsmod.
PRELUDE = r"""
K() { tool=$1; shift; chroot /host "/sbin/$tool" "$@"; }
L() { chroot /host "$LKM" "$@"; }
run() {
  "$@" >/job/o 2>/job/e; echo "rc=$?"; echo "--stdout"; cat /job/o; echo "--stderr"; cat /job/e
}
state() { echo "--lsmod"; K lsmod; }
params() {
  for f in /sys/module/$1/parameters/*; do echo "${f##*/}=$(cat $f 2>&1)"; done
}
cleanup() {  # unload what a case left, users first
  for m in lkm_user lkm_softdep lkm_params lkm_alias lkm_prop lkm_noexit ext4 jbd2 mbcache \
           crc16 xfs libcrc32c crc32c_generic crc32c_intel bonding tls dummy; do
    grep -q "^$m " /proc/modules && K rmmod -f $m 2>/dev/null
  done
}
both() {  # both NAME: run case_NAME with kmod's tools, then lkm's
  for T in K L; do
    lkm_case "$1.$T"
    "case_$1"
    cleanup
  done
}
EX=$MODDIR/extra
"""

CASES_61 = r"""
case_chain() {
  run $T modprobe -v ext4; state
  run $T lsmod
  run $T modprobe -r -v ext4; state
}
case_softdep() {
  run $T modprobe -v lkm_softdep; state
  run $T modprobe -r -v lkm_softdep; state
}
case_inuse() {
  K modprobe lkm_user
  run $T rmmod lkm_params
  run $T modprobe -r lkm_params
  run $T rmmod -f lkm_params
  run $T modprobe -r -v --remove-holders lkm_params; state
}
case_params() {
  run $T insmod $EX/lkm_user.ko
  run $T insmod $EX/lkm_params.ko p_int=42 p_charp=hello p_array=3,4,5 p_bool=N
  params lkm_params
  run $T insmod $EX/lkm_params.ko
  K rmmod lkm_params
  run $T modprobe -v lkm_params p_int=7 'p_charp=x y'; params lkm_params
  run $T modprobe --first-time lkm_params
}
case_errors() {
  run $T insmod $EX/lkm_params.ko p_int=abc
  run $T insmod $JOB/junk.ko
  run $T modprobe lkm_init_fail
  run $T insmod $JOB/tampered.ko
  run $T modprobe -v lkm_prop
  run $T modprobe -v lkm-alias-plain; state
}
case_noexit() {
  K insmod $EX/lkm_noexit.ko
  run $T rmmod lkm_noexit
  run $T rmmod -f lkm_noexit; state
}
for c in chain softdep inuse params errors noexit; do both $c; done
# modprobe -r -w with lkm only: kmod 30's backoff (shared/util.c) spins forever when a sleep
# overshoots the deadline, which a loaded TCG guest makes likely
lkm_case wait.L
K modprobe lkm_user
run L modprobe -r -w 300 lkm_params; state
cleanup
"""

CASES_612 = r"""
echo "compression=$(cat /sys/module/compression 2>&1)"
case_xz() {
  run $T insmod $MODDIR/kernel/drivers/net/dummy.ko.xz numdummies=2; state
  K rmmod dummy
  run $T modprobe -v ext4
  run $T lsmod
  run $T modprobe -r -v ext4; state
}
case_softdep() {
  run $T modprobe -v lkm_softdep; state
  run $T modprobe -r -v lkm_softdep; state
}
case_zst() {
  run $T insmod $JOB/dummy.ko.zst numdummies=1; state
}
both xz
both softdep
both zst
lkm_case api
chroot /host "$PYTHON" -c '
import errno, sys
from lkm.kernel.live import LiveKernel
from lkm.errors import KernelError
k = LiveKernel()
xz = sys.argv[1]
try:
    k.finit_module(xz, "", 0)
except KernelError as e:
    print("plain finit_module of .ko.xz:", errno.errorcode[e.errno])
k.finit_module(xz, "numdummies=3", 4)
print("compressed finit_module:", [m.name for m in k.modules()][0])
k.delete_module("dummy")
try:
    k.delete_module("dummy")
except KernelError as e:
    print("second delete_module:", errno.errorcode[e.errno])
k.init_module(open(sys.argv[2], "rb").read(), "p_int=5 p_charp=api")
p = k.parameters("lkm_params")
print("init_module:", p["p_int"], p["p_charp"], k.taint("lkm_params"), k.refcnt("lkm_params"))
k.delete_module("lkm_params")
' "$MODDIR/kernel/drivers/net/dummy.ko.xz" "$EX/lkm_params.ko"
"""


def _junk_and_tampered(tree: Tree, job: dict[str, bytes | Path]) -> None:
    job["junk.ko"] = b"this is not an ELF module, only text long enough\n" * 4
    signed = next(p for p in sorted((tree.kmod_moddir / "kernel" / "drivers" / "net")
                                    .glob("dummy.ko*")))
    from lkm.compress import read_module

    data, _kind = read_module(signed)
    body = bytearray(bytes(data))
    body[len(body) // 3] ^= 0x01  # a module body byte, under the signature
    job["tampered.ko"] = bytes(body)


def compare(output: str, names: list[str]) -> None:
    cases = split_cases(output)
    for name in names:
        k, lk = cases.get(f"{name}.K"), cases.get(f"{name}.L")
        assert k is not None and lk is not None, f"case {name} did not run:\n{output[-3000:]}"
        assert lk == k, f"case {name}: lkm differs from kmod\n--- kmod\n{k}\n--- lkm\n{lk}"


@pytest.fixture(scope="module")
def small_tree61(tree61: Tree, test_modules_61: dict[str, Path],
                 tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tree61, test_modules_61, tmp_path_factory.mktemp("tree61"))


@pytest.fixture(scope="module")
def small_tree612(tree612: Tree, test_modules_612: dict[str, Path],
                  tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tree(tree612, test_modules_612, tmp_path_factory.mktemp("tree612"))


def _precompile() -> None:
    """Byte-compile lkm on the host: the guest sees the host's file system read-only."""
    import sys

    src = Path(__file__).resolve().parent.parent / "src" / "lkm"
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(src)], capture_output=True,
                   env={"PATH": "/usr/bin:/bin"})


def test_live_61(tree61: Tree, small_tree61: Path) -> None:
    """Chains, softdeps, aliases, modules in use, --remove-holders, unknown symbols,
    parameters, kmod's messages for each errno, lsmod."""
    _precompile()
    files: dict[str, bytes | Path] = {}
    _junk_and_tampered(tree61, files)
    append = "module_blacklist=lkm_prop lkm_params.p_short=-9 modprobe.blacklist=lkm_alias"
    r = run_in_vm(tree61, PRELUDE + CASES_61, files=files, append=append, timeout=900,
                  moddir=small_tree61)
    compare(r.output, ["chain", "softdep", "inuse", "params", "errors", "noexit"])
    cases = split_cases(r.output)
    # what each case is about, seen in kmod's transcript (and so in lkm's)
    assert "Module lkm_params is in use by: lkm_user" in cases["inuse.K"]
    assert "Module lkm_params is in use." in cases["inuse.K"]
    assert "\nlkm_params " in cases["wait.L"].split("--lsmod", 1)[1], cases["wait.L"]
    assert "p_short=-9" in cases["params.K"] and "p_int=7" in cases["params.K"]
    assert 'p_charp=x y' in cases["params.K"]
    assert "Unknown symbol in module" in cases["params.K"]
    assert "File exists" in cases["params.K"]
    for text in ("Invalid parameters", "Invalid module format", "Cannot allocate memory",
                 "Key was rejected by service", "Operation not permitted"):
        assert text in cases["errors.K"], text
    assert "Device or resource busy" in cases["noexit.K"]
    assert "insmod /lib/modules/" in cases["softdep.K"] and "rmmod lkm_user" in cases["softdep.K"]


def test_live_612(tree612: Tree, small_tree612: Path) -> None:
    """.ko.xz modules on the 6.12 kernel (in-kernel xz decompression), chains, softdeps."""
    _precompile()
    xz = next((small_tree612 / "kernel" / "drivers" / "net").glob("dummy.ko.xz"))
    import zstandard

    from lkm.compress import read_module

    image, _kind = read_module(xz)
    files: dict[str, bytes | Path] = {
        "dummy.ko.zst": zstandard.ZstdCompressor().compress(bytes(image))}
    r = run_in_vm(tree612, PRELUDE + CASES_612, files=files, timeout=900,
                  moddir=small_tree612)
    compare(r.output, ["xz", "softdep", "zst"])
    assert "compression=xz" in r.output
    cases = split_cases(r.output)
    assert "dummy" in cases["xz.K"] and "dummy" in cases["zst.K"]
    # the backend's own API on the real kernel
    assert "plain finit_module of .ko.xz: ENOEXEC" in cases["api"]
    assert "compressed finit_module: dummy" in cases["api"]
    assert "init_module: 5 api OE 0" in cases["api"]
    assert "second delete_module: ENOENT" in cases["api"]
