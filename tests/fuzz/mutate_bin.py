"""Mutators for kmod's .bin indexes, kernel images (the bzImage setup header, its
payload, the vmlinux inside) and BTF."""

from __future__ import annotations

import random
import struct

from mutate import ElfMap, compress_as, havoc, interesting, mutate_container, mutate_elf

# -- kmod's index (libkmod/libkmod-index.c) ---------------------------------------------------

_PREFIX, _VALUES, _CHILDS, _MASK = 0x80000000, 0x40000000, 0x20000000, 0x0FFFFFFF


class IndexMap:
    """Where the node words, prefixes, child ranges and values of an index are."""

    def __init__(self, data: bytes) -> None:
        self.words: list[int] = []  # positions of node words (the root's at 8)
        self.prefixes: list[tuple[int, int]] = []
        self.ranges: list[int] = []  # position of (first, last)
        self.counts: list[int] = []  # position of a value count
        self.values: list[tuple[int, int]] = []  # (priority position, string end)
        seen: set[int] = set()
        todo = [8] if len(data) >= 12 else []
        while todo and len(seen) < 20000:
            at = todo.pop()
            self.words.append(at)
            word = int.from_bytes(data[at:at + 4], "big")
            off = word & _MASK
            if off in seen or not 12 <= off < len(data):
                continue
            seen.add(off)
            pos = off
            if word & _PREFIX:
                end = data.find(b"\0", pos)
                if end < 0:
                    continue
                self.prefixes.append((pos, end))
                pos = end + 1
            if word & _CHILDS and pos + 2 <= len(data):
                first, last = data[pos], data[pos + 1]
                self.ranges.append(pos)
                pos += 2
                for k in range(max(0, last - first + 1)):
                    if pos + 4 * k + 4 <= len(data):
                        todo.append(pos + 4 * k)
                pos += 4 * max(0, last - first + 1)
            if word & _VALUES and pos + 4 <= len(data):
                self.counts.append(pos)
                n = int.from_bytes(data[pos:pos + 4], "big")
                pos += 4
                for _ in range(min(n, 64)):
                    end = data.find(b"\0", pos + 4)
                    if end < 0:
                        break
                    self.values.append((pos, end))
                    pos = end + 1


def mutate_index(rng: random.Random, data: bytes) -> bytes:
    im = IndexMap(data)
    b = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 3))):
        op = rng.randrange(9)
        if op == 0 or not im.words:
            return havoc(rng, data, 0, 12) if rng.random() < 0.5 else havoc(rng, data)
        if op <= 2:  # a node word: its flags, or pointing elsewhere (itself, an ancestor)
            at = rng.choice(im.words)
            word = int.from_bytes(b[at:at + 4], "big")
            r = rng.random()
            if r < 0.3:
                word ^= rng.choice((_PREFIX, _VALUES, _CHILDS, 0x10000000))
            elif r < 0.6:
                target = rng.choice(im.words)
                word = int.from_bytes(b[target:target + 4], "big")
            else:
                word = (word & ~_MASK) | interesting(rng, 4, word & _MASK, len(data)) & _MASK
            b[at:at + 4] = (word & 0xFFFFFFFF).to_bytes(4, "big")
        elif op == 3 and im.prefixes:
            s, e = rng.choice(im.prefixes)
            b[rng.randint(s, e)] = rng.choice((0, 0xFF, ord("*"), ord("["), ord("?"), 0x80,
                                               ord("x")))
        elif op == 4 and im.ranges:
            at = rng.choice(im.ranges)
            b[at + rng.randrange(2)] = rng.choice((0, 1, 0x7F, 0x80, 0xFF, b[at] - 1 & 0xFF))
        elif op == 5 and im.counts:
            at = rng.choice(im.counts)
            b[at:at + 4] = interesting(rng, 4, int.from_bytes(b[at:at + 4], "big"),
                                       len(data)).to_bytes(4, "big")
        elif op == 6 and im.values:
            at, end = rng.choice(im.values)
            if rng.random() < 0.5:
                b[at:at + 4] = interesting(rng, 4).to_bytes(4, "big")
            else:
                b[end] = rng.choice((ord("x"), 0xFF))
        elif op == 7:
            return bytes(b[:rng.randrange(len(b) + 1)])
        else:
            return havoc(rng, bytes(b))
    return bytes(b)


def index_keys(rng: random.Random, data: bytes, known: list[str]) -> list[str]:
    """Keys to look up: known ones, their prefixes and extensions, wildcard-ish ones."""
    keys = [rng.choice(known) for _ in range(3)] if known else []
    im = IndexMap(data)
    for s, e in im.prefixes[:50]:
        if rng.random() < 0.1:
            keys.append(data[s:e].decode("utf-8", "surrogateescape"))
    if keys and rng.random() < 0.5:
        k = rng.choice(keys)
        keys += [k[:rng.randrange(len(k) + 1)], k + rng.choice(("x", "*", "\xff", "[", ""))]
    keys += [rng.choice(("", "*", "a", "pci:v*", "\udcff", "[", "x" * 300))]
    return keys


# -- kernel images -------------------------------------------------------------------------

