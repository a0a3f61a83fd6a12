"""The libkmod layer: what kmod's tools ask libkmod, answered as libkmod answers.

kmod's tools (tools/*.c) are thin: a getopt loop, a few libkmod calls, printing.
lkm's kmod-compatible tools (lkm.cli) are the same over this package, which mirrors
libkmod's files:

=====================  ==========================================================
``names``              module names, aliases, file extensions, absolute paths
                       (libkmod-util.c, shared/util.c)
``moddir``             :class:`ModuleDir`: the module directory and depmod's
                       indexes, one question per index (libkmod.c, libkmod-builtin.c)
``context``            :class:`KmodContext`: ``struct kmod_ctx`` -- directory,
                       configuration, kernel, the pool of handles, and THE lookup
                       order (:data:`LOOKUP_ORDER`, kmod_module_new_from_lookup)
``module``             :class:`KmodModule`: ``struct kmod_module`` -- path,
                       dependencies, info, versions, symbols, options, commands,
                       softdeps, initstate, size, refcnt, holders, insert, remove
``file``               a module file as kmod_file_open reads it; get_info
                       (libkmod-file.c, libkmod-elf.c)
``errors``             :class:`KmodError`: a libkmod call's ``-errno``
``probe``              kmod_module_probe_insert_module: probe list, dry runs
``insert``             finit_module/init_module of a file, the force strips
``commands``           ``install``/``remove`` commands run through the shell
``log``                libkmod's messages: the callback and source positions
=====================  ==========================================================

A short example::

    from lkm.kmod import KmodContext, ModuleDir

    ctx = KmodContext(ModuleDir.for_release(release="6.1.0-57-amd64"))
    for mod in ctx.lookup("pci:v00008086d000010D3sv00008086sd0000A01Fbc02sc00i00"):
        print(mod.name, mod.path(), [d.name for d in mod.dependencies()])
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from lkm.kmod.names import (
    KMOD_EXTENSIONS,
    alias_normalize,
    has_module_extension,
    make_absolute,
    modname_from_path,
    normalize_name,
    underscores,
)

if TYPE_CHECKING:
    from lkm.kmod.context import LOOKUP_ORDER, NAME_LOOKUP_ORDER, KmodContext
    from lkm.kmod.errors import KmodError
    from lkm.kmod.log import LogFn
    from lkm.kmod.moddir import DepEntry, ModuleDir
    from lkm.kmod.module import BUILTIN, COMING, GOING, LIVE, KmodModule

# imported when first used, so that lkm.kmod.names stays cheap to import
_LAZY = {
    "LOOKUP_ORDER": "context", "NAME_LOOKUP_ORDER": "context", "KmodContext": "context",
    "KmodError": "errors", "LogFn": "log", "DepEntry": "moddir", "ModuleDir": "moddir",
    "BUILTIN": "module", "COMING": "module", "GOING": "module", "LIVE": "module",
    "KmodModule": "module",
}


def __getattr__(name: str) -> object:
    sub = _LAZY.get(name)
    if sub is None:
        raise AttributeError(f"module 'lkm.kmod' has no attribute {name!r}")
    return getattr(import_module(f"lkm.kmod.{sub}"), name)


__all__ = ["BUILTIN", "COMING", "GOING", "KMOD_EXTENSIONS", "LIVE", "LOOKUP_ORDER",
           "NAME_LOOKUP_ORDER", "DepEntry", "KmodContext", "KmodError", "KmodModule", "LogFn",
           "ModuleDir", "alias_normalize", "has_module_extension", "make_absolute",
           "modname_from_path", "normalize_name", "underscores"]
