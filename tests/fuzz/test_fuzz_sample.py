"""The fixed-seed fuzz sample `make test` runs: every target of tests/fuzz/targets.py on
its ``sample`` inputs (a few thousand for the fast ones), none of which may end in
anything but lkm's typed errors or take longer than the target's bound.  Longer
campaigns: scripts/fuzz.py.

Findings in code being refactored elsewhere are pinned in tests/test_reproducers.py
(xfail until fixed) and listed in KNOWN, so the sample does not fail on them twice.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
from targets import TARGETS

SEED = 18  # issue 18

# finding key (harness.Finding.key) -> the reproducer in tests/reproducers/ that pins it
KNOWN: dict[str, str] = {
    "ValueError @ kernel/profile.py:226": "profile-exports-1.vmlinuz",
    "error @ kernel/profile.py:241": "profile-ksymtab-1.vmlinuz",
    "error @ kernel/profile.py:239": "profile-kcrctab-1.vmlinuz",
    "InvalidVersion @ kimage.py:388": "kimage-cert-version-1.vmlinuz",
}


@pytest.mark.trees
@pytest.mark.parametrize("name", list(TARGETS))
def test_sample(name: str) -> None:
    target = TARGETS[name]
    st = harness.campaign(target, SEED, target.sample)
    new = {k: f for k, f in st.findings.items() if k not in KNOWN}
    report = "\n\n".join(f"{f.key} ({f.count}x): {f.message}\n{f.trace}" for f in new.values())
    assert not new, report
    assert not st.mutator_errors
    assert st.inputs == target.sample


@pytest.mark.trees
@pytest.mark.kmod
def test_depmod_cli_like_kmod(tmp_path: Path) -> None:
    """A sample of module mutants, each in a tree, through lkm depmod and kmod 30's:
    the same exit status and index files (tests/fuzz/cli_diff.py)."""
    import cli_diff

    from conftest import LKM

    if not Path(cli_diff.KMOD_DEPMOD).exists():
        pytest.skip("Debian's kmod is not installed")
    st = cli_diff.campaign(30, SEED, tmp_path, LKM)
    assert st.mutants == 30 and st.same + st.kmod_crashed + st.gzip + len(st.differs) == 30
    assert not st.differs, "\n".join(d for _m, d in st.differs)