_BZ_FIELDS = ((0x1F1, 1), (0x202, 4), (0x206, 2), (0x20E, 2), (0x211, 1), (0x214, 4),
              (0x230, 4), (0x234, 1), (0x248, 4), (0x24C, 4), (0x260, 4))


def bzimage_parts(data: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(setup, payload, tail) of a bzImage, as its header says, or None."""
    if len(data) < 0x250 or data[0x202:0x206] != b"HdrS":
        return None
    setup = (data[0x1F1] or 4) * 512 + 512
    off, length = struct.unpack_from("<II", data, 0x248)
    start = setup + off
    if start + length > len(data):
        return None
    return data[:start], data[start:start + length], data[start + length:]


def mutate_kimage(rng: random.Random, data: bytes, kind: str, vmlinux: bytes) -> bytes:
    """The setup header's fields, the compressed payload, or the vmlinux inside it."""
    parts = bzimage_parts(data)
    if parts is None:
        return havoc(rng, data)
    setup, payload, tail = parts
    r = rng.random()
    if r < 0.3:
        b = bytearray(data)
        for _ in range(rng.randint(1, 2)):
            at, width = rng.choice(_BZ_FIELDS)
            old = int.from_bytes(b[at:at + width], "little")
            b[at:at + width] = interesting(rng, width, old, len(data)).to_bytes(width, "little")
        if rng.random() < 0.2:  # the kernel_version string
            vo = struct.unpack_from("<H", b, 0x20E)[0] + 0x200
            if vo < len(b):
                b[vo + rng.randrange(16)] = rng.choice((0, 0xFF, ord(" ")))
        return bytes(b)
    if r < 0.5:
        return setup + mutate_container(rng, payload, kind, vmlinux) + tail
    inner = mutate_vmlinux(rng, vmlinux)
    new = compress_as(kind, inner) if kind in ("gzip", "xz", "zstd") else payload
    b = bytearray(setup + new + struct.pack("<I", len(inner)))
    struct.pack_into("<I", b, 0x24C, len(new) + 4)
    return bytes(b)


def mutate_vmlinux(rng: random.Random, vmlinux: bytes) -> bytes:
    """vmlinux: its ELF structure, the export tables, the certificates, the banner."""
    m = ElfMap(vmlinux)
    if rng.random() < 0.4 and m.ok:
        secs = [s for s in m.shdrs if m.in_file(s) and s.name in (
            "__ksymtab", "__ksymtab_gpl", "__kcrctab", "__ksymtab_strings", ".rodata",
            ".init.data", "__param", "__modver", ".BTF")]
        if secs:
            s = rng.choice(secs)
            if s.name == ".init.data" and rng.random() < 0.5:
                from der import mutate_der

                at = vmlinux.find(b"\x30\x82", s.offset, s.offset + s.size)
                if at >= 0:
                    n = int.from_bytes(vmlinux[at + 2:at + 4], "big") + 4
                    new = mutate_der(rng, vmlinux[at:at + n])[:n].ljust(n, b"\0")
                    return vmlinux[:at] + new + vmlinux[at + n:]
            return havoc(rng, vmlinux, s.offset, s.offset + s.size, rng.randint(1, 4))
    return mutate_elf(rng, vmlinux)


# -- BTF ----------------------------------------------------------------------------------

def mutate_btf(rng: random.Random, data: bytes) -> bytes:
    """The header's offsets and lengths, a type record's info word (kind, vlen) or its
    size/type word, a member's type or offset, a name offset, the strings."""
    if len(data) < 24:
        return havoc(rng, data)
    b = bytearray(data)
    hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from("<IIIII", b, 4)
    r = rng.random()
    if r < 0.2:
        at = rng.choice((2, 3, 4, 8, 12, 16, 20))
        width = 1 if at < 4 else 4
        old = int.from_bytes(b[at:at + width], "little")
        b[at:at + width] = interesting(rng, width, old, len(data)).to_bytes(width, "little")
        return bytes(b)
    start = hdr_len + type_off
    end = min(len(b), start + type_len)
    if r < 0.85 and end - start >= 12:
        words = (end - start) // 4
        at = start + 4 * rng.randrange(words)
        old = int.from_bytes(b[at:at + 4], "little")
        v = rng.random()
        if v < 0.3:  # as an info word: another kind or vlen
            new = (old & ~(0x1F << 24)) | rng.randrange(32) << 24 if rng.random() < 0.5 \
                else (old & ~0xFFFF) | rng.choice((0, 1, 2, 0xFFFF, (old & 0xFFFF) + 1))
        elif v < 0.6:  # as a type id: out of range, itself, void
            new = rng.choice((0, 1, 0x7FFFFFFF, 0xFFFFFFFF, rng.randrange(1 << 17)))
        else:
            new = interesting(rng, 4, old, len(data))
        b[at:at + 4] = (new & 0xFFFFFFFF).to_bytes(4, "little")
        return bytes(b)
    sstart = hdr_len + str_off
    return havoc(rng, bytes(b), sstart, min(len(b), sstart + str_len), rng.randint(1, 3))
