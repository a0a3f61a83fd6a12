"""``install`` and ``remove`` commands of modprobe.d, run as libkmod runs them
(libkmod-module.c command_do): ``system(cmd)`` with MODPROBE_MODULE in the environment."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable


def run_command(cmd: str, modname: str, before: Callable[[], None] | None = None) -> int | None:
    """Run ``cmd`` through ``/bin/sh -c`` with MODPROBE_MODULE=``modname``.

    :param cmd: the command, ``$CMDLINE_OPTS`` already replaced.
    :param modname: the module the command stands for.
    :param before: called first (a tool flushes its buffered stdout there, so that the
        child's output lands after what C's stdio would have written by then).
    :returns: the exit status as system()'s WEXITSTATUS gives it (0 for a child killed
        by a signal), or None if no shell could be run.
    """
    if before is not None:
        before()
    env = dict(os.environ)
    env["MODPROBE_MODULE"] = modname
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    import subprocess

    try:
        proc = subprocess.run(["/bin/sh", "-c", cmd], env=env, check=False)
    except OSError:
        return None
    rc = proc.returncode
    if rc < 0:  # killed by a signal: WEXITSTATUS of a signalled status is 0
        return 0
    return rc & 0xFF


__all__ = ["run_command"]
