"""Writing files so that readers never see a half-written one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

Data = bytes | bytearray | memoryview


def write_atomic(path: str | os.PathLike[str], data: Data, mode: int | None = None,
                 durable: bool = True) -> None:
    """Replace ``path`` with ``data`` in one step: readers see the old file or the new
    one, never a part of it.

    The data goes to a new temporary file in the same directory (``.<name>.<random>.tmp``,
    created exclusively), which is then renamed over ``path``.  ``mode`` is the new
    file's permission bits; None keeps those of the file being replaced (following a
    symlink to read them, though the link itself is what gets replaced) or, for a new
    file, gives ``0666 & ~umask`` as ``open(2)`` would.  With ``durable`` the data is
    fsync'ed before the rename and the directory after it, so that after a crash the
    path holds the old or the new contents, not an empty file.  On any error the
    temporary file is removed and ``path`` is left as it was.
    """
    p = Path(path)
    if mode is None:
        with contextlib.suppress(OSError):  # a new file: 0666 & ~umask, as open(2) makes it
            mode = p.stat().st_mode & 0o7777
    directory = p.parent
    fd, tmp = _create_temporary(directory, p.name)
    try:
        with os.fdopen(fd, "wb") as f:
            if mode is not None:
                os.fchmod(f.fileno(), mode)
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    if durable:
        _fsync_directory(directory)


def _create_temporary(directory: Path, name: str) -> tuple[int, Path]:
    """A new file ``.<name>.<random>.tmp`` in ``directory``, created exclusively with
    mode 0666 (less the umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    for _ in range(100):
        tmp = directory / f".{name}.{os.urandom(4).hex()}.tmp"
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"{directory}: no free temporary name for {name}")


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable (best effort: not every file system can)."""
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(dfd)
    finally:
        os.close(dfd)


__all__ = ["write_atomic"]
