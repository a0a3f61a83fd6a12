"""``lkm insmod``: kmod 30's insmod (load one module file, no dependencies)."""

from __future__ import annotations

import errno
import os
import sys

from lkm.cli._common import (
    NO_ARGUMENT,
    Fatal,
    Log,
    LongOpt,
    getopt_long,
    print_version,
    running_context,
    write_err,
)

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
    force = False
    for key, val in opts:
        if key in ("p", "s"):
            continue  # accepted for compatibility, ignored
        if key == "f":
            force = True
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

    from lkm.moddb import make_absolute
    from lkm.modprobe import insert_file

    kernel, _ctx = running_context(log, lib_log=False)
    path = make_absolute(filename)
    try:
        os.stat(path)
    except OSError as e:
        log.error(f"could not load module {filename}: {os.strerror(e.errno or errno.ENOENT)}\n")
        return 1
    err, _loaded = insert_file(kernel, path, options, force_vermagic=force,
                               force_modversion=force)
    if err < 0:
        log.error(f"could not insert module {filename}: {mod_strerror(-err)}\n")
        return 1
    return 0
