"""Which module files depmod takes: the tree walk and depmod.d's precedence.

tools/depmod.c (depmod_modules_search, depmod_module_is_higher_priority): the module
directory, then each ``external`` directory, is walked in readdir order, skipping
``build``, ``source`` and the ``exclude`` names.  Of two files giving the same module
name, an ``override`` names the winner; else the one in the earlier ``search`` slot
(``built-in`` stands for the tree itself, ``external`` for the external directories in
their order); else the one met first.
"""

from __future__ import annotations

import errno as _errno
import os
import stat
from collections.abc import Iterable, Iterator

from lkm.depmod.errors import DepmodError
from lkm.depmod.state import DepmodModule, DepmodState
from lkm.kmod.names import KMOD_EXTENSIONS as KMOD_EXTENSIONS  # the module files scanned
from lkm.kmod.names import has_module_extension as has_kmod_ext
from lkm.kmod.names import modname_from_path
from lkm.logprio import LOG_ERR


def fake_fd(depth: int) -> int:
    """The descriptor number kmod's message would show for a directory at ``depth``."""
    return 2 + depth


def _starts_with_dir(path: str, pathlen: int, prefix: str) -> bool:
    n = len(prefix)
    return pathlen > n and path[n:n + 1] == "/" and path.startswith(prefix)


def is_higher_priority(d: DepmodState, old: DepmodModule, newpath: str, baselen: int,
                       modnamelen: int) -> bool:
    """True when the module already found outranks the file ``newpath``."""
    dirname = d.dirname
    dn = len(dirname)
    newlen = baselen + modnamelen
    oldpath = old.path
    oldlen = old.baselen + len(old.modname) + 1
    relnew = reloldp = None
    relnewlen = reloldlen = 0
    if newpath.startswith(dirname):
        relnew = newpath[dn + 1:]
        relnewlen = newlen - (dn + 1)
    if oldpath.startswith(dirname):
        reloldp = oldpath[dn + 1:]
        reloldlen = oldlen - (dn + 1)
    for ov in d.cfg.overrides:
        if relnew is not None and relnewlen == len(ov) and relnew[:relnewlen] == ov:
            return False
        if reloldp is not None and reloldlen == len(ov) and reloldp[:reloldlen] == ov:
            return True
    bprio = oldprio = newprio = -1
    i = 0
    for se in d.cfg.searches:
        if se == "built-in":
            bprio = i
        elif se == "external":
            for ext in d.cfg.externals:
                if _starts_with_dir(newpath, newlen, ext):
                    newprio = i
                if _starts_with_dir(oldpath, oldlen, ext):
                    oldprio = i
                i += 1
        elif relnew is not None and relnewlen > len(se) and relnew[len(se)] == "/" \
                and relnew.startswith(se):
            newprio = i
        elif reloldp is not None and reloldlen > len(se) and reloldp[len(se)] == "/" \
                and reloldp.startswith(se):
            oldprio = i
        i += 1
    if newprio < 0:
        newprio = bprio
    if oldprio < 0:
        oldprio = bprio
    return newprio <= oldprio


def _search_file(d: DepmodState, path: str, baselen: int) -> None:
    name = path[baselen:]
    if not has_kmod_ext(name):
        return
    modname = modname_from_path(path)
    if modname is None:
        d.log(LOG_ERR, f"could not get modname from path {path}\n")
        return
    old = d.by_name.get(modname)
    if old is not None:
        if is_higher_priority(d, old, path, baselen, len(modname)):
            return
        del d.by_name[modname]
    d.by_name[modname] = DepmodModule(path, modname, d.dirname)


def _search_dir(d: DepmodState, top: str) -> None:
    """Walk ``top`` in readdir order (kmod's depmod_modules_search_dir)."""
    excludes = set(d.cfg.excludes)
    excludes.update(("build", "source"))
    try:
        st = os.stat(top)
    except OSError:
        st = None
    seen: set[tuple[int, int]] = set() if st is None else {(st.st_dev, st.st_ino)}
    stack: list[Iterator[os.DirEntry[str]]] = []
    bases: list[str] = []
    try:
        it = os.scandir(top)
    except OSError as e:
        raise DepmodError(f"could not open directory {top}: {e.strerror}\n", LOG_ERR) from e
    stack.append(it)
    bases.append(top + "/")
    while stack:
        base = bases[-1]
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            bases.pop()
            continue
        name = entry.name
        if name in excludes:
            continue
        path = base + name
        try:
            if entry.is_dir():
                is_dir = True
            elif entry.is_file():
                is_dir = False
            else:
                mode = entry.stat().st_mode
                d.log(LOG_ERR, f"unsupported file type {path}: {mode & 0o170000:o}\n")
                continue
        except OSError as e:
            d.log(LOG_ERR, f"fstatat({fake_fd(len(stack))}, {name}): {e.strerror}\n")
            continue
        if is_dir:
            try:
                dst = entry.stat()
                key = (dst.st_dev, dst.st_ino)
                if key in seen:  # a symlink loop: kmod would recurse until EMFILE
                    d.log(LOG_ERR, f"openat({fake_fd(len(stack))}, {name}, O_RDONLY): "
                                   f"{os.strerror(_errno.ELOOP)}\n")
                    continue
                sub = os.scandir(path)
            except OSError as e:
                d.log(LOG_ERR, f"openat({fake_fd(len(stack))}, {name}, O_RDONLY): "
                               f"{e.strerror}\n")
                continue
            seen.add(key)
            stack.append(sub)
            bases.append(path + "/")
        else:
            _search_file(d, path, len(base))


def search(d: DepmodState) -> None:
    """Find the modules of the module directory, then of each ``external`` directory
    (DepmodError if the module directory cannot be read)."""
    _search_dir(d, d.dirname)
    for ext in d.cfg.externals:
        try:
            _search_dir(d, ext)
        except DepmodError as e:
            d.log(LOG_ERR, str(e))


def add_paths(d: DepmodState, paths: Iterable[str]) -> None:
    """Use exactly these module files (absolute paths), as ``depmod VERSION FILE...``
    (DepmodError with kmod's message for a relative, missing or repeated one)."""
    for path in paths:
        if not path.startswith("/"):
            raise DepmodError(f"{path}: not absolute path.\n")
        try:
            st = os.stat(path)
        except OSError as e:
            raise DepmodError(f"could not create module {path}: {e.strerror}\n") from e
        if not stat.S_ISREG(st.st_mode):
            d.irregular.add(path)  # not read: kmod would block on a FIFO
        modname = modname_from_path(path)
        if modname is None:
            raise DepmodError(f"could not create module {path}: "
                              f"{os.strerror(_errno.ENOENT)}\n")
        old = d.by_name.get(modname)
        if old is not None:
            if old.path != path:
                # libkmod's message, as Debian's build (with debug) prints it
                d.log(LOG_ERR, "../libkmod/libkmod-module.c:428 "
                               f"kmod_module_new_from_path() kmod_module '{modname}' "
                               f"already exists with different path: new-path='{path}' "
                               f"old-path='{old.path}'\n")
                raise DepmodError(f"could not create module {path}: "
                                  f"{os.strerror(_errno.EEXIST)}\n")
            d.log(LOG_ERR, f"hash_add_unique {modname}: {os.strerror(_errno.EEXIST)}\n")
            raise DepmodError(f"could not add module {path}: "
                              f"{os.strerror(_errno.EEXIST)}\n")
        d.by_name[modname] = DepmodModule(path, modname, d.dirname)
