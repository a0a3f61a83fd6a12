"""libkmod's messages: the callback they go through and the source positions they carry.

libkmod logs through a function the tool installs (kmod_set_log_fn).  Here that is a
:data:`LogFn` given to :class:`lkm.kmod.KmodContext`: ``log(priority, where, function,
text)``, the priority a syslog one (:mod:`lkm.logprio`), ``where`` the position
Debian's kmod 30 prints (:func:`libkmod_pos`), ``text`` libkmod's message with its
newline.  The library never prints: the tool formats these (lkm.cli._common.Log.lib).
"""

from __future__ import annotations

from collections.abc import Callable

LogFn = Callable[[int, str, str, str], None]
"""``log(priority, libkmod source position, libkmod function, text)``."""


def libkmod_pos(where: str) -> str:
    """The source position Debian's kmod 30 prints with a libkmod message
    (``libkmod-module.c:191`` -> ``../libkmod/libkmod-module.c:191``)."""
    return f"../libkmod/{where}"


def nolog(prio: int, where: str, fn: str, msg: str) -> None:
    """A :data:`LogFn` that drops every message."""


__all__ = ["LogFn", "libkmod_pos", "nolog"]
