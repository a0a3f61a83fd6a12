"""The QEMU harness (tests/vm.py): its pieces, and real boots of the 6.1 and 6.12 trees."""

from __future__ import annotations

import importlib.util
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import Tree
from vm import (
    VmTimeout,
    _parse_output,
    cpio_archive,
    extract_vmlinux,
    has_pvh_entry,
    load_order,
    normalise_log,
    run_in_vm,
    split_cases,
    tree_with_modules,
)

needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                                reason="qemu-system-x86 not installed")

# --- pieces, no boot --------------------------------------------------------------------


def test_cpio_archive(tmp_path: Path) -> None:
    archive = cpio_archive([("bin", 0o40755, b""), ("bin/hello", 0o100755, b"hi\n")],
                           {"dev/console": (5, 1)})
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=archive, capture_output=True,
                             check=True).stdout.decode()
    lines = listing.splitlines()
    assert [line.split()[-1] for line in lines] == ["bin", "bin/hello", "dev/console"]
    assert lines[1].startswith("-rwxr-xr-x") and lines[2].startswith("crw-------")
    subprocess.run(["cpio", "-id", "--quiet", "bin/hello"], input=archive, cwd=tmp_path,
                   check=True, capture_output=True)
    assert (tmp_path / "bin" / "hello").read_bytes() == b"hi\n"


def test_parse_output() -> None:
    raw = "noise\r\n@@LKM-VM-START 2.50\r\nline 1\r\n@@LKM-VM-EXIT 7\r\n"
    assert _parse_output(raw) == ("line 1\n", 7, 2.5, None)
    assert _parse_output("@@LKM-VM-START 1.0\nhalf") == ("half", None, 1.0, None)
    assert _parse_output("garbage")[:2] == (None, None)
    assert _parse_output("@@LKM-VM-FAIL cannot mount /host\n")[3] == "cannot mount /host"


def test_normalise_log() -> None:
    log = ("[    3.141592] lkm_params: loading out-of-tree module taints kernel.\n"
           "[    3.2] hrtimer: interrupt took 1234567 ns\n"
           "[   12.000001] RIP: 0010:0xffffffffc0a01000  \n\n"
           "[   12.000002] at 00000000deadbeef\n")
    assert normalise_log(log) == ["lkm_params: loading out-of-tree module taints kernel.",
                                  "RIP: 0010:<addr>", "at <addr>"]


def test_split_cases() -> None:
    out = "before\n@@LKM-CASE one\na\nb\n@@LKM-CASE two\n@@LKM-CASE three\nc"
    assert split_cases(out) == {"one": "a\nb\n", "two": "", "three": "c"}


@pytest.mark.trees
def test_load_order(tree: Tree) -> None:
    names = [name for name, _ in load_order(tree.moddir, ("virtio_pci", "9pnet_virtio", "9p"))]
    assert names[-1] == "9p"
    assert names.index("9pnet") < names.index("9pnet_virtio") < names.index("9p")
    builtin = (tree.moddir / "modules.builtin").read_text()
    assert ("virtio_pci" in names) == ("virtio_pci.ko" not in builtin)


@pytest.mark.trees
def test_extract_vmlinux(tree: Tree) -> None:
    vmlinux = extract_vmlinux(tree.vmlinuz.read_bytes())
    assert vmlinux is not None and vmlinux[:4] == b"\x7fELF"
    assert has_pvh_entry(vmlinux)
    assert tree.release.encode() in vmlinux
    assert not has_pvh_entry(b"\x7fELF\x01" + bytes(60))


# --- real boots (one per test: with pytest-xdist, each boot runs once) ---------------------

PARAMS = {  # insmod argument -> the value /sys/module/lkm_params/parameters shows
    "p_byte": ("255", "255"),
    "p_short": ("-300", "-300"),
    "p_ushort": ("65535", "65535"),
    "p_int": ("123", "123"),
    "p_uint": ("4000000000", "4000000000"),
    "p_long": ("-5000000000", "-5000000000"),
    "p_ulong": ("18446744073709551615", "18446744073709551615"),
    "p_ullong": ("18446744073709551615", "18446744073709551615"),
    "p_hexint": ("0xbeef", "0x00beef"),
    "p_bool": ("N", "N"),
    "p_invbool": ("Y", "Y"),
    "p_charp": ("hello", "hello"),
    "p_string": ('"two words"', "two words"),
    "p_array": ("7,8,9", "7,8,9"),
    "p_hidden": ("99", None),  # perm 0: no sysfs file
    "p_named": ("5", "5"),
}


