"""Old home of the module directory and the name rules: now :mod:`lkm.kmod.moddir` and
:mod:`lkm.kmod.names`.

Nothing in this tree imports it any more; it stays only so that branches written
against it still import after they are merged (delete it once none does).  Nothing is
defined here.
"""

from lkm.kmod.moddir import (
    ALIAS,
    BUILTIN,
    BUILTIN_ALIAS,
    BUILTIN_MODINFO,
    DEP,
    MODULES_PREFIX,
    SYMBOLS,
    DepEntry,
    ModuleDir,
)
from lkm.kmod.names import (
    KMOD_EXTENSIONS,
    PATH_MAX,
    alias_normalize,
    current_dir,
    has_module_extension,
    kernel_release,
    make_absolute,
    modname_from_path,
    normalize_name,
    underscores,
)

__all__ = [
    "ALIAS", "BUILTIN", "BUILTIN_ALIAS", "BUILTIN_MODINFO", "DEP", "KMOD_EXTENSIONS",
    "MODULES_PREFIX", "PATH_MAX", "SYMBOLS", "DepEntry", "ModuleDir", "alias_normalize",
    "current_dir", "has_module_extension", "kernel_release", "make_absolute",
    "modname_from_path", "normalize_name", "underscores",
]
