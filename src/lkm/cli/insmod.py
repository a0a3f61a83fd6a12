"""``lkm insmod``: kmod 30's insmod (tools/insmod.c): load one module file, no
dependencies."""

from __future__ import annotations

import errno
import os
import sys

from lkm.cli._common import Fatal, Log, open_context, print_version, write_err
from lkm.cli._getopt import NO_ARGUMENT, LongOpt, getopt_long
from lkm.kmod.module import INSERT_FORCE_MODVERSION, INSERT_FORCE_VERMAGIC

LONGOPTS = [LongOpt("version", NO_ARGUMENT, "V"), LongOpt("help", NO_ARGUMENT, "h")]

HELP = """\
Usage:
\t{p} [options] filename [args]
Options:
\t-V, --version     show version
\t-h, --help        show this help
"""

# kmod's insmod names these errors its own way
MOD_STRERROR = {
    errno.ENOEXEC: "Invalid module format",
    errno.ENOENT: "Unknown symbol in module",
    errno.ESRCH: "Module has wrong symbol version",
    errno.EINVAL: "Invalid parameters",
}


def mod_strerror(err: int) -> str:
    return MOD_STRERROR.get(err) or os.strerror(err)


def main(prog: str, argv: list[str]) -> int:
    try:
        return _main(prog, argv)
    except Fatal:
        return 1


def _main(prog: str, argv: list[str]) -> int:
    log = Log(prog)
    opts, args = getopt_long(prog, argv, "psfVh", LONGOPTS)
    flags = 0
    for key, val in opts:
        if key in ("p", "s"):
            continue  # accepted for compatibility, ignored
        if key == "f":
            flags = INSERT_FORCE_MODVERSION | INSERT_FORCE_VERMAGIC
        elif key == "h":
            sys.stdout.write(HELP.format(p=prog))
            return 0
        elif key == "V":
            print_version()
            return 0
        else:
            write_err(f"{val}\n")
            return 1
    if not args:
        log.error("missing filename.\n")
        return 1
    filename = args[0]
    if filename == "-":
        log.error("this tool does not support loading from stdin!\n")
        return 1
    options = " ".join(args[1:])

    ctx = open_context(log)
    try:
        mod = ctx.new_from_path(filename)
    except OSError as e:
        log.error(f"could not load module {filename}: {os.strerror(e.errno or errno.ENOENT)}\n")
        return 1
    err = mod.insert(flags, options)
    if err < 0:
        log.error(f"could not insert module {filename}: {mod_strerror(-err)}\n")
        return 1
    return 0
