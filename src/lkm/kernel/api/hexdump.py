"""lib/hexdump.c: hex_dump_to_buffer() and print_hex_dump()."""

from __future__ import annotations

from lkm.kernel.api.core import Kernel, kfunc

DUMP_PREFIX_NONE, DUMP_PREFIX_ADDRESS, DUMP_PREFIX_OFFSET = 0, 1, 2


def hex_line(data: bytes, rowsize: int, groupsize: int, ascii: bool) -> str:
    """One line as hex_dump_to_buffer() writes it (an unbounded buffer)."""
    if rowsize not in (16, 32):
        rowsize = 16
    data = data[:rowsize]
    n = len(data)
    if groupsize not in (1, 2, 4, 8) or n % groupsize:
        groupsize = 1
    if not n:
        return ""
    if groupsize > 1:
        width = 2 * groupsize
        words = [int.from_bytes(data[i:i + groupsize], "little") for i in range(0, n, groupsize)]
        out = " ".join(f"{w:0{width}x}" for w in words)
    else:
        out = " ".join(f"{b:02x}" for b in data)
    if not ascii:
        return out
    column = rowsize * 2 + rowsize // groupsize + 1
    out = out.ljust(column)
    return out + "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in data)


@kfunc()
def hex_dump_to_buffer(k: Kernel, buf: int, len_: int, rowsize: int, groupsize: int,
                       linebuf: int, linebuflen: int, ascii: int) -> int:
    text = hex_line(k.mem.read(buf, min(len_, 32)), rowsize & 0xFFFFFFFF,
                    groupsize & 0xFFFFFFFF, bool(ascii & 0xFF)).encode()
    if linebuflen:
        k.mem.write(linebuf, text[:linebuflen - 1] + b"\0")
    return len(text)


@kfunc()
def print_hex_dump(k: Kernel, level: int, prefix_str: int, prefix_type: int, rowsize: int,
                   groupsize: int, buf: int, len_: int, ascii: int) -> None:
    """One printk per row, at ``level`` (a KERN_ string), with the prefix and, by
    ``prefix_type``, the row's offset or (hashed) address."""
    from lkm.kernel.api.printk import emit, format_text

    rowsize &= 0xFFFFFFFF
    if rowsize not in (16, 32):
        rowsize = 16
    lvl = k.cstr(level, 8)
    prefix = k.cstr(prefix_str) if prefix_str else b""
    data = k.mem.read(buf, len_) if len_ else b""
    for i in range(0, len_, rowsize):
        line = hex_line(data[i:i + rowsize], rowsize, groupsize & 0xFFFFFFFF,
                        bool(ascii & 0xFF)).encode()
        pt = prefix_type & 0xFFFFFFFF
        if pt == DUMP_PREFIX_OFFSET:
            head = f"{i:08x}: ".encode()
        elif pt == DUMP_PREFIX_ADDRESS:
            fmt = k.rt.kdata_scratch(b"%p\0")
            head = format_text(k, fmt, iter([buf + i])) + b": "
        else:
            head = b""
        emit(k, lvl + prefix + head + line + b"\n")
