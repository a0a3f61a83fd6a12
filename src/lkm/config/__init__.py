"""Configuration as kmod reads it: modprobe.d, depmod.d, the kernel command line.

* :mod:`lkm.config.lines` — kmod's one ``freadline_wrapped`` (both directories' files),
  fgets lines and a non-blocking whole-file read;
* :mod:`lkm.config.modprobe` — modprobe.d (:class:`ModprobeConfig`, libkmod's lookups);
* :mod:`lkm.config.depmod` — depmod.d (:class:`DepmodConfig`);
* :mod:`lkm.config.kcmdline` — ``mod.param=value`` words of the kernel command line;
* :mod:`lkm.config.modprobe_options` — $MODPROBE_OPTIONS.

The LOG_* priorities are lkm.logprio's, importable from here too.
"""

from lkm.config.depmod import DEPMOD_DIRS, DepmodConfig
from lkm.config.kcmdline import KCMD_LINE_SIZE, kcmdline_options
from lkm.config.lines import wrapped_lines
from lkm.config.modprobe import (
    MODPROBE_DIRS,
    ModprobeConfig,
    Softdep,
    is_pattern,
    libkmod_pos,
    underscores,
)
from lkm.config.modprobe_options import split_modprobe_options
from lkm.logprio import LOG_CRIT, LOG_DEBUG, LOG_ERR, LOG_INFO, LOG_NOTICE, LOG_WARNING

__all__ = [
    "DEPMOD_DIRS",
    "KCMD_LINE_SIZE",
    "LOG_CRIT",
    "LOG_DEBUG",
    "LOG_ERR",
    "LOG_INFO",
    "LOG_NOTICE",
    "LOG_WARNING",
    "MODPROBE_DIRS",
    "DepmodConfig",
    "ModprobeConfig",
    "Softdep",
    "is_pattern",
    "kcmdline_options",
    "libkmod_pos",
    "split_modprobe_options",
    "underscores",
    "wrapped_lines",
]
