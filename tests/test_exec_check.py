"""``lkm check`` runs the module's code: init at load, exit at the unload after the loads.

The verdicts (loads, fails with init's errno, killed by an oops, not emulated), the
module's own log records with their levels in ``--json``, and ``--no-run``'s static
verdict, on the real Kbuild modules of tests/modules/exec/.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import LKM, Tree
from lkm.kernel.api import core as api
from lkm.kernel.check import KILLED, LOADS, NOT_EMULATED, Checker
from lkm.kernel.exec.runtime import load_api
from lkm.kernel.profile import KernelProfile, load_cached

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


def check(tree: Tree, *args: str) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([LKM, "check", "--kernel", str(tree.root), *args], capture_output=True,
                       text=True, timeout=300)
    assert "Traceback" not in p.stderr, p.stderr
    return p


def test_init_and_exit_run(profile: KernelProfile, kos: dict[str, Path]) -> None:
    c = Checker(profile, run=True)
    [r] = c.run([str(kos["lkm_exec_params"])])
    assert r.verdict == LOADS and r.ran
    assert (6, "lkm_exec_params: hello, world (1 of 1)") in r.records
    c.attach_exits([r])
    assert r.exit is not None and r.exit.loaded and r.exit.ran
    assert r.exit.records == [(6, "lkm_exec_params: goodbye, world")]


def test_init_errno_is_the_verdict(tree: Tree, kos: dict[str, Path]) -> None:
    p = check(tree, str(kos["lkm_exec_enomem"]))
    assert p.returncode == 1
    assert p.stdout.startswith("lkm_exec_enomem: fails: ENOMEM (Cannot allocate memory)\n")
    assert "    lkm_exec_enomem: cannot allocate buffer 2\n" in p.stdout
    p = check(tree, "--no-run", str(kos["lkm_exec_enomem"]))  # the static verdict
    assert p.returncode == 0
    assert p.stdout.startswith("lkm_exec_enomem: loads, taints OE\n")
    assert "buffer" not in p.stdout


def test_json_has_the_log_with_levels(tree: Tree, kos: dict[str, Path]) -> None:
    p = check(tree, "--json", str(kos["lkm_exec_printk"]))
    assert p.returncode == 0, p.stderr
    [r] = json.loads(p.stdout)
    assert r["ran"] is True and r["verdict"] == "loads"
    assert {"level": 3, "text": "lkm_exec_printk: err (3)"} in r["log"]
    assert {"level": 6, "text": "lkm_exec_printk: info (6)"} in r["log"]
    assert r["exit"]["ran"] is True
    p = check(tree, "--json", "--no-run", str(kos["lkm_exec_printk"]))
    [r] = json.loads(p.stdout)
    assert r["ran"] is False and not any("err (3)" in x["text"] for x in r["log"])


def test_oops_in_init_is_killed(profile: KernelProfile, kos: dict[str, Path]) -> None:
    [r] = Checker(profile, run=True).run([str(kos["lkm_exec_null_write"])])
    assert r.verdict == KILLED and not r.loaded and "D" in r.taint
    assert any(t.startswith("BUG: kernel NULL pointer dereference") for _, t in r.records)


def test_unimplemented_function_is_not_emulated(profile: KernelProfile, kos: dict[str, Path],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    load_api()
    monkeypatch.delitem(api.FUNCTIONS, "_printk")  # as if printk were not implemented
    [r] = Checker(profile, run=True).run([str(kos["lkm_exec_printk"])])
    assert r.verdict == NOT_EMULATED and r.ran and not r.loaded
    assert r.missing == "_printk" and not r.missing_data
    assert r.site is not None and r.site.startswith("lkm_exec_printk_init+0x")
    assert r.summary() == f"not emulated: calls _printk (from {r.site})"
    assert r.to_json()["missing"] == {"function": "_printk", "site": r.site}