def _insmod_args() -> str:
    return " ".join(shlex.quote(f"{k}={v}") for k, (v, _) in PARAMS.items())


def _sysfs(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def _lkm_has(tool: str) -> bool:
    return importlib.util.find_spec(f"lkm.cli.{tool}") is not None


NOT_SIGNED = ("{m}: module verification failed: signature and/or required key missing"
              " - tainting kernel")
# Each test module loaded in turn with kmod's insmod: what tests/modules/README promises.
# lkm_params was loaded (and unloaded) before in the same boot, so the once-only O and E
# messages are not printed again. (module, insmod's error or None,
# /proc/sys/kernel/tainted after, kernel log lines)
SEQUENCE: list[tuple[str, str | None, int, list[str]]] = [
    ("lkm_params", None, 12288, []),
    ("lkm_user", None, 12288, []),
    ("lkm_prop", None, 12289, ["{m}: module license 'Proprietary' taints kernel.",
                               "Disabling lock debugging due to kernel taint"]),
    ("lkm_prop_gpl", "Unknown symbol in module", 12289,
     ["{m}: Unknown symbol lkm_params_gpl_value (err -2)"]),
    ("lkm_ns_export", None, 12289, []),
    ("lkm_ns_user", None, 12289, []),
    ("lkm_ns_noimport", "Invalid parameters", 12289,
     ["{m}: module uses symbol (lkm_ns_value) from namespace LKM_NS, but does not import it.",
      "{m}: Unknown symbol lkm_ns_value (err -22)"]),
    ("lkm_init_fail", "Cannot allocate memory", 12289, []),
    ("lkm_init_positive", None, 12289,
     ["do_init_module: '{m}'->init suspiciously returned 1, it should follow 0/-E convention",
      "do_init_module: loading module anyway...", "<stack dump>"]),
    ("lkm_noexit", None, 12289, []),
    ("lkm_softdep", None, 12289, []),
    ("lkm_alias", None, 12289, []),
    ("lkm_staging", None, 13313, ["{m}: module is from the staging directory, the quality is"
                                  " unknown, you have been warned."]),
    ("lkm_intree", None, 13313, []),
    ("lkm_testmod", None, 275457, ["{m}: loading test module taints kernel."]),
    ("lkm_weak", None, 275457, []),
    ("lkm_common", "Invalid module format", 275457, ["{m}: please compile with -fno-common"]),
    ("lkm_dup_export", "Invalid module format", 275457,
     ["{m}: exports duplicate symbol lkm_params_value (owned by lkm_params)"]),
    ("lkm_dup_kernel", "Invalid module format", 275457,
     ["{m}: exports duplicate symbol jiffies_to_msecs (owned by kernel)"]),
]
EXTRA_612 = {"lkm_prop": ["{m}: module license taints kernel."]}


def _sequence_script(kos: dict[str, Path]) -> str:
    lines = ["dmesg -c >/dev/null"]
    for name, *_ in SEQUENCE:
        lines += [f"lkm_case seq {name}",
                  f"chroot /host /sbin/insmod {shlex.quote(str(kos[name]))} 2>&1",
                  'echo "rc=$?"; cat /proc/sys/kernel/tainted; dmesg -c']
    lines += ["lkm_case seq rmmod_noexit", "chroot /host /sbin/rmmod lkm_noexit 2>&1",
              'echo "rc=$?"',
              "lkm_case seq unsafe", "echo 1 >/sys/module/lkm_params/parameters/p_unsafe",
              "cat /proc/sys/kernel/tainted; dmesg -c"]
    return "\n".join(lines) + "\n"


def _check_sequence(cases: dict[str, str], kos: dict[str, Path], flavour: str) -> None:
    for name, error, tainted, log in SEQUENCE:
        text = cases[f"seq {name}"].splitlines()
        want = [] if error is None else [
            f"insmod: ERROR: could not insert module {kos[name]}: {error}"]
        want += [f"rc={0 if error is None else 1}", str(tainted)]
        extra = EXTRA_612.get(name, []) if flavour == "6.12" else []
        want += [line.format(m=name) for line in log + extra]
        got = text[:len(want) - len(log) - len(extra)] + normalise_log(
            "\n".join(text[len(want) - len(log) - len(extra):]))
        assert got == want, f"{name}: {cases[f'seq {name}']!r}"
    assert cases["seq rmmod_noexit"].splitlines()[-2:] == [
        "rmmod: ERROR: could not remove module lkm_noexit: Device or resource busy", "rc=1"]
    # U (taint by user) 64
    assert normalise_log(cases["seq unsafe"]) == [
        "275521", "Setting dangerous option p_unsafe - tainting kernel"]


@needs_qemu
@pytest.mark.qemu
@pytest.mark.trees
def test_boot_61(tree61: Tree, test_modules_61: dict[str, Path]) -> None:
    """Debian's 6.1 kernel: kmod's insmod with parameters, sysfs, lsmod, rmmod, dmesg;
    then every test module in turn."""
    ko = {name: shlex.quote(str(path)) for name, path in test_modules_61.items()}
    script = f"""
lkm_case uname
uname -r
lkm_case insmod
chroot /host /sbin/insmod {ko["lkm_params"]} {_insmod_args()}; echo "rc=$?"
lkm_case params
cd /sys/module/lkm_params/parameters && for f in *; do echo "$f=$(cat $f)"; done; cd /job
lkm_case taint
cat /proc/sys/kernel/tainted /sys/module/lkm_params/taint
lkm_case write
echo 77 > /sys/module/lkm_params/parameters/p_int; cat /sys/module/lkm_params/parameters/p_int
lkm_case user
chroot /host /sbin/insmod {ko["lkm_user"]}; echo "rc=$?"
lkm_case lsmod
chroot /host /sbin/lsmod
lkm_case lkm-lsmod
chroot /host "$LKM" lsmod 2>&1; echo "rc=$?"
lkm_case lkm-import
chroot /host "$PYTHON" -c 'import lkm; print(lkm.__file__)'
lkm_case holders
ls /sys/module/lkm_params/holders; cat /sys/module/lkm_params/refcnt
lkm_case init_fail
chroot /host /sbin/insmod {ko["lkm_init_fail"]} 2>&1; echo "rc=$?"
lkm_case rmmod_busy
chroot /host /sbin/rmmod lkm_params 2>&1; echo "rc=$?"
lkm_case rmmod
chroot /host /sbin/rmmod lkm_user lkm_params; echo "rc=$?"; grep -c '^lkm_' /proc/modules
lkm_case modprobe
chroot /host /sbin/modprobe -n -v 9p; echo "rc=$?"
lkm_case dmesg
dmesg
{_sequence_script(test_modules_61)}
exit 5
"""
    r = run_in_vm(tree61, script, timeout=300)
    print(f"6.1 boot: {r.boot_seconds:.2f} s to the script, {r.seconds:.2f} s in all")
    assert r.rc == 5, r.output
    c = split_cases(r.output)
    assert c["uname"].strip() == tree61.release
    assert c["insmod"].strip() == "rc=0", r.output
    shown = _sysfs(c["params"])
    expected = {k: v for k, (_, v) in PARAMS.items() if v is not None}
    expected["p_unsafe"] = "0"
    assert shown == expected
    # O (out-of-tree) 4096 + E (unsigned) 8192
    assert c["taint"].split() == ["12288", "OE"]
    assert c["write"].strip() == "77"
    assert c["user"].strip() == "rc=0"
    lsmod = c["lsmod"].splitlines()
    assert lsmod[0].split() == ["Module", "Size", "Used", "by"]
    rows = {line.split()[0]: line.split()[1:] for line in lsmod[1:]}
    assert rows["lkm_params"][1:] == ["1", "lkm_user"]
    assert rows["lkm_user"][1:] == ["0"]
    assert "9p" in rows
    if _lkm_has("lsmod"):
        assert c["lkm-lsmod"] == c["lsmod"] + "rc=0\n"
    assert c["lkm-import"].strip().startswith(str(Path(__file__).resolve().parent.parent))
    assert c["holders"].split() == ["lkm_user", "1"]
    assert c["init_fail"].splitlines() == [
        f"insmod: ERROR: could not insert module {test_modules_61['lkm_init_fail']}:"
        " Cannot allocate memory", "rc=1"]
    assert c["rmmod_busy"].splitlines() == [
        "rmmod: ERROR: Module lkm_params is in use by: lkm_user", "rc=1"]
    assert c["rmmod"].split() == ["rc=0", "0"]
    assert c["modprobe"].splitlines()[-1] == "rc=0"
    log = normalise_log(c["dmesg"])
    assert "lkm_params: loading out-of-tree module taints kernel." in log
    assert NOT_SIGNED.format(m="lkm_params") in log
    _check_sequence(c, test_modules_61, "6.1")


@needs_qemu
@pytest.mark.qemu
@pytest.mark.trees
def test_boot_612(tree612: Tree, test_modules_612: dict[str, Path], tmp_path: Path) -> None:
    """Debian's 6.12 kernel (.ko.xz tree): insmod, parameters, job files, writable tree;
    then every test module in turn."""
    ko = shlex.quote(str(test_modules_612["lkm_params"]))
    script = f"""
lkm_case uname
uname -r
lkm_case lsmod
lsmod | cut -d' ' -f1
lkm_case insmod
chroot /host /sbin/insmod {ko} p_int=-12 p_charp=xz p_array=1,2,3,4; echo "rc=$?"
lkm_case params
cd /sys/module/lkm_params/parameters && for f in p_int p_charp p_array; do
  echo "$f=$(cat $f)"; done
lkm_case modinfo
chroot /host /sbin/modinfo -F filename lkm_user
lkm_case files
cat /job/in.txt; cmp /job/sub/copy.ko "$JOB/sub/copy.ko" && echo same
chroot /host sh -c 'echo written >"$JOB/out.txt"'
lkm_case overlay
chroot /host sh -c 'touch "$MODDIR/lkm-new" && ls "$MODDIR/lkm-new"'
lkm_case modprobe
chroot /host /sbin/rmmod lkm_params
chroot /host /sbin/modprobe lkm_softdep
cut -d' ' -f1 /proc/modules | grep lkm_
chroot /host /sbin/modprobe -r lkm_user lkm_softdep; grep -c lkm_ /proc/modules
lkm_case dmesg
dmesg
{_sequence_script(test_modules_612)}
"""
    files: dict[str, bytes | Path] = {"in.txt": b"hello\n",
                                      "sub/copy.ko": test_modules_612["lkm_params"]}
    moddir = tree_with_modules(tree612, {n: p for n, p in test_modules_612.items()
                                         if not n.startswith("lkm_dup_")}, tmp_path / "root",
                               whole=False)
    r = run_in_vm(tree612, script, files, timeout=300, moddir=moddir, writable_modules=True,
                  workdir=tmp_path / "job")
    print(f"6.12 boot: {r.boot_seconds:.2f} s to the script, {r.seconds:.2f} s in all")
    assert r.rc == 0, r.output
    c = split_cases(r.output)
    assert c["uname"].strip() == tree612.release
    assert {"9p", "9pnet", "9pnet_virtio", "netfs"} <= set(c["lsmod"].split())
    assert c["insmod"].strip() == "rc=0"
    assert _sysfs(c["params"]) == {"p_int": "-12", "p_charp": "xz", "p_array": "1,2,3,4"}
    assert c["modinfo"].strip() == f"/lib/modules/{tree612.release}/extra/lkm_user.ko"
    assert c["files"].splitlines() == ["hello", "same"]
    assert (tmp_path / "job" / "out.txt").read_text() == "written\n"
    assert c["overlay"].strip() == f"/lib/modules/{tree612.release}/lkm-new"
    assert not (moddir / "lkm-new").exists()
    # softdep: lkm_params before lkm_softdep, lkm_user after it (newest first in /proc/modules)
    assert c["modprobe"].split() == ["lkm_user", "lkm_softdep", "lkm_params", "0"]
    assert "lkm_params: loading out-of-tree module taints kernel." in normalise_log(c["dmesg"])
    _check_sequence(c, test_modules_612, "6.12")


@needs_qemu
@pytest.mark.qemu
@pytest.mark.trees
def test_timeout(tree61: Tree) -> None:
    with pytest.raises(VmTimeout):
        run_in_vm(tree61, "sleep 600", timeout=2)


@pytest.mark.trees
def test_bad_arguments(tree61: Tree, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no such module directory"):
        run_in_vm(tree61, "true", moddir=tmp_path / "missing")
    with pytest.raises(ValueError, match="not inside the job directory"):
        run_in_vm(tree61, "true", {"../escape": b""}, workdir=tmp_path / "job")
