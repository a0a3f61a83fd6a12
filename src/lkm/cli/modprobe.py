"""``lkm modprobe``: kmod 30's modprobe (tools/modprobe.c): options, messages, printing.

The work is the libkmod layer's (:mod:`lkm.kmod`: lookup, probe list, loading) and
:class:`lkm.modprobe.Remover`'s (``-r``).
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from lkm.cli._common import (
    Log,
    Stdout,
    open_context,
    print_version,
    run_whole,
    strtoul,
    write_err,
)
from lkm.cli._getopt import NO_ARGUMENT, REQUIRED_ARGUMENT, LongOpt, getopt_long
from lkm.kmod.errors import KmodError
from lkm.logprio import LOG_CRIT, LOG_ERR, LOG_INFO, LOG_WARNING

if TYPE_CHECKING:
    from lkm.kmod.context import KmodContext

SHORTOPTS = "arw:RibfDcnC:d:S:sqvVh"
_WITH_ARGUMENT = ("wait", "config", "dirname", "set-version")
LONGOPTS = [LongOpt(name, REQUIRED_ARGUMENT if name in _WITH_ARGUMENT else NO_ARGUMENT, key)
            for name, key in (
    ("all", "a"), ("remove", "r"), ("remove-dependencies", "5"), ("remove-holders", "5"),
    ("wait", "w"), ("resolve-alias", "R"), ("first-time", "3"), ("ignore-install", "i"),
    ("ignore-remove", "i"), ("use-blacklist", "b"), ("force", "f"),
    ("force-modversion", "2"), ("force-vermagic", "1"), ("show-depends", "D"),
    ("showconfig", "c"), ("show-config", "c"), ("show-modversions", "4"),
    ("dump-modversions", "4"), ("show-exports", "6"), ("dry-run", "n"), ("show", "n"),
    ("config", "C"), ("dirname", "d"), ("set-version", "S"), ("syslog", "s"),
    ("quiet", "q"), ("verbose", "v"), ("version", "V"), ("help", "h"))]
# not in kmod 30: the name the lkm issue gives -R (kmod calls it --resolve-alias)
LONGOPTS.append(LongOpt("show-alias", NO_ARGUMENT, "R", exact=True))

LOG_EMERG = 0
DEFAULT_VERBOSE = LOG_WARNING
# options that only switch something on: getopt key -> attribute of _Tool, or of its
# lkm.modprobe.Options when the name is one
FLAGS = {"a": "use_all", "r": "do_remove", "R": "lookup_only", "c": "show_config",
         "4": "show_modversions", "6": "show_exports", "5": "remove_holders",
         "3": "first_time", "i": "ignore_commands", "b": "use_blacklist", "f": "force",
         "2": "force_modversion", "1": "force_vermagic", "n": "dry_run"}

HELP = """\
Usage:
\t{p} [options] [-i] [-b] modulename
\t{p} [options] -a [-i] [-b] modulename [modulename...]
\t{p} [options] -r [-i] modulename
\t{p} [options] -r -a [-i] modulename [modulename...]
\t{p} [options] -c
\t{p} [options] --dump-modversions filename
Management Options:
\t-a, --all                   Consider every non-argument to
\t                            be a module name to be inserted
\t                            or removed (-r)
\t-r, --remove                Remove modules instead of inserting
\t    --remove-dependencies   Deprecated: use --remove-holders
\t    --remove-holders        Also remove module holders (use together with -r)
\t-w, --wait <MSEC>           When removing a module, wait up to MSEC for
\t                            module's refcount to become 0 so it can be
\t                            removed (use together with -r)
\t    --first-time            Fail if module already inserted or removed
\t-i, --ignore-install        Ignore install commands
\t-i, --ignore-remove         Ignore remove commands
\t-b, --use-blacklist         Apply blacklist to resolved alias.
\t-f, --force                 Force module insertion or removal.
\t                            implies --force-modversions and
\t                            --force-vermagic
\t    --force-modversion      Ignore module's version
\t    --force-vermagic        Ignore module's version magic

Query Options:
\t-R, --resolve-alias         Only lookup and print alias and exit
\t-D, --show-depends          Only print module dependencies and exit
\t-c, --showconfig            Print out known configuration and exit
\t-c, --show-config           Same as --showconfig
\t    --show-modversions      Dump module symbol version and exit
\t    --dump-modversions      Same as --show-modversions
\t    --show-exports          Only print module exported symbol versions and exit

General Options:
\t-n, --dry-run               Do not execute operations, just print out
\t-n, --show                  Same as --dry-run
\t-C, --config=FILE           Use FILE instead of default search paths
\t-d, --dirname=DIR           Use DIR as filesystem root for /lib/modules
\t-S, --set-version=VERSION   Use VERSION instead of `uname -r`
\t-s, --syslog                print to syslog, not stderr
\t-q, --quiet                 disable messages
\t-v, --verbose               enables more messages
\t-V, --version               show version
\t-h, --help                  show this help
"""


class _Tool:
    """One run of modprobe: its options, output and messages."""

    use_all = do_remove = lookup_only = show_config = show_modversions = False
    show_exports = do_show = use_syslog = False
    root: str | None = None
    kversion: str | None = None
    config_paths: list[str] | None = None  # None: modprobe.d's default directories

    def __init__(self, prog: str) -> None:
        from lkm.modprobe import Options

        self.opts = Options()
        self.prog = prog
        self.out = Stdout()
        self.log = Log(prog)
        self.tool_prio = LOG_CRIT  # modprobe's LOG(): FATAL, or WARNING with -a
        self.verbose = DEFAULT_VERBOSE

    def note(self, msg: str) -> None:
        """modprobe's LOG(): FATAL (ends the run) or, with -a, WARNING."""
        self.log.log(self.tool_prio, msg)

    def error(self, msg: str) -> None:
        self.log.log(LOG_ERR, msg)

    def show_line(self, text: str) -> None:
        """SHOW(): printed with -D or -v, flushed at once."""
        if self.do_show or self.verbose > DEFAULT_VERBOSE:
            self.out.write(text)
            self.out.flush()


