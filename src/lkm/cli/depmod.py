"""``lkm depmod``: kmod 30's depmod (options, messages, exit statuses), plus ``-o DIR``
(kmod 31's output directory) and ``--index-layout preorder`` (kmod 34's index layout)."""

from __future__ import annotations

import gc
import os
import signal
import sys

from lkm.cli._common import (
    LOG_WARNING,
    NO_ARGUMENT,
    REQUIRED_ARGUMENT,
    Fatal,
    Log,
    LongOpt,
    die_of_sigpipe,
    getopt_long,
    print_version,
)

SHORTOPTS = "aAb:o:C:E:F:euqrvnP:wmVh"
LONGOPTS = (
    LongOpt("all", NO_ARGUMENT, "a"),
    LongOpt("quick", NO_ARGUMENT, "A"),
    LongOpt("basedir", REQUIRED_ARGUMENT, "b"),
    LongOpt("outdir", REQUIRED_ARGUMENT, "o"),
    LongOpt("config", REQUIRED_ARGUMENT, "C"),
    LongOpt("symvers", REQUIRED_ARGUMENT, "E"),
    LongOpt("filesyms", REQUIRED_ARGUMENT, "F"),
    LongOpt("errsyms", NO_ARGUMENT, "e"),
    LongOpt("unresolved-error", NO_ARGUMENT, "--unresolved-error"),
    LongOpt("quiet", NO_ARGUMENT, "--quiet"),
    LongOpt("root", NO_ARGUMENT, "--root"),
    LongOpt("verbose", NO_ARGUMENT, "v"),
    LongOpt("show", NO_ARGUMENT, "n"),
    LongOpt("dry-run", NO_ARGUMENT, "n"),
    LongOpt("symbol-prefix", REQUIRED_ARGUMENT, "P"),
    LongOpt("warn", NO_ARGUMENT, "w"),
    LongOpt("map", NO_ARGUMENT, "--map"),
    LongOpt("index-layout", REQUIRED_ARGUMENT, "--index-layout"),
    LongOpt("version", NO_ARGUMENT, "V"),
    LongOpt("help", NO_ARGUMENT, "h"),
)

HELP = """\
Usage:
\t{prog} -[aA] [options] [forced_version]

If no arguments (except options) are given, "depmod -a" is assumed

depmod will output a dependency list suitable for the modprobe utility.

Options:
\t-a, --all            Probe all modules
\t-A, --quick          Only does the work if there's a new module
\t-e, --errsyms        Report not supplied symbols
\t-n, --show           Write the dependency file on stdout only
\t-P, --symbol-prefix  Architecture symbol prefix
\t-C, --config=PATH    Read configuration from PATH
\t-v, --verbose        Enable verbose mode
\t-w, --warn           Warn on duplicates
\t-V, --version        show version
\t-h, --help           show this help

The following options are useful for people managing distributions:
\t-b, --basedir=DIR    Use an image of a module tree.
\t-o, --outdir=DIR     Output directory for generated files.
\t-F, --filesyms=FILE  Use the file instead of the
\t                     current kernel symbols.
\t-E, --symvers=FILE   Use Module.symvers file to check
\t                     symbol versions.
\t    --index-layout=postorder|preorder
\t                     Binary index layout: kmod 30's post-order (default)
\t                     or kmod 34's pre-order.
"""


def main(prog: str, argv: list[str]) -> int:
    # a short-lived run allocating many small objects and few cycles: the cyclic
    # collector would only cost time (about 6% of a run)
    gc.disable()
    log = Log(prog, LOG_WARNING, kmod_log=True)
    # SIGTERM/SIGHUP unwind like SIGINT, so that no temporary file is left behind
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    try:
        return _run(prog, argv, log)
    except BrokenPipeError:
        die_of_sigpipe()  # as kmod's depmod -n or -v into a closed pipe
        return 141
    except Fatal:
        return 1
    except KeyboardInterrupt:
        return 128 + signal.SIGINT


def _terminate(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def _run(prog: str, argv: list[str], log: Log) -> int:
    from lkm import depmod as dm
    from lkm.kmod.moddir import ModuleDir
    from lkm.kmod.names import make_absolute

    opts, operands = getopt_long(prog, argv, SHORTOPTS, LONGOPTS)
    all_ = maybe_all = False
    root: str | None = None
    out_root: str | None = None
    config_paths: list[str] = []
    symvers = system_map = None
    print_unknown = warn_dups = show = False
    verbose = LOG_WARNING
    sym_prefix = ""
    layout: dm.Layout = "postorder"
    for key, arg in opts:
        if key == "a":
            all_ = True
        elif key == "A":
            maybe_all = True
        elif key == "b":
            assert arg is not None
            root = make_absolute(arg)
        elif key == "o":
            assert arg is not None
            out_root = make_absolute(arg)
        elif key == "C":
            assert arg is not None
            config_paths.append(arg)
        elif key == "E":
            symvers = arg
        elif key == "F":
            system_map = arg
        elif key == "e":
            print_unknown = True
        elif key == "v":
            verbose += 1
        elif key == "n":
            show = True
        elif key == "P":
            assert arg is not None
            if len(arg) > 1:
                log.fatal("-P only takes a single char")
            sym_prefix = arg
        elif key == "w":
            warn_dups = True
        elif key in ("u", "q", "r", "m"):
            log.warning(f"Ignored deprecated option -{key}")
        elif key.startswith("--") and key != "--index-layout":
            log.warning(f"Ignored deprecated option {key}")
        elif key == "--index-layout":
            if arg not in ("postorder", "preorder"):
                log.fatal(f"unknown index layout '{arg}' (use postorder or preorder)")
            layout = "preorder" if arg == "preorder" else "postorder"
        elif key == "h":
            sys.stdout.write(HELP.format(prog=prog))
            return 0
        elif key == "V":
            print_version()
            return 0
        elif key == "?":
            sys.stdout.flush()
            sys.stderr.write((arg or "") + "\n")
            return 1

    if operands:
        if not dm.is_version_number(operands[0]):
            log.error(f"Bad version passed {operands[0]}")
            return 1
        kversion = operands[0]
        paths = operands[1:]
    else:
        kversion = dm.default_kversion()
        paths = []
    dirname = ModuleDir.for_release(root, kversion).dirname
    outdirname = ModuleDir.for_release(out_root or root, kversion).dirname
    log.priority = verbose

    def show_line(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    jobs = os.environ.get("LKM_DEPMOD_JOBS", "")
    out = sys.stdout.buffer if show else None
    try:
        dm.run(dirname, kversion, config_paths=config_paths or None,
               modules=None if all_ else paths, outdir=outdirname,
               create_outdir=out_root is not None, layout=layout, symvers=symvers,
               system_map=system_map, sym_prefix=sym_prefix, print_unknown=print_unknown,
               warn_dups=warn_dups, quick=maybe_all, show=out,
               verbose=show_line if verbose > LOG_WARNING else None, log=log.log,
               jobs=int(jobs) if jobs.isdigit() and int(jobs) > 0 else None)
    except dm.DependencyCycleError:
        return 1
    except dm.DepmodError as e:
        log.log(e.priority, str(e))
        return 1
    if out is not None:
        out.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(os.path.basename(sys.argv[0]), sys.argv[1:]))
