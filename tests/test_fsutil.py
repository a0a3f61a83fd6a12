"""lkm.fsutil.write_atomic: readers see the old file or the new one, never a part."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lkm.fsutil import write_atomic


def leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir() if p.name.endswith(".tmp"))


def test_new_file_gets_umask_mode(tmp_path: Path) -> None:
    p = tmp_path / "new"
    old = os.umask(0o027)
    try:
        write_atomic(p, b"one")
    finally:
        os.umask(old)
    assert p.read_bytes() == b"one"
    assert p.stat().st_mode & 0o7777 == 0o640
    assert leftovers(tmp_path) == []


def test_replacing_keeps_the_mode(tmp_path: Path) -> None:
    p = tmp_path / "m.ko"
    p.write_bytes(b"old")
    os.chmod(p, 0o600)
    write_atomic(p, memoryview(b"new contents"))
    assert p.read_bytes() == b"new contents"
    assert p.stat().st_mode & 0o7777 == 0o600
    write_atomic(p, bytearray(b"again"), mode=0o644, durable=False)
    assert p.stat().st_mode & 0o7777 == 0o644
    assert p.read_bytes() == b"again"
    assert leftovers(tmp_path) == []


def test_failure_leaves_the_old_file(tmp_path: Path) -> None:
    p = tmp_path / "keep"
    p.write_bytes(b"intact")
    with pytest.raises(TypeError):
        write_atomic(p, "not bytes")  # type: ignore[arg-type]
    assert p.read_bytes() == b"intact"
    assert leftovers(tmp_path) == []
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "f", b"x")


def test_symlink_is_replaced_not_followed(tmp_path: Path) -> None:
    """The link's target keeps its contents; the new file takes the target's mode."""
    target = tmp_path / "target"
    target.write_bytes(b"target")
    os.chmod(target, 0o640)
    link = tmp_path / "link"
    link.symlink_to(target)
    write_atomic(link, b"via link")
    assert not link.is_symlink() and link.read_bytes() == b"via link"
    assert link.stat().st_mode & 0o7777 == 0o640
    assert target.read_bytes() == b"target"
