"""kmod's tools/log.c: the tools' messages, and libkmod's when a tool takes them over.

A tool prints ``<prog>: <PRIO>: msg`` on stderr (or to syslog with ``-s``), filtered by
its priority; a FATAL message ends it with status 1 (:class:`Fatal`).  libkmod's own
messages print as ``libkmod: <PRIO> <where> <fn>: msg`` at libkmod's priority (ERR, or
$KMOD_LOG), until the tool calls log_setup_kmod_log (:meth:`Log.take_libkmod`): then
they go through the tool's logger at the tool's priority.
"""

from __future__ import annotations

import os

from lkm.cli._stdio import write_err
from lkm.logprio import LOG_CRIT, LOG_DEBUG, LOG_ERR, LOG_INFO, LOG_NOTICE, LOG_WARNING

_PRIO_NAMES = {LOG_CRIT: "FATAL", LOG_ERR: "ERROR", LOG_WARNING: "WARNING",
               LOG_NOTICE: "NOTICE", LOG_INFO: "INFO", LOG_DEBUG: "DEBUG"}



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

    def take_libkmod(self, priority: int) -> None:
        """log_setup_kmod_log: from now on libkmod's messages go through this logger, at
        ``priority`` (the tool's verbosity), which the tool's own messages use too."""
        self.priority = self.lib_priority = priority
        self.kmod_log = True
        self.lib(LOG_INFO, "../libkmod/libkmod.c:367", "kmod_set_log_fn",
                 f"custom logging function {id(self):#x} registered\n")


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


__all__ = ["Fatal", "Log", "prio_name"]
