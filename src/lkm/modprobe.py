"""modprobe's resolution: libkmod's lookup order, the probe list, and the remove plan.

:class:`Modprobe` plays the part of a libkmod context: it holds the module
directory (:class:`lkm.moddb.ModuleDir`), the modprobe.d configuration
(:class:`lkm.config.ModprobeConfig`) and a kernel backend, and hands out
:class:`Module` objects pooled by key as libkmod does (a module reached through
an alias is a different object from the same module reached by name, which is
why a module can appear twice in a probe list).

Effects go through callbacks, so the library never prints: ``log(prio, where,
fn, msg)`` receives libkmod's own messages (with the source position Debian's
kmod prints), ``show(text)`` the lines modprobe prints with ``-n -v``/``-D``,
and the remove plan (:class:`Remover`) has ``show``, ``note`` (modprobe's LOG())
and ``error`` callbacks.  Functions return 0 or a negative errno as libkmod
does; callers map them to messages.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import time
from collections.abc import Callable
from typing import Literal

from lkm.config import LOG_ERR, LOG_INFO, ModprobeConfig, Softdep, is_pattern, libkmod_pos
from lkm.errors import IndexError_, InvalidAlias, KernelError, LkmError
from lkm.index import Index
from lkm.kernel.backend import KernelBackend
from lkm.kernel.uapi import (
    MODULE_INIT_COMPRESSED_FILE,
    MODULE_INIT_IGNORE_MODVERSIONS,
    MODULE_INIT_IGNORE_VERMAGIC,
    O_NONBLOCK,
    O_TRUNC,
)
from lkm.moddb import ModuleDir, alias_normalize, make_absolute, modname_from_path, normalize_name

# enum kmod_module_initstate
BUILTIN, LIVE, COMING, GOING = 0, 1, 2, 3

# enum kmod_probe
PROBE_FORCE_VERMAGIC = 0x00001
PROBE_FORCE_MODVERSION = 0x00002
PROBE_IGNORE_COMMAND = 0x00004
PROBE_IGNORE_LOADED = 0x00008
PROBE_DRY_RUN = 0x00010
PROBE_FAIL_ON_LOADED = 0x00020
PROBE_APPLY_BLACKLIST_ALL = 0x10000
PROBE_APPLY_BLACKLIST = 0x20000
PROBE_APPLY_BLACKLIST_ALIAS_ONLY = 0x40000

# kmod_module_remove_module flags
REMOVE_FORCE = O_TRUNC
REMOVE_NOWAIT = O_NONBLOCK
REMOVE_NOLOG = 1

LogFn = Callable[[int, str, str, str], None]  # (priority, position, function, text)
ShowFn = Callable[[str], None]

_SHOW_ONLY = PROBE_IGNORE_LOADED | PROBE_DRY_RUN
_MISS = "\0"  # not looked up yet (an index value never holds a NUL)
_NONE: list[Module] = []
# a parsed modules.dep line: the module's path, each dependency with its _path_info,
# whether every dependency's file exists
_DepLine = tuple[str, list[tuple[str, "tuple[str, str] | int"]], bool]
_NO_COLON: _DepLine = ("", [], True)


def _now_msec() -> int:
    return time.monotonic_ns() // 1_000_000


def _nolog(prio: int, where: str, fn: str, msg: str) -> None:
    pass


class Module:
    """A module as a libkmod context knows it (``struct kmod_module``).

    Only ``name`` and ``alias`` are set on creation; the rest are class-level
    defaults until a lookup fills them (module objects are made by the thousand).
    """

    path: str | None = None
    builtin: bool | None = None  # None: not known yet
    dep_init = False
    _deps: list[Module] | None = None  # None: not made yet (see Modprobe.dependencies)
    _depinfo: list[tuple[str, tuple[str, str] | int]] | None = None
    _options: str | bool | None = False  # False: not looked up yet
    _install: str | bool | None = False
    _remove: str | bool | None = False
    visited = 0  # the probe generation that visited it
    required = 0
    ignorecmd = False

    def __init__(self, name: str, alias: str | None = None) -> None:
        self.name = name
        self.alias = alias  # the key it was found by, when reached through an alias

    def __repr__(self) -> str:
        alias = f" alias={self.alias!r}" if self.alias is not None else ""
        return f"<Module {self.name}{alias}>"


class Modprobe:
    """libkmod's context for modprobe: lookups, probe lists and the remove plan."""

    def __init__(self, moddir: ModuleDir, config: ModprobeConfig,
                 kernel: KernelBackend | None = None, log: LogFn | None = None) -> None:
        self.moddir = moddir
        self.dirname = moddir.dirname
        self.config = config
        self._kernel = kernel
        self.log: LogFn = log or _nolog
        self.pool: dict[str, Module] = {}
        # facts of files that do not change during a run, kept across lookups
        self._depline: dict[str, str | None] = {}
        self._parsed: dict[str, _DepLine] = {}
        self._paths: dict[str, tuple[str, str] | int] = {}
        self._dep_entries: dict[str, tuple[str, tuple[str, str] | int]] = {}
        self._builtin: dict[str, bool] = {}
        self._name_softdep: dict[str, Softdep | str | None] = {}
        self._install_exact: dict[str, str] | None = None
        self._softdep_exact: dict[str, Softdep] | None = None
        self._options_by_name: dict[str, str] = {}
        self._index_config()
        self._generation = 0
        self._dep_index: Index | bool | None = False
        # -D lines of dependencies, by path
        self._dep_lines: dict[str, str] = {}

    @property
    def kernel(self) -> KernelBackend:
        if self._kernel is None:
            from lkm.kernel.target import get_backend

            self._kernel = get_backend()
        return self._kernel

    def release(self) -> None:
        """Forget every module object (libkmod frees them when a tool drops its lists)."""
        self.pool.clear()

    def load_resources(self) -> None:
        """kmod_load_resources: check the indexes' headers in libkmod's order (dep, alias,
        symbols, builtin.alias, builtin) and log what libkmod logs for the first bad one.

        Only messages come of it: lookups treat a bad index as an empty one either way.
        """
        for name in ("modules.dep", "modules.alias", "modules.symbols",
                     "modules.builtin.alias", "modules.builtin"):
            ok = self._check_index_header(f"{self.dirname}/{name}.bin")
            if not ok and name != "modules.builtin.alias":
                break

    def _check_index_header(self, path: str) -> bool:
        try:
            with open(path, "rb") as f:
                head = f.read(12)
        except OSError:
            return False
        if len(head) < 12:
            return False
        magic = int.from_bytes(head[:4], "big")
        version = int.from_bytes(head[4:8], "big")
        if magic != 0xB007F457:
            self.log(LOG_ERR, libkmod_pos("libkmod-index.c:790"), "index_mm_open",
                     f"magic check fail: {magic:x} instead of b007f457\n")
            return False
        if version >> 16 != 2:
            self.log(LOG_ERR, libkmod_pos("libkmod-index.c:797"), "index_mm_open",
                     f"major version check fail: {version >> 16} instead of 2\n")
            return False
        return True

    # -- module objects (kmod_module_new_*) -----------------------------------------------

    def _new(self, key: str, name: str, alias: str | None) -> Module:
        m = self.pool.get(key)
        if m is None:
            m = self.pool[key] = Module(name, alias)
        return m

    def from_name(self, name: str) -> Module:
        n = normalize_name(name)
        return self._new(n, n, None)

    def from_alias(self, alias: str, name: str) -> Module:
        return self._new(f"{name}\\{alias}", name, alias)

    def _path_info(self, path: str) -> tuple[str, str] | int:
        """(absolute path, module name) of a module file, or the errno of its stat()."""
        known = self._paths.get(path)
        if known is None:
            abspath = make_absolute(path)
            try:
                os.stat(abspath)
                name = modname_from_path(path)
                known = (abspath, name) if name is not None else errno.ENOENT
            except OSError as e:
                known = e.errno or errno.ENOENT
            self._paths[path] = known
        return known

    def from_path(self, path: str) -> Module:
        """kmod_module_new_from_path; raises OSError (the file must exist)."""
        known = self._path_info(path)
        if isinstance(known, int):
            raise OSError(known, os.strerror(known))
        abspath, name = known
        m = self.pool.get(name)
        if m is not None:
            if m.path is None:
                m.path = abspath
            elif m.path != abspath:
                self.log(LOG_ERR, libkmod_pos("libkmod-module.c:428"), "kmod_module_new_from_path",
                         f"kmod_module '{name}' already exists with different path: "
                         f"new-path='{abspath}' old-path='{m.path}'\n")
                raise OSError(errno.EEXIST, os.strerror(errno.EEXIST))
        else:
            m = self.pool[name] = Module(name)
            m.path = abspath
        m.builtin = False
        return m

    # -- per-module facts -----------------------------------------------------------------

    def search_moddep(self, name: str) -> str | None:
        """The modules.dep line of ``name`` (modules.dep.bin, looked up once per name)."""
        line = self._depline.get(name, _MISS)
        if line is _MISS:
            line = self._depline[name] = self._read_moddep(name)
        return line

    def _read_moddep(self, name: str) -> str | None:
        idx = self._dep_index
        if idx is False:
            idx = self._dep_index = self.moddir.index("modules.dep")
        if isinstance(idx, Index):
            try:
                return idx.first_value(name)
            except IndexError_:
                return None
        return None

    def _split_depline(self, line: str) -> _DepLine:
        """(module path, [(dependency path, its _path_info)], all files exist) of a line;
        _NO_COLON for a line without ':'."""
        colon = line.find(":")
        if colon < 0:
            return _NO_COLON
        dirname = self.dirname
        head = line[:colon]
        rest = line[colon + 1:]
        if "\t" in rest:
            rest = rest.replace("\t", " ")
        entries = self._dep_entries
        deps = []
        ok = True
        for p in rest.split(" "):
            e = entries.get(p)
            if e is None:
                if not p:
                    continue
                path = p if p.startswith("/") else f"{dirname}/{p}"
                e = entries[p] = (path, self._path_info(path))
            if type(e[1]) is not tuple:
                ok = False
            deps.append(e)
        return head if head.startswith("/") else f"{dirname}/{head}", deps, ok

    def _parse_depline(self, mod: Module, line: str) -> None:
        """kmod_module_parse_depline: the module's path and its dependencies.

        The dependency objects are made when first asked for (:meth:`dependencies`),
        unless a dependency's file is missing: then, as libkmod, the error is logged
        now and the module is left without dependencies.
        """
        if mod.dep_init:
            return
        mod.dep_init = True
        parsed = self._parsed.get(line)
        if parsed is None:
            parsed = self._parsed[line] = self._split_depline(line)
        if parsed is _NO_COLON:
            mod._deps = []
            return
        head, paths, ok = parsed
        if mod.path is None:
            mod.path = head
        mod._depinfo = paths
        mod._deps = None
        if not ok:
            self._make_deps(mod)

    def _make_deps(self, mod: Module) -> list[Module]:
        """The dependency objects of a parsed line (kmod_module_new_from_path for each)."""
        deps: list[Module] = []
        pool = self.pool
        for path, known in mod._depinfo or ():
            # kmod_module_new_from_path, inlined: this runs for every dependency
            if type(known) is tuple:
                abspath, name = known
                m = pool.get(name)
                if m is None:
                    m = pool[name] = Module(name)
                    m.path = abspath
                    m.builtin = False
                    deps.append(m)
                    continue
                if m.path is None or m.path == abspath:
                    m.path = abspath
                    m.builtin = False
                    deps.append(m)
                    continue
            try:
                deps.append(self.from_path(path))
            except OSError as e:
                self.log(LOG_ERR, libkmod_pos("libkmod-module.c:191"), "kmod_module_parse_depline",
                         f"ctx={id(self):#x} path={path} error={e.strerror}\n")
                mod.dep_init = False
                mod._deps = None
                return []
        deps.reverse()
        mod._deps = deps
        return deps

    def dependencies(self, mod: Module) -> list[Module]:
        """The modules ``mod`` depends on, nearest last (kmod_module_get_dependencies)."""
        if not mod.dep_init:
            line = self.search_moddep(mod.name)
            if line is None:
                return []
            self._parse_depline(mod, line)
        deps = mod._deps
        if deps is None:
            if not mod.dep_init:  # the parse failed
                return []
            deps = self._make_deps(mod)
        return deps

    def path(self, mod: Module) -> str | None:
        """The module's file by modules.dep (kmod_module_get_path)."""
        if mod.path is not None:
            return mod.path
        if mod.dep_init:
            return None
        line = self.search_moddep(mod.name)
        if line is None:
            return None
        self._parse_depline(mod, line)
        return mod.path

    def is_builtin(self, mod: Module) -> bool:
        if mod.builtin is None:
            b = self._builtin.get(mod.name)
            if b is None:
                b = self._builtin[mod.name] = self.moddir.is_builtin(mod.name)
            mod.builtin = b
        return mod.builtin

    def _index_config(self) -> None:
        """Dictionaries for the per-module configuration questions, when the answer is a
        plain lookup (no wildcard pattern among the ``install``/``softdep`` lines)."""
        cfg = self.config
        inst: dict[str, str] = {}
        for pat, cmd in cfg.install_commands:
            inst.setdefault(pat, cmd)
        self._install_exact = (None if any(is_pattern(p) for p in inst) else inst)
        sds: dict[str, Softdep] = {}
        for sd in cfg.softdeps:
            sds.setdefault(sd.name, sd)
        self._softdep_exact = (None if any(is_pattern(p) for p in sds) else sds)
        names = {m for m, _o in cfg.options}
        self._options_by_name = {n: o for n in names
                                 if (o := cfg.module_options(n)) is not None}

    def options(self, mod: Module) -> str | None:
        """The configured options of ``mod`` (by name or the alias it was found by)."""
        opts = mod._options
        if opts is False:
            if mod.alias is None:
                opts = self._options_by_name.get(mod.name)
            else:
                opts = self.config.module_options(mod.name, mod.alias)
            mod._options = opts
        return opts  # type: ignore[return-value]

    def install_command(self, mod: Module) -> str | None:
        """The first matching ``install`` command (or the one the lookup found it by)."""
        cmd = mod._install
        if cmd is False:
            exact = self._install_exact
            cmd = exact.get(mod.name) if exact is not None else \
                self.config.install_command(mod.name)
            mod._install = cmd
        return cmd  # type: ignore[return-value]

    def _softdep(self, name: str) -> Softdep | None:
        exact = self._softdep_exact
        if exact is not None:
            return exact.get(name)
        sd = self._name_softdep.get(name, _MISS)
        if sd is _MISS:
            sd = self._name_softdep[name] = self.config.softdep(name)
        return sd  # type: ignore[return-value]

    def remove_command(self, mod: Module) -> str | None:
        if mod._remove is False:
            mod._remove = self.config.remove_command(mod.name)
        return mod._remove  # type: ignore[return-value]

    def softdeps(self, mod: Module) -> tuple[list[Module], list[Module]]:
        """The modules of the first matching ``softdep`` line: (pre, post)."""
        sd = self._softdep(mod.name)
        if sd is None:
            return _NONE, _NONE
        return self._lookup_softdep(sd.pre), self._lookup_softdep(sd.post)

    def _lookup_softdep(self, names: tuple[str, ...]) -> list[Module]:
        out: list[Module] = []
        for depname in names:
            err, found = self.lookup(depname)
            if err < 0:
                self.log(LOG_ERR, libkmod_pos("libkmod-module.c:1567"), "lookup_softdep",
                         f"failed to lookup soft dependency '{depname}', continuing anyway.\n")
                continue
            out.extend(found)
        return out

    # -- the running kernel's view --------------------------------------------------------

    def initstate(self, mod: Module) -> int:
        """BUILTIN, LIVE, COMING or GOING, or a negative errno (not loaded)."""
        if self.is_builtin(mod):
            return BUILTIN
        path = f"/sys/module/{mod.name}/initstate"
        k = self.kernel
        try:
            text = k.read_text(path)
        except OSError as e:
            try:
                k.list_dir(f"/sys/module/{mod.name}")
                return COMING
            except OSError:
                return -(e.errno or errno.ENOENT)
        state = {"live\n": LIVE, "coming\n": COMING, "going\n": GOING}.get(text)
        if state is None:
            self.log(LOG_ERR, libkmod_pos("libkmod-module.c:1847"), "kmod_module_get_initstate",
                     f"unknown {path}: '{text}'\n")
            return -errno.EINVAL
        return state

    def is_inkernel(self, mod: Module) -> bool:
        return self.initstate(mod) in (LIVE, BUILTIN)

    def refcnt(self, mod: Module) -> int:
        """/sys/module/<name>/refcnt, or a negative errno."""
        path = f"/sys/module/{mod.name}/refcnt"
        try:
            text = self.kernel.read_text(path)
        except OSError as e:
            return -(e.errno or errno.ENOENT)
        try:
            return int(text.strip() or "x")
        except ValueError:
            self.log(LOG_ERR, libkmod_pos("libkmod-module.c:1967"), "kmod_module_get_refcnt",
                     f"could not read integer from '{path}': '{os.strerror(errno.EINVAL)}'\n")
            return -errno.EINVAL

    def holders(self, mod: Module) -> list[Module]:
        """The modules holding ``mod`` (readdir order of /sys/module/<name>/holders)."""
        dname = f"/sys/module/{mod.name}/holders"
        try:
            names = self.kernel.list_dir(dname)
        except OSError as e:
            self.log(LOG_ERR, libkmod_pos("libkmod-module.c:1998"), "kmod_module_get_holders",
                     f"could not open '{dname}': {os.strerror(e.errno or errno.ENOENT)}\n")
            return []
        return [self.from_name(n) for n in names if n not in (".", "..")]

    # -- lookup (kmod_module_new_from_lookup) ---------------------------------------------

    def lookup(self, given: str) -> tuple[int, list[Module]]:
        """The modules ``given`` names: (0 or negative errno, modules).

        The first non-empty of: configuration aliases, modules.dep, modules.symbols
        (``symbol:`` keys), install/remove commands, modules.alias, modules.builtin,
        modules.builtin.alias.
        """
        if "[" in given or "]" in given or len(given) >= 4095:
            try:
                name = alias_normalize(given)
            except InvalidAlias:
                return -errno.EINVAL, []
        else:
            name = given.replace("-", "_")
        config = self.config
        if config.aliases and config.may_match_alias(name):
            found = [self.from_alias(pat, mod) for pat, mod in config.matching_aliases(name)]
            if found:
                return 0, found
        if ":" not in name:
            line = self._depline.get(name, _MISS)
            if line is _MISS:
                line = self._depline[name] = self._read_moddep(name)
            if line is not None:
                key = name if "." not in name else normalize_name(name)
                mod = self.pool.get(key)
                if mod is None:
                    mod = self.pool[key] = Module(key)
                self._parse_depline(mod, line)
                return 0, [mod]
        if name.startswith("symbol:"):
            found = [self.from_alias(name, v) for v in self.moddir.lookup_symbol(name)]
            if found:
                return 0, found
        for entries, attr in ((self.config.install_commands, "_install"),
                              (self.config.remove_commands, "_remove")):
            for modname, cmd in entries:
                if modname == name:
                    mod = self.from_name(modname)
                    setattr(mod, attr, cmd)
                    return 0, [mod]
        found = [self.from_alias(name, v) for v in self.moddir.lookup_alias(name)]
        if found:
            return 0, found
        if self.moddir.is_builtin(name):
            mod = self.from_name(name)
            mod.builtin = True
            return 0, [mod]
        found = [self.from_alias(name, v) for v in self.moddir.lookup_builtin_alias(name)]
        for mod in found:
            mod.builtin = True
        return 0, found

    # -- probe ----------------------------------------------------------------------------

    def probe_list(self, mod: Module, ignorecmd: bool = False) -> list[Module]:
        """What loading ``mod`` loads, in order: each dependency (deepest first) and then
        ``mod``, each preceded by its pre-softdeps and followed by its post-softdeps."""
        self._generation += 1  # every module becomes unvisited and not required
        out: list[Module] = []
        self._probe_list(mod, True, ignorecmd, out)
        return out

    def _probe_list(self, mod: Module, required: bool, ignorecmd: bool,
                    out: list[Module]) -> None:
        gen = self._generation
        if mod.visited == gen:
            return
        mod.visited = gen
        deps = mod._deps
        if deps is None or not mod.dep_init:
            deps = self.dependencies(mod)
        if required:
            mod.required = gen
            for d in deps:
                d.required = gen
        softdep = self._softdep
        for d in deps:
            if softdep(d.name) is None:
                out.append(d)
                d.ignorecmd = False
            else:
                self._fill_softdep(d, out)
        if ignorecmd:
            out.append(mod)
            mod.ignorecmd = True
        else:
            self._fill_softdep(mod, out)

    def _fill_softdep(self, mod: Module, out: list[Module]) -> None:
        if self._softdep(mod.name) is None:
            out.append(mod)
            mod.ignorecmd = False
            return
        pre, post = self.softdeps(mod)
        for m in pre:
            self._probe_list(m, False, False, out)
        out.append(mod)
        mod.ignorecmd = bool(pre or post)
        for m in post:
            self._probe_list(m, False, False, out)

    def is_blacklisted(self, mod: Module) -> bool:
        return self.config.is_blacklisted(mod.name)

    def probe(self, mod: Module, flags: int, extra_options: str | None = None,
              show: ShowFn | None = None) -> int:
        """kmod_module_probe_insert_module: 0, a positive flag (blacklisted) or -errno."""
        if not flags & PROBE_IGNORE_LOADED and self.is_inkernel(mod):
            return -errno.EEXIST if flags & PROBE_FAIL_ON_LOADED else 0
        if mod.alias is not None and flags & PROBE_APPLY_BLACKLIST_ALIAS_ONLY:
            why = PROBE_APPLY_BLACKLIST_ALIAS_ONLY
        else:
            why = flags & PROBE_APPLY_BLACKLIST_ALL or flags & PROBE_APPLY_BLACKLIST
        if why and self.is_blacklisted(mod):
            return why
        if (flags & _SHOW_ONLY) == _SHOW_ONLY and not flags & PROBE_APPLY_BLACKLIST_ALL:
            text = self._show_depends(mod, bool(flags & PROBE_IGNORE_COMMAND), extra_options)
            if text is not None:
                if show is not None:
                    show(text)
                return 0
        todo = self.probe_list(mod, bool(flags & PROBE_IGNORE_COMMAND))
        if flags & PROBE_APPLY_BLACKLIST_ALL:
            todo = [m for m in todo if not self.is_blacklisted(m)]
            if not todo:
                return PROBE_APPLY_BLACKLIST_ALL
        err = 0
        check_loaded = not flags & PROBE_IGNORE_LOADED
        dry_run = flags & PROBE_DRY_RUN
        gen = self._generation
        lines: list[str] | None = [] if show is not None and dry_run else None
        for m in todo:
            moptions = self.options(m)
            cmd = self.install_command(m)
            if check_loaded and self.is_inkernel(m):
                err = -errno.EEXIST
            else:
                xopt = extra_options if m is mod else None
                options = xopt if moptions is None else f"{moptions} {xopt or ''}"
                if cmd is not None and not m.ignorecmd:
                    if show is not None:
                        line = f"install {cmd} {options or ''}\n"
                        if lines is not None:
                            lines.append(line)
                        else:
                            show(line)
                    if not dry_run:
                        err = self.run_install(m, cmd, options)
                else:
                    if show is not None:
                        path = m.path if m.path is not None else self.path(m)
                        if path is not None:
                            line = f"insmod {path} {options or ''}\n"
                        elif self.is_builtin(m):
                            line = f"builtin {m.name}\n"
                        else:
                            line = ""
                        if lines is not None:
                            lines.append(line)
                        elif line:
                            show(line)
                    if not dry_run:
                        err = self.insert(m, flags, options)
            if err == -errno.EEXIST and m is mod and flags & PROBE_FAIL_ON_LOADED:
                break
            if err == -errno.EEXIST or m.required != gen:
                err = 0
            elif err < 0:
                break
        if lines and show is not None:
            show("".join(lines))
        return err

    def _show_depends(self, mod: Module, ignorecmd: bool, extra_options: str | None
                      ) -> str | None:
        """What a dry run that ignores loaded modules prints (``-D``), computed without
        module objects when neither the module nor its dependencies have softdeps and
        every file is known (the result is the probe list's); None otherwise."""
        if not mod.dep_init:
            line = self.search_moddep(mod.name)
            if line is None:
                return None
            self._parse_depline(mod, line)
            if not mod.dep_init:
                return None
        softdep = self._softdep
        name = mod.name
        if mod.path is None or softdep(name) is not None:
            return None
        lines = self._dep_lines
        out = []
        for path, known in reversed(mod._depinfo or ()):
            text = lines.get(path)
            if text is None:
                if type(known) is not tuple:
                    return None
                abspath, dname = known
                if softdep(dname) is not None:
                    return None
                dep = Module(dname)
                opts = self.options(dep)
                dep_options = "" if opts is None else f"{opts} "
                cmd = self.install_command(dep)
                text = (f"install {cmd} {dep_options}\n" if cmd is not None
                        else f"insmod {abspath} {dep_options}\n")
                lines[path] = text
            out.append(text)
        moptions = self.options(mod) if mod.alias is not None or mod._options is not False \
            else self._options_by_name.get(name)
        options = extra_options if moptions is None else f"{moptions} {extra_options or ''}"
        cmd = None if ignorecmd else self.install_command(mod)
        if cmd is not None:
            out.append(f"install {cmd} {options or ''}\n")
        else:
            out.append(f"insmod {mod.path} {options or ''}\n")
        return "".join(out)

    def run_install(self, mod: Module, command: str, options: str | None) -> int:
        """Run an install command ($CMDLINE_OPTS replaced by the options) through the shell."""
        cmd = command.replace("$CMDLINE_OPTS", options or "")
        rc = run_command(cmd, mod.name, self.before_command)
        if rc is None:
            self.log(LOG_ERR, libkmod_pos("libkmod-module.c:1041"), "command_do",
                     f"Could not run install command '{cmd}' for module {mod.name}: "
                     f"{os.strerror(errno.ENOENT)}\n")
            return -errno.EINVAL
        if rc:
            self.log(LOG_ERR, libkmod_pos("libkmod-module.c:1047"), "command_do",
                     f"Error running install command '{cmd}' for module {mod.name}: "
                     f"retcode {rc}\n")
            return -errno.EINVAL
        return 0

    # set by the tool: flushes its buffered stdout before a child writes to it
    before_command: Callable[[], None] | None = None

    def insert(self, mod: Module, flags: int, options: str | None) -> int:
        """kmod_module_insert_module: load the module's file; 0 or -errno."""
        path = self.path(mod)
        if path is None:
            self.log(LOG_ERR, libkmod_pos("libkmod-module.c:895"), "kmod_module_insert_module",
                     f"could not find module by name='{mod.name}'\n")
            return -errno.ENOENT
        err, loaded = insert_file(self.kernel, path, options or "",
                                  force_vermagic=bool(flags & PROBE_FORCE_VERMAGIC),
                                  force_modversion=bool(flags & PROBE_FORCE_MODVERSION))
        if err < 0 and loaded:
            self.log(LOG_INFO, libkmod_pos("libkmod-module.c:949"), "kmod_module_insert_module",
                     f"Failed to insert module '{path}': {os.strerror(-err)}\n")
        return err

    def remove(self, mod: Module, flags: int = 0) -> int:
        """kmod_module_remove_module: delete_module (never blocking); 0 or -errno."""
        try:
            self.kernel.delete_module(mod.name, O_NONBLOCK | (flags & REMOVE_FORCE))
        except KernelError as e:
            if not flags & REMOVE_NOLOG:
                self.log(LOG_ERR, libkmod_pos("libkmod-module.c:856"), "kmod_module_remove_module",
                         f"could not remove '{mod.name}': {os.strerror(e.errno)}\n")
            return -e.errno
        return 0


