"""lkm taint: taint values explained per release (lkm.kernel.taint's table, lkm taint's CLI).

References: kernel/panic.c taint_flags[] (TAINT_FLAG(name, c_true, c_false, module)),
include/linux/panic.h (TAINT_FLAGS_COUNT 19 in 6.1 and 6.12), tools/debugging/kernel-chktaint
(its lines and "Raw taint value as int/string: N/'...'").
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import LKM, Tree
from lkm.kernel import taint as T


def _lkm(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LKM, *args], capture_output=True, text=True, env=env)


def test_table_matches_the_loaders_flags() -> None:
    """Bits 0-18 are the loader's TAINT_FLAGS (the 6.1/6.12 set); names as panic.h has them."""
    assert len(T.TAINT_FLAGS) == 19
    for f, (c_true, c_false, module) in zip(T.TAINT_FLAG_TABLE, T.TAINT_FLAGS, strict=False):
        assert (f.c_true, f.c_false, f.module) == (c_true, c_false, module)
    assert [f.bit for f in T.TAINT_FLAG_TABLE] == list(range(20))
    assert T.TAINT_FLAG_TABLE[T.TAINT_OOT_MODULE].name == "OOT_MODULE"
    assert T.TAINT_FLAG_TABLE[T.TAINT_FWCTL].c_true == "J"


@pytest.mark.parametrize(("version", "count"), [
    ((5, 19), 18), ((6, 0), 19), ((6, 1), 19), ((6, 12), 19), ((6, 12, 117), 19),
    ((6, 14), 19), ((6, 15), 20), ((6, 19), 20), (None, 20)])
def test_flags_per_release(version: tuple[int, ...] | None, count: int) -> None:
    """TEST (N, 18) came with 6.0, FWCTL (J, 19) with 6.15: TAINT_FLAGS_COUNT per release."""
    assert len(T.flags_of(version)) == count


def test_print_tainted_per_release() -> None:
    for mask in (0, 1, 4097, 12288, (1 << 19) - 1, 1 << 18 | 1 << 9):
        assert T.print_tainted_for(mask, (6, 1)) == T.print_tainted(mask)
    # one column per flag of the release: 19 in 6.12, 20 in 6.15
    assert T.print_tainted_for(4096, (6, 12)) == "Tainted: G           O      "
    assert T.print_tainted_for(4096, (6, 15)) == "Tainted: G           O       "
    assert T.print_tainted_for(1 << 19, (6, 15)).endswith("J")
    assert T.print_tainted_verbose(4608) == "Tainted: [W]=WARN, [O]=OOT_MODULE"
    assert T.print_tainted_verbose(0) == "Not tainted"


@pytest.mark.parametrize(("text", "version", "mask"), [
    ("4097", None, 4097),
    ("0x3000", None, 12288),
    ("Not tainted 6.1.0-57-amd64 #1", (6, 1), 0),
    ("Tainted: P           O      ", (6, 1), 4097),
    # an oops line: the columns, then the release
    ("Tainted: G        W  OE      6.1.0-57-amd64 #1", (6, 1), 1 << 9 | 1 << 12 | 1 << 13),
    ("Tainted: G           OE", (6, 12), 12288),  # trailing blanks trimmed
    ("Tainted: G      OE  6.1", (6, 12), 12288),  # columns of another release: by letter
    ("Tainted: [W]=WARN, [O]=OOT_MODULE", None, 4608),
    ("POE", None, 12289),
    ("G", None, 0),
])
def test_parse_taint(text: str, version: tuple[int, ...] | None, mask: int) -> None:
    assert T.parse_taint(text, version) == mask


@pytest.mark.parametrize("text", ["-1", "Tainted: [Q]=NOPE", "hello", ""])
def test_parse_taint_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        T.parse_taint(text)


