"""``modinfo``: show the .modinfo of modules, byte for byte as Debian's kmod 30 does.

Arguments are module files (a regular file ending in ``.ko``, ``.ko.xz`` or
``.ko.zst``), or names and aliases looked up in the module directory's indexes
(``-m``: module names only).  Built-in modules come from modules.builtin and
modules.builtin.modinfo.
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
from dataclasses import dataclass

from lkm.cli._common import (
    LOG_ERR,
    NO_ARGUMENT,
    REQUIRED_ARGUMENT,
    Log,
    LongOpt,
    Output,
    getopt_long,
    print_version,
)
from lkm.errors import FormatError, InvalidAlias, LkmError, ModuleNotFound
from lkm.moddb import (
    Found,
    ModuleDir,
    has_module_extension,
    make_absolute,
    modname_from_path,
)

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


def _enc(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _dec(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


class _InfoError(Exception):
    """kmod_module_get_info failed with ``errno``."""

    def __init__(self, err: int) -> None:
        super().__init__(os.strerror(err))
        self.errno = err


@dataclass
class _Module:
    """A module as libkmod's modinfo sees it: a name, maybe a path, a built-in state."""

    name: str
    path: str | None = None
    builtin: bool | None = None  # None: ask modules.builtin.bin when needed
    dep_done: bool = False  # modules.dep was consulted for the path


def read_module_info(path: str) -> list[tuple[bytes, bytes]]:
    """kmod_module_get_info of a module file: the .modinfo strings split at the first
    ``=`` (file order), then the signature entries.

    The file is read as Debian's kmod 30 reads it (xz and zstd by magic; no zlib, so
    a gzip stream is not a module).  Raises OSError or FormatError (whose ``errno`` is
    kmod's) when it is not a module, _InfoError(ENOENT) when it has no .modinfo.
    """
    from lkm import signature
    from lkm.module import ModuleFile

    content = _read(path)
    _identify(content)
    # the mapping is released with the last view of it, when this returns
    elf = ModuleFile(content, path).elf
    try:
        data = elf.section_bytes(".modinfo")
    except FormatError:
        data = None  # libkmod skips a section header it cannot use
    if data is None:
        raise _InfoError(errno.ENOENT)
    out = [(key, value) for key, _, value in
           (s.partition(b"=") for s in modinfo_strings(bytes(data)))]
    for key_s, value_s in signature.modinfo_fields(memoryview(content)):
        out.append((_enc(key_s), _enc(value_s)))
    return out


def _read(path: str) -> bytes | mmap.mmap:
    """kmod_file_open: at least 6 bytes (EINVAL), decompressed by magic, else mapped."""
    from lkm import compress

    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        head = os.pread(fd, 6, 0)
        if len(head) < 6:
            raise _InfoError(errno.EINVAL)
        kind = compress.detect(head)
        if kind in ("xz", "zstd"):
            chunks = []
            while True:
                b = os.read(fd, 1 << 20)
                if not b:
                    break
                chunks.append(b)
            data: bytes = compress.decompress(b"".join(chunks), kind)
            return data
        return mmap.mmap(fd, 0, prot=mmap.PROT_READ)
    finally:
        os.close(fd)


def _identify(content: bytes | mmap.mmap) -> None:
    """libkmod's elf_identify: its errno for a file that is not a usable ELF header."""
    n = len(content)
    if n <= 16 or content[:4] != b"\x7fELF":
        raise _InfoError(errno.ENOEXEC)
    ei_class, ei_data = content[4], content[5]
    if ei_class not in (1, 2) or n <= (52 if ei_class == 1 else 64) or ei_data not in (1, 2):
        raise _InfoError(errno.EINVAL)


def modinfo_strings(data: bytes) -> list[bytes]:
    """libkmod's kmod_elf_get_strings: the NUL-separated strings of a section, runs of
    NULs skipped; nothing if a single byte is left after the leading NULs."""
    stripped = data.lstrip(b"\0")
    if len(stripped) <= 1:
        return []
    return [s for s in stripped.split(b"\0") if s]


