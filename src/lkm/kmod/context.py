"""The libkmod context (``struct kmod_ctx``, libkmod.c): a module directory, a
configuration, a kernel, and THE lookup order.

:class:`KmodContext` makes and pools the :class:`lkm.kmod.KmodModule` handles, answers
the per-module configuration questions, and resolves names the way
kmod_module_new_from_lookup does (:data:`LOOKUP_ORDER`): the first of these that
finds anything answers --

1. ``alias`` lines of the configuration (fnmatch patterns),
2. modules.dep.bin, by module name (skipped for a key holding ``:``),
3. modules.symbols.bin (``symbol:`` keys only),
4. ``install`` then ``remove`` commands of the configuration, by exact name,
5. modules.alias.bin (wildcard patterns),
6. modules.builtin.bin, by module name,
7. modules.builtin.alias.bin (wildcard patterns).

kmod_module_new_from_name_lookup (``modinfo -m``) asks 2, 6, 7 (:data:`NAME_LOOKUP_ORDER`).
A context made without configuration (``config=None``, as modinfo's) finds nothing
in 1 and 4.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from lkm.errors import InvalidAlias
from lkm.kmod.log import LogFn, libkmod_pos, nolog
from lkm.kmod.moddir import ModuleDir
from lkm.kmod.module import KmodModule
from lkm.kmod.names import alias_normalize, make_absolute, modname_from_path, normalize_name
from lkm.logprio import LOG_ERR

if TYPE_CHECKING:
    from lkm.config import ModprobeConfig, Softdep
    from lkm.kernel.backend import KernelBackend

# a module file's facts: (absolute path, module name), or the errno of its stat()
_PathInfo = tuple[str, str] | int
# a dependency of a modules.dep line: its path and _PathInfo
_DepInfo = tuple[str, _PathInfo]
# a parsed modules.dep line: the module's path, its dependencies, whether every
# dependency's file exists
_DepLine = tuple[str, list[_DepInfo], bool]
_NO_COLON: _DepLine = ("", [], True)
_MISS = "\0"  # not looked up yet (an index value never holds a NUL)
_NONE: list[KmodModule] = []

INDEX_MAGIC = 0xB007F457


class KmodContext:
    """``struct kmod_ctx``: what libkmod's lookups read, and the pool of module handles.

    :param moddir: the module directory (``/lib/modules/<release>``), or its path.
    :param config: the modprobe.d configuration (:meth:`lkm.config.ModprobeConfig.load`);
        None for none (modinfo's context).
    :param kernel: the kernel whose /sys and /proc the handles read and that loads and
        unloads (None: :func:`lkm.kernel.target.get_backend` when first needed).
    :param log: where libkmod's messages go (:data:`lkm.kmod.log.LogFn`); None drops them.
    """

    # set by a tool: flushes its buffered stdout before a child process writes to it
    before_command: Callable[[], None] | None = None

    def __init__(self, moddir: ModuleDir | str, config: ModprobeConfig | None = None,
                 kernel: KernelBackend | None = None, log: LogFn | None = None) -> None:
        self.moddir = moddir if isinstance(moddir, ModuleDir) else ModuleDir(moddir)
        self.dirname = self.moddir.dirname
        self.config = config
        self._kernel = kernel
        self.log: LogFn = log or nolog
        self.pool: dict[str, KmodModule] = {}
        # facts of files that do not change during a run, kept across lookups
        self._depline: dict[str, str | None] = {}
        self._parsed: dict[str, _DepLine] = {}
        self._paths: dict[str, _PathInfo] = {}
        self._dep_entries: dict[str, _DepInfo] = {}
        self._builtin: dict[str, bool] = {}
        self._name_softdep: dict[str, Softdep | str | None] = {}
        self._install_exact: dict[str, str] | None = {}
        self._softdep_exact: dict[str, Softdep] | None = {}
        self._options_by_name: dict[str, str] = {}
        if config is not None:
            self._index_config(config)
        # LOOKUP_ORDER without the steps that cannot find anything in this configuration
        self._lookup_steps = tuple(
            step for step in LOOKUP_ORDER
            if not (step is KmodContext._from_config and (config is None or not config.aliases))
            and not (step is KmodContext._from_commands
                     and (config is None
                          or not (config.install_commands or config.remove_commands))))
        # lkm.kmod.probe's state: the probe generation, -D lines of dependencies by path
        self.generation = 0
        self.dep_show_lines: dict[str, str] = {}

    @classmethod
    def for_kernel(cls, kernel: KernelBackend, root: str | None = None,
                   release: str | None = None, config_paths: Sequence[str] | None = None,
                   log: LogFn | None = None) -> KmodContext:
        """The context kmod's modprobe, insmod, rmmod and lsmod make.

        :param kernel: the running or a virtual kernel.
        :param root: ``modprobe -d``: the file system root of ``/lib/modules``.
        :param release: ``modprobe -S``: the release (None: the kernel's).
        :param config_paths: the modprobe.d files/directories (``-C``); None: the
            default directories; ``[]``: none (insmod, rmmod, lsmod).  The directory's
            modules.softdep and the kernel command line are read in every case; their
            diagnostics are in ``ctx.config.messages``.
        :param log: where libkmod's messages go.
        :returns: a context on ``<root>/lib/modules/<release>`` when ``root`` or
            ``release`` is given, else on the kernel's own module directory (a virtual
            kernel's tree, or ``/lib/modules/<release>``).
        """
        from lkm.config import ModprobeConfig

        moddir = None
        if root is None and release is None:
            own = kernel.module_dir()
            if own:
                moddir = ModuleDir(own)
        if moddir is None:
            moddir = ModuleDir.for_release(root, kernel.release() if release is None
                                           else release)
        config = ModprobeConfig.load(config_paths, moddir.dirname, kernel.cmdline())
        return cls(moddir, config, kernel, log)

    @property
    def kernel(self) -> KernelBackend:
        """The kernel backend (the running or virtual one, made when first asked)."""
        if self._kernel is None:
            from lkm.kernel.target import get_backend

            self._kernel = get_backend()
        return self._kernel

    def release(self) -> None:
        """Forget every module handle (libkmod frees them when a tool drops its lists)."""
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
        if magic != INDEX_MAGIC:
            self.log(LOG_ERR, libkmod_pos("libkmod-index.c:790"), "index_mm_open",
                     f"magic check fail: {magic:x} instead of {INDEX_MAGIC:x}\n")
            return False
        if version >> 16 != 2:
            self.log(LOG_ERR, libkmod_pos("libkmod-index.c:797"), "index_mm_open",
                     f"major version check fail: {version >> 16} instead of 2\n")
            return False
        return True

    def dump_index(self, name: str, prefix: str = "alias ") -> str:
        """kmod_dump_index: every entry of index ``name`` (:data:`lkm.kmod.moddir.ALIAS`,
        ``SYMBOLS``, ...) in trie order as ``<prefix><key> <value>`` lines; "" for a
        missing index, and for a corrupt one."""
        idx = self.moddir.index(name)
        if idx is None:
            return ""
        try:
            return idx.dump(prefix)
        except Exception:  # a corrupt index: nothing of it is written
            return ""

    # -- module handles (kmod_module_new_*) -----------------------------------------------

    def _new(self, key: str, name: str, alias: str | None) -> KmodModule:
        m = self.pool.get(key)
        if m is None:
            m = self.pool[key] = KmodModule(self, name, alias)
        return m

    def new_from_name(self, name: str) -> KmodModule:
        """kmod_module_new_from_name: the handle of module ``name`` (normalised here)."""
        n = normalize_name(name)
        return self._new(n, n, None)

    def new_from_alias(self, alias: str, name: str) -> KmodModule:
        """kmod_module_new_from_alias: the handle of module ``name`` found by ``alias``."""
        return self._new(f"{name}\\{alias}", name, alias)

    def new_from_path(self, path: str) -> KmodModule:
        """kmod_module_new_from_path: the handle of the module file ``path``.

        :raises OSError: the file cannot be stat()ed, or (EEXIST) a handle of that
            name already has another path.
        """
        known = self._path_info(path)
        if isinstance(known, int):
            raise OSError(known, os.strerror(known))
        abspath, name = known
        m = self.pool.get(name)
        if m is not None:
            if m._path is None:
                m._path = abspath
            elif m._path != abspath:
                self.log(LOG_ERR, libkmod_pos("libkmod-module.c:428"), "kmod_module_new_from_path",
                         f"kmod_module '{name}' already exists with different path: "
                         f"new-path='{abspath}' old-path='{m._path}'\n")
                raise OSError(errno.EEXIST, os.strerror(errno.EEXIST))
        else:
            m = self.pool[name] = KmodModule(self, name)
            m._path = abspath
        m._builtin = False
        return m

    def new_from_loaded(self) -> list[KmodModule]:
        """kmod_module_new_from_loaded: a handle per /proc/modules line, in its order.

        :raises OSError: /proc/modules cannot be read (the error is logged).
        """
        try:
            text = self.kernel.read_text("/proc/modules")
        except OSError as e:
            self.log(LOG_ERR, libkmod_pos("libkmod-module.c:1725"),
                     "kmod_module_new_from_loaded",
                     f"could not open /proc/modules: {os.strerror(e.errno or errno.ENOENT)}\n")
            raise
        return [self.new_from_name(fields[0]) for line in text.splitlines()
                if (fields := line.split(None, 1))]

    def _path_info(self, path: str) -> _PathInfo:
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
            except ValueError:  # a NUL in the path
                known = errno.EINVAL
            self._paths[path] = known
        return known

    # -- lookup (kmod_module_new_from_lookup) ---------------------------------------------

    def lookup(self, given: str) -> list[KmodModule]:
        """kmod_module_new_from_lookup: the modules ``given`` names, by :data:`LOOKUP_ORDER`.

        :param given: a module name, alias, ``symbol:<sym>`` or modalias (normalised here).
        :returns: the modules of the first step that finds any ([] if none does).
        :raises InvalidAlias: ``given`` has an unmatched bracket.
        """
        if "[" in given or "]" in given or len(given) >= 4095:
            key = alias_normalize(given)
        else:
            key = given.replace("-", "_")
        for step in self._lookup_steps:
            found = step(self, key)
            if found:
                return found
        return []

    def lookup_name(self, name: str) -> KmodModule | None:
        """kmod_module_new_from_name_lookup: module ``name`` (normalised here) by
        :data:`NAME_LOOKUP_ORDER`, or None."""
        key = normalize_name(name)
        for step in NAME_LOOKUP_ORDER:
            found = step(self, key)
            if found:
                return found[0]
        return None

    def _from_config(self, name: str) -> list[KmodModule]:
        """kmod_lookup_alias_from_config: the configuration's matching ``alias`` lines."""
        config = self.config
        if config is None or not config.aliases or not config.may_match_alias(name):
            return _NONE
        return [self.new_from_alias(pat, mod) for pat, mod in config.matching_aliases(name)]

    def _from_moddep(self, name: str) -> list[KmodModule]:
        """kmod_lookup_alias_from_moddep_file: the module of that name in modules.dep."""
        if ":" in name:
            return _NONE  # module names hold no ':'
        # search_moddep and kmod_module_new_from_name, inlined: this runs for every name
        line = self._depline.get(name, _MISS)
        if line is _MISS:
            line = self._depline[name] = self.moddir.search_moddep(name)
        if line is None:
            return _NONE
        if "." in name:
            name = normalize_name(name)
        mod = self.pool.get(name)
        if mod is None:
            mod = self.pool[name] = KmodModule(self, name)
        self.parse_depline(mod, line)
        return [mod]

    def _from_symbols(self, name: str) -> list[KmodModule]:
        """kmod_lookup_alias_from_symbols_file: the exporters of a ``symbol:`` key."""
        if not name.startswith("symbol:"):
            return _NONE
        return [self.new_from_alias(name, v) for v in self.moddir.lookup_symbol(name)]

    def _from_commands(self, name: str) -> list[KmodModule]:
        """kmod_lookup_alias_from_commands: the first ``install`` command for exactly that
        name, else the first ``remove`` command."""
        config = self.config
        if config is None:
            return _NONE
        for modname, cmd in config.install_commands:
            if modname == name:
                mod = self.new_from_name(modname)
                mod._install = cmd
                return [mod]
        for modname, cmd in config.remove_commands:
            if modname == name:
                mod = self.new_from_name(modname)
                mod._remove = cmd
                return [mod]
        return _NONE

    def _from_aliases(self, name: str) -> list[KmodModule]:
        """kmod_lookup_alias_from_aliases_file: modules.alias.bin's matching patterns."""
        return [self.new_from_alias(name, v) for v in self.moddir.lookup_alias(name)]

    def _from_builtin(self, name: str) -> list[KmodModule]:
        """kmod_lookup_alias_from_builtin_file: a module modules.builtin.bin lists."""
        if not self.moddir.is_builtin(name):
            return _NONE
        mod = self.new_from_name(name)
        mod._builtin = True
        return [mod]

    def _from_kernel_builtin(self, name: str) -> list[KmodModule]:
        """kmod_lookup_alias_from_kernel_builtin_file: modules.builtin.alias.bin's matches."""
        found = [self.new_from_alias(name, v) for v in self.moddir.lookup_builtin_alias(name)]
        for mod in found:
            mod._builtin = True
        return found

    # -- modules.dep ----------------------------------------------------------------------

    def search_moddep(self, name: str) -> str | None:
        """kmod_search_moddep: the modules.dep line of ``name`` (looked up once per name)."""
        line = self._depline.get(name, _MISS)
        if line is _MISS:
            line = self._depline[name] = self.moddir.search_moddep(name)
        return line

    def is_builtin(self, name: str) -> bool:
        """Whether modules.builtin.bin lists ``name`` (asked once per name)."""
        b = self._builtin.get(name)
        if b is None:
            b = self._builtin[name] = self.moddir.is_builtin(name)
        return b

    def _split_depline(self, line: str) -> _DepLine:
        """(module path, [(dependency path, its _PathInfo)], all files exist) of a line;
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

    def parse_depline(self, mod: KmodModule, line: str) -> None:
        """kmod_module_parse_depline: the module's path and its dependencies.

        The dependency handles are made when first asked for
        (:meth:`KmodModule.dependencies`), unless a dependency's file is missing: then,
        as libkmod, the error is logged now and the module is left without dependencies.
        """
        if mod._dep_init:
            return
        mod._dep_init = True
        parsed = self._parsed.get(line)
        if parsed is None:
            parsed = self._parsed[line] = self._split_depline(line)
        if parsed is _NO_COLON:
            mod._deps = []
            return
        head, paths, ok = parsed
        if mod._path is None:
            mod._path = head
        mod._depinfo = paths
        mod._deps = None
        if not ok:
            self.make_deps(mod)

    def make_deps(self, mod: KmodModule) -> list[KmodModule]:
        """The dependency handles of a parsed line (kmod_module_new_from_path for each),
        nearest last; [] and the error logged if a file is missing."""
        deps: list[KmodModule] = []
        pool = self.pool
        for path, known in mod._depinfo or ():
            # kmod_module_new_from_path, inlined: this runs for every dependency
            if type(known) is tuple:
                abspath, name = known
                m = pool.get(name)
                if m is None:
                    m = pool[name] = KmodModule(self, name)
                    m._path = abspath
                    m._builtin = False
                    deps.append(m)
                    continue
                if m._path is None or m._path == abspath:
                    m._path = abspath
                    m._builtin = False
                    deps.append(m)
                    continue
            try:
                deps.append(self.new_from_path(path))
            except OSError as e:
                self.log(LOG_ERR, libkmod_pos("libkmod-module.c:191"), "kmod_module_parse_depline",
                         f"ctx={id(self):#x} path={path} error={e.strerror}\n")
                mod._dep_init = False
                mod._deps = None
                return []
        deps.reverse()
        mod._deps = deps
        return deps

    # -- the configuration's per-module answers ------------------------------------------

    def _index_config(self, cfg: ModprobeConfig) -> None:
        """Dictionaries for the per-module configuration questions, when the answer is a
        plain lookup (no wildcard pattern among the ``install``/``softdep`` lines)."""
        from lkm.config import is_pattern

        inst: dict[str, str] = {}
        for pat, cmd in cfg.install_commands:
            inst.setdefault(pat, cmd)
        self._install_exact = None if any(is_pattern(p) for p in inst) else inst
        sds: dict[str, Softdep] = {}
        for sd in cfg.softdeps:
            sds.setdefault(sd.name, sd)
        self._softdep_exact = None if any(is_pattern(p) for p in sds) else sds
        names = {m for m, _o in cfg.options}
        self._options_by_name = {n: o for n in names
                                 if (o := cfg.module_options(n)) is not None}

    def config_options(self, name: str, alias: str | None = None) -> str | None:
        """The ``options`` of module ``name`` and of the alias it was found by."""
        if alias is None:
            return self._options_by_name.get(name)
        return None if self.config is None else self.config.module_options(name, alias)

    def config_install(self, name: str) -> str | None:
        """The first ``install`` command whose pattern matches ``name``."""
        exact = self._install_exact
        if exact is not None:
            return exact.get(name)
        return None if self.config is None else self.config.install_command(name)

    def config_remove(self, name: str) -> str | None:
        """The first ``remove`` command whose pattern matches ``name``."""
        return None if self.config is None else self.config.remove_command(name)

    def softdep(self, name: str) -> Softdep | None:
        """The first ``softdep`` line whose pattern matches ``name``."""
        exact = self._softdep_exact
        if exact is not None:
            return exact.get(name)
        sd = self._name_softdep.get(name, _MISS)
        if sd is _MISS:
            sd = self._name_softdep[name] = (None if self.config is None
                                             else self.config.softdep(name))
        return sd  # type: ignore[return-value]

    def softdep_modules(self, name: str) -> tuple[list[KmodModule], list[KmodModule]]:
        """The modules of ``name``'s softdep line, (pre, post), each looked up."""
        sd = self.softdep(name)
        if sd is None:
            return _NONE, _NONE
        return self._lookup_softdep(sd.pre), self._lookup_softdep(sd.post)

    def _lookup_softdep(self, names: tuple[str, ...]) -> list[KmodModule]:
        out: list[KmodModule] = []
        for depname in names:
            try:
                out.extend(self.lookup(depname))
            except InvalidAlias:
                self.log(LOG_ERR, libkmod_pos("libkmod-module.c:1567"), "lookup_softdep",
                         f"failed to lookup soft dependency '{depname}', continuing anyway.\n")
        return out

    def is_blacklisted(self, mod: KmodModule) -> bool:
        """Whether a ``blacklist`` line names the module."""
        return self.config is not None and self.config.is_blacklisted(mod.name)


_Step = Callable[[KmodContext, str], list[KmodModule]]

LOOKUP_ORDER: tuple[_Step, ...] = (
    KmodContext._from_config,
    KmodContext._from_moddep,
    KmodContext._from_symbols,
    KmodContext._from_commands,
    KmodContext._from_aliases,
    KmodContext._from_builtin,
    KmodContext._from_kernel_builtin,
)
"""kmod_module_new_from_lookup's order (libkmod-module.c): the first step that finds a
module answers."""

NAME_LOOKUP_ORDER: tuple[_Step, ...] = (
    KmodContext._from_moddep,
    KmodContext._from_builtin,
    KmodContext._from_kernel_builtin,
)
"""kmod_module_new_from_name_lookup's order: module names only, no aliases."""


__all__ = ["LOOKUP_ORDER", "NAME_LOOKUP_ORDER", "KmodContext"]
