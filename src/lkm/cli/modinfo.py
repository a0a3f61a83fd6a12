"""``modinfo``: show the .modinfo of modules, byte for byte as Debian's kmod 30 does
(tools/modinfo.c: the options, the three kinds of argument, the printing).

Arguments are module files (a regular file ending in one of
:data:`lkm.kmod.KMOD_EXTENSIONS`), or names and aliases looked up by the libkmod
context (``-m``: module names only).  The work is :mod:`lkm.kmod`'s.
"""

from __future__ import annotations

import errno
import os
import stat

from lkm.cli._common import Log, Stdout, print_version, write_err
from lkm.cli._getopt import NO_ARGUMENT, REQUIRED_ARGUMENT, LongOpt, getopt_long
from lkm.errors import InvalidAlias
from lkm.kmod import KmodContext, KmodError, KmodModule, ModuleDir, has_module_extension

SHORTOPTS = "adlpn0mF:k:b:Vh"
LONGOPTS = (
    LongOpt("author", NO_ARGUMENT, "a"),
    LongOpt("description", NO_ARGUMENT, "d"),
    LongOpt("license", NO_ARGUMENT, "l"),
    LongOpt("parameters", NO_ARGUMENT, "p"),
    LongOpt("filename", NO_ARGUMENT, "n"),
    LongOpt("null", NO_ARGUMENT, "0"),
    LongOpt("modname", NO_ARGUMENT, "m"),
    LongOpt("field", REQUIRED_ARGUMENT, "F"),
    LongOpt("set-version", REQUIRED_ARGUMENT, "k"),
    LongOpt("basedir", REQUIRED_ARGUMENT, "b"),
    LongOpt("version", NO_ARGUMENT, "V"),
    LongOpt("help", NO_ARGUMENT, "h"),
)
_FIELD_OPTS = {"a": "author", "d": "description", "l": "license", "p": "parm",
               "n": "filename"}

HELP = """\
Usage:
\t{prog} [options] <modulename|filename> [args]
Options:
\t-a, --author                Print only 'author'
\t-d, --description           Print only 'description'
\t-l, --license               Print only 'license'
\t-p, --parameters            Print only 'parm'
\t-n, --filename              Print only 'filename'
\t-0, --null                  Use \\0 instead of \\n
\t-m, --modname               Handle argument as module name instead of alias or filename
\t-F, --field=FIELD           Print only provided FIELD
\t-k, --set-version=VERSION   Use VERSION instead of `uname -r`
\t-b, --basedir=DIR           Use DIR as filesystem root for /lib/modules
\t-V, --version               Show version
\t-h, --help                  Show this help
"""


