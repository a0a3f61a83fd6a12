"""Shared fixtures: the Debian kernel trees (fetched by scripts/test-fixtures.py) and kmod."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("LKM_TEST_CACHE", Path.home() / ".cache" / "lkm-tests"))


@dataclass(frozen=True)
class Tree:
    """An extracted Debian linux-image package."""

    flavour: str  # "6.1" or "6.12"
    root: Path  # holds boot/ and lib/modules/<release>/
    release: str
    kmod_root: Path  # hard-linked copy on which kmod's depmod -b was run

    @property
    def moddir(self) -> Path:
        return self.root / "lib" / "modules" / self.release

    @property
    def kmod_moddir(self) -> Path:
        return self.kmod_root / "lib" / "modules" / self.release

    @property
    def vmlinuz(self) -> Path:
        return self.root / "boot" / f"vmlinuz-{self.release}"

    def modules(self) -> list[Path]:
        """Every module file of the tree, sorted."""
        return sorted(p for p in (self.moddir / "kernel").rglob("*.ko*") if p.is_file())


_trees: dict[str, Tree] | None = None


def _load_trees() -> dict[str, Tree]:
    global _trees
    if _trees is None:
        out = subprocess.run([sys.executable, str(ROOT / "scripts" / "test-fixtures.py")],
                             capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"test-fixtures failed: {out.stderr}")
        trees = {}
        for line in out.stdout.splitlines():
            flavour, path, release = line.split()
            root = Path(path)
            trees[flavour] = Tree(flavour, root, release, root.with_name(root.name + ".kmod"))
        _trees = trees
    return _trees


@pytest.fixture(scope="session")
def trees() -> dict[str, Tree]:
    return _load_trees()


@pytest.fixture(scope="session")
def tree61(trees: dict[str, Tree]) -> Tree:
    return trees["6.1"]


@pytest.fixture(scope="session")
def tree612(trees: dict[str, Tree]) -> Tree:
    return trees["6.12"]


@pytest.fixture(params=["6.1", "6.12"], scope="session")
def tree(request: pytest.FixtureRequest, trees: dict[str, Tree]) -> Tree:
    return trees[request.param]


KMOD = {name: f"/sbin/{name}" if name in ("depmod", "modprobe", "insmod", "rmmod", "modinfo",
                                          "lsmod") else name
        for name in ("depmod", "modprobe", "insmod", "rmmod", "modinfo", "lsmod")}
LKM = str(ROOT / ".venv" / "bin" / "lkm") if (ROOT / ".venv" / "bin" / "lkm").exists() else "lkm"


# --- test modules built with Kbuild (tests/kbuild.py, tests/modules/README) ---

def _built_modules(tree: Tree) -> dict[str, Path]:
    from kbuild import build_modules, headers_dir

    if headers_dir(tree.release) is None:
        pytest.skip(f"no linux-headers for {tree.release} (run scripts/install-system)")
    return build_modules(tree.release)


@pytest.fixture(scope="session")
def test_modules_61(tree61: Tree) -> dict[str, Path]:
    """The test modules built for the 6.1 tree: name -> .ko path."""
    return _built_modules(tree61)


@pytest.fixture(scope="session")
def test_modules_612(tree612: Tree) -> dict[str, Path]:
    """The test modules built for the 6.12 tree: name -> .ko path."""
    return _built_modules(tree612)


@pytest.fixture(scope="session")
def test_modules(tree: Tree) -> dict[str, Path]:
    """The test modules built for `tree` (parametrised like `tree`)."""
    return _built_modules(tree)
