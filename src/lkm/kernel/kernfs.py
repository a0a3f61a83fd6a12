"""kernfs as sysfs readers see it: readdir order and the errors a path gives
(fs/kernfs/dir.c, include/linux/stringhash.h).

A kernfs directory lists its entries in the order of kernfs_name_hash(), the name
hash its red-black tree is sorted by (ties by name), which is what readdir returns.
"""

from __future__ import annotations

import os

_M64 = (1 << 64) - 1
GOLDEN_RATIO_64 = 0x61C8864680B583EB  # include/linux/hash.h


def kernfs_name_hash(name: str) -> int:
    """kernfs_name_hash() with a NULL namespace: partial_name_hash() over the bytes
    (``char`` is signed on x86), end_name_hash() = hash_long(hash, 32), folded to 31
    bits with 0, 1 and INT_MAX reserved."""
    h = 0
    for b in name.encode("utf-8", "surrogateescape"):
        c = b if b < 0x80 else (b - 256) & _M64  # plain char is signed on x86
        h = ((h + (c << 4) + (c >> 4)) * 11) & _M64
    h = ((h * GOLDEN_RATIO_64) & _M64) >> 32
    h &= 0x7FFFFFFF
    if h < 2:
        h += 2
    if h >= 0x7FFFFFFF:
        h = 0x7FFFFFFE
    return h


def kernfs_order(names: list[str]) -> list[str]:
    """Entries in the order readdir returns them from a sysfs directory."""
    return sorted(set(names), key=lambda n: (kernfs_name_hash(n), n))


def kernfs_error(err: int, path: str) -> OSError:
    """The OSError a read, write or readdir of ``path`` fails with."""
    return OSError(err, os.strerror(err), path)
