"""How a libkmod call fails: libkmod returns ``-errno``; here :class:`KmodError` carries it."""

from __future__ import annotations

import os

from lkm.errors import LkmError


class KmodError(LkmError):
    """A libkmod call failed with ``errno`` (libkmod returns it negated); kmod's tools
    print it with strerror.

    :param err: the errno.
    :param message: a text for humans (default: strerror).
    """

    def __init__(self, err: int, message: str = "") -> None:
        super().__init__(message or os.strerror(err))
        self.errno = err


__all__ = ["KmodError"]
