"""A DER-aware mutator for PKCS#7 messages and X.509 certificates: the TLV tree is read
(tolerantly), one node changed, and the tree encoded again with consistent lengths (or,
sometimes, with a lie about a length left in place)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Node:
    tag: int
    content: bytes = b""
    children: list[Node] | None = None  # constructed nodes whose content parsed
    extra_len: bytes | None = None  # a length encoding to emit instead of the true one

    def encode(self) -> bytes:
        body = b"".join(c.encode() for c in self.children) if self.children is not None \
            else self.content
        return bytes([self.tag & 0xFF]) + (self.extra_len if self.extra_len is not None
                                           else length(len(body))) + body


@dataclass
class _Cursor:
    nodes: list[Node] = field(default_factory=list)


def length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def parse(buf: bytes, depth: int = 0) -> list[Node] | None:
    """The TLVs of ``buf`` (None when it is not a sequence of whole DER TLVs)."""
    out: list[Node] = []
    pos = 0
    while pos < len(buf):
        if pos + 2 > len(buf):
            return None
        tag = buf[pos]
        if tag & 0x1F == 0x1F:
            return None
        n = buf[pos + 1]
        pos += 2
        if n & 0x80:
            k = n & 0x7F
            if k == 0 or k > 4 or pos + k > len(buf):
                return None
            n = int.from_bytes(buf[pos:pos + k], "big")
            pos += k
        if pos + n > len(buf):
            return None
        content = buf[pos:pos + n]
        pos += n
        node = Node(tag, content)
        if tag & 0x20 and depth < 24:
            node.children = parse(content, depth + 1)
        out.append(node)
    return out


def _all(nodes: list[Node], into: list[tuple[list[Node], int]]) -> None:
    for i, nd in enumerate(nodes):
        into.append((nodes, i))
        if nd.children is not None:
            _all(nd.children, into)


_TAGS = (0x02, 0x04, 0x05, 0x06, 0x0C, 0x13, 0x17, 0x30, 0x31, 0xA0, 0xA1, 0x80, 0x00, 0xFF)
_LENGTHS = (b"\x80", b"\x81\x00", b"\x84\xff\xff\xff\xff", b"\x82\xff\xff", b"\x00", b"\x7f",
            b"\x85\x01\x00\x00\x00\x00", b"\x81\x7f")


def mutate_der(rng: random.Random, der: bytes) -> bytes:
    """One DER-aware change to ``der`` (byte havoc if it does not parse)."""
    tree = parse(der)
    if not tree:
        from mutate import havoc

        return havoc(rng, der)
    where: list[tuple[list[Node], int]] = []
    _all(tree, where)
    siblings, i = rng.choice(where)
    nd = siblings[i]
    op = rng.randrange(10)
    if op == 0:
        nd.tag = rng.choice(_TAGS)
    elif op == 1:
        nd.extra_len = rng.choice(_LENGTHS)
    elif op == 2:
        del siblings[i]
    elif op == 3:
        siblings.insert(i, Node(nd.tag, nd.encode()[2:], None))
    elif op == 4:  # contents replaced (kept constructed if possible)
        nd.children = None
        nd.content = rng.choice((b"", b"\x00", b"\xff" * 8, rng.randbytes(rng.randint(1, 300)),
                                 b"\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02",
                                 b"\x60\x86\x48\x01\x65\x03\x04\x02\x01"))
    elif op == 5 and nd.children is None and nd.content:
        b = bytearray(nd.content)
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
        nd.content = bytes(b)
    elif op == 6 and nd.children is None:
        nd.content = nd.content[:rng.randrange(len(nd.content) + 1)]
    elif op == 7 and nd.children:
        rng.shuffle(nd.children)
    elif op == 8 and nd.children is not None:
        nd.children += [Node(rng.choice(_TAGS), rng.randbytes(rng.randint(0, 8)))]
    else:
        siblings[i] = Node(nd.tag, nd.content * 2 if nd.children is None else b"",
                           None if nd.children is None else nd.children * 2)
    out = b"".join(n.encode() for n in tree)
    if rng.random() < 0.05:
        out = out[:rng.randrange(len(out) + 1)]
    return out
