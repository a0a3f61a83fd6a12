"""Real Kbuild modules (tests/modules/exec/) running in the virtual kernel of each tree.

Each ``lkm`` command is its own process, as on a real system: what a module's init left in
memory must be there for its exit in the next process.  The whole transcripts are compared
with the real kernels in test_exec_fidelity.py; here, the behaviours one by one.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import LKM, Tree
from lkm.kernel.profile import KernelProfile, load_cached
from lkm.kernel.virtual import VirtualKernel

pytestmark = pytest.mark.trees


@pytest.fixture(scope="module")
def kos(tree: Tree) -> dict[str, Path]:
    from kbuild import build_modules, headers_dir

    if headers_dir(tree.release) is None:
        pytest.skip(f"no linux-headers for {tree.release}")
    return build_modules(tree.release, exec_modules=True)


@pytest.fixture(scope="module")
def profile(tree: Tree) -> KernelProfile:
    return load_cached(tree.root)


@pytest.fixture
def vdir(tmp_path: Path, profile: KernelProfile) -> Path:
    VirtualKernel.create(tmp_path / "vk", profile=profile, depmod=False)
    return tmp_path / "vk"


def lkm(vdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([LKM, "--virtual", str(vdir), *args], capture_output=True, text=True,
                       timeout=300)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def new_lines(vdir: Path, seen: list[int]) -> list[tuple[int, str]]:
    recs = VirtualKernel.open(vdir).log_records()
    out = [(r.level, r.text) for r in recs if r.seq > (seen[0] if seen else 0)]
    if recs:
        seen[:] = [recs[-1].seq]
    return out


def test_parameters_reach_init_and_exit_in_another_process(vdir: Path,
                                                           kos: dict[str, Path]) -> None:
    seen: list[int] = []
    new_lines(vdir, seen)
    p = lkm(vdir, "insmod", str(kos["lkm_exec_params"]), "count=2", "name=you", "loud=1",
            "values=1,2,3")
    assert p.returncode == 0, p.stderr
    assert new_lines(vdir, seen)[-4:] == [
        (6, "lkm_exec_params: count=2 name=you loud=1 nvalues=3"),
        (6, "lkm_exec_params: values: 1 2 3 (sum 6)"),
        (6, "lkm_exec_params: HELLO, you! (1 of 2)"),
        (6, "lkm_exec_params: HELLO, you! (2 of 2)")]
    vk = VirtualKernel.open(vdir)
    assert vk.read_text("/sys/module/lkm_exec_params/parameters/values") == "1,2,3\n"
    assert vk.read_text("/sys/module/lkm_exec_params/parameters/name") == "you\n"
    vk.write_text("/sys/module/lkm_exec_params/parameters/count", "7")
    assert lkm(vdir, "rmmod", "lkm_exec_params").returncode == 0
    assert new_lines(vdir, seen)[-1] == (6, "lkm_exec_params: goodbye, you")


def test_init_return_values(vdir: Path, kos: dict[str, Path]) -> None:
    p = lkm(vdir, "insmod", str(kos["lkm_exec_enomem"]))
    assert p.returncode == 1
    assert p.stderr.endswith(": Cannot allocate memory\n")
    assert "lkm_exec_enomem" not in VirtualKernel.open(vdir).read_text("/proc/modules")
    p = lkm(vdir, "insmod", str(kos["lkm_exec_positive"]))
    assert p.returncode == 0
    fields = VirtualKernel.open(vdir).read_text("/proc/modules").split()
    assert fields[0] == "lkm_exec_positive" and fields[2:5] == ["0", "-", "Live"]
    texts = [r.text for r in VirtualKernel.open(vdir).log_records()]
    assert "do_init_module: 'lkm_exec_positive'->init suspiciously returned 3, it should " \
           "follow 0/-E convention\\x0ado_init_module: loading module anyway..." in texts


def test_an_oops_in_init_kills_insmod(vdir: Path, kos: dict[str, Path]) -> None:
    p = lkm(vdir, "insmod", str(kos["lkm_exec_null_write"]))
    assert p.returncode == -signal.SIGKILL
    vk = VirtualKernel.open(vdir)
    texts = [r.text for r in vk.log_records()]
    assert "BUG: kernel NULL pointer dereference, address: 0000000000000004" in texts
    line = vk.read_text("/proc/modules")
    assert " Loading " in line and line.rstrip().endswith("(OE+)")
    assert vk.read_text("/proc/sys/kernel/tainted") == "12416\n"  # D O E
    p = lkm(vdir, "rmmod", "lkm_exec_null_write")
    assert p.returncode == 1 and "is in use" in p.stderr


def test_double_kfree_in_exit_kills_rmmod(vdir: Path, kos: dict[str, Path]) -> None:
    assert lkm(vdir, "insmod", str(kos["lkm_exec_double_free"])).returncode == 0
    p = lkm(vdir, "rmmod", "lkm_exec_double_free")
    assert p.returncode == -signal.SIGSEGV
    vk = VirtualKernel.open(vdir)
    texts = [r.text for r in vk.log_records()]
    assert any(t.startswith("kernel BUG at mm/slub.c:") for t in texts)
    assert vk.read_text("/sys/module/lkm_exec_double_free/refcnt") == "-1\n"
    assert vk.read_text("/sys/module/lkm_exec_double_free/initstate") == "going\n"


def test_a_call_into_another_modules_export_runs_its_code(vdir: Path,
                                                          kos: dict[str, Path]) -> None:
    assert lkm(vdir, "insmod", str(kos["lkm_exec_export"])).returncode == 0
    assert lkm(vdir, "insmod", str(kos["lkm_exec_caller"])).returncode == 0
    assert lkm(vdir, "rmmod", "lkm_exec_caller").returncode == 0
    assert lkm(vdir, "rmmod", "lkm_exec_export").returncode == 0
    texts = [r.text for r in VirtualKernel.open(vdir).log_records()]
    assert "lkm_exec_caller: lkm_exec_add(sum, 10) = 15" in texts
    assert "lkm_exec_caller: greetings from lkm_exec_export" in texts
    assert "lkm_exec_export: lkm_exec_add(-1, 1), call 3" in texts
    assert texts[-1] == "lkm_exec_export: called 3 times"


def test_try_module_get_and_a_parameter_with_its_own_ops(vdir: Path,
                                                         kos: dict[str, Path]) -> None:
    assert lkm(vdir, "insmod", str(kos["lkm_exec_refcnt"])).returncode == 0
    vk = VirtualKernel.open(vdir)
    assert vk.read_text("/sys/module/lkm_exec_refcnt/refcnt") == "1\n"
    vk.write_text("/sys/module/lkm_exec_refcnt/parameters/hold", "3")
    assert vk.read_text("/sys/module/lkm_exec_refcnt/refcnt") == "3\n"
    assert vk.read_text("/sys/module/lkm_exec_refcnt/parameters/hold") == "3\n"
    with pytest.raises(OSError) as ei:
        vk.write_text("/sys/module/lkm_exec_refcnt/parameters/hold", "lots")
    assert ei.value.errno == 22
    assert lkm(vdir, "rmmod", "lkm_exec_refcnt").returncode == 1
    vk.write_text("/sys/module/lkm_exec_refcnt/parameters/hold", "0")
    assert lkm(vdir, "rmmod", "lkm_exec_refcnt").returncode == 0


def test_init_override_skips_the_code(tmp_path: Path, profile: KernelProfile,
                                      kos: dict[str, Path]) -> None:
    vk = VirtualKernel.create(tmp_path / "vk", profile=profile, depmod=False,
                              init_results={"lkm_exec_enomem": 0})
    vk.finit_module(str(kos["lkm_exec_enomem"]), "")
    assert "lkm_exec_enomem" in vk.read_text("/proc/modules")
    assert not any(r.text.startswith("lkm_exec_enomem: ") and "taints" not in r.text
                   and "verification" not in r.text for r in vk.log_records())


def test_tools_that_run_no_code_do_not_import_unicorn(vdir: Path,
                                                      kos: dict[str, Path]) -> None:
    assert lkm(vdir, "insmod", str(kos["lkm_exec_params"])).returncode == 0
    code = ("import os, sys; from lkm.cli import run_tool; "
            f"os.environ['LKM_VIRTUAL'] = {str(vdir)!r}; "
            "assert run_tool('lsmod', []) == 0; "
            f"assert run_tool('modinfo', [{str(kos['lkm_exec_params'])!r}]) == 0; "
            "sys.exit(3 if 'unicorn' in sys.modules else 0)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "lkm_exec_params" in p.stdout


def test_a_kernel_function_nobody_implements_fails_the_load(
        tmp_path: Path, profile: KernelProfile, kos: dict[str, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from lkm.kernel.api import core
    from lkm.kernel.exec.faults import NotImplementedByVirtualKernel
    from lkm.kernel.exec.runtime import load_api

    load_api()
    monkeypatch.delitem(core.FUNCTIONS, "_printk")
    vk = VirtualKernel.create(tmp_path / "vk", profile=profile, depmod=False)
    with pytest.raises(NotImplementedByVirtualKernel) as ei:
        vk.finit_module(str(kos["lkm_exec_printk"]), "")
    assert ei.value.name == "_printk"
    assert ei.value.site.startswith("lkm_exec_printk_init+0x")
    assert "lkm_exec_printk" not in vk.read_text("/proc/modules")
