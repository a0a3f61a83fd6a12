"""Typed errors raised by the lkm library.

The library never prints or exits; the CLI layer turns these into the messages
and exit statuses of the tool being emulated.
"""

from __future__ import annotations

import errno as _errno
import os


class LkmError(Exception):
    """Base class of every error lkm raises on purpose."""


class FormatError(LkmError):
    """An input file is not what it claims to be (truncated, hostile, wrong kind).

    ``errno`` is what kmod reports for such a file (EINVAL, or ENOEXEC when not ELF).
    """

    errno: int = _errno.EINVAL


class ElfError(FormatError):
    """The bytes are not a well-formed ELF relocatable object."""


class NotElfError(ElfError):
    """The bytes do not start with the ELF magic."""

    errno = _errno.ENOEXEC


class CompressionError(FormatError):
    """A compressed module could not be decompressed (corrupt, unsupported, too large)."""


class SignatureError(FormatError):
    """A module signature trailer or its PKCS#7 message is malformed."""


class IndexError_(FormatError):
    """A kmod binary index (.bin) is malformed."""


class ConfigError(LkmError):
    """A configuration file or command line is unusable."""


class ModuleNotFound(LkmError):
    """No module of that name, alias or path."""


class KernelError(LkmError):
    """A kernel operation failed with an errno (real or virtual kernel).

    ``messages`` holds the kernel log lines produced on the way, if known.
    """

    def __init__(self, err: int, message: str = "", messages: list[str] | None = None) -> None:
        self.errno = err
        self.messages = messages or []
        super().__init__(message or os.strerror(err))

    @property
    def errno_name(self) -> str:
        return _errno.errorcode.get(self.errno, str(self.errno))


class InvalidAlias(ConfigError):
    """A module name or alias has an unmatched bracket (kmod: "Unmatched bracket")."""


class ProcessKilled(LkmError):
    """The calling process died inside the kernel: module code oopsed (or BUGed) in a
    syscall, so the syscall never returns to the caller.

    ``signal`` is the signal the task dies of (make_task_dead(): SIGSEGV for an oops in
    process context, SIGKILL when the kernel kills it); ``messages`` holds the kernel log
    lines printed on the way (the oops included).  The kernel state stays as the oops left
    it: an init that oopsed leaves its module MODULE_STATE_COMING ("Loading") with the
    reference do_init_module() held; an exit that oopsed leaves it MODULE_STATE_GOING.
    """

    def __init__(self, signal: int, messages: list[str] | None = None) -> None:
        self.signal = signal
        self.messages = messages or []
        super().__init__(f"process killed by signal {signal}")
