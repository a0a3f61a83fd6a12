"""Reading a kmod index: exact lookup, wildcard search and dump, with libkmod's
semantics (libkmod/libkmod-index.c: index_search, index_searchwild, index_dump); every
offset is bounds-checked."""

from __future__ import annotations

import mmap
import os
import struct
from collections.abc import Iterator

from lkm.errors import IndexError_
from lkm.index.format import (
    HEADER,
    INDEX_CHILDMAX,
    INDEX_MAGIC,
    INDEX_NODE_CHILDS,
    INDEX_NODE_MASK,
    INDEX_NODE_PREFIX,
    INDEX_NODE_VALUES,
    INDEX_VERSION_MAJOR,
    U32,
    WILD,
    dec,
    enc,
)
from lkm.index.pattern import fnmatch


class Index:
    """A kmod binary index opened for reading (mmap or bytes); every offset is bounds-checked."""

    def __init__(self, data: bytes | mmap.mmap, name: str = "<index>") -> None:
        self.name = name
        self._data = data
        self._size = len(data)
        if self._size < HEADER.size:
            raise IndexError_(f"{name}: too short for an index header")
        magic, version, root = HEADER.unpack_from(data, 0)
        if magic != INDEX_MAGIC:
            raise IndexError_(f"{name}: magic check fail: {magic:x} instead of {INDEX_MAGIC:x}")
        if version >> 16 != INDEX_VERSION_MAJOR:
            raise IndexError_(f"{name}: major version check fail: {version >> 16} instead of "
                              f"{INDEX_VERSION_MAJOR}")
        self.version = version
        self.root = root

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Index:
        """Open an index file (OSError if it cannot be read, IndexError_ if malformed)."""
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            # mmap pays off for the large indexes, of which a lookup reads a few nodes
            data: bytes | mmap.mmap = (mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
                                       if size >= 65536 else f.read())
        return cls(data, os.fspath(path))

    def close(self) -> None:
        if isinstance(self._data, mmap.mmap):
            self._data.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- node decoding

    def _bad(self, what: str, off: int) -> IndexError_:
        return IndexError_(f"{self.name}: corrupt index: {what} at offset {off}")

    def _prefix(self, word: int) -> tuple[bytes, int]:
        """(prefix, position after it) of the node ``word``."""
        off = word & INDEX_NODE_MASK
        if off < HEADER.size or off > self._size:
            raise self._bad("node offset out of range", off)
        if not word & INDEX_NODE_PREFIX:
            return b"", off
        end = self._data.find(b"\0", off)
        if end < 0:
            raise self._bad("unterminated prefix", off)
        return self._data[off:end], end + 1

    def _children(self, word: int, pos: int) -> tuple[int, int, int]:
        """(first, last, position of the first child word); first > last if none."""
        if not word & INDEX_NODE_CHILDS:
            return INDEX_CHILDMAX, 0, pos
        if pos + 2 > self._size:
            raise self._bad("truncated child range", pos)
        first, last = self._data[pos], self._data[pos + 1]
        if first > last or pos + 2 + 4 * (last - first + 1) > self._size:
            raise self._bad("bad child range", pos)
        return first, last, pos + 2

    def _values(self, word: int, pos: int) -> list[tuple[int, bytes]]:
        """The node's (priority, value) pairs in file order."""
        if not word & INDEX_NODE_VALUES:
            return []
        data, size = self._data, self._size
        if pos + 4 > size:
            raise self._bad("truncated value count", pos)
        (count,) = U32.unpack_from(data, pos)
        pos += 4
        if count > (size - pos) // 5:
            raise self._bad("impossible value count", pos)
        out = []
        for _ in range(count):
            if pos + 4 > size:
                raise self._bad("truncated value", pos)
            (prio,) = U32.unpack_from(data, pos)
            end = data.find(b"\0", pos + 4)
            if end < 0:
                raise self._bad("unterminated value", pos)
            out.append((prio, data[pos + 4:end]))
            pos = end + 1
        return out

    def _node(self, word: int) -> tuple[bytes, int, int, int, int]:
        """(prefix, first, last, children position, values position) of a node."""
        prefix, pos = self._prefix(word)
        first, last, cpos = self._children(word, pos)
        vpos = cpos + 4 * (last - first + 1) if first <= last else cpos
        return prefix, first, last, cpos, vpos

    def _child(self, first: int, last: int, cpos: int, ch: int) -> int:
        if first <= ch <= last:
            word: int = U32.unpack_from(self._data, cpos + 4 * (ch - first))[0]
            return word if word & INDEX_NODE_MASK else 0
        return 0

    # -- exact search

    def _find(self, key: bytes) -> tuple[int, int] | None:
        """(node word, values position) of the node holding exactly ``key``."""
        word = self.root if self.root & INDEX_NODE_MASK else 0
        i, n = 0, len(key)
        while word:
            prefix, first, last, cpos, vpos = self._node(word)
            if prefix:
                if key[i:i + len(prefix)] != prefix:
                    return None
                i += len(prefix)
            if i == n:
                return word, vpos
            word = self._child(first, last, cpos, key[i])
            i += 1
        return None

    def lookup(self, key: str) -> str | None:
        """The first value stored under exactly ``key`` (libkmod's index_search)."""
        vals = self.lookup_all(key)
        return vals[0][1] if vals else None

    def first_value(self, key: str) -> str | None:
        """:meth:`lookup` in one tight loop (modprobe looks up thousands of names)."""
        data, size, unpack = self._data, self._size, U32.unpack_from
        k = key.encode("utf-8", "surrogateescape")
        word, i, n = self.root, 0, len(k)
        while word & INDEX_NODE_MASK:
            pos = word & INDEX_NODE_MASK
            if pos < HEADER.size or pos >= size:
                raise self._bad("node offset out of range", pos)
            if word & INDEX_NODE_PREFIX:
                end = data.find(b"\0", pos)
                if end < 0:
                    raise self._bad("unterminated prefix", pos)
                if not k.startswith(data[pos:end], i):
                    return None
                i += end - pos
                pos = end + 1
            if i == n:
                if not word & INDEX_NODE_VALUES:
                    return None
                if word & INDEX_NODE_CHILDS:
                    if pos + 2 > size:
                        raise self._bad("truncated child range", pos)
                    pos += 2 + 4 * (data[pos + 1] - data[pos] + 1)
                if pos + 8 > size:
                    raise self._bad("truncated value", pos)
                if not unpack(data, pos)[0]:
                    return None
                end = data.find(b"\0", pos + 8)
                if end < 0:
                    raise self._bad("unterminated value", pos)
                return dec(data[pos + 8:end])
            if not word & INDEX_NODE_CHILDS:
                return None
            if pos + 2 > size:
                raise self._bad("truncated child range", pos)
            first, c = data[pos], k[i]
            if c < first or c > data[pos + 1]:
                return None
            cpos = pos + 2 + 4 * (c - first)
            if cpos + 4 > size:
                raise self._bad("bad child range", pos)
            (word,) = unpack(data, cpos)
            i += 1
        return None

    def lookup_all(self, key: str) -> list[tuple[int, str]]:
        """Every (priority, value) stored under exactly ``key``, in file order."""
        found = self._find(enc(key))
        if found is None:
            return []
        return [(p, dec(v)) for p, v in self._values(*found)]

    # -- wildcard search

    def search_wildcard(self, key: str) -> list[tuple[int, str]]:
        """libkmod's index_searchwild: values of ``key`` and of stored patterns matching it.

        Stored keys holding ``*``, ``?`` or ``[`` are fnmatch patterns.  Results are
        ordered by priority; equal priorities in reverse order of discovery.
        """
        bkey = enc(key)
        found: list[tuple[int, bytes]] = []
        seen: set[int] = set()
        word = self.root if self.root & INDEX_NODE_MASK else 0
        i, n = 0, len(bkey)
        while word:
            off = word & INDEX_NODE_MASK
            if off in seen:
                raise self._bad("node reached twice", off)
            seen.add(off)
            prefix, first, last, cpos, vpos = self._node(word)
            for j, ch in enumerate(prefix):
                if ch in WILD:
                    self._wild_all(word, j, b"", bkey[i + j:], found, seen)
                    return _merge(found)
                if i + j >= n or bkey[i + j] != ch:
                    return _merge(found)
            i += len(prefix)
            for wc in b"*?[":
                child = self._child(first, last, cpos, wc)
                if child:
                    self._mark(child, seen)
                    self._wild_all(child, 0, bytes((wc,)), bkey[i:], found, seen)
            if i == n:
                found.extend(self._values(word, vpos))
                return _merge(found)
            word = self._child(first, last, cpos, bkey[i])
            i += 1
        return _merge(found)

    def _wild_all(self, word: int, skip: int, head: bytes, subkey: bytes,
                  found: list[tuple[int, bytes]], seen: set[int]) -> None:
        """libkmod's index_searchwild__all: visit the subtree at ``word`` (children first,
        then the node) and add the values of every key whose pattern (``head``, the node's
        prefix from ``skip``, then the path below) fnmatches ``subkey``."""
        prefix, first, last, cpos, vpos = self._node(word)
        stack: list[tuple[int, bytes, int, int, int, int, int]] = []
        pat = head + prefix[skip:]
        while True:
            # children were pushed after the node itself, so they pop (and emit) first
            stack.append((word, pat, 1, first, last, cpos, vpos))
            if first <= last:
                words = struct.unpack_from(f">{last - first + 1}I", self._data, cpos)
                for k in range(len(words) - 1, -1, -1):
                    cw = words[k]
                    if cw & INDEX_NODE_MASK:
                        stack.append((cw, pat + bytes((first + k,)), 0, 0, 0, 0, 0))
            while stack:
                word, pat, state, first, last, cpos, vpos = stack.pop()
                if state == 1:
                    vals = self._values(word, vpos)
                    if vals and fnmatch(pat, subkey):
                        found.extend(vals)
                    continue
                self._mark(word, seen)
                prefix, first, last, cpos, vpos = self._node(word)
                pat += prefix
                break
            else:
                return

    def _mark(self, word: int, seen: set[int]) -> None:
        off = word & INDEX_NODE_MASK
        if off in seen:
            raise self._bad("node reached twice", off)
        seen.add(off)

    # -- traversal

    def entries(self) -> Iterator[tuple[str, str, int]]:
        """Every (key, value, priority) in trie order (node values, then children by byte)."""
        for key, prio, val in self._walk():
            yield dec(key), dec(val), prio

    def items(self) -> Iterator[tuple[str, str]]:
        """Every (key, value) in trie order, as ``modprobe -c`` dumps an index."""
        for key, _prio, val in self._walk():
            yield dec(key), dec(val)

    def dump(self, prefix: str = "") -> str:
        """libkmod's index_dump: one ``<prefix><key> <value>`` line per value, trie order."""
        return "".join(f"{prefix}{k} {v}\n" for k, v in self.items())

    def _walk(self) -> Iterator[tuple[bytes, int, bytes]]:
        if not self.root & INDEX_NODE_MASK:
            return
        seen: set[int] = set()
        stack: list[tuple[int, bytes]] = [(self.root, b"")]
        while stack:
            word, path = stack.pop()
            self._mark(word, seen)
            prefix, first, last, cpos, vpos = self._node(word)
            path += prefix
            for prio, val in self._values(word, vpos):
                yield path, prio, val
            if first <= last:
                words = struct.unpack_from(f">{last - first + 1}I", self._data, cpos)
                for k in range(len(words) - 1, -1, -1):
                    cw = words[k]
                    if cw & INDEX_NODE_MASK:
                        stack.append((cw, path + bytes((first + k,))))


def _merge(found: list[tuple[int, bytes]]) -> list[tuple[int, str]]:
    """libkmod's add_value order: by priority, a new value going before equal ones."""
    found.reverse()
    found.sort(key=lambda pv: pv[0])
    return [(p, dec(v)) for p, v in found]