def test_chktaint_report() -> None:
    """kernel-chktaint's layout, each line with the flag's letter."""
    assert T.chktaint_report(0) == "Kernel not Tainted\n"
    text = T.chktaint_report(12288, (6, 1), {"dump_test": "OE"})
    assert text.splitlines()[:8] == [
        'Kernel is "tainted" for the following reasons:',
        " * [O] externally-built ('out-of-tree') module was loaded (#12)",
        " * [E] unsigned module was loaded (#13)",
        "Raw taint value as int/string: 12288/'G           OE     '",
        "",
        "Modules tainted: count=1",
        "dump_test: taint=OE",
        "",
    ]
    later = T.chktaint_report(1 << 19 | 1 << 25, (6, 1))
    assert " * [J] fwctl's mutating debug interface was used (#19; not defined before 6.15)" \
        in later
    assert " * unknown taint flag (#25)" in later


def test_release_version() -> None:
    assert T.release_version("6.12.117+deb12-amd64") == (6, 12)
    assert T.release_version("6.1") == (6, 1)
    assert T.release_version("linux") is None


# --- the CLI ------------------------------------------------------------------------------

def test_cli_value() -> None:
    p = _lkm("taint", "4097", "--kernel", "6.1")
    assert p.returncode == 0, p.stderr
    assert p.stdout == T.chktaint_report(4097, (6, 1))
    p = _lkm("taint", "Tainted:", "P", "O")  # unquoted: the columns are lost, the letters kept
    assert "Raw taint value as int/string: 4097/" in p.stdout
    d = json.loads(_lkm("taint", "--json", "-k", "6.12", "0x81000").stdout)
    assert d["value"] == 0x81000 and d["string"] == "Tainted: G           O      "
    assert [(f["bit"], f["letter"], f["name"], f["defined"]) for f in d["flags"]] == [
        (12, "O", "OOT_MODULE", True), (19, "J", "FWCTL", False)]


def test_cli_errors() -> None:
    p = _lkm("taint", "bogus")
    assert p.returncode == 2 and "is not a taint value" in p.stderr
    p = _lkm("taint", "1", "--kernel", "nonsense")
    assert p.returncode == 2 and "neither a kernel tree nor a release" in p.stderr


@pytest.mark.trees
def test_cli_kernel_tree(tree: Tree) -> None:
    """--kernel TREE: the tree's release decides the flag set."""
    p = _lkm("taint", "--json", "--kernel", str(tree.root), "262144")
    d = json.loads(p.stdout)
    assert d["release"] == tree.release and d["flags"][0]["defined"] is True
    assert d["string"] == "Tainted: G                 N"


@pytest.mark.trees
def test_cli_virtual_kernel(tree61: Tree, tmp_path: Path) -> None:
    """No value: the (virtual) kernel's mask and its modules' letters (/sys/module/*/taint)."""
    from kbuild import build_modules, headers_dir

    if headers_dir(tree61.release) is None:
        pytest.skip("no linux-headers for 6.1")
    ko = build_modules(tree61.release)
    vk = tmp_path / "vk"
    assert _lkm("virtual", "create", str(vk), "--from", str(tree61.root)).returncode == 0
    base = ["--virtual", str(vk)]
    assert _lkm("taint").returncode == 0
    assert _lkm(*base, "taint").stdout == "Kernel not Tainted\n"
    for name in ("lkm_params", "lkm_prop", "lkm_staging"):
        p = _lkm(*base, "insmod", str(ko[name]))
        assert p.returncode == 0, p.stderr
    mask = 1 << 0 | 1 << 10 | 1 << 12 | 1 << 13
    letters = {"lkm_params": "OE", "lkm_prop": "POE", "lkm_staging": "COE"}
    assert _lkm(*base, "taint").stdout == T.chktaint_report(mask, (6, 1), letters)
    d = json.loads(_lkm(*base, "taint", "--json").stdout)
    assert d["value"] == mask and d["release"] == tree61.release
    assert d["modules"] == letters