def run_command(cmd: str, modname: str, before: Callable[[], None] | None = None) -> int | None:
    """system(cmd) with MODPROBE_MODULE set: the exit status, or None if no shell ran."""
    if before is not None:
        before()
    env = dict(os.environ)
    env["MODPROBE_MODULE"] = modname
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
    import subprocess

    try:
        proc = subprocess.run(["/bin/sh", "-c", cmd], env=env, check=False)
    except OSError:
        return None
    rc = proc.returncode
    if rc < 0:  # killed by a signal: WEXITSTATUS of a signalled status is 0
        return 0
    return rc & 0xFF


def insert_file(kernel: KernelBackend, path: str, options: str, *,
                force_vermagic: bool = False, force_modversion: bool = False
                ) -> tuple[int, bool]:
    """Load the module file ``path``: (0 or -errno, whether the kernel was asked).

    An uncompressed file, or one compressed the way the kernel decompresses
    (/sys/module/compression), goes to finit_module (with
    MODULE_INIT_COMPRESSED_FILE when compressed); otherwise the content is
    decompressed here and given to init_module, with ``__versions`` and the
    vermagic stripped when forced.  A file that cannot be read or decompressed
    gives its errno (EINVAL for a bad stream or a file under 6 bytes) and False.
    """
    from lkm import compress

    try:
        with open(path, "rb") as f:
            head = f.read(6)
    except OSError as e:
        return -(e.errno or errno.EIO), False
    if len(head) < 6:
        return -errno.EINVAL, False
    kind = compress.detect(head)
    kflags = ((MODULE_INIT_IGNORE_VERMAGIC if force_vermagic else 0)
              | (MODULE_INIT_IGNORE_MODVERSIONS if force_modversion else 0))
    if kind is None or kind == kernel.compression():
        if kind is not None:
            kflags |= MODULE_INIT_COMPRESSED_FILE
        try:
            kernel.finit_module(path, options, kflags)
            return 0, True
        except KernelError as e:
            if e.errno != errno.ENOSYS:
                return -e.errno, True
        except OSError as e:
            return -(e.errno or errno.EIO), False
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return -errno.EINVAL, False  # libkmod maps the file: only regular files
        image, _kind = compress.read_module(path)
        data = bytes(image)
    except OSError as e:
        return -(e.errno or errno.EIO), False
    except LkmError:
        return -errno.EINVAL, False
    if force_vermagic or force_modversion:
        data = strip_versions(data, force_vermagic, force_modversion)
    try:
        kernel.init_module(data, options)
    except KernelError as e:
        return -e.errno, True
    return 0, True


