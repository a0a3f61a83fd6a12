"""One module as a libkmod context knows it: ``struct kmod_module`` (libkmod-module.c).

A :class:`KmodModule` is a handle made by its :class:`lkm.kmod.KmodContext` (never
directly) and pooled there by key, as libkmod pools them: a module reached through
an alias is a different handle from the same module reached by name, which is why
a module can appear twice in a probe list.  It answers what libkmod's
``kmod_module_get_*`` functions answer, with libkmod's messages and errnos:

- from the module directory: :meth:`~KmodModule.path`, :meth:`~KmodModule.dependencies`,
  :meth:`~KmodModule.is_builtin`;
- from the configuration: :meth:`~KmodModule.options`,
  :meth:`~KmodModule.install_command`, :meth:`~KmodModule.remove_command`,
  :meth:`~KmodModule.softdeps`;
- from the file: :meth:`~KmodModule.info`, :meth:`~KmodModule.versions`,
  :meth:`~KmodModule.symbols`;
- from the kernel (``/sys/module``, ``/proc/modules``, through the context's kernel
  backend): :meth:`~KmodModule.initstate`, :meth:`~KmodModule.size`,
  :meth:`~KmodModule.refcnt`, :meth:`~KmodModule.holders`;
- effects: :meth:`~KmodModule.insert`, :meth:`~KmodModule.remove`,
  :meth:`~KmodModule.probe_insert`.

Like libkmod, the values read from the kernel are ints that are negative errnos
on failure; effects return 0 or a negative errno; file reads raise
:class:`lkm.kmod.KmodError`.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

from lkm.errors import FormatError, KernelError, LkmError, ModuleNotFound
from lkm.kernel.uapi import O_NONBLOCK, O_TRUNC
from lkm.kmod.errors import KmodError
from lkm.kmod.log import libkmod_pos
from lkm.logprio import LOG_ERR, LOG_INFO

if TYPE_CHECKING:
    from lkm.kmod.context import KmodContext, _DepInfo
    from lkm.kmod.probe import ShowFn
    from lkm.module import ModuleFile

# enum kmod_module_initstate
BUILTIN, LIVE, COMING, GOING = 0, 1, 2, 3

_INITSTATES = {"live\n": LIVE, "coming\n": COMING, "going\n": GOING}

# kmod_module_remove_module flags (KMOD_REMOVE_*): delete_module's O_TRUNC and O_NONBLOCK
REMOVE_FORCE = O_TRUNC
REMOVE_NOWAIT = O_NONBLOCK
REMOVE_NOLOG = 1

# kmod_module_insert_module flags (KMOD_PROBE_FORCE_*)
INSERT_FORCE_VERMAGIC = 0x00001
INSERT_FORCE_MODVERSION = 0x00002


class KmodModule:
    """``struct kmod_module``: a module's name, the alias it was found by, and what
    libkmod learns about it on demand.

    Only ``ctx``, ``name`` and ``alias`` are set on creation; the rest are class-level
    defaults until a lookup fills them (handles are made by the thousand).

    :ivar name: the module name (normalised: ``snd_hda_intel``).
    :ivar alias: the key it was found by when reached through an alias, else None.
    """

    _path: str | None = None
    _builtin: bool | None = None  # None: not known yet
    _dep_init = False  # its modules.dep line was parsed
    _deps: list[KmodModule] | None = None  # None: not made yet
    _depinfo: list[_DepInfo] | None = None
    _options: str | bool | None = False  # False: not looked up yet
    _install: str | bool | None = False
    _remove: str | bool | None = False
    # probe-list marks (lkm.kmod.probe): the generation that visited / required it
    visited = 0
    required = 0
    ignorecmd = False

    def __init__(self, ctx: KmodContext, name: str, alias: str | None = None) -> None:
        self.ctx = ctx
        self.name = name
        self.alias = alias

    def __repr__(self) -> str:
        alias = f" alias={self.alias!r}" if self.alias is not None else ""
        return f"<KmodModule {self.name}{alias}>"

    # -- the module directory -------------------------------------------------------------

    def path(self) -> str | None:
        """kmod_module_get_path: the module's file (absolute), from how it was made or
        from its modules.dep line; None for a built-in module or one modules.dep does
        not list."""
        if self._path is not None:
            return self._path
        if self._dep_init:
            return None
        line = self.ctx.search_moddep(self.name)
        if line is None:
            return None
        self.ctx.parse_depline(self, line)
        return self._path

    def dependencies(self) -> list[KmodModule]:
        """kmod_module_get_dependencies: the modules of its modules.dep line, the
        nearest last ([] if the line is missing or names a missing file)."""
        if not self._dep_init:
            line = self.ctx.search_moddep(self.name)
            if line is None:
                return []
            self.ctx.parse_depline(self, line)
        deps = self._deps
        if deps is None:
            if not self._dep_init:  # the parse failed
                return []
            deps = self.ctx.make_deps(self)
        return deps

    def is_builtin(self) -> bool:
        """Whether the module is built into the kernel (found through a built-in index,
        else modules.builtin.bin)."""
        if self._builtin is None:
            self._builtin = self.ctx.is_builtin(self.name)
        return self._builtin

    # -- the configuration ----------------------------------------------------------------

    def options(self) -> str | None:
        """kmod_module_get_options: the ``options`` of its name and of the alias it was
        found by, joined by spaces in configuration order; None if there are none."""
        opts = self._options
        if opts is False:
            ctx = self.ctx
            opts = self._options = (ctx._options_by_name.get(self.name) if self.alias is None
                                    else ctx.config_options(self.name, self.alias))
        return opts  # type: ignore[return-value]

    def install_command(self) -> str | None:
        """kmod_module_get_install_commands: the first matching ``install`` command (or
        the one the lookup found it by), None if there is none."""
        cmd = self._install
        if cmd is False:
            exact = self.ctx._install_exact  # config_install, inlined: asked for every module
            cmd = self._install = (exact.get(self.name) if exact is not None
                                   else self.ctx.config_install(self.name))
        return cmd  # type: ignore[return-value]

    def remove_command(self) -> str | None:
        """kmod_module_get_remove_commands: the first matching ``remove`` command."""
        cmd = self._remove
        if cmd is False:
            cmd = self._remove = self.ctx.config_remove(self.name)
        return cmd  # type: ignore[return-value]

    def softdeps(self) -> tuple[list[KmodModule], list[KmodModule]]:
        """kmod_module_get_softdeps: the modules of the first matching ``softdep`` line,
        (pre, post), each name looked up as a lookup does."""
        return self.ctx.softdep_modules(self.name)

    # -- the file -------------------------------------------------------------------------

    def info_raw(self) -> list[tuple[bytes, bytes]]:
        """kmod_module_get_info: (key, value) byte strings, in libkmod's order.

        A built-in module's come from modules.builtin.modinfo; a file's are its
        ``.modinfo`` strings and then its signature entries
        (:func:`lkm.kmod.file.read_info`).

        :raises KmodError: ENOENT without a file or ``.modinfo`` (for a built-in
            module: no modules.builtin.modinfo), ENOSYS for a built-in module missing
            from it, EINVAL for an unterminated string there; a file's errors as
            :func:`lkm.kmod.file.read_info`.
        """
        from lkm.kmod.file import read_info

        builtin = self._builtin
        if builtin is None:
            builtin = self.is_builtin()
        if builtin:
            try:
                strings = self.ctx.moddir.builtin_modinfo_strings(self.name)
            except OSError as e:
                raise KmodError(e.errno or errno.EIO) from None
            except ModuleNotFound:
                raise KmodError(errno.ENOSYS) from None
            except FormatError:
                raise KmodError(errno.EINVAL) from None
            return [(k, v) for k, _, v in (s.partition(b"=") for s in strings)]
        path = self._path if self._path is not None else self.path()
        if path is None:
            raise KmodError(errno.ENOENT)
        return read_info(path)

    def info(self) -> list[tuple[str, str]]:
        """:meth:`info_raw` decoded (UTF-8, undecodable bytes kept as surrogates)."""
        return [(k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
                for k, v in self.info_raw()]

    def versions(self) -> list[tuple[int, str]]:
        """kmod_module_get_versions: (CRC, symbol) of each ``__versions`` entry, a
        leading ``.`` dropped from the name.

        :raises KmodError: ENOENT without a file or a ``__versions`` section, else the
            errno of opening or reading it.
        """
        mf = self._elf()
        try:
            if mf.elf.section_index("__versions") is None:
                raise KmodError(errno.ENOENT)
            return [(crc, sym[1:] if sym.startswith(".") else sym) for sym, crc in mf.versions]
        except KmodError:
            raise
        except (LkmError, ValueError) as e:  # a malformed ELF: EINVAL (or the format's errno)
            raise KmodError(getattr(e, "errno", None) or errno.EINVAL) from None

    def symbols(self) -> list[tuple[int, str]]:
        """kmod_module_get_symbols: (CRC, symbol) of its exports by kmod's rule
        (:meth:`lkm.module.ModuleFile.kmod_exports`).

        :raises KmodError: ENOENT without a file or exports, else the errno of opening
            or reading it.
        """
        mf = self._elf()
        try:
            found = mf.kmod_exports()
        except (LkmError, ValueError) as e:
            raise KmodError(getattr(e, "errno", None) or errno.EINVAL) from None
        if found is None:
            raise KmodError(errno.ENOENT)
        return [(crc, name) for name, crc in found]

    def _elf(self) -> ModuleFile:
        from lkm.kmod.file import module_file

        path = self.path()
        if path is None:
            raise KmodError(errno.ENOENT)
        return module_file(path)

    # -- the kernel -----------------------------------------------------------------------

    def initstate(self) -> int:
        """kmod_module_get_initstate: BUILTIN, LIVE, COMING or GOING, or a negative errno
        (-ENOENT: not loaded)."""
        if self.is_builtin():
            return BUILTIN
        path = f"/sys/module/{self.name}/initstate"
        kernel = self.ctx.kernel
        try:
            text = kernel.read_text(path)
        except OSError as e:
            try:
                kernel.list_dir(f"/sys/module/{self.name}")
                return COMING
            except OSError:
                return -(e.errno or errno.ENOENT)
        state = _INITSTATES.get(text)
        if state is None:
            self.ctx.log(LOG_ERR, libkmod_pos("libkmod-module.c:1847"),
                         "kmod_module_get_initstate", f"unknown {path}: '{text}'\n")
            return -errno.EINVAL
        return state

    def is_inkernel(self) -> bool:
        """True when the module is live or built in (libkmod's module_is_inkernel)."""
        return self.initstate() in (LIVE, BUILTIN)

    def refcnt(self) -> int:
        """kmod_module_get_refcnt: /sys/module/<name>/refcnt, or a negative errno."""
        path = f"/sys/module/{self.name}/refcnt"
        try:
            text = self.ctx.kernel.read_text(path)
        except OSError as e:
            return -(e.errno or errno.ENOENT)
        try:
            return int(text.strip() or "x")
        except ValueError:
            self.ctx.log(LOG_ERR, libkmod_pos("libkmod-module.c:1967"), "kmod_module_get_refcnt",
                         f"could not read integer from '{path}': "
                         f"'{os.strerror(errno.EINVAL)}'\n")
            return -errno.EINVAL

    def size(self) -> int:
        """kmod_module_get_size: /sys/module/<name>/coresize, else the size column of
        its /proc/modules line; a negative errno when it is not loaded or unknown."""
        kernel = self.ctx.kernel
        sysdir = f"/sys/module/{self.name}"
        try:
            kernel.list_dir(sysdir)
        except OSError as e:
            return -(e.errno or errno.ENOENT)
        try:
            text = kernel.read_text(f"{sysdir}/coresize")
        except OSError:
            pass
        else:
            try:
                return int(text.strip() or "x")
            except ValueError:
                self.ctx.log(LOG_ERR, libkmod_pos("libkmod-module.c:1886"),
                             "kmod_module_get_size", f"failed to read coresize from {sysdir}\n")
                return -errno.ENOENT
        try:
            lines = kernel.read_text("/proc/modules").splitlines()
        except OSError as e:
            self.ctx.log(LOG_ERR, libkmod_pos("libkmod-module.c:1896"), "kmod_module_get_size",
                         f"could not open /proc/modules: {os.strerror(e.errno or 0)}\n")
            return -(e.errno or errno.ENOENT)
        for lineno, line in enumerate(lines, 1):
            fields = line.replace("\t", " ").split(" ")
            if fields[0] != self.name:
                continue
            value = next((f for f in fields[1:] if f), None)
            try:
                return int(value or "x")
            except ValueError:
                where = "libkmod-module.c:1913" if value is None else "libkmod-module.c:1920"
                self.ctx.log(LOG_ERR, libkmod_pos(where), "kmod_module_get_size",
                             f"invalid line format at /proc/modules:{lineno}\n")
                break
        return -errno.ENOENT

    def holders(self) -> list[KmodModule]:
        """kmod_module_get_holders: the modules holding this one, in the readdir order
        of /sys/module/<name>/holders ([] with an error logged if it cannot be read)."""
        dname = f"/sys/module/{self.name}/holders"
        try:
            names = self.ctx.kernel.list_dir(dname)
        except OSError as e:
            self.ctx.log(LOG_ERR, libkmod_pos("libkmod-module.c:1998"), "kmod_module_get_holders",
                         f"could not open '{dname}': {os.strerror(e.errno or errno.ENOENT)}\n")
            return []
        return [self.ctx.new_from_name(n) for n in names if n not in (".", "..")]

    # -- effects --------------------------------------------------------------------------

    def insert(self, flags: int = 0, options: str | None = None) -> int:
        """kmod_module_insert_module: load the module's file (no dependencies).

        :param flags: INSERT_FORCE_VERMAGIC and/or INSERT_FORCE_MODVERSION.
        :param options: the parameters given to the kernel.
        :returns: 0 or a negative errno (-ENOENT when there is no file).
        """
        from lkm.kmod.insert import insert_file

        path = self.path()
        if path is None:
            self.ctx.log(LOG_ERR, libkmod_pos("libkmod-module.c:895"),
                         "kmod_module_insert_module",
                         f"could not find module by name='{self.name}'\n")
            return -errno.ENOENT
        err, loaded = insert_file(self.ctx.kernel, path, options or "",
                                  force_vermagic=bool(flags & INSERT_FORCE_VERMAGIC),
                                  force_modversion=bool(flags & INSERT_FORCE_MODVERSION))
        if err < 0 and loaded:
            self.ctx.log(LOG_INFO, libkmod_pos("libkmod-module.c:949"),
                         "kmod_module_insert_module",
                         f"Failed to insert module '{path}': {os.strerror(-err)}\n")
        return err

    def remove(self, flags: int = 0) -> int:
        """kmod_module_remove_module: delete_module, never blocking.

        :param flags: REMOVE_FORCE (O_TRUNC), REMOVE_NOLOG (no message on failure).
        :returns: 0 or a negative errno.
        """
        try:
            self.ctx.kernel.delete_module(self.name, O_NONBLOCK | (flags & REMOVE_FORCE))
        except KernelError as e:
            if not flags & REMOVE_NOLOG:
                self.ctx.log(LOG_ERR, libkmod_pos("libkmod-module.c:856"),
                             "kmod_module_remove_module",
                             f"could not remove '{self.name}': {os.strerror(e.errno)}\n")
            return -e.errno
        return 0

    def probe_insert(self, flags: int, extra_options: str | None = None,
                     show: ShowFn | None = None) -> int:
        """kmod_module_probe_insert_module: load the module with its dependencies and
        soft dependencies (see :func:`lkm.kmod.probe.probe_insert_module`)."""
        from lkm.kmod.probe import probe_insert_module

        return probe_insert_module(self, flags, extra_options, show)


__all__ = ["BUILTIN", "COMING", "GOING", "INSERT_FORCE_MODVERSION", "INSERT_FORCE_VERMAGIC",
           "LIVE", "REMOVE_FORCE", "REMOVE_NOLOG", "REMOVE_NOWAIT", "KmodModule"]
