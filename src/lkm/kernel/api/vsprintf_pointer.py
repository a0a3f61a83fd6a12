"""lib/vsprintf.c's building blocks and pointer()'s printers of kernel objects.

number(), widen_string() and the other printf_spec helpers, and the %p extensions that only read
memory: %ph, %pM/%pm, %pI/%pi (4, 6, 6c, S), %pE, %pU, %pNF, %p4cc, %pa, %pt, %pb/%pbl, %pd/%pD
and %pR/%pr.  vsprintf.py drives them and owns everything that depends on the running kernel's
policy (hashing, %pK, kallsyms, %pV).  Each printer returns the bytes the kernel would write into
an unbounded buffer.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

PAGE_SIZE = 4096
MAX_ERRNO = 4095
U64 = (1 << 64) - 1

# printf_spec.flags
SIGN, LEFT, PLUS, SPACE, ZEROPAD, SMALL, SPECIAL = 1, 2, 4, 8, 16, 32, 64

# lib/ctype.c: the kernel's ctype is Latin-1 (0xc0-0xff are letters, 0xa0-0xff printable)
DIGIT = frozenset(range(0x30, 0x3A))
ALPHA = frozenset([*range(0x41, 0x5B), *range(0x61, 0x7B), *range(0xC0, 0x100)]) - {0xD7, 0xF7}
ALNUM = DIGIT | ALPHA
PRINT = frozenset([*range(0x20, 0x7F), *range(0xA0, 0x100)])


@dataclass(slots=True)
class Spec:
    """struct printf_spec: flags, field width, precision and base of one conversion."""

    flags: int = 0
    width: int = -1
    precision: int = -1
    base: int = 10


def sbits(v: int, bits: int) -> int:
    """v stored into a signed bit-field (or int) of that many bits."""
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def at(s: bytes, i: int) -> int:
    """s[i], or the terminating NUL past the end."""
    return s[i] if i < len(s) else 0


def number(num: int, spec: Spec) -> bytes:
    """number(): an integer with its sign, "0x"/"0" prefix, precision and padding.  Unlike C99,
    zero with precision 0 still prints "0", "#x" of 0 prints "0x0", the 0 flag pads even with a
    precision, and "#o" adds its "0" before the precision's zeros."""
    num &= U64
    flags, width, precision, base = spec.flags, spec.width, spec.precision, spec.base
    if flags & LEFT:
        flags &= ~ZEROPAD
    need_pfx = bool(flags & SPECIAL) and base != 10
    sign = b""
    if flags & SIGN:
        if num >> 63:
            sign, num = b"-", -num & U64
        elif flags & PLUS:
            sign = b"+"
        elif flags & SPACE:
            sign = b" "
        width -= len(sign)
    if need_pfx:
        width -= 2 if base == 16 else (1 if num else 0)
    digits = (b"%o" if base == 8 else b"%X" if base == 16 else b"%d") % num
    if flags & SMALL:
        digits = digits.lower()
    precision = max(precision, len(digits))
    width -= precision
    out = bytearray()
    if not flags & (ZEROPAD | LEFT):
        out += b" " * max(width, 0)
        width = 0
    out += sign
    if need_pfx:
        out += b"0" if base == 16 or num else b""
        out += (b"x" if flags & SMALL else b"X") if base == 16 else b""
    if not flags & LEFT:
        out += (b"0" if flags & ZEROPAD else b" ") * max(width, 0)
        width = 0
    out += b"0" * (precision - len(digits)) + digits + b" " * max(width, 0)
    return bytes(out)


def widen_string(s: bytes, spec: Spec) -> bytes:
    """widen_string(): pad with spaces to the field width (the 0 flag does not apply)."""
    if len(s) >= spec.width:
        return s
    pad = b" " * (spec.width - len(s))
    return s + pad if spec.flags & LEFT else pad + s


def string_nocheck(s: bytes, spec: Spec) -> bytes:
    """string_nocheck(): a string cut at the precision and widened."""
    return widen_string(s if spec.precision < 0 else s[:spec.precision], spec)


def error_string(s: bytes, spec: Spec) -> bytes:
    """error_string(): as string_nocheck, at most 16 characters unless a precision is given."""
    return string_nocheck(s, replace(spec, precision=16) if spec.precision == -1 else spec)


def special_hex_number(num: int, size: int) -> bytes:
    """special_hex_number(): "0x" and 2*size zero-padded lowercase hex digits."""
    return number(num, Spec(SPECIAL | SMALL | ZEROPAD, 2 + 2 * size, -1, 16))


