"""``lkm vm`` (src/lkm/vm.py, src/lkm/initramfs.py, src/lkm/fetch.py, src/lkm/cli/vm.py).

The pieces without a boot first, then real boots of the 6.1 and 6.12 trees through the
CLI, batched: per kernel one --script boot (--json) and one --cmdline boot (--dmesg),
plus one timeout (6.1) and one panic (6.12).  The test harness (tests/vm.py) stays
independent of this code: it is what checks lkm's tools on a real kernel.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import LKM, Tree
from lkm import fetch as lkm_fetch
from lkm.initramfs import boot_modules, cpio_archive
from lkm.kernel.printk import LogRecord
from lkm.vm import (
    command_env,
    command_script,
    has_pvh_entry,
    new_records,
    parse_proc_modules,
    parse_raw_log,
)

needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                                reason="qemu-system-x86 not installed")
BOOT_LIMIT = 120  # seconds a boot plus its command may take in these tests (TCG, busy host)


def lkm_vm(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LKM, "vm", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


# --- pieces, no boot --------------------------------------------------------------------------

def test_cpio_archive(tmp_path: Path) -> None:
    if shutil.which("cpio") is None:
        pytest.skip("cpio not installed")
    archive = cpio_archive([("bin", 0o40755, b""), ("bin/x", 0o100755, b"abcde")],
                           {"dev/console": (5, 1)})
    listing = subprocess.run(["cpio", "-itv", "--quiet"], input=archive, capture_output=True,
                             check=True).stdout.decode().splitlines()
    assert [line.split()[-1] for line in listing] == ["bin", "bin/x", "dev/console"]
    assert listing[1].startswith("-rwxr-xr-x") and listing[2].startswith("crw-------")
    subprocess.run(["cpio", "-id", "--quiet"], input=archive, cwd=tmp_path, check=True,
                   capture_output=True)
    assert (tmp_path / "bin" / "x").read_bytes() == b"abcde"


def test_raw_log() -> None:
    text = ("<6>[    0.000000] Linux version 6.1\n<4>[    2.500000] a: warned\n"
            "<14>[    2.500001] from user space\n<3>[   10.12] two\nlines\n")
    recs = parse_raw_log(text)
    assert [(r.level, r.text, r.usec) for r in recs] == [
        (6, "Linux version 6.1", 0), (4, "a: warned", 2500000), (6, "from user space", 2500001),
        (3, "two\nlines", 10120000)]
    # grown, cleared (dmesg -c in the command), wrapped (the oldest records gone)
    assert new_records(recs[:2], recs) == recs[2:]
    assert new_records(recs, recs[3:]) == []
    assert new_records(recs[:2], [LogRecord(1, "new", usec=2600000)]) == [
        LogRecord(1, "new", usec=2600000)]
    assert new_records(recs[:3], [*recs[1:], LogRecord(2, "x", usec=99)]) == [recs[3]]


def test_proc_modules() -> None:
    mods = parse_proc_modules(
        "lkm_user 16384 0 - Live 0xffffffffc0a0a000 (OE)\n"
        "lkm_params 20480 1 lkm_user, Live 0xffffffffc0a00000 (OE)\n"
        "9p 81920 2 - Loading 0x0000000000000000\n")
    assert [(m.name, m.size, m.refcount, m.used_by, m.state, m.taints) for m in mods] == [
        ("lkm_user", 16384, 0, (), "Live", "OE"), ("lkm_params", 20480, 1, ("lkm_user",),
                                                  "Live", "OE"),
        ("9p", 81920, 2, (), "Loading", "")]


def test_command_script(tmp_path: Path) -> None:
    """The script the guest runs in the chroot: environment, working directory, words."""
    args = ["sh", "-c", 'printf "%s|" "$@" "$PWD" "$TMPDIR" "$LKM_VM"', "x", "a b", "it's",
            "$HOME", "*"]
    env = command_env({"EXTRA": "1 2"})
    assert env["TMPDIR"] == "/var/tmp" and "/sbin" in env["PATH"].split(":")
    script = tmp_path / "cmd"
    script.write_text(command_script(args, str(tmp_path), env))
    out = subprocess.run(["sh", str(script)], capture_output=True, text=True, cwd="/",
                         check=True)
    assert out.stdout == f"a b|it's|$HOME|*|{tmp_path}|/var/tmp|1|"
    script.write_text(command_script(["true"], str(tmp_path / "gone \"$x"), env))
    out = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=True)
    assert out.stderr == f"lkm vm: cannot enter {tmp_path}/gone \"$x in the guest: running in /\n"


def test_pvh_note() -> None:
    assert not has_pvh_entry(b"\x7fELF\x01" + bytes(60))
    assert not has_pvh_entry(b"MZ" + bytes(100))


def test_fetch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--fetch: a meta-package followed to its image, downloaded and unpacked once."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    calls = tmp_path / "calls"
    fakes = {
        "apt-cache": """case "$1 $2" in
  "depends linux-image-amd64") echo linux-image-amd64; echo "  Depends: linux-image-9.9-amd64";;
  "depends linux-image-9.9-amd64") echo linux-image-9.9-amd64; echo "  Depends: kmod";;
  "show --no-all-versions") echo "Package: $3"; echo "Version: 9.9.1-1";;
  *) echo "E: No packages found" >&2;;
