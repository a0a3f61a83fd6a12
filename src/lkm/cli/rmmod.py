"""``lkm rmmod``: kmod 30's rmmod (tools/rmmod.c): unload modules by name or file."""

from __future__ import annotations

import errno
import os
import sys

from lkm.cli._common import Fatal, Log, open_context, print_version, write_err
from lkm.cli._getopt import NO_ARGUMENT, LongOpt, getopt_long
from lkm.logprio import LOG_ERR

LONGOPTS = [
    LongOpt("force", NO_ARGUMENT, "f"),
    LongOpt("syslog", NO_ARGUMENT, "s"),
    LongOpt("verbose", NO_ARGUMENT, "v"),
    LongOpt("version", NO_ARGUMENT, "V"),
    LongOpt("help", NO_ARGUMENT, "h"),
]

HELP = """\
Usage:
\t{p} [options] modulename ...
Options:
\t-f, --force       forces a module unload and may crash your
\t                  machine. This requires Forced Module Removal
\t                  option in your kernel. DANGEROUS
\t-s, --syslog      print to syslog, not stderr
\t-v, --verbose     enables more messages
\t-V, --version     show version
\t-h, --help        show this help
"""


def main(prog: str, argv: list[str]) -> int:
    try:
        return _main(prog, argv)
    except Fatal:
        return 1


def _main(prog: str, argv: list[str]) -> int:
    log = Log(prog)
    opts, args = getopt_long(prog, argv, "fsvVwh", LONGOPTS)
    force = False
    verbose = LOG_ERR
    for key, val in opts:
        if key == "f":
            force = True
        elif key == "s":
            log.use_syslog = True
        elif key == "v":
            verbose += 1
        elif key == "h":
            sys.stdout.write(HELP.format(p=prog))
            return 0
        elif key == "V":
            print_version()
            return 0
        elif key == "?":
            write_err(f"{val}\n")
            return 1
        else:
            log.error(f"unexpected getopt_long() value '{key}'.\n")
            return 1
    if not args:
        log.error("missing module name.\n")
        return 1

    from lkm.kmod.module import BUILTIN, REMOVE_FORCE

    ctx = open_context(log)
    log.take_libkmod(verbose)

    failures = 0
    for arg in args:
        try:
            os.stat(arg)
            is_path = True
        except (OSError, ValueError):
            is_path = False
        try:
            mod = ctx.new_from_path(arg) if is_path else ctx.new_from_name(arg)
        except OSError as e:
            log.error(f"could not use module {arg}: {os.strerror(e.errno or errno.ENOENT)}\n")
            break
        if not force:
            state = mod.initstate()
            if state == BUILTIN:
                log.error(f"Module {mod.name} is builtin.\n")
                failures += 1
                continue
            if state < 0:
                log.error(f"Module {mod.name} is not currently loaded\n")
                failures += 1
                continue
            holders = mod.holders()
            if holders:
                log.error(f"Module {mod.name} is in use by:"
                          + "".join(f" {h.name}" for h in holders) + "\n")
                failures += 1
                continue
            refcnt = mod.refcnt()
            if refcnt > 0:
                log.error(f"Module {mod.name} is in use\n")
                failures += 1
                continue
            if refcnt == -errno.ENOENT:
                log.error("Module unloading is not supported\n")
            if refcnt < 0:
                failures += 1
                continue
        err = mod.remove(REMOVE_FORCE if force else 0)
        if err < 0:
            log.error(f"could not remove module {arg}: {os.strerror(-err)}\n")
            failures += 1
    return 1 if failures else 0
