"""Inputs that once broke lkm (tests/reproducers/README): each pinned against kmod 30."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import KMOD, LKM

HERE = Path(__file__).resolve().parent / "reproducers"
RELEASE = "6.1.0-reproducer"


def _tree(root: Path, ko: Path) -> Path:
    d = root / "lib" / "modules" / RELEASE / "kernel"
    d.mkdir(parents=True)
    shutil.copy(ko, d / ko.name)
    return root / "lib" / "modules" / RELEASE


@pytest.mark.kmod
@pytest.mark.parametrize("name", ["depmod-traceback-1.ko"])
def test_depmod_like_kmod(tmp_path: Path, name: str) -> None:
    """depmod on a tree holding the input: the same exit status, messages and index files."""
    if not Path(KMOD["depmod"]).exists():
        pytest.skip("Debian's kmod is not installed")
    out = {}
    for tool, cmd in (("kmod", KMOD["depmod"]), ("lkm", LKM)):
        args = [cmd] if tool == "kmod" else [cmd, "depmod"]
        moddir = _tree(tmp_path / tool, HERE / name)
        r = subprocess.run([*args, "-b", str(tmp_path / tool), RELEASE],
                           capture_output=True, text=True, timeout=60)
        files = {p.name: p.read_bytes() for p in sorted(moddir.glob("modules.*"))}
        out[tool] = (r.returncode, r.stdout, r.stderr.replace(str(tmp_path / tool), "ROOT"),
                     files)
    assert "Traceback" not in out["lkm"][2]
    assert out["lkm"] == out["kmod"]