def _dec(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


class Modinfo:
    """One modinfo run: the context, the field and separator asked for, output."""

    def __init__(self, log: Log, out: Stdout, ctx: KmodContext, field: str | None,
                 separator: bytes) -> None:
        self.log = log
        self.out = out
        self.ctx = ctx
        self.field = field
        self.bfield = field.encode("utf-8", "surrogateescape") if field is not None else None
        self.sep = separator

    # -- argument kinds (modinfo_path_do, modinfo_name_do, modinfo_alias_do)

    def by_path(self, path: str) -> int:
        try:
            mod = self.ctx.new_from_path(path)
        except OSError as e:
            self.log.error(f"Module file {path} not found.")
            return -(e.errno or errno.ENOENT)
        return self.show(mod)

    def by_name(self, name: str) -> int:
        mod = self.ctx.lookup_name(name)
        if mod is None:
            self.log.error(f"Module name {name} not found.")
            return -errno.ENOENT
        return self.show(mod)

    def by_alias(self, alias: str) -> int:
        try:
            found = self.ctx.lookup(alias)
        except InvalidAlias:
            self.log.error(f"Module alias {alias} not found.")
            return -errno.EINVAL
        if not found:
            self.log.error(f"Module {alias} not found.")
            return -errno.ENOENT
        err = 0
        for mod in found:
            r = self.show(mod)
            if r < 0:
                err = r
        return err

    # -- output

    def show(self, mod: KmodModule) -> int:
        """modinfo_do: print one module."""
        out, sep, field = self.out.write_bytes, self.sep, self.field
        filename = mod.path()
        is_builtin = filename is None
        if filename is None:
            name = mod.name.encode("utf-8", "surrogateescape")
            if field is None:
                out(b"name:           " + name + sep)
            elif field == "name":
                out(name + sep)
            filename = "(builtin)"
        bfilename = filename.encode("utf-8", "surrogateescape")
        if field == "filename":
            out(bfilename + sep)
            return 0
        if field is None:
            out(b"filename:       " + bfilename + sep)
        try:
            info = mod.info_raw()
        except KmodError as e:
            if is_builtin and e.errno == errno.ENOENT:
                return 0  # an old kernel without modules.builtin.modinfo
            self.log.error(f"could not get modinfo from '{mod.name}': {os.strerror(e.errno)}")
            return -e.errno
        if field == "parm":
            self._params(info, True)
            return 0
        bfield = self.bfield
        if bfield is not None:
            out(b"".join(value + sep for key, value in info if key == bfield))
            return 0
        parts: list[bytes] = []
        parms: list[tuple[bytes, bytes]] = []
        for key, value in info:
            if key == b"parm" or key == b"parmtype":
                parms.append((key, value))
            elif sep == b"\0":
                parts.append(key + b"=" + value + sep)
            else:
                # printf("%s:%-*s%s"): a negative width pads to its absolute value
                parts.append(key + b":" + b" " * abs(15 - len(key)) + value + sep)
        out(b"".join(parts))
        if parms:
            self._params(parms, False)
        return 0

    def _params(self, info: list[tuple[bytes, bytes]], bare: bool) -> None:
        """Merge parm/parmtype entries by name; print in reverse order of first sight."""
        params: dict[bytes, list[bytes | None]] = {}
        for key, value in info:
            if key != b"parm" and key != b"parmtype":
                continue
            colon = value.find(b":")
            if colon < 0:
                self.log.error(f'Found invalid "{_dec(key)}={_dec(value)}": missing \':\'')
                continue
            name = value[:colon]
            entry = params.get(name)
            if entry is None:
                entry = params[name] = [None, None]
            entry[0 if key == b"parm" else 1] = value[colon + 1:]
        sep = self.sep
        head = b"" if bare else b"parm:           "
        lines = []
        for name in reversed(params):
            desc, typ = params[name]
            if desc is None:
                assert typ is not None
                lines.append(head + name + (b": (" + typ + b")" if bare else b":" + typ) + sep)
            elif typ is not None:
                lines.append(head + name + b":" + desc + b" (" + typ + b")" + sep)
            else:
                lines.append(head + name + b":" + desc + sep)
        self.out.write_bytes(b"".join(lines))


def is_module_filename(name: str) -> bool:
    """A regular file whose name ends in a module extension (kmod: a path, not an alias)."""
    try:
        st = os.stat(name)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(st.st_mode) and has_module_extension(name)


def main(prog: str, argv: list[str]) -> int:
    log = Log(prog)
    out = Stdout()
    field: str | None = None
    separator = b"\n"
    arg_is_modname = False
    kversion: str | None = None
    root: str | None = None
    opts, args = getopt_long(prog, argv, SHORTOPTS, LONGOPTS)
    for key, value in opts:
        if key in _FIELD_OPTS:
            field = _FIELD_OPTS[key]
        elif key == "0":
            separator = b"\0"
        elif key == "m":
            arg_is_modname = True
        elif key == "F":
            field = value
        elif key == "k":
            kversion = value
        elif key == "b":
            root = value
        elif key == "h":
            out.write(HELP.format(prog=prog))
            out.flush()
            return 0
        elif key == "V":
            print_version(out)
            out.flush()
            return 0
        else:  # "?": getopt's message
            write_err(f"{value}\n")
            return 1
    if not args:
        log.error("missing module or filename.")
        return 1
    # kmod_new(dirname, NULL config): no modprobe.d (its modules.softdep and the kernel
    # command line, which libkmod reads too, can add no alias or command)
    moddir = ModuleDir.for_release(root, kversion)
    ctx = KmodContext(moddir, log=log.lib)
    run = Modinfo(log, out, ctx, field, separator)
    err = 0
    try:
        for name in args:
            if arg_is_modname:
                r = run.by_name(name)
            elif is_module_filename(name):
                r = run.by_path(name)
            else:
                r = run.by_alias(name)
            if r < 0:
                err = r
            ctx.release()  # kmod_module_unref: the handles of one argument are freed
    finally:
        out.flush()
        moddir.close()
    return 0 if err >= 0 else 1
