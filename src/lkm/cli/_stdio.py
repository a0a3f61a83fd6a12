"""stdout and stderr as kmod's tools have them: C's stdio.

C's stdout is fully buffered on a pipe or file (in st_blksize chunks) and line
buffered on a terminal; stderr is unbuffered.  A tool killed by SIGPIPE when its
reader goes away ends the same way here.  Child processes (modprobe's install and
remove commands) write to the same descriptor, so :meth:`Stdout.sync` writes what C
would have written by then, to keep the byte order of the real tool.
"""

from __future__ import annotations

import contextlib
import os
import sys

_SYNC_AT = 1 << 20  # buffered characters/bytes before writing out whole blocks


class Stdout:
    """C's stdout over file descriptor 1: text (``write``) and bytes (``write_bytes``)
    kept in order, written in whole blocks on a pipe or file, per line on a terminal."""

    def __init__(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
        self.fd = 1
        self.parts: list[str] = []  # text not yet encoded
        self.count = 0
        self.pending = bytearray()  # encoded, not yet written
        try:
            self.line = os.isatty(self.fd)
            size = os.fstat(self.fd).st_blksize
        except OSError:
            self.line, size = False, 0
        self.size = size if size > 0 else 8192
        self.broken = False

    def write(self, text: str) -> None:
        """Buffer ``text`` (UTF-8, undecodable bytes kept as surrogates)."""
        self.parts.append(text)
        self.count += len(text)
        if self.line:
            if "\n" in text:
                self.flush()
        elif self.count > _SYNC_AT:
            self.sync()

    def write_bytes(self, data: bytes) -> None:
        """Buffer ``data`` after the text before it."""
        if self.parts:
            self._collect()
        pending = self.pending
        pending += data
        if self.line:
            if b"\n" in data:
                self.flush()
        elif len(pending) > _SYNC_AT:
            self.sync()

    def _collect(self) -> bytearray:
        if self.parts:
            self.pending += "".join(self.parts).encode("utf-8", "surrogateescape")
            self.parts.clear()
            self.count = 0
        return self.pending

    def sync(self) -> None:
        """Write what C's stdio would have written by now (every whole block but the
        one holding the last byte), before a child process writes."""
        data = self._collect()
        if self.line:
            self.flush()
            return
        n = (len(data) - 1) // self.size * self.size if data else 0
        if n > 0:
            self._write(bytes(data[:n]))
            del data[:n]

    def flush(self) -> None:
        """Write everything buffered."""
        data = self._collect()
        if data:
            out = bytes(data)
            data.clear()
            self._write(out)

    def _write(self, data: bytes) -> None:
        if self.broken:
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BrokenPipeError:
                self.broken = True
                die_of_sigpipe()  # as kmod's tools, killed by SIGPIPE
                return
            except OSError:
                self.broken = True
                return
            view = view[n:]


def write_err(text: str) -> None:
    """Write to stderr unbuffered, as C's stderr (bytes survive via surrogateescape)."""
    with contextlib.suppress(BrokenPipeError, ValueError):
        sys.stdout.flush()
    data = text.encode("utf-8", "surrogateescape")
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        sys.stderr.write(text)
        return
    sys.stderr.flush()
    while data:
        try:
            n = os.write(fd, data)
        except BrokenPipeError:
            return
        data = data[n:]


def die_of_sigpipe() -> None:
    """End as a C tool writing to a closed pipe does: killed by SIGPIPE."""
    import signal

    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing left to flush at exit
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
    raise SystemExit(141)  # not reached


__all__ = ["Stdout", "die_of_sigpipe", "write_err"]
