"""Writing a kmod index as depmod does (tools/depmod.c: index_insert, index_write): the
Patricia trie of the keys, kmod 30's post-order layout or kmod 34's pre-order one."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable
from typing import Any

from lkm.errors import IndexError_
from lkm.index.format import (
    HEADER,
    INDEX_MAGIC,
    INDEX_NODE_CHILDS,
    INDEX_NODE_PREFIX,
    INDEX_NODE_VALUES,
    INDEX_VERSION,
    U32,
    Layout,
    dec,
    enc,
)


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
        bkey = key if isinstance(key, bytes) else enc(key)
        bval = value if isinstance(value, bytes) else enc(value)
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
            _check_string(enc(bad))
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
        raise IndexError_(f"Module index: bad character '{dec(bytes((bad,)))}'=0x{bad:x} - "
                          f"only 7-bit ASCII is supported:\n{dec(s)}")


# a node: [prefix, values blob (count + entries, b"" if none), first, last, children]
_Node = list[Any]


def _values_blob(vals: list[tuple[int, bytes]]) -> bytes:
    if len(vals) == 1:
        prio, val = vals[0]
        return b"\0\0\0\1" + U32.pack(prio) + val + b"\0"
    # libkmod's add_value: sorted by priority, later insertions before equal ones
    ordered = sorted(reversed(vals), key=lambda pv: pv[0])
    parts = [U32.pack(len(ordered))]
    for prio, val in ordered:
        parts.append(U32.pack(prio))
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


def _encode_postorder_sorted(values: dict[bytes, list[tuple[int, bytes]]]) -> bytes:
    """kmod 30's post-order layout in one pass over the sorted keys.

    The open nodes form a stack (parallel lists): a node's prefix is ``src[start:end]``
    and it hangs under ``src[start - 1]``.  A node is written once the keys have moved
    past it, hence after all its children, which come in ascending byte order.  When a
    key leaves a node inside its prefix, the node is split there first.
    """
    out: list[bytes] = [b""]
    append = out.append
    pos = HEADER.size
    packers: dict[int, Callable[..., bytes]] = {}
    u32 = U32.pack
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
    out[0] = HEADER.pack(INDEX_MAGIC, INDEX_VERSION, word)
    return b"".join(out)


def _flags(node: _Node) -> int:
    return ((INDEX_NODE_PREFIX if node[0] else 0) | (INDEX_NODE_VALUES if node[1] else 0)
            | (INDEX_NODE_CHILDS if node[4] else 0))


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
    out: list[bytes] = [HEADER.pack(INDEX_MAGIC, INDEX_VERSION, HEADER.size | _flags(root))]

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

    write(root, HEADER.size)
    return b"".join(out)
