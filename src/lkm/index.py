"""kmod's binary index (``modules.*.bin``): a Patricia trie mapping keys to prioritised values.

File layout (integers are u32 big-endian)::

    header:  magic 0xB007F457, version 0x00020001, root node word
    node:    [prefix bytes, NUL]          if word & PREFIX
             [u8 first, u8 last, (last - first + 1) child words]   if word & CHILDS
             [u32 count, count x (u32 priority, value bytes, NUL)]  if word & VALUES

A node word is ``offset | flags``; an offset of 0 means "no node".  The reader
follows libkmod's search semantics exactly (exact lookup, wildcard search, dump);
the writer reproduces depmod's byte layout: kmod 30 writes children before their
parent (post-order, root last), kmod 34 writes the root first (pre-order).

Keys and values are handled as bytes internally; the ``str`` API decodes them as
UTF-8 with ``surrogateescape`` so that any byte survives a round trip.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

from lkm.errors import IndexError_

INDEX_MAGIC = 0xB007F457
INDEX_VERSION = 0x00020001
INDEX_VERSION_MAJOR = 0x0002
INDEX_CHILDMAX = 128

INDEX_NODE_PREFIX = 0x80000000
INDEX_NODE_VALUES = 0x40000000
INDEX_NODE_CHILDS = 0x20000000
INDEX_NODE_MASK = 0x0FFFFFFF

_HEADER = struct.Struct(">III")
_U32 = struct.Struct(">I")
_WILD = frozenset(b"*?[")

Layout = Literal["postorder", "preorder"]


def _enc(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")


def _dec(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------- fnmatch

_CLASSES: dict[bytes, bytes] = {
    b"alpha": b"a-zA-Z",
    b"digit": b"0-9",
    b"alnum": b"a-zA-Z0-9",
    b"upper": b"A-Z",
    b"lower": b"a-z",
    b"space": b" \\t\\n\\r\\f\\v",
    b"blank": b" \\t",
    b"punct": re.escape(bytes(c for c in range(33, 127)
                              if not chr(c).isalnum())),
    b"print": b" -~",
    b"graph": b"!-~",
    b"cntrl": b"\\x00-\\x1f\\x7f",
    b"xdigit": b"0-9A-Fa-f",
}
_NEVER = re.compile(b"(?!)")
_fnmatch_cache: dict[bytes, re.Pattern[bytes]] = {}


def _class_char(c: int) -> bytes:
    return b"\\" + bytes((c,)) if c in b"\\]^-[" else bytes((c,))


def _bracket(pat: bytes, i: int) -> tuple[bytes, int] | None:
    """Translate the bracket expression whose ``[`` is at ``pat[i - 1]``.

    Returns (regex, index after ``]``), or None if the bracket is unterminated
    (glibc then matches ``[`` literally).
    """
    n = len(pat)
    negate = i < n and pat[i] in b"!^"
    if negate:
        i += 1
    parts: list[bytes] = []
    first = True
    while True:
        if i >= n:
            return None
        c = pat[i]
        if c == 0x5D and not first:  # ']'
            i += 1
            break
        first = False
        if c == 0x5B and i + 1 < n and pat[i + 1] == 0x3A:  # "[:class:]"
            end = pat.find(b":]", i + 2)
            if end < 0:
                return None
            cls = _CLASSES.get(pat[i + 2:end])
            if cls is None:
                return _NEVER.pattern, n  # glibc: invalid class never matches
            parts.append(cls)
            i = end + 2
            continue
        if c == 0x5C:  # backslash escapes inside brackets too
            if i + 1 >= n:
                return None
            i += 1
            c = pat[i]
        i += 1
        # a range "c-d" unless '-' is followed by ']' or the end
        if i + 1 < n and pat[i] == 0x2D and pat[i + 1] != 0x5D:
            hi = pat[i + 1]
            i += 2
            if hi == 0x5C and i < n:
                hi = pat[i]
                i += 1
            if c <= hi:
                parts.append(_class_char(c) + b"-" + _class_char(hi))
            continue
        parts.append(_class_char(c))
    body = b"".join(parts)
    if not body:
        return (b"[\\x00-\\xff]" if negate else _NEVER.pattern), i
    return b"[" + (b"^" if negate else b"") + body + b"]", i


def fnmatch_regex(pattern: bytes) -> re.Pattern[bytes]:
    """Compile a POSIX ``fnmatch(pattern, s, 0)`` pattern (glibc rules) to a regex."""
    rx = _fnmatch_cache.get(pattern)
    if rx is not None:
        return rx
    out: list[bytes] = []
    i, n = 0, len(pattern)
    never = False
    while i < n:
        c = pattern[i]
        i += 1
        if c == 0x2A:  # '*'
            out.append(b".*")
        elif c == 0x3F:  # '?'
            out.append(b".")
        elif c == 0x5C:  # backslash
            if i >= n:
                never = True  # a trailing backslash never matches
                break
            out.append(re.escape(pattern[i:i + 1]))
            i += 1
        elif c == 0x5B:  # '['
            got = _bracket(pattern, i)
            if got is None:
                out.append(b"\\[")
            else:
                out.append(got[0])
                i = got[1]
        else:
            out.append(re.escape(bytes((c,))))
    rx = _NEVER if never else re.compile(b"".join(out), re.DOTALL)
    if len(_fnmatch_cache) > 4096:
        _fnmatch_cache.clear()
    _fnmatch_cache[pattern] = rx
    return rx


def fnmatch(pattern: bytes, string: bytes) -> bool:
    """glibc ``fnmatch(pattern, string, 0) == 0``."""
    if b"?" not in pattern and b"[" not in pattern and b"\\" not in pattern:
        return _star_match(pattern, string)
    return fnmatch_regex(pattern).fullmatch(string) is not None


def _star_match(pattern: bytes, string: bytes) -> bool:
    """fnmatch for patterns whose only special character is ``*`` (most device aliases),
    without compiling a regex: leftmost matching of the pieces between stars."""
    parts = pattern.split(b"*")
    if len(parts) == 1:
        return pattern == string
    first, last = parts[0], parts[-1]
    end = len(string) - len(last)
    if len(first) > end or not string.startswith(first) or not string.endswith(last):
        return False
    pos = len(first)
    for part in parts[1:-1]:
        if part:
            i = string.find(part, pos, end)
            if i < 0:
                return False
            pos = i + len(part)
    return True


# --------------------------------------------------------------------------- reader


class Index:
    """A kmod binary index opened for reading (mmap or bytes); every offset is bounds-checked."""

    def __init__(self, data: bytes | mmap.mmap, name: str = "<index>") -> None:
        self.name = name
        self._data = data
        self._size = len(data)
        if self._size < _HEADER.size:
            raise IndexError_(f"{name}: too short for an index header")
        magic, version, root = _HEADER.unpack_from(data, 0)
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
        if off < _HEADER.size or off > self._size:
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
        (count,) = _U32.unpack_from(data, pos)
        pos += 4
        if count > (size - pos) // 5:
            raise self._bad("impossible value count", pos)
        out = []
        for _ in range(count):
            if pos + 4 > size:
                raise self._bad("truncated value", pos)
            (prio,) = _U32.unpack_from(data, pos)
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
            word: int = _U32.unpack_from(self._data, cpos + 4 * (ch - first))[0]
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
        data, size, unpack = self._data, self._size, _U32.unpack_from
        k = key.encode("utf-8", "surrogateescape")
        word, i, n = self.root, 0, len(k)
        while word & INDEX_NODE_MASK:
            pos = word & INDEX_NODE_MASK
            if pos < _HEADER.size or pos >= size:
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
                return _dec(data[pos + 8:end])
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
        found = self._find(_enc(key))
        if found is None:
            return []
        return [(p, _dec(v)) for p, v in self._values(*found)]

    # -- wildcard search

    def search_wildcard(self, key: str) -> list[tuple[int, str]]:
        """libkmod's index_searchwild: values of ``key`` and of stored patterns matching it.

        Stored keys holding ``*``, ``?`` or ``[`` are fnmatch patterns.  Results are
        ordered by priority; equal priorities in reverse order of discovery.
        """
        bkey = _enc(key)
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
                if ch in _WILD:
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
            yield _dec(key), _dec(val), prio

    def items(self) -> Iterator[tuple[str, str]]:
        """Every (key, value) in trie order, as ``modprobe -c`` dumps an index."""
        for key, _prio, val in self._walk():
            yield _dec(key), _dec(val)

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
    return [(p, _dec(v)) for p, v in found]


# --------------------------------------------------------------------------- writer


class IndexBuilder:
    """Collects (key, value, priority) triples and encodes them as a kmod index.

    Values of a key are kept in depmod's order: ascending priority, a value added
    with the priority of existing ones going before them.  Keys and values must be
    7-bit ASCII without NUL (kmod's index format supports nothing else).
    """

    def __init__(self) -> None:
        self.values: dict[bytes, list[tuple[int, bytes]]] = {}

    def __len__(self) -> int:
        return len(self.values)

    def add(self, key: str | bytes, value: str | bytes, priority: int) -> bool:
        """Add a value; True if the key already held this same value (kmod warns on that)."""
        bkey = key if isinstance(key, bytes) else _enc(key)
        bval = value if isinstance(value, bytes) else _enc(value)
        _check_string(bkey)
        _check_string(bval)
        lst = self.values.get(bkey)
        if lst is None:
            self.values[bkey] = [(priority, bval)]
            return False
        dup = any(v == bval for _p, v in lst)
        lst.append((priority, bval))
        return dup

    def extend(self, entries: Iterable[tuple[str, str, int]]) -> None:
        """Add many (key, value, priority) triples, without the duplicate report."""
        values = self.values
        get = values.get
        try:
            for key, value, prio in entries:
                bkey = key.encode("ascii")
                item = (prio, value.encode("ascii"))
                lst = get(bkey)
                if lst is None:
                    values[bkey] = [item]
                else:
                    lst.append(item)
        except UnicodeEncodeError as e:
            bad = e.object if isinstance(e.object, str) else ""
            _check_string(_enc(bad))
            raise
        if b"\0" in b"".join(values):
            for k in values:
                _check_string(k)

    def to_bytes(self, layout: Layout = "postorder") -> bytes:
        """The index file's bytes, kmod 30's post-order layout or kmod 34's pre-order one."""
        return encode_index(self.values, layout)


def _check_string(s: bytes) -> None:
    if not s.isascii() or b"\0" in s:
        bad = next((c for c in s if c > 127 or c == 0), 0)
        raise IndexError_(f"Module index: bad character '{_dec(bytes((bad,)))}'=0x{bad:x} - "
                          f"only 7-bit ASCII is supported:\n{_dec(s)}")


# a node: [prefix, values blob (count + entries, b"" if none), first, last, children]
_Node = list[Any]


def _values_blob(vals: list[tuple[int, bytes]]) -> bytes:
    if len(vals) == 1:
        prio, val = vals[0]
        return b"\0\0\0\1" + _U32.pack(prio) + val + b"\0"
    # libkmod's add_value: sorted by priority, later insertions before equal ones
    ordered = sorted(reversed(vals), key=lambda pv: pv[0])
    parts = [_U32.pack(len(ordered))]
    for prio, val in ordered:
        parts.append(_U32.pack(prio))
        parts.append(val)
        parts.append(b"\0")
    return b"".join(parts)


def _build_trie(values: dict[bytes, list[tuple[int, bytes]]]) -> _Node:
    """The Patricia trie depmod builds for these keys (its shape depends only on the key
    set: every node but the root carries the longest common prefix of the keys below)."""
    from bisect import bisect_left

    keys = sorted(values)

    def build(start: int, end: int, depth: int, is_root: bool) -> _Node:
        a = keys[start]
        if end - start == 1 and not is_root:
            return [a[depth:], _values_blob(values[a]), 0, -1, None]
        if is_root:
            p = depth
        else:
            b = keys[end - 1]
            lo, hi = depth, min(len(a), len(b))
            while lo < hi:  # longest common prefix of the first and last (sorted) keys
                mid = (lo + hi + 1) >> 1
                if a[depth:mid] == b[depth:mid]:
                    lo = mid
                else:
                    hi = mid - 1
            p = lo
        node: _Node = [a[depth:p], b"", 0, -1, None]
        i = start
        if len(a) == p:
            node[1] = _values_blob(values[a])
            i += 1
        children: list[tuple[int, _Node]] = []
        while i < end:
            k = keys[i]
            c = k[p]
            j = bisect_left(keys, k[:p] + bytes((c + 1,)), i + 1, end)
            children.append((c, build(i, j, p + 1, False)))
            i = j
        if children:
            node[2], node[3], node[4] = children[0][0], children[-1][0], children
        return node

    if not keys:
        return [b"", b"", 0, -1, None]
    import sys

    limit = sys.getrecursionlimit()
    need = 2 * max(len(k) for k in keys) + 100
    if need > limit:
        sys.setrecursionlimit(need)
    try:
        return build(0, len(keys), 0, True)
    finally:
        sys.setrecursionlimit(limit)


def encode_index(values: dict[bytes, list[tuple[int, bytes]]],
                 layout: Layout = "postorder") -> bytes:
    """Encode key -> [(priority, value) in insertion order] as a kmod index file."""
    if layout == "postorder":
        return _encode_postorder_sorted(values)
    if layout == "preorder":
        return _encode_preorder(_build_trie(values))
    raise ValueError(f"unknown index layout {layout!r}")


def _lcp(a: bytes, b: bytes) -> int:
    """Length of the longest common prefix of ``a`` and ``b``."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    x = int.from_bytes(a[:n], "big") ^ int.from_bytes(b[:n], "big")
    return n - ((x.bit_length() + 7) >> 3)


def _encode_postorder_sorted(values: dict[bytes, list[tuple[int, bytes]]]) -> bytes:
    """kmod 30's post-order layout in one pass over the sorted keys.

    The open nodes form a stack (parallel lists): a node's prefix is ``src[start:end]``
    and it hangs under ``src[start - 1]``.  A node is written once the keys have moved
    past it, hence after all its children, which come in ascending byte order.  When a
    key leaves a node inside its prefix, the node is split there first.
    """
    out: list[bytes] = [b""]
    append = out.append
    pos = _HEADER.size
    packers: dict[int, Callable[..., bytes]] = {}
    u32 = _U32.pack
    frm = int.from_bytes
    pfx, vals_flag, kids_flag = INDEX_NODE_PREFIX, INDEX_NODE_VALUES, INDEX_NODE_CHILDS
    s_start = [0]
    s_end = [0]
    s_src = [b""]
    s_kids: list[list[tuple[int, int]] | None] = [None]
    s_blob = [b""]
    top_end = 0
    prev = b""
    first_key = True
    word = 0

    def node_chunk(start: int, end: int, src: bytes, kids: list[tuple[int, int]],
                   blob: bytes) -> tuple[bytes, int]:
        first, last = kids[0][0], kids[-1][0]
        cnt = last - first + 1
        if cnt == len(kids):
            words = [w for _c, w in kids]
        else:
            words = [0] * cnt
            for c, w in kids:
                words[c - first] = w
        pack = packers.get(cnt)
        if pack is None:
            pack = packers[cnt] = struct.Struct(f">{cnt}I").pack
        flags = kids_flag
        chunk = bytes((first, last)) + pack(*words)
        if end > start:
            chunk = src[start:end] + b"\0" + chunk
            flags |= pfx
        if blob:
            chunk += blob
            flags |= vals_flag
        return chunk, flags

    for key in sorted(values):
        vals = values[key]
        if len(vals) == 1:
            prio, val = vals[0]
            blob = b"\0\0\0\1" + u32(prio) + val + b"\0"
        else:
            blob = _values_blob(vals)
        if first_key:
            lcp = 0
            first_key = False
        else:
            n = min(len(prev), len(key))
            a, b = prev[:n], key[:n]
            lcp = n if a == b else n - (((frm(a, "big") ^ frm(b, "big")).bit_length() + 7) >> 3)
        while top_end > lcp:
            start = s_start.pop()
            end = s_end.pop()
            src = s_src.pop()
            kids = s_kids.pop()
            nblob = s_blob.pop()
            parent_end = s_end[-1]
            split = parent_end < lcp
            if split:
                split_start, start = start, lcp + 1
            if kids is None:  # a leaf (the common case)
                if end > start:
                    chunk = src[start:end] + b"\0" + nblob
                    word = pos | pfx | vals_flag
                else:
                    chunk = nblob
                    word = pos | vals_flag
            else:
                chunk, flags = node_chunk(start, end, src, kids, nblob)
                word = pos | flags
            append(chunk)
            pos += len(chunk)
            if split:  # the new key leaves this node's prefix at lcp
                s_start.append(split_start)
                s_end.append(lcp)
                s_src.append(src)
                s_kids.append([(src[lcp], word)])
                s_blob.append(b"")
                top_end = lcp
                break
            parent_kids = s_kids[-1]
            if parent_kids is None:
                s_kids[-1] = [(src[start - 1], word)]
            else:
                parent_kids.append((src[start - 1], word))
            top_end = parent_end
        if len(key) == lcp:  # only the empty key, at the root
            s_blob[-1] = blob
        else:
            s_start.append(lcp + 1)
            s_end.append(len(key))
            s_src.append(key)
            s_kids.append(None)
            s_blob.append(blob)
            top_end = len(key)
        prev = key
    while s_start:  # close the remaining nodes, the root last
        start = s_start.pop()
        end = s_end.pop()
        src = s_src.pop()
        kids = s_kids.pop()
        nblob = s_blob.pop()
        if kids:
            chunk, flags = node_chunk(start, end, src, kids, nblob)
        else:
            chunk, flags = b"", 0
            if end > start:
                chunk, flags = src[start:end] + b"\0", pfx
            if nblob:
                chunk, flags = chunk + nblob, flags | vals_flag
        word = pos | flags
        append(chunk)
        pos += len(chunk)
        if s_start:
            parent_kids = s_kids[-1]
            if parent_kids is None:
                s_kids[-1] = [(src[start - 1], word)]
            else:
                parent_kids.append((src[start - 1], word))
    out[0] = _HEADER.pack(INDEX_MAGIC, INDEX_VERSION, word)
    return b"".join(out)


def _flags(node: _Node) -> int:
    return ((INDEX_NODE_PREFIX if node[0] else 0) | (INDEX_NODE_VALUES if node[1] else 0)
            | (INDEX_NODE_CHILDS if node[4] else 0))


def _encode_postorder(root: _Node) -> bytes:
    """kmod 30: children (ascending byte) before their parent; the root is written last."""
    out: list[bytes] = [b""]
    pos = _HEADER.size
    pack_into = struct.pack

    def write(node: _Node) -> int:
        nonlocal pos
        prefix, blob, first, last, children = node
        words = None
        if children:
            words = [0] * (last - first + 1)
            for c, child in children:
                words[c - first] = write(child)
        word = pos
        if prefix:
            out.append(prefix + b"\0")
            pos += len(prefix) + 1
            word |= INDEX_NODE_PREFIX
        if words is not None:
            out.append(bytes((first, last)) + pack_into(f">{len(words)}I", *words))
            pos += 2 + 4 * len(words)
            word |= INDEX_NODE_CHILDS
        if blob:
            out.append(blob)
            pos += len(blob)
            word |= INDEX_NODE_VALUES
        return word

    root_word = write(root)
    out[0] = _HEADER.pack(INDEX_MAGIC, INDEX_VERSION, root_word)
    return b"".join(out)


def _encode_preorder(root: _Node) -> bytes:
    """kmod 34: each node followed by its children (ascending byte); the root at offset 12."""
    sizes: dict[int, tuple[int, int]] = {}  # id(node) -> (own size, subtree size)

    def measure(node: _Node) -> int:
        prefix, blob, first, last, children = node
        size = (len(prefix) + 1 if prefix else 0) + len(blob)
        total = 0
        if children:
            size += 2 + 4 * (last - first + 1)
            for _c, child in children:
                total += measure(child)
        total += size
        sizes[id(node)] = (size, total)
        return total

    measure(root)
    out: list[bytes] = [_HEADER.pack(INDEX_MAGIC, INDEX_VERSION, _HEADER.size | _flags(root))]

    def write(node: _Node, offset: int) -> None:
        prefix, blob, first, last, children = node
        if prefix:
            out.append(prefix + b"\0")
        if children:
            words = [0] * (last - first + 1)
            at = offset + sizes[id(node)][0]
            for c, child in children:
                words[c - first] = at | _flags(child)
                at += sizes[id(child)][1]
            out.append(bytes((first, last)) + struct.pack(f">{len(words)}I", *words))
        if blob:
            out.append(blob)
        if children:
            at = offset + sizes[id(node)][0]
            for _c, child in children:
                write(child, at)
                at += sizes[id(child)][1]

    write(root, _HEADER.size)
    return b"".join(out)
