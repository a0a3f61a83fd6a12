"""Old home of the module directory and the name rules: now :mod:`lkm.kmod`.

Kept so that imports elsewhere (depmod, config, the loader's tests) keep working
until they name :mod:`lkm.kmod.moddir` / :mod:`lkm.kmod.names` themselves; nothing
is defined here.
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