esac""",
        "apt-get": 'echo "$@" >>"$CALLS"; touch "${2%%=*}_9.9.1-1_amd64.deb"',
        "dpkg": 'mkdir -p "$3/boot" && touch "$3/boot/vmlinuz-9.9-amd64"',
    }
    for name, body in fakes.items():
        (bin_ / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_ / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_}:{os.environ['PATH']}")
    monkeypatch.setenv("CALLS", str(calls))
    cache = tmp_path / "cache"
    tree = lkm_fetch.fetch("linux-image-amd64", cache)
    assert tree == cache / "linux-image-9.9-amd64_9.9.1-1"
    assert (tree / "boot" / "vmlinuz-9.9-amd64").is_file()
    assert lkm_fetch.fetch("linux-image-9.9-amd64", cache) == tree
    assert calls.read_text() == "download linux-image-9.9-amd64=9.9.1-1\n"
    assert sorted(p.name for p in cache.iterdir()) == [tree.name]  # no temporary left
    with pytest.raises(lkm_fetch.FetchError, match="no package nosuch: No packages found"):
        lkm_fetch.fetch("nosuch", cache)


def test_usage_errors() -> None:
    r = lkm_vm("--kernel", "/nonexistent")
    assert (r.returncode, r.stderr) == (
        2, "lkm vm: ERROR: give a COMMAND (after --) or --script FILE\n")
    r = lkm_vm("--", "true")
    assert r.returncode == 2 and "--kernel TREE or --fetch PACKAGE" in r.stderr


def test_missing_tree(tmp_path: Path) -> None:
    r = lkm_vm("--kernel", str(tmp_path / "none"), "--", "true")
    assert (r.returncode, r.stdout, r.stderr) == (
        125, "", f"lkm vm: ERROR: {tmp_path / 'none'}: No such file or directory\n")
    r = lkm_vm("--kernel", str(tmp_path), "--json", "--", "true")
    assert r.returncode == 125
    assert json.loads(r.stdout) == {"result": "error", "kernel": None, "console": [],
                                    "error": f"no vmlinuz found under {tmp_path}",
                                    "stdout": "", "stderr": ""}


@pytest.mark.trees
def test_missing_qemu(tree61: Tree, tmp_path: Path) -> None:
    r = lkm_vm("--kernel", str(tree61.root), "--", "true",
               env={**os.environ, "PATH": str(tmp_path)})
    assert (r.returncode, r.stderr) == (
        125, "lkm vm: ERROR: qemu-system-x86_64 not found: install the Debian package "
             "qemu-system-x86\n")


@pytest.mark.trees
def test_boot_modules(tree: Tree) -> None:
    from lkm.vm import find_kernel

    names = [name for name, _ in boot_modules(find_kernel(str(tree.root)).module_dir)]
    assert names[-1] == "9p"
    assert names.index("9pnet") < names.index("9pnet_virtio") < names.index("9p")


# --- real boots -------------------------------------------------------------------------------

SCRIPT = """\
insmod ./lkm_params.ko p_int=7 && echo loaded
lsmod | grep -c '^lkm_params '
cat /sys/module/lkm_params/parameters/p_int
insmod ./lkm_init_fail.ko; echo "init_fail rc=$?"
insmod ./lkm_user.ko && rmmod lkm_user && echo "user loaded and removed"
touch /usr/lkm-vm-probe 2>/dev/null || echo "host read-only"
echo scratch >"$TMPDIR/f" && cat "$TMPDIR/f"
echo "args: $*"
echo to-stderr >&2
exit 3
"""


@needs_qemu
@pytest.mark.qemu
@pytest.mark.trees
def test_script_json(tree: Tree, test_modules: dict[str, Path], tmp_path: Path) -> None:
    """One boot, several steps: loads, an init that fails, unload; --json's fields."""
    workdir = test_modules["lkm_params"].parent
    (tmp_path / "steps.sh").write_text(SCRIPT)
    begin = time.monotonic()
    r = lkm_vm("--kernel", str(tree.root), "--json", "--script", str(tmp_path / "steps.sh"),
               "--", "one", "two words", cwd=workdir)
    seconds = time.monotonic() - begin
    assert r.returncode == 3, r.stderr + r.stdout
    doc = json.loads(r.stdout)
    print(f"{tree.release}: {doc['accel']}, command at {doc['boot_seconds']} s of guest "
          f"time, {seconds:.1f} s in all")
    assert seconds < BOOT_LIMIT
    assert (doc["result"], doc["status"], doc["kernel"]) == ("exited", 3, tree.release)
    assert doc["accel"] in ("kvm", "tcg")
    assert doc["stdout"].splitlines() == [
        "loaded", "1", "7", "init_fail rc=1", "user loaded and removed", "host read-only",
        "scratch", "args: one two words"]
    assert doc["stderr"] == ("insmod: ERROR: could not insert module ./lkm_init_fail.ko: "
                             "Cannot allocate memory\nto-stderr\n")
    # the log holds what appeared while the script ran, boot messages not
    log = [(e["priority"], e["text"]) for e in doc["log"]]
    assert log[:2] == [
        ("warn", "lkm_params: loading out-of-tree module taints kernel."),
        ("notice", "lkm_params: module verification failed: signature and/or required key "
                 "missing - tainting kernel")], log
    assert all("lkm" in text for _, text in log), log
    assert all(e["level"] == ["emerg", "alert", "crit", "err", "warn", "notice", "info",
                              "debug"].index(e["priority"]) for e in doc["log"])
    assert doc["log"][0]["time"] <= doc["log"][1]["time"]
    assert (doc["tainted"], doc["taint"]) == (12288, "OE")
    mods = {m["name"]: m for m in doc["modules"]}
    assert mods["lkm_params"] == {"name": "lkm_params", "size": mods["lkm_params"]["size"],
                                  "refcount": 0, "used_by": [], "state": "Live",
                                  "taints": "OE"}
    assert "lkm_user" not in mods and "lkm_init_fail" not in mods and "9p" in mods
    assert doc["command"] == ["one", "two words"]
    assert "quiet" in doc["cmdline"]