def pointer_string(ptr: int, spec: Spec) -> bytes:
    """pointer_string() (%px): 16 zero-padded hex digits unless the format gives a width."""
    s = replace(spec, base=16, flags=spec.flags | SMALL)
    if s.width == -1:
        s.width, s.flags = 16, s.flags | ZEROPAD
    return number(ptr, s)


def is_err_value(v: int) -> bool:
    """IS_ERR_VALUE(): the top MAX_ERRNO addresses are error codes."""
    return (v & U64) >= (1 << 64) - MAX_ERRNO


def check_pointer(ptr: int, spec: Spec) -> bytes | None:
    """check_pointer(): "(null)" for NULL, "(efault)" for the first page and ERR_PTRs (the
    kernel dereferences any other pointer, and oopses if it is bad)."""
    if ptr == 0:
        return error_string(b"(null)", spec)
    if ptr < PAGE_SIZE or is_err_value(ptr):
        return error_string(b"(efault)", spec)
    return None


class PrinterContext(Protocol):
    """What the printers read through (vsprintf.py's formatter)."""

    def read(self, addr: int, size: int, function: str) -> bytes: ...

    def cstring(self, addr: int, limit: int, function: str) -> bytes: ...

    def member_offset(self, struct_name: str, member: str) -> int: ...


Printer = Callable[[PrinterContext, bytes, int, Spec], bytes]


def _u64(ctx: PrinterContext, addr: int, function: str) -> int:
    return int.from_bytes(ctx.read(addr, 8, function), "little")


def hex_string(ctx: PrinterContext, ext: bytes, ptr: int, spec: Spec) -> bytes:
    """%ph[CDN]: up to 64 bytes in hex, the field width giving the count (default 1)."""
    if spec.width == 0:
        return b""
    if (err := check_pointer(ptr, spec)) is not None:
        return err
    sep = {ord("C"): b":", ord("D"): b"-", ord("N"): b""}.get(at(ext, 1), b" ")
    n = min(spec.width, 64) if spec.width > 0 else 1
    return sep.join(b"%02x" % c for c in ctx.read(ptr, n, "hex_string"))


def mac_address_string(ctx: PrinterContext, ext: bytes, ptr: int, spec: Spec) -> bytes:
    """%pM %pMR %pMF %pm %pmR: a 6-byte MAC address."""
    if (err := check_pointer(ptr, spec)) is not None:
        return err
    addr = ctx.read(ptr, 6, "mac_address_string")
    if at(ext, 1) == ord("R"):
        addr = addr[::-1]
    sep = b"" if ext[0] == ord("m") else b"-" if at(ext, 1) == ord("F") else b":"
    return string_nocheck(sep.join(b"%02x" % c for c in addr), spec)


def ip4_string(addr: bytes, kind: int, order: int) -> bytes:
    """ip4_string(): 'i' pads each quad to 3 digits; h (host: little-endian) and l reverse."""
    quads = addr[::-1] if order in b"hl" else addr
    return b".".join((b"%03d" if kind == ord("i") else b"%d") % q for q in quads)


def ip6_string(addr: bytes, kind: int, compressed: bool) -> bytes:
    """ip6_string() ('I' with colons, 'i' without) or ip6_compressed_string() (RFC 5952:
    the first longest run of two or more zero words as "::", v4-mapped/ISATAP tails dotted)."""
    if not compressed or kind != ord("I"):
        sep = b":" if kind == ord("I") else b""
        return sep.join(addr[k:k + 2].hex().encode() for k in range(0, 16, 2))
    words = [int.from_bytes(addr[k:k + 2], "big") for k in range(0, 16, 2)]
    v4mapped = addr[:10] == bytes(10) and addr[10:12] == b"\xff\xff"
    isatap = (int.from_bytes(addr[8:12], "big") | 0x02000000) == 0x02005EFE
    use4 = v4mapped or isatap
    rng = 6 if use4 else 8
    longest, colonpos = 1, -1
    for k in range(rng):
        run = 0
        while k + run < rng and words[k + run] == 0:
            run += 1
        if run > longest:
            longest, colonpos = run, k
    out = bytearray()
    need, k = False, 0
    while k < rng:
        if k == colonpos:
            out += b"::" if need or k == 0 else b":"
            need, k = False, k + longest
            continue
        out += (b":" if need else b"") + b"%x" % words[k]
        need, k = True, k + 1
    if use4:
        out += (b":" if need else b"") + ip4_string(addr[12:], ord("I"), 0)
    return bytes(out)


