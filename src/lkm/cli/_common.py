"""Helpers shared by the kmod-compatible tools: logging, version, output.

Messages follow kmod's tools: ``"<prog>: <PRIO>: msg"`` on stderr; a FATAL message
ends the program with status 1.  Options are parsed by :mod:`lkm.cli._getopt`
(glibc's getopt_long; its names are importable from here too).
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from lkm.cli._getopt import NO_ARGUMENT as NO_ARGUMENT  # cli/depmod.py imports them from here
from lkm.cli._getopt import OPTIONAL_ARGUMENT as OPTIONAL_ARGUMENT
from lkm.cli._getopt import REQUIRED_ARGUMENT as REQUIRED_ARGUMENT
from lkm.cli._getopt import LongOpt as LongOpt
from lkm.cli._getopt import getopt_long as getopt_long
from lkm.logprio import LOG_CRIT as LOG_CRIT  # the tools import them from here
from lkm.logprio import LOG_DEBUG as LOG_DEBUG
from lkm.logprio import LOG_ERR as LOG_ERR
from lkm.logprio import LOG_INFO as LOG_INFO
from lkm.logprio import LOG_NOTICE as LOG_NOTICE
from lkm.logprio import LOG_WARNING as LOG_WARNING

if TYPE_CHECKING:
    from lkm.kernel.backend import KernelBackend
    from lkm.modprobe import Modprobe


_PRIO_NAMES = {LOG_CRIT: "FATAL", LOG_ERR: "ERROR", LOG_WARNING: "WARNING",
               LOG_NOTICE: "NOTICE", LOG_INFO: "INFO", LOG_DEBUG: "DEBUG"}

# what `kmod -V` prints for Debian 12's kmod 30, which lkm's tools stand in for
KMOD_VERSION = "30"
KMOD_FEATURES = "+ZSTD +XZ -ZLIB +LIBCRYPTO -EXPERIMENTAL"


class Fatal(SystemExit):
    """Raised by Log.fatal after printing: the tool ends with status 1."""

    def __init__(self) -> None:
        super().__init__(1)


_LIB_PRIO_NAMES = {0: "EMERGENCY", 1: "ALERT", LOG_CRIT: "CRITICAL", LOG_ERR: "ERROR",
                   LOG_WARNING: "WARNING", LOG_NOTICE: "NOTICE", LOG_INFO: "INFO",
                   LOG_DEBUG: "DEBUG"}


def prio_name(prio: int, lib: bool = False) -> str:
    """The priority's name in the tools' messages (``lib``: in libkmod's own)."""
    if lib:
        return _LIB_PRIO_NAMES.get(prio, f"L:{prio}")
    return _PRIO_NAMES.get(prio, f"LOG-{prio:03d}")


class Log:
    """kmod's tools/log.c: ``<prog>: <PRIO>: msg`` on stderr, filtered by priority.

    ``kmod_log`` says whether libkmod's own messages go through the tool's logger
    (kmod's log_setup_kmod_log) or libkmod's default ``libkmod: <fn>: msg``.
    """

    def __init__(self, prog: str, priority: int = LOG_WARNING, *, use_syslog: bool = False,
                 kmod_log: bool = False) -> None:
        self.prog = prog
        self.priority = priority
        self.use_syslog = use_syslog
        self.kmod_log = kmod_log
        self.lib_priority = priority if kmod_log else _libkmod_priority()

    def log(self, prio: int, msg: str) -> None:
        """Print ``msg`` (a newline is added if missing) at priority ``prio``."""
        if prio > self.priority:
            return
        if not msg.endswith("\n"):
            msg += "\n"
        if self.use_syslog:
            import syslog

            syslog.openlog(self.prog, syslog.LOG_CONS, syslog.LOG_DAEMON)
            syslog.syslog(prio, f"{prio_name(prio)}: {msg}")
        else:
            write_err(f"{self.prog}: {prio_name(prio)}: {msg}")
        if prio <= LOG_CRIT:
            raise Fatal()

    def fatal(self, msg: str) -> None:
        self.log(LOG_CRIT, msg)

    def error(self, msg: str) -> None:
        self.log(LOG_ERR, msg)

    def warning(self, msg: str) -> None:
        self.log(LOG_WARNING, msg)

    def notice(self, msg: str) -> None:
        self.log(LOG_NOTICE, msg)

    def info(self, msg: str) -> None:
        self.log(LOG_INFO, msg)

    def debug(self, msg: str) -> None:
        self.log(LOG_DEBUG, msg)

    def lib(self, prio: int, where: str, fn: str, msg: str) -> None:
        """A libkmod message from function ``fn`` at ``where`` ("../libkmod/<file>.c:<line>",
        as Debian's build, with debug on, prints it); libkmod's default priority is ERR
        (or $KMOD_LOG)."""
        if prio > self.lib_priority:
            return
        if not msg.endswith("\n"):
            msg += "\n"
        if not self.kmod_log:
            write_err(f"libkmod: {prio_name(prio, lib=True)} {where} {fn}: {msg}")
        elif self.use_syslog:
            import syslog

            syslog.syslog(prio, f"{prio_name(prio)}: {where} {fn}() {msg}")
        else:
            write_err(f"{self.prog}: {prio_name(prio)}: {where} {fn}() {msg}")


def _libkmod_priority() -> int:
    """libkmod's log priority: LOG_ERR unless $KMOD_LOG says otherwise."""
    env = os.environ.get("KMOD_LOG")
    if env is None:
        return LOG_ERR
    digits = len(env) - len(env.lstrip("+-0123456789"))
    head, rest = env[:digits], env[digits:]
    if head and (not rest or rest[0].isspace()):
        try:
            return int(head)
        except ValueError:
            return 0
    for word, prio in (("err", LOG_ERR), ("info", LOG_INFO), ("debug", LOG_DEBUG)):
        if env.startswith(word):
            return prio
    return 0


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


def print_version(out: Output | None = None) -> None:
    """kmod's ``-V`` output (the version of kmod whose behaviour lkm reproduces)."""
    text = f"kmod version {KMOD_VERSION}\n{KMOD_FEATURES}\n".encode()
    if out is None:
        write_out(text)
    else:
        out.write(text)


def write_out(data: bytes) -> None:
    """Write bytes to stdout through Python's buffer."""
    sys.stdout.flush()
    sys.stdout.buffer.write(data)


class Output:
    """Buffered bytes to stdout, like C's stdout: fully buffered on a pipe or file,
    written at once on a terminal."""

    def __init__(self, limit: int = 1 << 16) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        try:
            tty = os.isatty(sys.stdout.fileno())
        except (AttributeError, OSError, ValueError):
            tty = False
        self._limit = 0 if tty else limit

    def write(self, data: bytes) -> None:
        self._parts.append(data)
        self._size += len(data)
        if self._size >= self._limit:
            self.flush()

    def text(self, s: str) -> None:
        self.write(s.encode("utf-8", "surrogateescape"))

    def flush(self) -> None:
        if not self._parts:
            return
        data = b"".join(self._parts)
        self._parts.clear()
        self._size = 0
        buf = sys.stdout.buffer
        try:
            buf.write(data)
            buf.flush()
        except BrokenPipeError:
            die_of_sigpipe()


def die_of_sigpipe() -> None:
    """End as a C tool writing to a closed pipe does: killed by SIGPIPE."""
    import signal

    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # nothing left to flush at exit
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGPIPE)
    raise SystemExit(141)  # not reached


def running_context(log: Log, *, lib_log: bool = True) -> tuple[KernelBackend, Modprobe]:
    """insmod's, rmmod's and lsmod's set-up: the running (or virtual) kernel and its
    context, the diagnostics of reading its configuration printed through ``log``
    (``lib_log``: libkmod's later messages too)."""
    from lkm.kernel.backend import get_backend
    from lkm.modprobe import running_kernel_context

    kernel = get_backend()
    ctx = running_kernel_context(kernel, log.lib if lib_log else None)
    for prio, where, fn, msg in ctx.config.messages:
        log.lib(prio, where, fn, msg)
    return kernel, ctx


def parse_init_results(items: Sequence[str]) -> dict[str, int]:
    """``--init MODULE=RET`` options as {module name: what its init returns}; ValueError
    with the message for a malformed one."""
    results: dict[str, int] = {}
    for item in items:
        name, sep, val = item.partition("=")
        try:
            ret = int(val, 0)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ValueError(f"--init wants MODULE=RET, not '{item}'")
        results[name.replace("-", "_")] = ret
    return results