def strip_versions(data: bytes, vermagic: bool, modversion: bool) -> bytes:
    """A copy of a module image with ``__versions`` no longer SHF_ALLOC and the
    ``vermagic=`` string of ``.modinfo`` zeroed (libkmod's kmod_elf_strip_*)."""
    from lkm.elf import SHF_ALLOC, ElfFile

    try:
        elf = ElfFile(data)
    except LkmError:
        return data
    out = bytearray(data)
    is64 = elf.elfclass == 64
    order: Literal["little", "big"] = "little" if elf.little_endian else "big"
    try:
        if modversion:
            idx = elf.section_index("__versions")
            if idx is not None:
                hdr_size = 64 if is64 else 40
                off = elf.e_shoff + idx * hdr_size + 8
                size = 8 if is64 else 4
                val = int.from_bytes(out[off:off + size], order) & ~SHF_ALLOC
                out[off:off + size] = val.to_bytes(size, order)
        if vermagic:
            idx = elf.section_index(".modinfo")
            if idx is not None:
                start, size = elf.section_header(idx)[4], elf.section_header(idx)[5]
                sec = bytes(out[start:start + size])
                pos = 0
                while pos < len(sec) and sec[pos] == 0:
                    pos += 1
                while pos < len(sec):
                    end = sec.find(b"\0", pos)
                    end = len(sec) if end < 0 else end
                    if sec.startswith(b"vermagic=", pos):
                        out[start + pos:start + end] = bytes(end - pos)
                        break
                    pos = end + 1
    except LkmError:
        return data
    return bytes(out)


