"""libkmod's hash table order (shared/hash.c): Paul Hsieh's SuperFastHash of a key, and
where a table of ``n`` buckets iterates it.

depmod numbers the modules by the iteration order of a 512-bucket table (before
modules.order) and writes modules.symbols in that of a 2048-bucket table.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

_WORDS: dict[int, Callable[[bytes], tuple[int, ...]]] = {}


def superfast_hash(key: bytes) -> int:
    """SuperFastHash as libkmod's hash_superfast computes it (32-bit; a trailing byte
    is read as a signed char).  Masks are applied only before right shifts."""
    n = len(key)
    h = n
    m = 0xFFFFFFFF
    if n > 1:
        unpack = _WORDS.get(n)
        if unpack is None:
            unpack = _WORDS[n] = struct.Struct(f"<{n >> 1}H").unpack_from
        words = unpack(key)
        i = 0
        for i in range(0, (n >> 2) << 1, 2):
            h += words[i]
            h = ((h << 16) ^ (words[i + 1] << 11) ^ h) & m
            h += h >> 11
        w = (n >> 2) << 1
        rem = n & 3
        if rem == 3:
            c = key[n - 1]
            h += words[w]
            h = (h ^ (h << 16) ^ ((c - 256 if c > 127 else c) << 18)) & m
            h += h >> 11
        elif rem == 2:
            h += words[w]
            h = (h ^ (h << 11)) & m
            h += h >> 17
    if n & 3 == 1:
        c = key[n - 1]
        h = (h + (c - 256 if c > 127 else c)) & m
        h ^= h << 10
        h &= m
        h += h >> 1
    h = (h ^ (h << 3)) & m
    h += h >> 5
    h = (h ^ (h << 4)) & m
    h += h >> 17
    h = (h ^ (h << 25)) & m
    h += h >> 6
    return h & m


def hash_order_key(name: str, buckets: int) -> tuple[int, bytes]:
    """Where libkmod's hash table of ``buckets`` buckets iterates ``name`` (a sort key:
    bucket, then strcmp order within the bucket)."""
    b = name.encode("utf-8", "surrogateescape")
    return superfast_hash(b) & (buckets - 1), b
