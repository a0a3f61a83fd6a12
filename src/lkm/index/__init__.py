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

The package: :mod:`.format` (constants), :mod:`.reader` (:class:`Index`), :mod:`.writer`
(:class:`IndexBuilder`), :mod:`.pattern` (glibc's fnmatch, for wildcard keys).
"""

from lkm.index.format import Layout
from lkm.index.pattern import fnmatch, fnmatch_regex
from lkm.index.reader import Index
from lkm.index.writer import IndexBuilder, encode_index

__all__ = ["Index", "IndexBuilder", "Layout", "encode_index", "fnmatch", "fnmatch_regex"]