def ip_addr_string(ctx: PrinterContext, ext: bytes, ptr: int, spec: Spec) -> bytes:
    """%pI4 %pi4 [hnbl], %pI6 %pi6 %pI6c, %pIS/%piS [pfsc] of a struct sockaddr (port, flow
    info and scope printed with the conversion's own spec, as the kernel does)."""
    if (err := check_pointer(ptr, spec)) is not None:
        return err
    kind = at(ext, 1)
    if kind == ord("4"):
        return string_nocheck(ip4_string(ctx.read(ptr, 4, "ip4_string"), ext[0], at(ext, 2)),
                              spec)
    if kind == ord("6"):
        addr = ctx.read(ptr, 16, "ip6_string")
        return string_nocheck(ip6_string(addr, ext[0], at(ext, 2) == ord("c")), spec)
    if kind != ord("S"):
        return error_string(b"(%pi?)" if ext[0] == ord("i") else b"(%pI?)", spec)
    family = int.from_bytes(ctx.read(ptr, 2, "ip_addr_string"), "little")
    opts = ext[2:]
    opts = opts[:next((k for k, c in enumerate(opts) if c not in ALPHA), len(opts))]
    if family == 2:  # AF_INET: sin_port, sin_addr
        sa = ctx.read(ptr, 8, "ip4_addr_string_sa")
        text = ip4_string(sa[4:8], ext[0], next((c for c in opts[::-1] if c in b"hlnb"), 0))
        if b"p" in opts:
            text += b":" + number(int.from_bytes(sa[2:4], "big"), spec)
        return string_nocheck(text, spec)
    if family != 10:
        return error_string(b"(einval)", spec)
    sa = ctx.read(ptr, 28, "ip6_addr_string_sa")  # AF_INET6: port, flowinfo, addr, scope_id
    text = ip6_string(sa[8:24], ext[0], b"c" in opts)
    if any(c in opts for c in b"pfs"):
        text = b"[" + text + b"]"
    if b"p" in opts:
        text += b":" + number(int.from_bytes(sa[2:4], "big"), spec)
    if b"f" in opts:
        text += b"/" + number(int.from_bytes(sa[4:8], "big") & 0x0FFFFFFF, spec)
    if b"s" in opts:
        text += b"%" + number(int.from_bytes(sa[24:28], "little"), spec)
    return string_nocheck(text, spec)


# lib/string_helpers.c string_escape_mem(): the %pE letters and their ESCAPE_* flags
_ESCAPE_FLAGS = {ord("s"): 1, ord("c"): 2, ord("n"): 4, ord("o"): 8, ord("a"): 15, ord("p"): 16,
                 ord("h"): 32}
_ESC_SPACE = {0x0A: b"n", 0x0D: b"r", 0x09: b"t", 0x0B: b"v", 0x0C: b"f"}
_ESC_SPECIAL = {0x5C: b"\\", 0x07: b"a", 0x1B: b"e", 0x22: b'"'}


def escaped_string(ctx: PrinterContext, ext: bytes, ptr: int, spec: Spec) -> bytes:
    """%pE[achnops]: string_escape_mem() of field-width bytes (default ESCAPE_ANY_NP)."""
    if spec.width == 0:
        return b""
    if (err := check_pointer(ptr, spec)) is not None:
        return err
    flags, k = 0, 1
    while (f := _ESCAPE_FLAGS.get(at(ext, k))) is not None:
        flags, k = flags | f, k + 1
    flags = flags or 31
    out = bytearray()
    for c in ctx.read(ptr, 1 if spec.width < 0 else spec.width, "string_escape_mem"):
        if flags & 16 and c in PRINT:
            out.append(c)
        elif flags & 1 and c in _ESC_SPACE:
            out += b"\\" + _ESC_SPACE[c]
        elif flags & 2 and c in _ESC_SPECIAL:
            out += b"\\" + _ESC_SPECIAL[c]
        elif flags & 4 and c == 0:
            out += b"\\0"
        elif flags & 8:
            out += b"\\%03o" % c
        elif flags & 32:
            out += b"\\x%02x" % c
        else:
            out.append(c)
    return bytes(out)


_GUID_INDEX = (3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15)


def uuid_string(ctx: PrinterContext, ext: bytes, ptr: int, spec: Spec) -> bytes:
    """%pU[bBlL]: UUID byte order (b, the default) or GUID order (l); B and L upper case."""
    if (err := check_pointer(ptr, spec)) is not None:
        return err
    raw = ctx.read(ptr, 16, "uuid_string")
    kind = at(ext, 1)
    h = bytes(raw[j] for j in (_GUID_INDEX if kind in b"lL" else range(16))).hex().encode()
    if kind in b"BL":
        h = h.upper()
    return string_nocheck(b"-".join((h[:8], h[8:12], h[12:16], h[16:20], h[20:])), spec)


