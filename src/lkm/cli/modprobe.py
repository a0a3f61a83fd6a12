"""``lkm modprobe``: kmod 30's modprobe (load and remove with dependencies, queries)."""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import sys
from typing import Literal

from lkm.cli._common import (
    LOG_CRIT,
    LOG_ERR,
    LOG_INFO,
    LOG_WARNING,
    NO_ARGUMENT,
    REQUIRED_ARGUMENT,
    Fatal,
    Log,
    LongOpt,
    die_of_sigpipe,
    getopt_long,
    print_version,
    write_err,
)

SHORTOPTS = "arw:RibfDcnC:d:S:sqvVh"
LONGOPTS = [
    LongOpt("all", NO_ARGUMENT, "a"),
    LongOpt("remove", NO_ARGUMENT, "r"),
    LongOpt("remove-dependencies", NO_ARGUMENT, "5"),
    LongOpt("remove-holders", NO_ARGUMENT, "5"),
    LongOpt("wait", REQUIRED_ARGUMENT, "w"),
    LongOpt("resolve-alias", NO_ARGUMENT, "R"),
    LongOpt("first-time", NO_ARGUMENT, "3"),
    LongOpt("ignore-install", NO_ARGUMENT, "i"),
    LongOpt("ignore-remove", NO_ARGUMENT, "i"),
    LongOpt("use-blacklist", NO_ARGUMENT, "b"),
    LongOpt("force", NO_ARGUMENT, "f"),
    LongOpt("force-modversion", NO_ARGUMENT, "2"),
    LongOpt("force-vermagic", NO_ARGUMENT, "1"),
    LongOpt("show-depends", NO_ARGUMENT, "D"),
    LongOpt("showconfig", NO_ARGUMENT, "c"),
    LongOpt("show-config", NO_ARGUMENT, "c"),
    LongOpt("show-modversions", NO_ARGUMENT, "4"),
    LongOpt("dump-modversions", NO_ARGUMENT, "4"),
    LongOpt("show-exports", NO_ARGUMENT, "6"),
    LongOpt("dry-run", NO_ARGUMENT, "n"),
    LongOpt("show", NO_ARGUMENT, "n"),
    LongOpt("config", REQUIRED_ARGUMENT, "C"),
    LongOpt("dirname", REQUIRED_ARGUMENT, "d"),
    LongOpt("set-version", REQUIRED_ARGUMENT, "S"),
    LongOpt("syslog", NO_ARGUMENT, "s"),
    LongOpt("quiet", NO_ARGUMENT, "q"),
    LongOpt("verbose", NO_ARGUMENT, "v"),
    LongOpt("version", NO_ARGUMENT, "V"),
    LongOpt("help", NO_ARGUMENT, "h"),
    # not in kmod 30: the name the lkm issue gives -R (kmod calls it --resolve-alias)
    LongOpt("show-alias", NO_ARGUMENT, "R", exact=True),
]

LOG_EMERG = 0
DEFAULT_VERBOSE = LOG_WARNING

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


