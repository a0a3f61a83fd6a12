"""Helpers shared by the kmod-compatible tools: logging, version, set-up.

Messages follow kmod's tools: ``"<prog>: <PRIO>: msg"`` on stderr; a FATAL message
ends the program with status 1.  Options are parsed by :mod:`lkm.cli._getopt`
(glibc's getopt_long), output by :mod:`lkm.cli._stdio` (C's stdio); their names are
importable from here too.
"""

from __future__ import annotations

import gc
import os
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from lkm.cli._getopt import NO_ARGUMENT as NO_ARGUMENT  # cli/depmod.py imports them from here
from lkm.cli._getopt import OPTIONAL_ARGUMENT as OPTIONAL_ARGUMENT
from lkm.cli._getopt import REQUIRED_ARGUMENT as REQUIRED_ARGUMENT
from lkm.cli._getopt import LongOpt as LongOpt
from lkm.cli._getopt import getopt_long as getopt_long
from lkm.cli._log import Fatal as Fatal
from lkm.cli._log import Log as Log
from lkm.cli._log import prio_name as prio_name
from lkm.cli._stdio import Stdout as Stdout
from lkm.cli._stdio import die_of_sigpipe as die_of_sigpipe
from lkm.cli._stdio import write_err as write_err
from lkm.logprio import LOG_CRIT as LOG_CRIT  # the tools import them from here
from lkm.logprio import LOG_DEBUG as LOG_DEBUG
from lkm.logprio import LOG_ERR as LOG_ERR
from lkm.logprio import LOG_INFO as LOG_INFO
from lkm.logprio import LOG_NOTICE as LOG_NOTICE
from lkm.logprio import LOG_WARNING as LOG_WARNING

if TYPE_CHECKING:
    from lkm.kmod.context import KmodContext


# what `kmod -V` prints for Debian 12's kmod 30, which lkm's tools stand in for
KMOD_VERSION = "30"
KMOD_FEATURES = "+ZSTD +XZ -ZLIB +LIBCRYPTO -EXPERIMENTAL"


def print_version(out: Stdout | None = None) -> None:
    """kmod's ``-V`` output (the version of kmod whose behaviour lkm reproduces)."""
    text = f"kmod version {KMOD_VERSION}\n{KMOD_FEATURES}\n"
    if out is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        out.write(text)


def open_context(log: Log, root: str | None = None, release: str | None = None,
                 config_paths: Sequence[str] | None = (), *, lib_log: bool = True
                 ) -> KmodContext:
    """kmod_new as the tools call it: the libkmod context of the running (or virtual)
    kernel (:meth:`lkm.kmod.KmodContext.for_kernel`; by default without modprobe.d, as
    insmod, rmmod and lsmod), the diagnostics of reading its configuration printed
    through ``log`` (``lib_log``: libkmod's later messages too)."""
    from lkm.kernel.target import get_backend
    from lkm.kmod.context import KmodContext

    ctx = KmodContext.for_kernel(get_backend(), root, release, config_paths,
                                 log=log.lib if lib_log else None)
    assert ctx.config is not None
    for prio, where, fn, msg in ctx.config.messages:
        log.lib(prio, where, fn, msg)
    return ctx


def run_whole(tool: str, argv: list[str], body: Callable[[], int],
              cleanup: Callable[[], None]) -> int:
    """Run a tool's ``body`` with the cyclic garbage collector off (thousands of
    short-lived objects, no reference cycles: it only costs time), a Fatal message
    giving status 1, ``cleanup`` (flushing output) at the end; when this process is
    just that tool, exit at once without the interpreter's teardown."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        rc = body()
    except Fatal:
        rc = 1
    finally:
        cleanup()
        if gc_was_enabled:
            gc.enable()
    if whole_process(tool, argv):
        fast_exit(rc)
    return rc


def whole_process(tool: str, argv: list[str]) -> bool:
    """True when this process is lkm run as ``tool`` (its main script is lkm's and
    ``argv`` is its command line), not a call from other Python code."""
    main = sys.modules.get("__main__")
    script = os.path.basename(getattr(main, "__file__", None) or "")
    if script not in ("lkm", tool) and getattr(main, "__package__", None) != "lkm":
        return False
    return argv == sys.argv[1:] or (argv == sys.argv[2:] and sys.argv[1:2] == [tool])


def fast_exit(rc: int) -> None:
    """End the process now: flush, then skip the interpreter's teardown, which only frees
    memory (thousands of objects after a run over a whole tree)."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return  # let the normal exit path report or ignore it
    os._exit(rc)


def strtoul(s: str) -> int:
    """C ``strtoul(s, &end, 0)`` that must consume the whole non-empty string;
    ValueError otherwise."""
    body = s.lstrip(" \t\n\v\f\r")
    neg = body.startswith("-")
    if body[:1] in "+-":
        body = body[1:]
    if not body:
        raise ValueError(s)
    if body[:2].lower() == "0x" and len(body) > 2:
        v = int(body[2:], 16)
    elif body.startswith("0") and len(body) > 1:
        v = int(body[1:], 8)
    else:
        if not body.isdigit():
            raise ValueError(s)
        v = int(body)
    return (-v) & 0xFFFFFFFFFFFFFFFF if neg else v


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
