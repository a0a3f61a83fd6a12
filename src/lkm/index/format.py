"""kmod's binary index format (libkmod/libkmod-index.c): magic, version, node words."""

from __future__ import annotations

import struct
from typing import Literal

INDEX_MAGIC = 0xB007F457
INDEX_VERSION = 0x00020001
INDEX_VERSION_MAJOR = 0x0002
INDEX_CHILDMAX = 128

INDEX_NODE_PREFIX = 0x80000000
INDEX_NODE_VALUES = 0x40000000
INDEX_NODE_CHILDS = 0x20000000
INDEX_NODE_MASK = 0x0FFFFFFF

HEADER = struct.Struct(">III")
U32 = struct.Struct(">I")
WILD = frozenset(b"*?[")

Layout = Literal["postorder", "preorder"]
"""kmod 30 writes the indexes post-order (children first, root last), kmod 34 pre-order."""


def enc(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def dec(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")
