"""Module names and paths as libkmod forms them (libkmod-util.c, shared/util.c).

THE name normalisation every tool uses: :func:`normalize_name` (module names:
modname_normalize), :func:`underscores` / :func:`alias_normalize` (names and aliases
from configuration and the command line), :func:`modname_from_path`; which file
names are modules (:data:`KMOD_EXTENSIONS`); paths made absolute as kmod makes them.
"""

from __future__ import annotations

import os

from lkm.errors import InvalidAlias

PATH_MAX = 4096

KMOD_EXTENSIONS = (".ko", ".ko.xz", ".ko.zst")
"""The file name endings kmod's tools take for module files (shared/util.c kmod_exts).

kmod lists ``.ko`` plus one extension per decompressor it was built with.  lkm's
kmod-compatible tools stand in for Debian 12's kmod 30, built ``+ZSTD +XZ -ZLIB``
(see ``kmod -V``), so ``.ko.gz`` is not among them: its modinfo looks up
``x.ko.gz`` as an alias ("Module x.ko.gz not found."), its depmod does not scan
``*.ko.gz`` and a gzip stream is not decompressed.  Every kmod-compatible tool
(modinfo, modprobe, depmod) takes this one tuple, so they agree with each other
and with that kmod byte for byte.  lkm's own library and tools (ModuleFile.open,
signing, verify) read gzip modules as well: that is lkm.compress's concern.
"""


def normalize_name(name: str) -> str:
    """A module name as libkmod keys it (modname_normalize).

    :param name: a module name or file name (``snd-hda.ko``).
    :returns: the name up to its first ``.`` (at most PATH_MAX - 1 characters) with
        ``-`` turned into ``_`` (``snd_hda``).
    """
    dot = name.find(".")
    if dot >= 0:
        name = name[:dot]
    if len(name) > PATH_MAX - 1:
        name = name[:PATH_MAX - 1]
    return name.replace("-", "_")


def underscores(s: str) -> str:
    """kmod's underscores()/alias_normalize(): ``-`` becomes ``_`` except inside ``[...]``.

    :raises InvalidAlias: on an unmatched bracket (a ``]`` without ``[``, or a ``[``
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
    """A lookup key as kmod_module_new_from_lookup normalises it: :func:`underscores`
    of at most PATH_MAX - 1 characters.

    :raises InvalidAlias: on an unmatched bracket.
    """
    if len(alias) > PATH_MAX - 1:
        alias = alias[:PATH_MAX - 1]
    return underscores(alias)


def modname_from_path(path: str) -> str | None:
    """The module name of a file path (path_to_modname): its normalised basename, or
    None if the basename is empty."""
    base = path[path.rfind("/") + 1:]
    return normalize_name(base) if base else None


def has_module_extension(path: str) -> bool:
    """True if ``path`` ends in one of :data:`KMOD_EXTENSIONS` and is longer than it
    (path_ends_with_kmod_ext)."""
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


__all__ = ["KMOD_EXTENSIONS", "PATH_MAX", "alias_normalize", "current_dir",
           "has_module_extension", "kernel_release", "make_absolute", "modname_from_path",
           "normalize_name", "underscores"]
