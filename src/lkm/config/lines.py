"""How kmod reads its text files: configuration lines, fgets lines, a whole input file.

* :func:`wrapped_lines` is kmod's ``freadline_wrapped`` (shared/util.c), the one line
  reader of both modprobe.d (libkmod/libkmod-config.c, kmod_config_parse) and depmod.d
  (tools/depmod.c, depmod_config_parse);
* :func:`fgets_lines` is ``fgets`` into a fixed buffer, as tools/depmod.c reads
  modules.order, modules.builtin, Module.symvers and System.map;
* :func:`read_file` reads a whole input without blocking on a FIFO.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

PATH_MAX = 4096


def wrapped_lines(data: bytes) -> Iterator[tuple[int, str]]:
    """kmod's ``freadline_wrapped`` over ``data``: (line number, line) per logical line.

    A backslash before a newline joins the next physical line; before any other byte it
    is dropped and the byte kept; at the very end of the file it becomes a 0xff byte
    (getc's EOF stored in a char: ``bogus\\`` at end of file reads ``bogus\\xff``, which
    Debian's kmod 30 prints back in modprobe -c and in depmod's "ignoring bad line").
    End of file ends a non-empty line as a newline would, and ends the file when nothing
    was read.  The line is cut at a NUL byte (the C string it becomes) and decoded from
    UTF-8 with ``surrogateescape``.  The number is that of the line's last physical line.
    """
    linenum = 0
    pos, n = 0, len(data)
    find = data.find
    nl = -2  # the next newline at or after pos (-1: none left), found again once passed
    while pos < n:
        buf = bytearray()
        phys = 0  # newlines read for this line (kmod's n)
        while True:
            if nl < pos and nl != -1:  # not searched again per backslash: quadratic
                nl = find(b"\n", pos)
            stop = n if nl < 0 else nl
            bs = find(b"\\", pos, stop)
            if bs < 0:
                buf += data[pos:stop]
                if nl < 0:
                    pos = n
                    if not buf:  # EOF with nothing read (after a continuation, say)
                        return
                else:
                    pos = nl + 1
                phys += 1
                break
            buf += data[pos:bs]
            if bs + 1 == n:  # a backslash, then EOF: (char)EOF, then EOF ends the line
                buf.append(0xFF)
                pos = n
                phys += 1
                break
            nxt = data[bs + 1]
            pos = bs + 2
            if nxt == 0x0A:
                phys += 1
                continue
            buf.append(nxt)
        linenum += phys
        nul = buf.find(0)
        if nul >= 0:
            del buf[nul:]
        yield linenum, buf.decode("utf-8", "surrogateescape")


def fgets_lines(data: bytes, size: int = PATH_MAX) -> Iterator[bytes]:
    """The strings ``fgets(buf, size)`` returns over ``data``, cut at a NUL as strlen does."""
    pos, n = 0, len(data)
    limit = size - 1
    while pos < n:
        nl = data.find(b"\n", pos, pos + limit)
        end = nl + 1 if nl >= 0 else min(pos + limit, n)
        chunk = data[pos:end]
        pos = end
        z = chunk.find(b"\0")
        yield chunk if z < 0 else chunk[:z]


def read_file(name: str, dir_fd: int | None = None) -> bytes:
    """A whole input file (OSError if it cannot be opened); a FIFO or device reads as
    whatever it has now (kmod would block on a FIFO without a writer)."""
    fd = os.open(name, os.O_RDONLY | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            try:
                return os.read(fd, 1 << 20)
            except BlockingIOError:
                return b""
        os.set_blocking(fd, True)
        with open(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)
