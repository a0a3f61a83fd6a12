"""Configuration files: kmod's conf.d directory rules, modprobe.d, depmod.d, kernel command line.

kmod merges ``*.conf`` files of several directories: the list is sorted by
basename, and when two directories hold the same basename the first directory
(in search order) wins.  Dot-files, sub-directories and other suffixes are
ignored.  A path given directly (``-C file``) is read as is.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

MODPROBE_DIRS = ("/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d",
                 "/lib/modprobe.d")
DEPMOD_DIRS = ("/etc/depmod.d", "/run/depmod.d", "/usr/local/lib/depmod.d", "/lib/depmod.d")


def config_files(paths: Iterable[str], suffix: str = ".conf") -> list[str]:
    """The configuration files kmod would read from ``paths``, in reading order.

    Each path may be a directory (its ``*suffix`` regular files are taken) or a
    file (taken as is).  Missing paths are skipped silently, as kmod does.
    """
    chosen: dict[str, str] = {}
    for base in paths:
        try:
            if not os.path.isdir(base):
                if os.path.isfile(base):
                    chosen.setdefault(os.path.basename(base), base)
                continue
            names = os.listdir(base)
        except OSError:
            continue
        for name in names:
            if name.startswith(".") or not name.endswith(suffix):
                continue
            full = os.path.join(base, name)
            if name in chosen or not os.path.isfile(full):
                continue
            chosen[name] = full
    return [chosen[name] for name in sorted(chosen)]


def logical_lines(text: str) -> Iterable[tuple[int, str]]:
    """Yield (line number, line) with ``\\``-continued lines joined, as kmod reads config.

    The number is that of the last physical line of a joined line.
    """
    pending = ""
    for lineno, raw in enumerate(text.split("\n"), 1):
        if raw.endswith("\\"):
            pending += raw[:-1]
            continue
        yield lineno, pending + raw
        pending = ""
    if pending:
        yield lineno, pending
