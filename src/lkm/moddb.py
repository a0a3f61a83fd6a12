"""The module directory ``/lib/modules/<release>``: libkmod's context lookups.

A :class:`ModuleDir` answers the questions libkmod's lookups answer from
depmod's binary indexes — which file holds a module (``modules.dep.bin``),
which modules an alias or symbol names (``modules.alias.bin``,
``modules.symbols.bin``), whether a module is built in (``modules.builtin.bin``,
``modules.builtin.alias.bin``) and the ``.modinfo`` of a built-in module
(``modules.builtin.modinfo``).  Indexes are opened lazily, once; a missing or
unreadable index behaves as libkmod does: as if it held nothing.

This module also holds THE name normalisation every tool uses:
:func:`normalize_name` (module names), :func:`underscores` (names and aliases
from configuration and the command line).
"""

from __future__ import annotations

import mmap
import os
from typing import NamedTuple

from lkm.errors import FormatError, IndexError_, InvalidAlias, ModuleNotFound
from lkm.index import Index

PATH_MAX = 4096
MODULES_PREFIX = "/lib/modules"

# the index files, by libkmod's names (without the .bin suffix)
DEP = "modules.dep"
ALIAS = "modules.alias"
SYMBOLS = "modules.symbols"
BUILTIN = "modules.builtin"
BUILTIN_ALIAS = "modules.builtin.alias"
BUILTIN_MODINFO = "modules.builtin.modinfo"

# kmod's module file extensions (Debian's kmod 30: built with xz and zstd, without zlib)
KMOD_EXTENSIONS = (".ko", ".ko.xz", ".ko.zst")


# --------------------------------------------------------------------------- names


def normalize_name(name: str) -> str:
    """A module name as libkmod keys it (modname_normalize): ``-`` becomes ``_``, and the
    name ends at the first ``.`` (so ``snd-hda.ko`` gives ``snd_hda``)."""
    dot = name.find(".")
    if dot >= 0:
        name = name[:dot]
    if len(name) > PATH_MAX - 1:
        name = name[:PATH_MAX - 1]
    return name.replace("-", "_")


def underscores(s: str) -> str:
    """kmod's underscores()/alias_normalize(): ``-`` becomes ``_`` except inside ``[...]``.

    Raises InvalidAlias on an unmatched bracket (a ``]`` without ``[``, or a ``[``
    never closed).
    """
    if "[" not in s and "]" not in s:
        return s.replace("-", "_")
    out: list[str] = []
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "-":
            out.append("_")
        elif c == "]":
            raise InvalidAlias(f"Unmatched bracket in {s}")
        elif c == "[":
            end = s.find("]", i)
            if end < 0:
                raise InvalidAlias(f"Unmatched bracket in {s}")
            out.append(s[i:end + 1])
            i = end
        else:
            out.append(c)
        i += 1
    return "".join(out)


def alias_normalize(alias: str) -> str:
    """A lookup key as libkmod's kmod_module_new_from_lookup normalises it (underscores,
    at most PATH_MAX - 1 characters).  Raises InvalidAlias on an unmatched bracket."""
    if len(alias) > PATH_MAX - 1:
        alias = alias[:PATH_MAX - 1]
    return underscores(alias)


def modname_from_path(path: str) -> str | None:
    """The module name of a file path (its normalised basename), None if the basename
    is empty."""
    base = path[path.rfind("/") + 1:]
    return normalize_name(base) if base else None


def has_module_extension(path: str) -> bool:
    """True if ``path`` ends in one of kmod's module extensions (and is longer than it)."""
    return any(len(path) > len(ext) and path.endswith(ext) for ext in KMOD_EXTENSIONS)


def make_absolute(path: str) -> str:
    """``path`` made absolute against the working directory without normalising it, as
    kmod's path_make_absolute_cwd does (``$PWD`` is used when it names the cwd)."""
    if path.startswith("/"):
        return path
    return f"{current_dir()}/{path}"


def current_dir() -> str:
    """glibc's get_current_dir_name(): ``$PWD`` if it names the working directory."""
    pwd = os.environ.get("PWD")
    if pwd and pwd.startswith("/"):
        try:
            a, b = os.stat(pwd), os.stat(".")
            if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino):
                return pwd
        except OSError:
            pass
    return os.getcwd()


