"""The public API: lkm.__all__ resolves, and README's example script runs as documented."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import lkm
from conftest import Tree

README = Path(__file__).resolve().parent.parent / "README.md"


def test_all_names_resolve() -> None:
    for name in lkm.__all__:
        assert getattr(lkm, name) is not None, name
    with pytest.raises(AttributeError):
        _ = lkm.no_such_name  # type: ignore[attr-defined]


def test_import_is_cheap() -> None:
    """`import lkm` imports none of the library (the tools' start-up stays small)."""
    code = "import sys, lkm; print(sorted(m for m in sys.modules if m.startswith('lkm')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "['lkm']"


def _example() -> str:
    text = README.read_text()
    section = text[text.index("## Python API"):]
    m = re.search(r"```python\n(.*?)```", section, re.S)
    assert m is not None
    return m.group(1)


@pytest.mark.trees
def test_readme_example(tree61: Tree, test_modules_61: dict[str, Path], tmp_path: Path) -> None:
    from kbuild import build_modules

    ko = build_modules(tree61.release, exec_modules=True)["lkm_exec_printk"]
    script = tmp_path / "example.py"
    script.write_text(_example())
    r = subprocess.run([sys.executable, str(script), str(tree61.root), str(ko)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("lkm_exec_printk GPL 6.1.")
    assert lines[1] == "['ext4']"
    assert lines[2:5] == ["<3> lkm_exec_printk: a string argument", "<6> ",
                          "<6> lkm_exec_printk: after an empty line"]
    assert lines[5].startswith("lkm_exec_printk ") and " 0 - Live 0xffffffffc" in lines[5]
    assert lines[6] == "lkm_exec_printk loads, taints OE"
