"""The module directory ``/lib/modules/<release>`` and depmod's indexes in it.

A :class:`ModuleDir` answers one question per index, as libkmod's context reads
them (libkmod.c, libkmod-builtin.c): which file holds a module and what it depends on
(``modules.dep.bin``), which modules an alias or a symbol names
(``modules.alias.bin``, ``modules.symbols.bin``), whether a module is built in
(``modules.builtin.bin``, ``modules.builtin.alias.bin``) and the ``.modinfo`` of a
built-in module (``modules.builtin.modinfo``).  Indexes are opened lazily, once; a
missing or unreadable index behaves as libkmod's does: as if it held nothing.

The order in which the indexes are asked -- the lookup order -- is not here: it is
:class:`lkm.kmod.KmodContext`'s.
"""

from __future__ import annotations

import mmap
import os

from lkm.errors import FormatError, IndexError_, ModuleNotFound
from lkm.index import Index
from lkm.kmod.names import kernel_release, make_absolute

MODULES_PREFIX = "/lib/modules"

# the index files, by libkmod's names (without the .bin suffix)
DEP = "modules.dep"
ALIAS = "modules.alias"
SYMBOLS = "modules.symbols"
BUILTIN = "modules.builtin"
BUILTIN_ALIAS = "modules.builtin.alias"
BUILTIN_MODINFO = "modules.builtin.modinfo"


class DepEntry:
    """A module's line of modules.dep: its file and the files it depends on.

    :ivar name: the module name.
    :ivar path: its file, None for a line without ``:`` (libkmod then knows no file).
    :ivar deps: the files it depends on, as the line lists them.

    Paths are absolute: relative ones are joined to the module directory.
    """

    __slots__ = ("deps", "name", "path")

    def __init__(self, name: str, path: str | None, deps: tuple[str, ...] = ()) -> None:
        self.name = name
        self.path = path
        self.deps = deps

    def __repr__(self) -> str:
        return f"DepEntry({self.name!r}, {self.path!r}, {self.deps!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DepEntry):
            return NotImplemented
        return (self.name, self.path, self.deps) == (other.name, other.path, other.deps)

    def __hash__(self) -> int:
        return hash((self.name, self.path, self.deps))


