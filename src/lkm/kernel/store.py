"""A virtual kernel's persistent state: ``DIR/state.json`` under ``DIR/lock``.

Every operation takes an ``fcntl`` lock on ``DIR/lock`` (exclusive to change the
state, shared to read it), reads state.json (parsed again only when the file
changed) and writes a new one to a temporary file renamed over the old, so
concurrent processes serialise and a killed one leaves the old or the new state.
The JSON holds the kernel state (:meth:`KernelState.to_json`), the log records, the
boot time and the last record's sequence number.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lkm.errors import LkmError
from lkm.kernel.module.state import KernelState
from lkm.kernel.printk import LogRecord
from lkm.kernel.profile import KernelProfile

STATE_FORMAT = 1
LOG_MAX = 20000  # records kept (the kernel's ring buffer is bounded too)


class VirtualKernelError(LkmError):
    """A directory is not (or cannot become) a virtual kernel."""


@dataclass
class Snapshot:
    """The state as read: the kernel, its log, when it "booted", the last sequence."""

    kernel: KernelState
    log: list[LogRecord] = field(default_factory=list)
    boot: float = 0.0
    seq: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"format": STATE_FORMAT, "boot": self.boot, "seq": self.seq,
                **self.kernel.to_json(), "log": [r.to_json() for r in self.log[-LOG_MAX:]]}


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file, fsync it, rename it over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


class StateStore:
    """The state file of directory ``directory``, read into ``state_type`` states."""

    def __init__(self, directory: Path, profile: KernelProfile,
                 state_type: type[KernelState] = KernelState) -> None:
        self.dir = directory
        self.path = directory / "state.json"
        self.profile = profile
        self.state_type = state_type
        self._cached: Snapshot | None = None
        self._key: tuple[int, int, int] | None = None

    @contextlib.contextmanager
    def lock(self, exclusive: bool = True) -> Iterator[None]:
        fd = os.open(self.dir / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            yield
        finally:
            os.close(fd)

    def read(self, fresh: bool = False) -> Snapshot:
        """The state (call with the lock held); reused while the file is unchanged."""
        try:
            with open(self.path, "rb") as f:
                st = os.fstat(f.fileno())
                key = (st.st_ino, st.st_mtime_ns, st.st_size)
                if not fresh and self._cached is not None and key == self._key:
                    return self._cached
                snap = self._from_json(json.loads(f.read()))
        except (OSError, ValueError, KeyError, TypeError, AssertionError, AttributeError,
                IndexError) as e:
            raise VirtualKernelError(f"{self.dir}: corrupt state: {e}") from e
        self._cached, self._key = snap, key
        return snap

    def _from_json(self, d: dict[str, Any]) -> Snapshot:
        if d.get("format") != STATE_FORMAT:
            raise VirtualKernelError("unsupported state format")
        k = self.state_type(self.profile)
        k.load_json(d)
        return Snapshot(k, [LogRecord.from_json(r) for r in d["log"]], float(d["boot"]),
                        int(d["seq"]))

    def write(self, snap: Snapshot) -> None:
        """Replace the state file (call with the exclusive lock held)."""
        write_atomic(self.path, json.dumps(snap.to_json(), separators=(",", ":")).encode())
        self._cached, self._key = None, None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Snapshot]:
        """The state, locked, read afresh, written back when the block ends (even by an
        exception: the kernel's state changes as far as the failed call got)."""
        with self.lock():
            snap = self.read(fresh=True)
            try:
                yield snap
            finally:
                self.write(snap)