@needs_qemu
@pytest.mark.qemu
@pytest.mark.trees
def test_sig_enforce(tree: Tree, test_modules: dict[str, Path]) -> None:
    """module.sig_enforce=1: the tree's signed module loads, an unsigned one is refused;
    --dmesg; the command's exit status is lkm vm's."""
    ko = shlex.quote(str(test_modules["lkm_params"]))
    r = lkm_vm("--kernel", str(tree.root), "--cmdline", "module.sig_enforce=1", "--dmesg",
               "--", "sh", "-c", f"modprobe dummy && grep -c '^dummy ' /proc/modules; "
               f"cat /sys/module/dummy/taint; insmod {ko}; echo rc=$?; "
               "cat /sys/module/module/parameters/sig_enforce /proc/sys/kernel/tainted; "
               "echo lkm-marker >/dev/kmsg; exit 7")
    assert r.returncode == 7, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:5] == ["1", "", "rc=1", "Y", "0"], r.stdout
    assert r.stderr == (f"insmod: ERROR: could not insert module {test_modules['lkm_params']}:"
                        " Key was rejected by service\n")
    dmesg = lines[5:]
    assert dmesg and dmesg[-1].startswith("[") and dmesg[-1].endswith("] lkm-marker"), dmesg


@needs_qemu
@pytest.mark.qemu
@pytest.mark.trees
def test_timeout(tree61: Tree) -> None:
    begin = time.monotonic()
    r = lkm_vm("--kernel", str(tree61.root), "--timeout", "3", "--", "sh", "-c",
               "echo started; sleep 600")
    assert time.monotonic() - begin < BOOT_LIMIT
    assert r.returncode == 124
    assert r.stdout == "started\n"
    assert r.stderr.splitlines()[-1] == ("lkm vm: ERROR: the command did not end within 3 s:"
                                         " guest stopped")