def _modprobe_options_append(value: str) -> None:
    old = os.environ.get("MODPROBE_OPTIONS")
    os.environ["MODPROBE_OPTIONS"] = value if old is None else f"{old} {value}"


def main(prog: str, argv: list[str]) -> int:
    t = _Tool(prog)
    return run_whole("modprobe", argv, lambda: _main(t, argv), t.out.flush)


def _options(t: _Tool, opts: list[tuple[str, str | None]]) -> int | None:
    """Apply the options in order; an exit status when one ends the run."""
    for key, val in opts:
        if key in FLAGS:
            setattr(t.opts if hasattr(t.opts, FLAGS[key]) else t, FLAGS[key], True)
            t.tool_prio = LOG_WARNING if key == "a" else t.tool_prio
        elif key == "w":
            try:
                t.opts.wait_msec = strtoul(val or "")
            except ValueError:
                t.error(f"unexpected wait value '{val}'.\n")
                return 1
        elif key == "D":
            t.opts.ignore_loaded = t.opts.dry_run = t.do_show = True
        elif key == "C":
            t.config_paths = [*(t.config_paths or []), val or ""]
            _modprobe_options_append("-C")
            _modprobe_options_append(val or "")
        elif key in ("d", "S"):
            t.root, t.kversion = (val, t.kversion) if key == "d" else (t.root, val)
        elif key in ("s", "q", "v"):  # passed on to install commands in $MODPROBE_OPTIONS
            _modprobe_options_append(f"-{key}")
            t.use_syslog = t.use_syslog or key == "s"
            t.verbose = LOG_EMERG if key == "q" else t.verbose + (key == "v")
        elif key == "V":
            print_version()
            return 0
        elif key == "h":
            sys.stdout.write(HELP.format(p=t.prog))
            return 0
        else:  # "?": getopt's message
            write_err(f"{val}\n")
            return 1
    return None


def _main(t: _Tool, argv: list[str]) -> int:
    from lkm.config import split_modprobe_options

    env = os.environ.get("MODPROBE_OPTIONS")
    if env is not None:
        argv = split_modprobe_options(env) + list(argv)
    opts, args = getopt_long(t.prog, argv, SHORTOPTS, LONGOPTS)
    rc = _options(t, opts)
    if rc is not None:
        return rc
    t.log.use_syslog = t.use_syslog
    if not t.show_config and not args:
        t.error("missing parameters. See -h.\n")
        return 1

    from lkm.modprobe import Prober, Remover, options_from_array

    ctx = open_context(t.log, t.root, t.kversion, t.config_paths)
    t.log.take_libkmod(t.verbose)
    ctx.before_command = t.out.sync
    ctx.load_resources()
    if t.show_config:
        rc = _show_config(t, ctx)
    elif t.show_modversions or t.show_exports:
        rc = _show_versions(t, ctx, args[0])
    elif t.do_remove:
        remover = Remover(ctx, t.opts, show=t.show_line, note=t.note, error=t.error)
        rc = 1 if remover.remove_names(args) < 0 else 0
    else:
        prober = Prober(ctx, t.opts, note=t.note, error=t.error,
                        show=t.out.write if t.do_show or t.verbose > DEFAULT_VERBOSE else None)
        names, extra = (args, None) if t.use_all else (args[:1], options_from_array(args))
        if t.lookup_only:  # -R: the names found, nothing loaded
            found = [prober.lookup(name) for name in names]
            t.out.write("".join(f"{mod.name}\n" for mods in found for mod in mods))
            rc = 0 if all(found) else 1
        else:
            rc = 1 if prober.probe_names(names, extra) < 0 else 0
    t.log.lib(LOG_INFO, "../libkmod/libkmod.c:334", "kmod_unref",
              f"context {id(ctx):#x} released\n")
    return rc


def _show_config(t: _Tool, ctx: KmodContext) -> int:
    assert ctx.config is not None
    t.out.write(ctx.config.show())
    t.out.write("\n# End of configuration files. Dumping indexes now:\n\n")
    t.out.flush()
    for name in ("modules.alias", "modules.symbols"):
        t.out.write(ctx.dump_index(name))
    return 0


def _show_versions(t: _Tool, ctx: KmodContext, filename: str) -> int:
    """--show-modversions / --show-exports of a module file."""
    try:
        mod = ctx.new_from_path(filename)
    except OSError:
        t.note(f"Module {filename} not found.\n")
        return 1
    try:
        rows = mod.symbols() if t.show_exports else mod.versions()
    except KmodError as e:
        what = "symbols" if t.show_exports else "modversions"
        t.note(f"could not get {what} of {filename}: {os.strerror(e.errno)}\n")
        return 1
    t.out.write("".join(f"0x{crc:08x}\t{sym}\n" for crc, sym in rows))
    return 0