class Modinfo:
    """One modinfo run: options, the module directory, output and status."""

    def __init__(self, prog: str, log: Log, out: Output, moddir: ModuleDir, field: str | None,
                 separator: bytes) -> None:
        self.prog = prog
        self.log = log
        self.out = out
        self.moddir = moddir
        self.field = field
        self.bfield = _enc(field) if field is not None else None
        self.sep = separator

    # -- argument kinds

    def by_path(self, path: str) -> int:
        abspath = make_absolute(path)
        name = None
        try:
            os.stat(abspath)
            name = modname_from_path(path)
        except (OSError, ValueError):
            pass
        if name is None:
            self.log.error(f"Module file {path} not found.")
            return -errno.ENOENT
        return self.show(_Module(name, abspath, builtin=False, dep_done=True))

    def by_name(self, name: str) -> int:
        try:
            found = self.moddir.lookup_modname(name)
        except LkmError:
            found = None
        if found is None:
            self.log.error(f"Module name {name} not found.")
            return -errno.ENOENT
        return self.show(self._module(found))

    def by_alias(self, alias: str) -> int:
        try:
            found = self.moddir.lookup(alias)
        except InvalidAlias:
            self.log.error(f"Module alias {alias} not found.")
            return -errno.EINVAL
        if not found:
            self.log.error(f"Module {alias} not found.")
            return -errno.ENOENT
        err = 0
        # libkmod hands out one object per name (and alias): a module matched twice is
        # printed twice but resolved once
        pool: dict[tuple[str, str | None], _Module] = {}
        mods = []
        for f in found:
            key = (f.name, f.alias)
            if key not in pool:
                pool[key] = self._module(f)
            mods.append(pool[key])
        for m in mods:
            r = self.show(m)
            if r < 0:
                err = r
        return err

    def _module(self, found: Found) -> _Module:
        m = _Module(found.name, builtin=found.builtin)
        if found.dep is not None:
            m.dep_done = True
            m.path = found.dep.path
            self._check_deps(found.dep.deps)
        return m

    def _check_deps(self, deps: tuple[str, ...]) -> None:
        """libkmod creates every dependency from its path (a stat each) and logs failures."""
        for dep in deps:
            try:
                os.stat(dep)
            except OSError as e:
                self.log.lib(LOG_ERR, "../libkmod/libkmod-module.c:191",
                             "kmod_module_parse_depline",
                             f"ctx={id(self.moddir):#x} path={dep} "
                             f"error={os.strerror(e.errno or errno.ENOENT)}")
                return
            except ValueError:
                return

    def _path(self, m: _Module) -> str | None:
        """kmod_module_get_path: the known path, else modules.dep's (looked up once)."""
        if m.path is not None or m.dep_done:
            return m.path
        m.dep_done = True
        entry = self.moddir.lookup_name(m.name)
        if entry is not None:
            m.path = entry.path
            self._check_deps(entry.deps)
        return m.path

    def _is_builtin(self, m: _Module) -> bool:
        if m.builtin is None:
            m.builtin = self.moddir.is_builtin(m.name)
        return m.builtin

    def _info(self, m: _Module) -> list[tuple[bytes, bytes]]:
        """kmod_module_get_info; raises _InfoError with kmod's errno."""
        if self._is_builtin(m):
            try:
                strings = self.moddir.builtin_modinfo_strings(m.name)
            except OSError as e:
                raise _InfoError(e.errno or errno.EIO) from None
            except ModuleNotFound:
                raise _InfoError(errno.ENOSYS) from None
            except FormatError:
                raise _InfoError(errno.EINVAL) from None
            return [(k, v) for k, _, v in (s.partition(b"=") for s in strings)]
        path = self._path(m)
        if path is None:
            raise _InfoError(errno.ENOENT)
        try:
            return read_module_info(path)
        except OSError as e:
            raise _InfoError(e.errno or errno.EIO) from None
        except FormatError as e:
            raise _InfoError(getattr(e, "errno", errno.EINVAL)) from None
        except ValueError:
            raise _InfoError(errno.EINVAL) from None

    # -- output

    def show(self, m: _Module) -> int:
        """modinfo_do: print one module."""
        out, sep, field = self.out, self.sep, self.field
        filename = self._path(m)
        is_builtin = filename is None
        if filename is None:
            if field is None:
                out.write(b"name:           " + _enc(m.name) + sep)
            elif field == "name":
                out.write(_enc(m.name) + sep)
            filename = "(builtin)"
        if field == "filename":
            out.write(_enc(filename) + sep)
            return 0
        if field is None:
            out.write(b"filename:       " + _enc(filename) + sep)
        try:
            info = self._info(m)
        except _InfoError as e:
            if is_builtin and e.errno == errno.ENOENT:
                return 0  # an old kernel without modules.builtin.modinfo
            self.log.error(f"could not get modinfo from '{m.name}': {os.strerror(e.errno)}")
            return -e.errno
        if field == "parm":
            self._params(info, True)
            return 0
        bfield = self.bfield
        if bfield is not None:
            out.write(b"".join(value + sep for key, value in info if key == bfield))
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
        out.write(b"".join(parts))
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
        self.out.write(b"".join(lines))


def is_module_filename(name: str) -> bool:
    """A regular file whose name ends in a module extension (kmod: a path, not an alias)."""
    try:
        st = os.stat(name)
    except (OSError, ValueError):
        return False
    return stat.S_ISREG(st.st_mode) and has_module_extension(name)


def main(prog: str, argv: list[str]) -> int:
    log = Log(prog)
    out = Output()
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
            out.text(HELP.format(prog=prog))
            out.flush()
            return 0
        elif key == "V":
            print_version(out)
            out.flush()
            return 0
        else:  # "?": getopt's message
            from lkm.cli._common import write_err

            write_err(f"{value}\n")
            return 1
    if not args:
        log.error("missing module or filename.")
        return 1
    moddir = ModuleDir.for_release(root, kversion)
    run = Modinfo(prog, log, out, moddir, field, separator)
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
    finally:
        out.flush()
        moddir.close()
    return 0 if err >= 0 else 1