@needs_qemu
@pytest.mark.qemu
@pytest.mark.trees
def test_panic(tree612: Tree) -> None:
    r = lkm_vm("--kernel", str(tree612.root), "--json", "--", "sh", "-c",
               "echo going; echo c >/proc/sysrq-trigger")
    assert r.returncode == 125
    doc = json.loads(r.stdout)
    assert (doc["result"], doc["error"], doc["stdout"], doc["kernel"]) == (
        "panic", "the guest kernel panicked: sysrq triggered crash", "going\n",
        tree612.release)
    assert any("sysrq" in line.lower() or "RIP" in line for line in doc["console"])


# --- lkm check --boot ------------------------------------------------------------------------

@needs_qemu
@pytest.mark.qemu
@pytest.mark.trees
def test_check_boot_agree(tree612: Tree, test_modules_612: dict[str, Path]) -> None:
    """The virtual kernel and the real one agree: a test module, a signed tree module, an
    init returning 1 (told to the virtual kernel with --init)."""
    r = subprocess.run([LKM, "check", "--boot", "--kernel", str(tree612.root),
                        "./lkm_params.ko", "dummy", "./lkm_init_positive.ko",
                        "--init", "lkm_init_positive=1"], capture_output=True, text=True,
                       cwd=test_modules_612["lkm_params"].parent, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines() == [
        "  lkm_params: virtual: loads, taints OE; real: loads, taints OE",
        "    = lkm_params: loading out-of-tree module taints kernel.",
        "    = lkm_params: module verification failed: signature and/or required key missing"
        " - tainting kernel",
        "  dummy: virtual: loads; real: loads",
        "  lkm_init_positive: virtual: loads, taints OE; real: loads, taints OE",
        "    = do_init_module: 'lkm_init_positive'->init suspiciously returned 1, it should"
        " follow 0/-E convention",
        "    = do_init_module: loading module anyway...",
        "    (the real kernel also dumped a stack)",
        "kernel: virtual: Tainted: G           OE      (12288); real: Tainted: G           OE"
        "      (12288)",
        "3 loads, the kernels disagree on 0"]


@needs_qemu
@pytest.mark.qemu
@pytest.mark.trees
def test_check_boot_disagree(tree61: Tree, test_modules_61: dict[str, Path]) -> None:
    """--init forces a wrong virtual result for one module: marked, exit status 1; an init
    failing on both sides agrees (but fails: exit status 1 too)."""
    r = subprocess.run([LKM, "check", "--boot", "--json", "--kernel", str(tree61.root),
                        str(test_modules_61["lkm_params"]), str(test_modules_61["lkm_init_fail"]),
                        "--init", "lkm_params=-12", "--init", "lkm_init_fail=-12"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr
    params, init_fail = json.loads(r.stdout)
    assert (params["module"], params["agree"], params["differences"]) == (
        "lkm_params", False, ["result", "errno"])
    assert (params["virtual"]["loaded"], params["virtual"]["errno"]) == (False, "ENOMEM")
    assert (params["real"]["loaded"], params["real"]["errno"], params["real"]["taint"]) == (
        True, None, "OE")
    assert params["real"]["messages"] == params["virtual"]["messages"]
    assert (init_fail["agree"], init_fail["real"]["errno"], init_fail["virtual"]["errno"]) == (
        True, "ENOMEM", "ENOMEM")
