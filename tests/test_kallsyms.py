"""/proc/kallsyms (lkm/kernel/kallsyms.py): the kernel's symbols decoded from each tree's
image, and a loaded module's symbols after them at the loader's addresses."""

from __future__ import annotations

from pathlib import Path

import pytest

from lkm.kernel import kallsyms
from lkm.kernel.profile import load_cached

pytestmark = pytest.mark.trees


def test_kernel_symbols_decode(tree: object) -> None:
    profile = load_cached(tree.root)  # type: ignore[attr-defined]
    syms = kallsyms.kernel_symbols(profile)
    assert len(syms) > 50000
    by_name = {s.name: s for s in syms}
    assert by_name["_text"].addr == 0xFFFFFFFF81000000 and by_name["_text"].type == "T"
    assert by_name["_printk"].type == "T" and by_name["jiffies"].type == "D"
    assert by_name["seq_read"].addr > by_name["_text"].addr
    assert by_name["current_task" if "current_task" in by_name else "pcpu_hot"].addr < 0x100000
    text = [s.addr for s in syms if s.addr >= 0xFFFFFFFF80000000]
    assert text == sorted(text)  # kallsyms order is address order
    assert kallsyms.kernel_symbols(profile) is syms  # decoded once per process
    assert Path(profile.cache_path(".kallsyms")).is_file()


def test_module_symbols_follow(tree: object, tmp_path: Path) -> None:
    from kbuild import build_modules, headers_dir
    from lkm.kernel.virtual import VirtualKernel
    from test_exec_modules import lkm

    if headers_dir(tree.release) is None:  # type: ignore[attr-defined]
        pytest.skip("no headers")
    kos = build_modules(tree.release, exec_modules=True)  # type: ignore[attr-defined]
    vdir = tmp_path / "vk"
    VirtualKernel.create(vdir, profile=load_cached(tree.root), depmod=False)  # type: ignore[attr-defined]
    assert lkm(vdir, "insmod", str(kos["lkm_exec_export"])).returncode == 0
    vk = VirtualKernel.open(vdir)
    lines = vk.read_text("/proc/kallsyms").splitlines()
    mod = [ln for ln in lines if ln.endswith("\t[lkm_exec_export]")]
    assert mod and lines[-len(mod):] == mod  # after the kernel's
    fields = {ln.split()[2]: ln.split()[:2] for ln in mod}
    assert fields["lkm_exec_add"][1] == "T"  # exported: upper case
    assert fields["lkm_exec_export_exit"][1] == "t" and fields["calls"][1] == "b"
    assert fields["__this_module"][1] == "d"
    assert "lkm_exec_export_init" not in fields  # init text is gone after init
    text = int(vk.read_text("/sys/module/lkm_exec_export/sections/.text"), 16)
    assert min(int(a, 16) for a, t in fields.values() if t in "tT") == text