def netdev_bits(ctx: PrinterContext, ext: bytes, ptr: int, spec: Spec) -> bytes:
    """%pNF: a netdev_features_t."""
    if (err := check_pointer(ptr, spec)) is not None:
        return err
    if at(ext, 1) != ord("F"):
        return error_string(b"(%pN?)", spec)
    return special_hex_number(_u64(ctx, ptr, "netdev_bits"), 8)


def fourcc_string(ctx: PrinterContext, ext: bytes, ptr: int, spec: Spec) -> bytes:
    """%p4cc: a V4L2/DRM FourCC code, its endianness bit and raw value."""
    if at(ext, 1) != ord("c") or at(ext, 2) != ord("c"):
        return error_string(b"(%p4?)", spec)
    if (err := check_pointer(ptr, spec)) is not None:
        return err
    orig = int.from_bytes(ctx.read(ptr, 4, "fourcc_string"), "little")
    chars = bytes(c if c < 0x80 and c in PRINT else 0x2E
                  for c in (orig & 0x7FFFFFFF).to_bytes(4, "little"))
    endian = b"big-endian" if orig >> 31 else b"little-endian"
    return string_nocheck(b"%s %s (%s)" % (chars, endian, special_hex_number(orig, 4)), spec)


def address_val(ctx: PrinterContext, ext: bytes, ptr: int, spec: Spec) -> bytes:
    """%pa[pd]: a phys_addr_t or dma_addr_t by reference (64-bit on x86-64)."""
    if (err := check_pointer(ptr, spec)) is not None:
        return err
    return special_hex_number(_u64(ctx, ptr, "address_val"), 8)


def _civil_from_days(days: int) -> tuple[int, int, int]:
    """(year, month 1-12, day) of a day count from 1970-01-01 (time64_to_tm())."""
    z = days + 719468
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    month = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (month <= 2), month, doy - (153 * mp + 2) // 5 + 1


_DEC = Spec(0, 0, -1, 10)
_DEC02 = Spec(ZEROPAD, 2, -1, 10)
_DEC04 = Spec(ZEROPAD, 4, -1, 10)


def time_and_date(ctx: PrinterContext, ext: bytes, ptr: int, spec: Spec) -> bytes:
    """%ptR (struct rtc_time) and %ptT (time64_t, UTC): d date or t time only, r raw
    (years from 1900, months from 0), s a space instead of ISO 8601's "T"."""
    if (err := check_pointer(ptr, spec)) is not None:
        return err
    kind = at(ext, 1)
    if kind == ord("R"):
        sec, mn, hour, mday, mon, year = struct.unpack("<6i", ctx.read(ptr, 24, "rtc_str"))
    elif kind == ord("T"):
        days, rem = divmod(struct.unpack("<q", ctx.read(ptr, 8, "time_and_date"))[0], 86400)
        y, m, mday = _civil_from_days(days)
        year, mon, hour, mn, sec = y - 1900, m - 1, rem // 3600, rem // 60 % 60, rem % 60
    else:
        return error_string(b"(%pt?)", spec)
    have_d = have_t = True
    k = 2
    if at(ext, k) == ord("d"):
        have_t, k = False, k + 1
    elif at(ext, k) == ord("t"):
        have_d, k = False, k + 1
    raw = space = False
    while at(ext, k) in b"rs":
        raw, space = raw or ext[k] == ord("r"), space or ext[k] == ord("s")
        k += 1
    parts = []
    if have_d:
        parts.append(number(year + (0 if raw else 1900), _DEC04) + b"-"
                     + number(mon + (0 if raw else 1), _DEC02) + b"-" + number(mday, _DEC02))
    if have_t:
        parts.append(b":".join(number(v, _DEC02) for v in (hour, mn, sec)))
    return (b" " if space else b"T").join(parts)