class ModuleDir:
    """``/lib/modules/<release>`` (or any directory holding depmod's outputs).

    :param dirname: the directory; a relative one is made absolute against the
        working directory as kmod does (:func:`lkm.kmod.names.make_absolute`).
    """

    def __init__(self, dirname: str) -> None:
        self.dirname = make_absolute(dirname)
        self._indexes: dict[str, Index | None] = {}
        self._dep: Index | bool | None = False  # modules.dep.bin, False: not opened yet
        self._builtin_modinfo: bytes | None = None

    @classmethod
    def for_release(cls, root: str | None = None, release: str | None = None) -> ModuleDir:
        """The directory kmod's tools use.

        :param root: ``-b``/``-d``: the file system root (None: none given).
        :param release: ``-k``/``-S``: the kernel release (None: ``uname -r``).
        :returns: ``/lib/modules/$(uname -r)`` when neither is given, else
            ``<root>/lib/modules/<release>`` (no normalisation, as kmod).
        """
        if release is None:
            release = kernel_release()
        return cls(f"{root or ''}{MODULES_PREFIX}/{release}")

    def close(self) -> None:
        """Close the indexes opened so far (they reopen when asked again)."""
        for idx in self._indexes.values():
            if idx is not None:
                idx.close()
        self._indexes.clear()
        self._dep = False

    def __enter__(self) -> ModuleDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ModuleDir({self.dirname!r})"

    def index(self, name: str) -> Index | None:
        """The index ``<name>.bin`` (``name`` as :data:`DEP`, :data:`ALIAS`, ...), or None
        if it is missing or not an index (libkmod then behaves as if it were empty)."""
        try:
            return self._indexes[name]
        except KeyError:
            pass
        idx: Index | None
        try:
            idx = Index.open(f"{self.dirname}/{name}.bin")
        except (OSError, IndexError_, ValueError):
            idx = None
        self._indexes[name] = idx
        return idx

    # -- modules.dep

    def search_moddep(self, name: str) -> str | None:
        """The raw modules.dep line of ``name`` (looked up as given: pass a normalised
        name), or None (kmod_search_moddep)."""
        idx = self._dep
        if idx is False:
            idx = self._dep = self.index(DEP)
        if idx is None or idx is True:
            return None
        try:
            return idx.first_value(name)
        except IndexError_:
            return None

    def lookup_name(self, name: str) -> DepEntry | None:
        """The modules.dep entry of the module ``name`` (as given: pass a normalised
        name), or None if modules.dep.bin does not list it."""
        line = self.search_moddep(name)
        return None if line is None else self.parse_depline(name, line)

    def parse_depline(self, name: str, line: str) -> DepEntry:
        """A modules.dep line (``path: dep dep``) with its paths made absolute."""
        colon = line.find(":")
        if colon < 0:
            return DepEntry(name, None)
        path = self.join(line[:colon])
        deps = tuple(self.join(p) for p in line[colon + 1:].replace("\t", " ").split(" ") if p)
        return DepEntry(name, path, deps)

    def join(self, path: str) -> str:
        """A path of modules.dep made absolute (relative ones are in this directory)."""
        return path if path.startswith("/") else f"{self.dirname}/{path}"

    def path_of(self, name: str) -> str | None:
        """The absolute path of module ``name`` by modules.dep, or None."""
        entry = self.lookup_name(name)
        return entry.path if entry is not None else None

    # -- aliases and symbols

    def lookup_alias(self, alias: str) -> list[str]:
        """Module names whose modules.alias patterns match ``alias`` (a normalised key),
        in priority order; a module matched by several patterns appears several times."""
        return _wild(self.index(ALIAS), alias)

    def lookup_symbol(self, sym: str) -> list[str]:
        """Modules exporting ``sym`` by modules.symbols (the ``symbol:`` prefix optional)."""
        key = sym if sym.startswith("symbol:") else f"symbol:{sym}"
        return _wild(self.index(SYMBOLS), key)

    # -- built-in modules

    def is_builtin(self, name: str) -> bool:
        """True if modules.builtin.bin lists ``name``."""
        idx = self.index(BUILTIN)
        if idx is None:
            return False
        try:
            return idx.lookup(name) is not None
        except IndexError_:
            return False

    def lookup_builtin_alias(self, alias: str) -> list[str]:
        """Built-in modules whose modules.builtin.alias patterns match ``alias``."""
        return _wild(self.index(BUILTIN_ALIAS), alias)

    def builtin_modinfo_strings(self, name: str) -> list[bytes]:
        """The ``key=value`` strings of built-in module ``name`` in modules.builtin.modinfo
        (libkmod-builtin.c).

        The file is a sequence of NUL-terminated ``module.key=value`` strings; the first
        contiguous run whose module prefix is ``name`` is taken.

        :raises OSError: the file cannot be read.
        :raises ModuleNotFound: no run is ``name``'s.
        :raises FormatError: that run ends in an unterminated string.
        """
        data = self._read_builtin_modinfo()
        prefix = name.encode("utf-8", "surrogateescape") + b"."
        size = len(data)
        pos = 0
        while pos < size:
            # one run: strings sharing the first one's module prefix
            end = data.find(b"\0", pos)
            if end < 0:
                break  # libkmod ends the iteration at an unterminated string
            first = data[pos:end]
            dot = first.find(b".")
            if dot < 0:
                break  # "unexpected string without modname prefix": iteration stops
            run_prefix = first[:dot + 1]
            start = pos
            broken = False
            while pos < size:
                end = data.find(b"\0", pos)
                if end < 0 or data[pos:end].find(b".") < 0:
                    broken = True  # the run absorbs the rest of the file
                    pos = size
                    break
                if not data.startswith(run_prefix, pos):
                    break
                pos = end + 1
            if run_prefix == prefix:
                return _builtin_run(data, start, pos, len(prefix), broken)
        raise ModuleNotFound(f"{name} is not in {BUILTIN_MODINFO}")

    def builtin_modinfo(self, name: str) -> list[tuple[str, str]]:
        """The (key, value) pairs of built-in module ``name`` (see
        :meth:`builtin_modinfo_strings`, whose errors it raises)."""
        out = []
        for s in self.builtin_modinfo_strings(name):
            key, _, value = s.partition(b"=")
            out.append((key.decode("utf-8", "surrogateescape"),
                        value.decode("utf-8", "surrogateescape")))
        return out

    def _read_builtin_modinfo(self) -> bytes:
        if self._builtin_modinfo is None:
            with open(f"{self.dirname}/{BUILTIN_MODINFO}", "rb") as f:
                size = os.fstat(f.fileno()).st_size
                if size == 0:
                    self._builtin_modinfo = b""
                else:
                    with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                        self._builtin_modinfo = bytes(m)
        return self._builtin_modinfo


def _builtin_run(data: bytes, start: int, end: int, skip: int, broken: bool) -> list[bytes]:
    """The strings of one run, each without its ``module.`` prefix (libkmod skips
    ``len(name) + 1`` bytes of every string of the run)."""
    parts = data[start:end].split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    elif broken:
        raise FormatError(f"{BUILTIN_MODINFO}: unterminated string")
    return [p[skip:] for p in parts]


def _wild(idx: Index | None, key: str) -> list[str]:
    if idx is None:
        return []
    try:
        return [v for _prio, v in idx.search_wildcard(key)]
    except IndexError_:
        return []


__all__ = ["ALIAS", "BUILTIN", "BUILTIN_ALIAS", "BUILTIN_MODINFO", "DEP", "MODULES_PREFIX",
           "SYMBOLS", "DepEntry", "ModuleDir"]
