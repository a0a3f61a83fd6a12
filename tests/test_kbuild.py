"""The Kbuild test modules (tests/modules, tests/kbuild.py), checked with kmod and binutils."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from conftest import KMOD, Tree
from kbuild import build_modules, patch_bytes, patch_module

pytestmark = [pytest.mark.trees, pytest.mark.kmod]

EXPECTED = {
    "lkm_params", "lkm_user", "lkm_prop", "lkm_ns_export", "lkm_ns_user", "lkm_init_fail",
    "lkm_init_positive", "lkm_noexit", "lkm_softdep", "lkm_alias", "lkm_staging",
    "lkm_intree", "lkm_testmod", "lkm_weak", "lkm_common", "lkm_prop_gpl",
    "lkm_ns_noimport", "lkm_dup_export", "lkm_dup_kernel",
}


def modinfo(paths: list[Path]) -> dict[str, dict[str, list[str]]]:
    """kmod's modinfo over many modules in one call: name -> key -> values."""
    out = subprocess.run([KMOD["modinfo"], *map(str, paths)], capture_output=True,
                         text=True, check=True).stdout
    info: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        value = value.strip()
        if key == "filename":
            current = {}
            info[Path(value).name.removesuffix(".ko")] = current
        current.setdefault(key, []).append(value)
    return info


def symbols(ko: Path) -> list[list[str]]:
    """readelf -s rows: [num, value, size, type, bind, vis, ndx, name]."""
    out = subprocess.run(["readelf", "-sW", str(ko)], capture_output=True, text=True,
                         check=True).stdout
    return [row.split() for row in out.splitlines() if len(row.split()) == 8
            and row.split()[0].endswith(":")]


def test_all_built(tree: Tree, test_modules: dict[str, Path]) -> None:
    assert set(test_modules) == EXPECTED
    for name, ko in test_modules.items():
        assert ko.name == f"{name}.ko"
        assert ko.read_bytes()[:4] == b"\x7fELF"
    repo = Path(__file__).resolve().parent.parent
    assert not any(repo in ko.parents for ko in test_modules.values())


def test_modinfo(tree: Tree, test_modules: dict[str, Path]) -> None:
    info = modinfo(sorted(test_modules.values()))
    assert set(info) == EXPECTED
    for name, mi in info.items():
        assert mi["name"] == [name]
        assert mi["vermagic"][0].split()[0] == tree.release
        assert "intree" not in mi or name == "lkm_intree"
    params = info["lkm_params"]
    types = dict(p.rsplit(" (", 1) for p in params["parm"])
    types = {k.split(":", 1)[0]: v.rstrip(")") for k, v in types.items()}
    assert types == {
        "p_byte": "byte", "p_short": "short", "p_ushort": "ushort", "p_int": "int",
        "p_uint": "uint", "p_long": "long", "p_ulong": "ulong", "p_ullong": "ullong",
        "p_hexint": "hexint", "p_bool": "bool", "p_invbool": "invbool", "p_charp": "charp",
        "p_string": "string", "p_array": "array of int", "p_hidden": "int", "p_named": "int",
        "p_unsafe": "int",
    }
    assert info["lkm_user"]["depends"] == ["lkm_params"]
    assert info["lkm_prop"]["license"] == ["Proprietary"]
    assert info["lkm_prop"]["depends"] == ["lkm_params"]
    assert info["lkm_prop_gpl"]["license"] == ["Proprietary"]
    assert info["lkm_prop_gpl"]["depends"] == ["lkm_params"]
    assert info["lkm_ns_user"]["import_ns"] == ["LKM_NS"]
    assert info["lkm_ns_user"]["depends"] == ["lkm_ns_export"]
    assert "import_ns" not in info["lkm_ns_noimport"]
    assert info["lkm_ns_noimport"]["depends"] == ["lkm_ns_export"]
    assert info["lkm_softdep"]["softdep"] == ["pre: lkm_params post: lkm_user"]
    assert "lkm-alias-wild-*" in info["lkm_alias"]["alias"]
    assert len(info["lkm_alias"]["alias"]) == 5
    assert info["lkm_staging"]["staging"] == ["Y"]
    assert info["lkm_intree"]["intree"] == ["Y"]
    assert info["lkm_testmod"]["test"] == ["Y"]
    assert info["lkm_dup_export"]["depends"] == [""]


def test_symbols(test_modules: dict[str, Path]) -> None:
    common = [r for r in symbols(test_modules["lkm_common"]) if r[7] == "lkm_common_var"]
    assert common and common[0][6] == "COM"
    weak = [r for r in symbols(test_modules["lkm_weak"]) if r[7] == "lkm_weak_missing"]
    assert weak and weak[0][4] == "WEAK" and weak[0][6] == "UND"
    dup = test_modules["lkm_dup_kernel"].read_bytes()
    assert b"jiffies_to_msecs\0" in dup and b"lkm_dup_to_msecs" not in dup


def test_kmod_depmod(tree: Tree, test_modules: dict[str, Path], tmp_path: Path) -> None:
    """kmod's depmod sees the dependencies, soft dependencies and aliases."""
    extra = tmp_path / "lib" / "modules" / tree.release / "extra"
    extra.mkdir(parents=True)
    for name, ko in test_modules.items():
        if not name.startswith("lkm_dup_"):  # a second provider of lkm_params_value
            (extra / ko.name).symlink_to(ko)
    subprocess.run([KMOD["depmod"], "-b", str(tmp_path), tree.release], check=True,
                   capture_output=True)
    moddir = extra.parent
    dep = dict(line.split(":", 1) for line in (moddir / "modules.dep").read_text().splitlines())
    assert dep["extra/lkm_user.ko"].split() == ["extra/lkm_params.ko"]
    assert dep["extra/lkm_ns_user.ko"].split() == ["extra/lkm_ns_export.ko"]
    assert dep["extra/lkm_params.ko"].strip() == ""
    assert "softdep lkm_softdep pre: lkm_params post: lkm_user" in \
        (moddir / "modules.softdep").read_text()
    assert "alias lkm-alias-wild-* lkm_alias" in (moddir / "modules.alias").read_text()


def test_cached(tree: Tree, test_modules: dict[str, Path]) -> None:
    t0 = time.monotonic()
    again = build_modules(tree.release)
    assert again == test_modules
    assert time.monotonic() - t0 < 2


def test_patch(test_modules: dict[str, Path], tmp_path: Path) -> None:
    out = patch_module(test_modules["lkm_staging"], tmp_path / "x.ko",
                       [(b"staging=Y\0", b"stagxng=Y\0")])
    info = modinfo([out])["x"]
    assert "staging" not in info and info["stagxng"] == ["Y"]
    with pytest.raises(ValueError, match="length"):
        patch_bytes(b"abc", [(b"a", b"xy")])
    with pytest.raises(ValueError, match="not found"):
        patch_bytes(b"abc", [(b"z", b"y")])