def kernel_release() -> str:
    """The running kernel's release (``uname -r``)."""
    return os.uname().release


# --------------------------------------------------------------------------- results


class DepEntry(NamedTuple):
    """A module's line of modules.dep: its file and the files it depends on.

    ``path`` is None for a line without ``:`` (libkmod then knows no file).
    Paths are absolute: relative ones are joined to the module directory.
    """

    name: str
    path: str | None
    deps: tuple[str, ...] = ()


class Found(NamedTuple):
    """A module named by a lookup.

    ``builtin`` is True when an index of built-in modules named it, None when the
    lookup does not tell (libkmod then asks modules.builtin.bin on demand).
    ``alias`` is the key that found it through an alias index, else None.
    """

    name: str
    builtin: bool | None = None
    alias: str | None = None
    dep: DepEntry | None = None  # not compared

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Found):
            return NotImplemented
        return self[:3] == other[:3]

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return hash(self[:3])


# --------------------------------------------------------------------------- module directory


class ModuleDir:
    """``/lib/modules/<release>`` (or any directory holding depmod's outputs)."""

    def __init__(self, dirname: str) -> None:
        self.dirname = make_absolute(dirname)
        self._indexes: dict[str, Index | None] = {}
        self._builtin_modinfo: bytes | None = None

    @classmethod
    def for_release(cls, root: str | None = None, release: str | None = None) -> ModuleDir:
        """The directory kmod's tools use: ``/lib/modules/$(uname -r)``, or with ``-b root``
        / ``-k release`` ``<root>/lib/modules/<release>`` (no normalisation, as kmod)."""
        if root is None and release is None:
            return cls(f"{MODULES_PREFIX}/{kernel_release()}")
        if release is None:
            release = kernel_release()
        return cls(f"{root or ''}{MODULES_PREFIX}/{release}")

    def close(self) -> None:
        for idx in self._indexes.values():
            if idx is not None:
                idx.close()
        self._indexes.clear()

    def __enter__(self) -> ModuleDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def index(self, name: str) -> Index | None:
        """The index ``<name>.bin``, or None if it is missing or not an index (as libkmod,
        which then behaves as if it were empty)."""
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

    # -- single indexes

    def search_moddep(self, name: str) -> str | None:
        """The raw modules.dep line of ``name`` (looked up as given), or None."""
        idx = self.index(DEP)
        return _exact(idx, name) if idx is not None else None

    def lookup_name(self, name: str) -> DepEntry | None:
        """The modules.dep entry of the module ``name`` (looked up as given: pass a
        normalised name), or None if modules.dep.bin does not list it."""
        line = self.search_moddep(name)
        return None if line is None else self.parse_depline(name, line)

    def parse_depline(self, name: str, line: str) -> DepEntry:
        """A modules.dep line (``path: dep dep``) with paths made absolute."""
        colon = line.find(":")
        if colon < 0:
            return DepEntry(name, None)
        path = self._join(line[:colon])
        deps = tuple(self._join(p) for p in line[colon + 1:].replace("\t", " ").split(" ") if p)
        return DepEntry(name, path, deps)

    def _join(self, path: str) -> str:
        return path if path.startswith("/") else f"{self.dirname}/{path}"

    def path_of(self, name: str) -> str | None:
        """The absolute path of module ``name`` by modules.dep (kmod_module_get_path)."""
        entry = self.lookup_name(name)
        return entry.path if entry is not None else None

    def lookup_alias(self, alias: str) -> list[str]:
        """Module names whose modules.alias patterns match ``alias`` (a normalised key),
        in priority order; a module matched by several patterns appears several times."""
        return _wild(self.index(ALIAS), alias)

    def lookup_symbol(self, sym: str) -> list[str]:
        """Modules exporting ``sym`` by modules.symbols (``symbol:`` prefix optional)."""
        key = sym if sym.startswith("symbol:") else f"symbol:{sym}"
        return _wild(self.index(SYMBOLS), key)

    def is_builtin(self, name: str) -> bool:
        """True if modules.builtin.bin lists ``name``."""
        idx = self.index(BUILTIN)
        return idx is not None and _exact(idx, name) is not None

    def lookup_builtin_alias(self, alias: str) -> list[str]:
        """Built-in modules whose modules.builtin.alias patterns match ``alias``."""
        return _wild(self.index(BUILTIN_ALIAS), alias)

    # -- libkmod's lookup chains (without modprobe.d configuration)

    def lookup(self, alias: str) -> list[Found]:
        """kmod_module_new_from_lookup without configuration: the first non-empty of
        modules.dep (names without ``:``), modules.symbols (``symbol:`` keys),
        modules.alias, modules.builtin, modules.builtin.alias.

        ``alias`` is normalised here; raises InvalidAlias if it cannot be.
        """
        key = alias_normalize(alias)
        if ":" not in key:
            line = self.search_moddep(key)
            if line is not None:
                return [Found(key, None, None, self.parse_depline(key, line))]
        if key.startswith("symbol:"):
            names = _wild(self.index(SYMBOLS), key)
            if names:
                return [Found(n, None, key) for n in names]
        names = self.lookup_alias(key)
        if names:
            return [Found(n, None, key) for n in names]
        if self.is_builtin(key):
            return [Found(key, True)]
        return [Found(n, True, key) for n in self.lookup_builtin_alias(key)]

    def lookup_modname(self, name: str) -> Found | None:
        """kmod_module_new_from_name_lookup: ``name`` (normalised here) by modules.dep,
        then modules.builtin, then modules.builtin.alias."""
        key = normalize_name(name)
        if ":" not in key:
            line = self.search_moddep(key)
            if line is not None:
                return Found(key, None, None, self.parse_depline(key, line))
        if self.is_builtin(key):
            return Found(key, True)
        names = self.lookup_builtin_alias(key)
        return Found(names[0], True, key) if names else None

    # -- modules.builtin.modinfo

    def builtin_modinfo_strings(self, name: str) -> list[bytes]:
        """The ``key=value`` strings of built-in module ``name`` in modules.builtin.modinfo.

        libkmod's rule: the file is a sequence of NUL-terminated ``module.key=value``
        strings; the first contiguous run whose module prefix is ``name`` is taken.
        Raises OSError if the file cannot be read, ModuleNotFound if no run is ``name``'s,
        FormatError if that run ends in an unterminated string.
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
                if end < 0:
                    broken = True  # the run absorbs the rest of the file
                    pos = size
                    break
                if data[pos:end].find(b".") < 0:
                    broken = True
                    pos = size
                    break
                if not data.startswith(run_prefix, pos):
                    break
                pos = end + 1
            if run_prefix == prefix:
                return _builtin_run(data, start, pos, len(prefix), broken)
        raise ModuleNotFound(f"{name} is not in {BUILTIN_MODINFO}")

    def builtin_modinfo(self, name: str) -> list[tuple[str, str]]:
        """The (key, value) pairs of built-in module ``name`` (see builtin_modinfo_strings)."""
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
    chunk = data[start:end]
    parts = chunk.split(b"\0")
    if parts and parts[-1] == b"":
        parts.pop()
    elif broken:
        raise FormatError(f"{BUILTIN_MODINFO}: unterminated string")
    return [p[skip:] for p in parts]


def _exact(idx: Index | None, key: str) -> str | None:
    if idx is None:
        return None
    try:
        return idx.lookup(key)
    except IndexError_:
        return None


def _wild(idx: Index | None, key: str) -> list[str]:
    if idx is None:
        return []
    try:
        return [v for _prio, v in idx.search_wildcard(key)]
    except IndexError_:
        return []


__all__ = [
    "ALIAS", "BUILTIN", "BUILTIN_ALIAS", "BUILTIN_MODINFO", "DEP", "KMOD_EXTENSIONS", "SYMBOLS",
    "DepEntry", "Found", "ModuleDir", "alias_normalize", "current_dir", "has_module_extension",
    "kernel_release", "make_absolute", "modname_from_path", "normalize_name", "underscores",
]
