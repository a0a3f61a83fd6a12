"""KASAN mode (``lkm virtual create --kasan``): KASAN's reports on slab misuse.

No Debian kernel is built with KASAN, so there is no real transcript to compare with: the
expected lines are the ones mm/kasan/report.c prints (6.1's texts and 6.3+'s), checked
here on the real Kbuild modules of tests/modules/exec/.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import LKM, Tree
from lkm.kernel.check import Checker
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


def _texts(records: list[tuple[int, str]]) -> list[str]:
    return [line for _lv, t in records for line in t.split("\n")]


def test_use_after_free_is_reported(profile: KernelProfile, kos: dict[str, Path]) -> None:
    [r] = Checker(profile, run=True, kasan=True).run([str(kos["lkm_exec_uaf"])])
    assert r.loaded  # KASAN reports, the access happens, init goes on
    t = _texts(r.records)
    kind = "slab-use-after-free" if profile.version[:2] >= (6, 3) else "use-after-free"
    i = t.index("=" * 66)
    assert t[i + 1].startswith(f"BUG: KASAN: {kind} in lkm_exec_uaf_init+0x")
    assert t[i + 1].endswith(" [lkm_exec_uaf]")
    assert t[i + 2].startswith("Read of size ") and " by task insmod/" in t[i + 2]
    a = t.index(next(x for x in t if x.startswith("Allocated by task ")))
    assert t[a + 1].startswith(" lkm_exec_uaf_init+0x")
    f = t.index(next(x for x in t if x.startswith("Freed by task ")))
    assert t[f + 1].startswith(" lkm_exec_uaf_init+0x")
    assert " which belongs to the cache kmalloc-32 of size 32" in t
    assert any(x.startswith(">ffff") and " fb fb fb fb " in x for x in t)
    assert t.count("=" * 66) == 2
    assert "B" in r.taint  # TAINT_BAD_PAGE
    assert any("after kfree" in x for x in t)


def test_double_free_is_reported_and_ignored(tmp_path: Path, tree: Tree,
                                             kos: dict[str, Path]) -> None:
    """Through the virtual kernel's tools: the second kfree is reported, not done, and
    exit carries on (without KASAN the hardened freelist BUGs, test_exec_modules.py)."""
    d = tmp_path / "vk"
    p = subprocess.run([LKM, "virtual", "create", str(d), "--from", str(tree.root),
                        "--no-depmod", "--kasan"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    for argv in (["insmod", str(kos["lkm_exec_double_free"])],
                 ["rmmod", "lkm_exec_double_free"]):
        p = subprocess.run([LKM, "--virtual", str(d), *argv], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    t = _texts([(r.level, r.text) for r in VirtualKernel.open(d).log_records()])
    bug = next(x for x in t if x.startswith("BUG: KASAN: "))
    assert bug.startswith("BUG: KASAN: double-free in lkm_exec_double_free_exit+0x")
    if tree.release.startswith("6.12"):
        assert t[t.index(bug) + 1].startswith("Free of addr ffff")
    alloc = next(x for x in t if x.startswith("Allocated by task "))
    free = next(x for x in t if x.startswith("Freed by task "))
    assert int(alloc.split()[-1][:-1]) < int(free.split()[-1][:-1])  # insmod, then rmmod
    assert t[-1] == "lkm_exec_double_free: freed twice"
    assert not any(x.startswith("kernel BUG at") for x in t)


def test_without_kasan_nothing_is_reported(profile: KernelProfile,
                                           kos: dict[str, Path]) -> None:
    [r] = Checker(profile, run=True).run([str(kos["lkm_exec_uaf"])])
    assert not any("KASAN" in x for x in _texts(r.records))


def test_leaks_listed_at_unload(profile: KernelProfile, kos: dict[str, Path],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """kmemleak-style (mm/kmemleak.c print_unreferenced()): what init allocated and exit
    did not free (kfree made a no-op), listed at the unload; nothing when all is freed."""
    from lkm.kernel.api import core as api
    from lkm.kernel.exec.runtime import load_api

    c = Checker(profile, run=True, leaks=True)
    rs = c.run([str(kos["lkm_exec_mem"])])
    c.attach_exits(rs)
    assert rs[-1].exit is not None and rs[-1].exit.leaks == []
    load_api()
    monkeypatch.setitem(api.FUNCTIONS, "kfree", api.KFunc("kfree", lambda k, p: None, 1))
    c = Checker(profile, run=True, leaks=True)
    rs = c.run([str(kos["lkm_exec_mem"])])
    c.attach_exits(rs)
    ex = rs[-1].exit
    assert ex is not None and ex.loaded
    leaks = ex.leaks
    assert leaks[0].startswith("unreferenced object 0xffff") and leaks[0].endswith("):")
    assert leaks[1].startswith('  comm "insmod", pid ')
    assert leaks[2].startswith("  hex dump (first ")
    back = leaks.index("  backtrace:")
    assert leaks[back + 1].startswith("    [<ffffffffc")
    assert leaks[back + 1].endswith(" [lkm_exec_mem]") and "lkm_exec_mem_init+0x" in leaks[back + 1]
    assert ex.to_json()["leaks"] == leaks