# --------------------------------------------------------------------------- remove plan


class Remover:
    """modprobe -r: the remove plan of kmod's modprobe (rmmod_do_module).

    For each module: its post-softdeps (reverse order), its holders with
    ``remove_holders``, a refcount check, the module itself (``rmmod`` or its
    remove command), the dependencies left unused, its pre-softdeps.
    """

    def __init__(self, ctx: Modprobe, *, dry_run: bool = False, force: bool = False,
                 ignore_commands: bool = False, ignore_loaded: bool = False,
                 first_time: bool = False, wait_msec: int = 0,
                 show: ShowFn | None = None, note: Callable[[str], None] | None = None,
                 error: Callable[[str], None] | None = None) -> None:
        self.ctx = ctx
        self.dry_run = dry_run
        self.force = force
        self.ignore_commands = ignore_commands
        self.ignore_loaded = ignore_loaded
        self.first_time = first_time
        self.wait_msec = wait_msec
        self.show = show or (lambda s: None)
        self.note = note or (lambda s: None)
        self.error = error or (lambda s: None)

    def remove_name(self, alias: str, remove_holders: bool = False) -> int:
        """Remove what ``alias`` names: 0 or -errno."""
        err, found = self.ctx.lookup(alias)
        if err < 0:
            return err
        if not found:
            self.note(f"Module {alias} not found.\n")
            err = -errno.ENOENT
        for mod in found:
            err = self.remove_module(mod, remove_holders, False)
            if err < 0:
                break
        return err

    def _remove_list(self, mods: list[Module], stop_on_errors: bool) -> int:
        for m in reversed(mods):
            r = self.remove_module(m, False, True)
            if r < 0 and stop_on_errors:
                return r
        return 0

    def remove_module(self, mod: Module, remove_holders: bool, ignore_builtin: bool) -> int:
        ctx = self.ctx
        pre: list[Module] = []
        post: list[Module] = []
        cmd = None
        if not self.ignore_commands:
            pre, post = ctx.softdeps(mod)
            cmd = ctx.remove_command(mod)
        if cmd is None and not self.ignore_loaded:
            state = ctx.initstate(mod)
            if state < 0:
                if self.first_time:
                    self.note(f"Module {mod.name} is not in kernel.\n")
                    return -errno.ENOENT
                return 0
            if state == BUILTIN:
                if ignore_builtin:
                    return 0
                self.note(f"Module {mod.name} is builtin.\n")
                return -errno.ENOENT
        self._remove_list(post, False)
        if remove_holders:
            err = self._remove_list(ctx.holders(mod), True)
            if err < 0:
                return err
        if cmd is None and not self.ignore_loaded and not self.wait_msec:
            usage = ctx.refcnt(mod)
            if usage > 0:
                self.note(f"Module {mod.name} is in use.\n")
                return -errno.EBUSY
        err = self.rmmod(mod) if cmd is None else self.run_remove(mod, cmd)
        if err < 0:
            return err
        if cmd is None:
            for dep in ctx.dependencies(mod):
                if ctx.refcnt(dep) == 0:
                    self.rmmod(dep)
        self._remove_list(pre, False)
        return err

    def rmmod(self, mod: Module) -> int:
        """One delete_module, shown as ``rmmod NAME``.

        With ``wait_msec``, a module still in use (EAGAIN) is retried with kmod's
        exponential backoff until the time is up -- and then, as in kmod 30, the
        removal counts as done.
        """
        self.show(f"rmmod {mod.name}\n")
        if self.dry_run:
            return 0
        flags = (REMOVE_FORCE if self.force else 0) | (REMOVE_NOLOG if self.wait_msec else 0)
        t0 = tend = interval = 0
        while True:
            err = self.ctx.remove(mod, flags)
            if err != -errno.EAGAIN or not self.wait_msec:
                break
            if not t0:
                t0 = _now_msec()
                tend = t0 + self.wait_msec
                interval = 1
            # shared/util.c get_backoff_delta_msec: double, but never past the end
            now = _now_msec()
            interval <<= 1
            while interval and now + interval > tend:
                interval >>= 1
            if not interval and tend > now:
                interval = tend - now
            time.sleep(max(0.0, (now + interval - _now_msec()) / 1000))
            err = 0
            if not interval:
                break
        if err < 0 and self.wait_msec:
            self.error(f"could not remove '{mod.name}': {os.strerror(-err)}\n")
        return err

    def run_remove(self, mod: Module, command: str) -> int:
        command = command.replace("$CMDLINE_OPTS", "")
        self.show(f"remove {command}\n")
        if self.dry_run:
            return 0
        rc = run_command(command, mod.name, self.ctx.before_command)
        if rc is None or rc:
            self.note(f"Error running remove command for {mod.name}\n")
            return -rc if rc else -1
        return 0


def running_kernel_context(kernel: KernelBackend, log: LogFn | None = None) -> Modprobe:
    """The context of kmod's insmod, rmmod and lsmod: the kernel's module directory
    (``/lib/modules/<release>``, or a virtual kernel's tree) and no
    modprobe.d (only that directory's modules.softdep and the kernel command line are
    read; their diagnostics are in ``ctx.config.messages``)."""
    dirname = kernel.module_dir() or f"/lib/modules/{kernel.release()}"
    config = ModprobeConfig.load([], dirname, kernel.cmdline())
    return Modprobe(ModuleDir(dirname), config, kernel, log)