def bitmap_string(ctx: PrinterContext, ext: bytes, ptr: int, spec: Spec) -> bytes:
    """%*pb (comma-separated 32-bit hex chunks, the top one only as wide as its bits) and
    %*pbl (a range list); the field width is the number of bits."""
    if (err := check_pointer(ptr, spec)) is not None:
        return err
    nbits = max(spec.width, 0)
    bits = int.from_bytes(ctx.read(ptr, (nbits + 63) // 64 * 8, "bitmap_string"), "little")
    bits &= (1 << nbits) - 1
    parts: list[bytes] = []
    if at(ext, 1) == ord("l"):
        lo = 0
        while bits >> lo:
            lo += ((bits >> lo) & -(bits >> lo)).bit_length() - 1
            hi = lo
            while (bits >> (hi + 1)) & 1:
                hi += 1
            parts.append(b"%d" % lo if lo == hi else b"%d-%d" % (lo, hi))
            lo = hi + 1
        return b",".join(parts)
    for i in range((nbits + 31) // 32 * 32 - 32, -1, -32):
        size = (nbits % 32 or 32) if not parts else 32
        val = (bits >> i) & ((1 << size) - 1)
        parts.append(number(val, Spec(SMALL | ZEROPAD, (size + 3) // 4, 0, 16)))
    return b",".join(parts)


def dentry_name(ctx: PrinterContext, ext: bytes, ptr: int, spec: Spec) -> bytes:
    """%pd[234]: the last 1-4 components of a dentry's path ("/" before the root's child)."""
    depth = ext[1] - 0x30 if at(ext, 1) in b"234" else 1
    parent_off = ctx.member_offset("dentry", "d_parent")
    name_off = ctx.member_offset("dentry", "d_name") + ctx.member_offset("qstr", "name")
    names: list[int | None] = []
    d = ptr
    for i in range(depth):
        if (err := check_pointer(d, spec)) is not None:
            return err
        p = _u64(ctx, d + parent_off, "dentry_name")
        names.append(_u64(ctx, d + name_off, "dentry_name"))
        if p == d:
            if i:
                names[-1] = None
            break
        d = p
    out = bytearray()
    limit = spec.precision
    for k, name in enumerate(reversed(names)):
        out += b"/" if k else b""
        if name is not None:
            out += ctx.cstring(name, -1 if limit < 0 else max(limit - len(out), 0),
                               "dentry_name")
    return widen_string(bytes(out if limit < 0 else out[:limit]), spec)


def file_dentry_name(ctx: PrinterContext, ext: bytes, ptr: int, spec: Spec) -> bytes:
    """%pD[234]: as %pd for a struct file's f_path.dentry."""
    if (err := check_pointer(ptr, spec)) is not None:
        return err
    off = ctx.member_offset("file", "f_path") + ctx.member_offset("path", "dentry")
    return dentry_name(ctx, ext, _u64(ctx, ptr + off, "file_dentry_name"), spec)


_MEM_SPEC = Spec(SPECIAL | SMALL | ZEROPAD, 10, -1, 16)
_RESOURCE_KINDS = ((0x100, b"io  ", Spec(SPECIAL | SMALL | ZEROPAD, 6, -1, 16)),
                   (0x200, b"mem ", _MEM_SPEC), (0x400, b"irq ", _DEC), (0x800, b"dma ", _DEC),
                   (0x1000, b"bus ", Spec(SMALL | ZEROPAD, 2, -1, 16)))
_RESOURCE_DECODED = ((0x100000, b" 64bit"), (0x2000, b" pref"), (0x200000, b" window"),
                     (0x10000000, b" disabled"))


def resource_string(ctx: PrinterContext, ext: bytes, ptr: int, spec: Spec) -> bytes:
    """%pR (type and IORESOURCE_* attributes decoded) and %pr (raw flags) of a struct
    resource (include/linux/ioport.h)."""
    if (err := check_pointer(ptr, spec)) is not None:
        return err
    start, end, flags = (_u64(ctx, ptr + ctx.member_offset("resource", f), "resource_string")
                         for f in ("start", "end", "flags"))
    kind, nspec = next(((k, s) for bit, k, s in _RESOURCE_KINDS if flags & bit),
                       (b"??? ", _MEM_SPEC))
    decode = ext[0] == ord("R") and kind != b"??? "
    out = b"[" + kind
    if decode and flags & 0x20000000:  # IORESOURCE_UNSET
        out += b"size " + number(end - start + 1, nspec)
    else:
        out += number(start, nspec) + (b"-" + number(end, nspec) if start != end else b"")
    if decode:
        out += b"".join(word for bit, word in _RESOURCE_DECODED if flags & bit)
    else:
        out += b" flags " + number(flags, Spec(SPECIAL | SMALL, 0, -1, 16))
    return string_nocheck(out + b"]", spec)


PRINTERS: dict[int, Printer] = {
    ord("h"): hex_string, ord("M"): mac_address_string, ord("m"): mac_address_string,
    ord("I"): ip_addr_string, ord("i"): ip_addr_string, ord("E"): escaped_string,
    ord("U"): uuid_string, ord("N"): netdev_bits, ord("4"): fourcc_string,
    ord("a"): address_val, ord("t"): time_and_date, ord("b"): bitmap_string,
    ord("d"): dentry_name, ord("D"): file_dentry_name,
    ord("R"): resource_string, ord("r"): resource_string,
}