class CStdout:
    """stdout as C's stdio keeps it: fully buffered in st_blksize chunks on a pipe or
    file, line buffered on a terminal.

    Child processes (install and remove commands) write to the same descriptor,
    so what C would have written before a child runs decides the byte order:
    :meth:`sync` writes exactly that (every full chunk but the last byte's).
    Text is kept as ``str`` until then.
    """

    def __init__(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()
        self.fd = 1
        self.parts: list[str] = []
        self.pending = b""  # encoded bytes not yet written
        self.count = 0
        try:
            self.line = os.isatty(self.fd)
            size = os.fstat(self.fd).st_blksize
        except OSError:
            self.line, size = False, 0
        self.size = size if size > 0 else 8192
        self.broken = False

    def write(self, text: str) -> None:
        self.parts.append(text)
        self.count += len(text)
        if self.line and "\n" in text:
            self.flush()
        elif self.count > 1 << 20:
            self.sync()

    def _collect(self) -> bytes:
        if self.parts:
            self.pending += "".join(self.parts).encode("utf-8", "surrogateescape")
            self.parts.clear()
            self.count = 0
        return self.pending

    def sync(self) -> None:
        """Write what C's stdio would have written by now (before a child writes)."""
        data = self._collect()
        if self.line:
            self.flush()
            return
        n = (len(data) - 1) // self.size * self.size if data else 0
        if n > 0:
            self._write(data[:n])
            self.pending = data[n:]

    def write_bytes(self, data: bytes) -> None:
        self.flush()
        self._write(data)

    def flush(self) -> None:
        data = self._collect()
        if data:
            self.pending = b""
            self._write(data)

    def _write(self, data: bytes) -> None:
        if self.broken:
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BrokenPipeError:
                self.broken = True
                die_of_sigpipe()  # as kmod's modprobe, killed by SIGPIPE
                return
            except OSError:
                self.broken = True
                return
            view = view[n:]


class _Tool:
    """One run of modprobe: options, the libkmod context, output."""

    def __init__(self, prog: str) -> None:
        self.prog = prog
        self.out = CStdout()
        self.log = Log(prog)
        self.tool_prio = LOG_CRIT  # modprobe's LOG(): FATAL, or WARNING with -a
        self.verbose = DEFAULT_VERBOSE
        self.do_show = False
        self.dry_run = False
        self.ignore_loaded = False
        self.lookup_only = False
        self.first_time = False
        self.ignore_commands = False
        self.use_blacklist = False
        self.force = False
        self.strip_modversion = False
        self.strip_vermagic = False
        self.remove_holders = False
        self.wait_msec = 0

    # -- messages -------------------------------------------------------------------------
    def note(self, msg: str) -> None:
        """modprobe's LOG(): FATAL (ends the run) or, with -a, WARNING."""
        self.log.log(self.tool_prio, msg)

    def error(self, msg: str) -> None:
        self.log.log(LOG_ERR, msg)

    def lib(self, prio: int, where: str, fn: str, msg: str) -> None:
        self.log.lib(prio, where, fn, msg)

    def show_line(self, text: str) -> None:
        """SHOW(): printed with -D or -v, flushed at once."""
        if not self.do_show and self.verbose <= DEFAULT_VERBOSE:
            return
        self.out.write(text)
        self.out.flush()


def _modprobe_options_append(value: str) -> None:
    old = os.environ.get("MODPROBE_OPTIONS")
    os.environ["MODPROBE_OPTIONS"] = value if old is None else f"{old} {value}"


def options_from_array(args: list[str]) -> str | None:
    """The module options given after the name, a value with spaces quoted (kmod's rule)."""
    if len(args) < 2:
        return None
    parts = []
    for a in args[1:]:
        key, eq, value = a.partition("=")
        if eq and value[:1] not in ('"', "'") and " " in value:
            parts.append(f'{key}="{value}"')
        else:
            parts.append(a)
    return " ".join(parts)


def main(prog: str, argv: list[str]) -> int:
    # thousands of short-lived objects and no reference cycles: the cyclic collector
    # only costs time here
    gc_was_enabled = gc.isenabled()
    gc.disable()
    t = _Tool(prog)
    try:
        rc = _main(t, argv)
    except Fatal:
        rc = 1
    finally:
        t.out.flush()
        if gc_was_enabled:
            gc.enable()
    if _whole_process(argv):
        _fast_exit(rc)
    return rc


def _whole_process(argv: list[str]) -> bool:
    """True when this process is lkm run as the modprobe command (its main script is lkm's
    and ``argv`` is its command line), not a call from other Python code."""
    main = sys.modules.get("__main__")
    script = os.path.basename(getattr(main, "__file__", None) or "")
    if script not in ("lkm", "modprobe") and getattr(main, "__package__", None) != "lkm":
        return False
    return argv == sys.argv[1:] or (argv == sys.argv[2:] and sys.argv[1:2] == ["modprobe"])


def _fast_exit(rc: int) -> None:
    """End the process now: flush, then skip the interpreter's teardown, which only frees
    memory (thousands of objects after ``-a`` over a whole tree)."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        return  # let the normal exit path report or ignore it
    os._exit(rc)


def _main(t: _Tool, argv: list[str]) -> int:
    from lkm.config import split_modprobe_options

    prog = t.prog
    env = os.environ.get("MODPROBE_OPTIONS")
    if env is not None:
        argv = split_modprobe_options(env) + list(argv)
    opts, args = getopt_long(prog, argv, SHORTOPTS, LONGOPTS)
    use_all = do_remove = show_config = show_modversions = show_exports = False
    config_paths: list[str] | None = None
    root: str | None = None
    kversion: str | None = None
    use_syslog = False
    for key, val in opts:
        if key == "a":
            t.tool_prio = LOG_WARNING
            use_all = True
        elif key == "r":
            do_remove = True
        elif key == "5":
            t.remove_holders = True
        elif key == "w":
            assert val is not None
            try:
                t.wait_msec = _strtoul(val)
            except ValueError:
                t.error(f"unexpected wait value '{val}'.\n")
                return 1
        elif key == "3":
            t.first_time = True
        elif key == "i":
            t.ignore_commands = True
        elif key == "b":
            t.use_blacklist = True
        elif key == "f":
            t.force = True
        elif key == "2":
            t.strip_modversion = True
        elif key == "1":
            t.strip_vermagic = True
        elif key == "D":
            t.ignore_loaded = t.dry_run = t.do_show = True
        elif key == "R":
            t.lookup_only = True
        elif key == "c":
            show_config = True
        elif key == "4":
            show_modversions = True
        elif key == "6":
            show_exports = True
        elif key == "n":
            t.dry_run = True
        elif key == "C":
            assert val is not None
            config_paths = [*(config_paths or []), val]
            _modprobe_options_append("-C")
            _modprobe_options_append(val)
        elif key == "d":
            root = val
        elif key == "S":
            kversion = val
        elif key == "s":
            _modprobe_options_append("-s")
            use_syslog = True
        elif key == "q":
            _modprobe_options_append("-q")
            t.verbose = LOG_EMERG
        elif key == "v":
            _modprobe_options_append("-v")
            t.verbose += 1
        elif key == "V":
            print_version()
            return 0
        elif key == "h":
            sys.stdout.write(HELP.format(p=prog))
            return 0
        else:  # "?": getopt's message
            write_err(f"{val}\n")
            return 1

    t.log.use_syslog = use_syslog
    if not show_config and not args:
        t.error("missing parameters. See -h.\n")
        return 1

    from lkm.config import ModprobeConfig
    from lkm.kernel.backend import get_backend
    from lkm.moddb import ModuleDir, make_absolute
    from lkm.modprobe import Modprobe

    kernel = get_backend()
    if root is not None or kversion is not None:
        dirname = f"{root or ''}/lib/modules/{kversion or kernel.release()}"
    else:
        dirname = kernel.module_dir() or f"/lib/modules/{kernel.release()}"
    dirname = make_absolute(dirname)
    config = ModprobeConfig.load(config_paths, dirname, kernel.cmdline())
    for prio, where, fn, msg in config.messages:
        t.lib(prio, where, fn, msg)
    # log_setup_kmod_log: from here libkmod speaks through the tool's logger
    t.log.priority = t.verbose
    t.log.kmod_log = True
    t.log.lib_priority = t.verbose
    t.lib(LOG_INFO, "../libkmod/libkmod.c:367", "kmod_set_log_fn",
          f"custom logging function {_pointer(t)} registered\n")

    moddir = ModuleDir(dirname)
    ctx = Modprobe(moddir, config, kernel, t.lib)
    ctx.before_command = t.out.sync
    ctx.load_resources()

    rc = _dispatch(t, ctx, args, show_config, show_modversions, show_exports, do_remove,
                   use_all)
    t.lib(LOG_INFO, "../libkmod/libkmod.c:334", "kmod_unref",
          f"context {_pointer(ctx)} released\n")
    return rc


def _pointer(obj: object) -> str:
    """A pointer-like text for libkmod's INFO messages that print one."""
    return f"{id(obj):#x}"


def _dispatch(t: _Tool, ctx: object, args: list[str], show_config: bool,
              show_modversions: bool, show_exports: bool, do_remove: bool,
              use_all: bool) -> int:
    if show_config:
        return _show_config(t, ctx)
    if show_modversions:
        return _show_versions(t, args[0], exports=False)
    if show_exports:
        return _show_versions(t, args[0], exports=True)
    if do_remove:
        return _rmmod_all(t, ctx, args)
    if use_all:
        return 1 if _insmod_all(t, ctx, args, None) < 0 else 0
    return 1 if _insmod_all(t, ctx, args[:1], options_from_array(args)) < 0 else 0


def _strtoul(s: str) -> int:
    """C strtoul(s, &end, 0) that must consume the whole non-empty string."""
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


def _show_config(t: _Tool, ctx: object) -> int:
    from lkm.modprobe import Modprobe

    assert isinstance(ctx, Modprobe)
    t.out.write(ctx.config.show())
    t.out.write("\n# End of configuration files. Dumping indexes now:\n\n")
    t.out.flush()
    for name in ("modules.alias", "modules.symbols"):
        idx = ctx.moddir.index(name)
        if idx is None:
            continue
        try:
            t.out.write_bytes(idx.dump("alias ").encode("utf-8", "surrogateescape"))
        except Exception:  # a corrupt index: libkmod dumps what it can read
            continue
    return 0


def _show_versions(t: _Tool, filename: str, exports: bool) -> int:
    from lkm.errors import LkmError
    from lkm.module import ModuleFile

    try:
        os.stat(filename)
    except OSError:
        t.note(f"Module {filename} not found.\n")
        return 1
    what = "symbols" if exports else "modversions"
    try:
        with open(filename, "rb") as f:
            if len(f.read(6)) < 6:  # libkmod reads a 6-byte magic first
                raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        mf = ModuleFile.open(filename)
        rows = module_symbols(mf) if exports else module_versions(mf)
    except OSError as e:
        t.note(f"could not get {what} of {filename}: {os.strerror(e.errno or errno.EIO)}\n")
        return 1
    except LkmError as e:
        err = getattr(e, "errno", None) or errno.EINVAL
        t.note(f"could not get {what} of {filename}: {os.strerror(err)}\n")
        return 1
    t.out.write("".join(f"0x{crc:08x}\t{sym}\n" for crc, sym in rows))
    return 0


def module_versions(mf: object) -> list[tuple[int, str]]:
    """kmod_module_get_versions: (crc, symbol) of __versions, a leading '.' dropped.

    OSError(ENOENT) when the module has no __versions section.
    """
    from lkm.module import ModuleFile

    assert isinstance(mf, ModuleFile)
    if mf.elf.section_index("__versions") is None:
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
    return [(crc, sym[1:] if sym.startswith(".") else sym) for sym, crc in mf.versions]


def module_symbols(mf: object) -> list[tuple[int, str]]:
    """kmod_module_get_symbols: the ``__crc_`` symbols with their CRCs, else the strings
    of ``__ksymtab_strings`` with CRC 0."""
    from lkm.errors import LkmError
    from lkm.module import ModuleFile

    assert isinstance(mf, ModuleFile)
    elf = mf.elf
    out: list[tuple[int, str]] = []
    try:
        syms = elf.symbols() if elf.section_index(".strtab") is not None else []
    except LkmError:
        syms = []
    order: Literal["little", "big"] = "little" if elf.little_endian else "big"
    for s in syms[1:]:
        if not s.name.startswith("__crc_"):
            continue
        crc = s.value
        if s.shndx not in (0, 0xFFF1):
            try:
                _off, size = elf.section_header(s.shndx)[4:6]
                if crc > (size - 4) & 0xFFFFFFFFFFFFFFFF:
                    crc = 0xFFFFFFFFFFFFFFFF
                else:
                    data = bytes(elf.section_data(s.shndx)[crc:crc + 4])
                    crc = int.from_bytes(data.ljust(4, b"\0"), order)
            except LkmError:
                crc = 0xFFFFFFFFFFFFFFFF
        out.append((crc, s.name[6:]))
    if out:
        return out
    strings = elf.section_bytes("__ksymtab_strings")
    if strings is None:
        raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
    return [(0, s.decode("utf-8", "surrogateescape")) for s in bytes(strings).split(b"\0") if s]


def _probe_flags(t: _Tool) -> int:
    from lkm import modprobe as mp

    flags = mp.PROBE_APPLY_BLACKLIST_ALIAS_ONLY
    if t.strip_modversion or t.force:
        flags |= mp.PROBE_FORCE_MODVERSION
    if t.strip_vermagic or t.force:
        flags |= mp.PROBE_FORCE_VERMAGIC
    if t.ignore_commands:
        flags |= mp.PROBE_IGNORE_COMMAND
    if t.ignore_loaded:
        flags |= mp.PROBE_IGNORE_LOADED
    if t.dry_run:
        flags |= mp.PROBE_DRY_RUN
    if t.use_blacklist:
        flags |= mp.PROBE_APPLY_BLACKLIST
    if t.first_time:
        flags |= mp.PROBE_FAIL_ON_LOADED
    return flags


def _insmod_all(t: _Tool, ctx: object, names: list[str], extra_options: str | None) -> int:
    """modprobe's insmod() for each name: the last error (negative errno), or 0."""
    from lkm.modprobe import Modprobe

    assert isinstance(ctx, Modprobe)
    flags = _probe_flags(t)
    show = t.out.write if (t.do_show or t.verbose > DEFAULT_VERBOSE) else None
    release, lookup, probe = ctx.release, ctx.lookup, ctx.probe
    lookup_only = t.lookup_only
    result = 0
    for alias in names:
        release()
        err, found = lookup(alias)
        if not found or err < 0:
            t.note(f"Module {alias} not found in directory {ctx.dirname}\n")
            result = -errno.ENOENT
            continue
        for mod in found:
            if lookup_only:
                t.out.write(f"{mod.name}\n")
            else:
                err = probe(mod, flags, extra_options, show)
            if err >= 0:
                err = 0
            elif err == -errno.EEXIST:
                t.error(f"could not insert '{mod.name}': Module already in kernel\n")
            elif err == -errno.ENOENT:
                t.error(f"could not insert '{mod.name}': Unknown symbol in module, "
                        "or unknown parameter (see dmesg)\n")
            else:
                t.error(f"could not insert '{mod.name}': {os.strerror(-err)}\n")
        if err < 0:
            result = err
    return result


def _rmmod_all(t: _Tool, ctx: object, args: list[str]) -> int:
    from lkm.modprobe import Modprobe, Remover

    assert isinstance(ctx, Modprobe)
    remover = Remover(ctx, dry_run=t.dry_run, force=t.force,
                      ignore_commands=t.ignore_commands, ignore_loaded=t.ignore_loaded,
                      first_time=t.first_time, wait_msec=t.wait_msec,
                      show=t.show_line, note=t.note, error=t.error)
    err = 0
    for a in args:
        ctx.release()
        r = remover.remove_name(a, t.remove_holders)
        if r < 0:
            err = r
    return 1 if err < 0 else 0
