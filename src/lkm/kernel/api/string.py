"""String and memory functions (lib/string.c, arch/x86/lib/mem*_64.S, mm/util.c,
lib/kstrtox.c, lib/string_helpers.c for the fortify reports).

They read and write the module's memory byte for byte as the C functions do; an access
to a bad pointer faults inside the function, as it would in the kernel.
"""

from __future__ import annotations

import errno

from lkm.kernel.api.core import Kernel, err, kfunc, signed
from lkm.kernel.api.slab import kmalloc
from lkm.kernel.params import kstrtobool as _kstrtobool
from lkm.kernel.params import kstrtoll as _kstrtoll
from lkm.kernel.params import kstrtoull as _kstrtoull

E2BIG = errno.E2BIG


def _s(k: Kernel, addr: int, limit: int = 1 << 20) -> bytes:
    return k.mem.read_cstr(addr, limit)


# -- memory ------------------------------------------------------------------------------

@kfunc("__memcpy", "memmove", "__memmove")
def memcpy(k: Kernel, dest: int, src: int, count: int) -> int:
    """arch/x86/lib/memcpy_64.S (memmove: the same bytes, overlap included)."""
    if count:
        k.mem.write(dest, k.mem.read(src, count))
    return dest


@kfunc("__memset")
def memset(k: Kernel, s: int, c: int, count: int) -> int:
    """arch/x86/lib/memset_64.S."""
    if count:
        k.mem.write(s, bytes((c & 0xFF,)) * count)
    return s


@kfunc("__memcmp", "bcmp")
def memcmp(k: Kernel, cs: int, ct: int, count: int) -> int:
    """lib/string.c: the difference of the first differing bytes."""
    a, b = k.mem.read(cs, count), k.mem.read(ct, count)
    for x, y in zip(a, b, strict=True):
        if x != y:
            return (x - y) & 0xFFFFFFFF
    return 0


@kfunc()
def memchr(k: Kernel, s: int, c: int, n: int) -> int:
    data = k.mem.read(s, n)
    i = data.find(bytes((c & 0xFF,)))
    return s + i if i >= 0 else 0


@kfunc()
def memchr_inv(k: Kernel, start: int, c: int, n: int) -> int:
    """lib/string.c: the first byte that is not ``c``."""
    data = k.mem.read(start, n)
    for i, b in enumerate(data):
        if b != c & 0xFF:
            return start + i
    return 0


# -- strings -----------------------------------------------------------------------------

@kfunc()
def strlen(k: Kernel, s: int) -> int:
    return len(_s(k, s))


@kfunc()
def strnlen(k: Kernel, s: int, count: int) -> int:
    return len(_s(k, s, count))


def _cmp(a: bytes, b: bytes) -> int:
    """lib/string.c strcmp(): -1, 0 or 1 (unsigned char comparison)."""
    for x, y in zip(a + b"\0", b + b"\0", strict=False):
        if x != y:
            return -1 if x < y else 1
        if x == 0:
            break
    return 0


@kfunc()
def strcmp(k: Kernel, cs: int, ct: int) -> int:
    return _cmp(_s(k, cs), _s(k, ct)) & 0xFFFFFFFF


@kfunc()
def strncmp(k: Kernel, cs: int, ct: int, count: int) -> int:
    return _cmp(_s(k, cs, count)[:count], _s(k, ct, count)[:count]) & 0xFFFFFFFF


@kfunc()
def strcasecmp(k: Kernel, s1: int, s2: int) -> int:
    a, b = _s(k, s1).lower(), _s(k, s2).lower()
    return _cmp(a, b) & 0xFFFFFFFF


@kfunc()
def strncasecmp(k: Kernel, s1: int, s2: int, n: int) -> int:
    return _cmp(_s(k, s1, n)[:n].lower(), _s(k, s2, n)[:n].lower()) & 0xFFFFFFFF


@kfunc()
def strcpy(k: Kernel, dest: int, src: int) -> int:
    k.mem.write(dest, _s(k, src) + b"\0")
    return dest


@kfunc()
def strncpy(k: Kernel, dest: int, src: int, count: int) -> int:
    """lib/string.c: pads with NULs, no terminator when src is as long as count."""
    data = _s(k, src, count)[:count]
    k.mem.write(dest, data + bytes(count - len(data)))
    return dest


@kfunc("sized_strscpy")
def strscpy(k: Kernel, dest: int, src: int, count: int) -> int:
    """lib/string.c: copies at most count-1 bytes and a NUL; the length, or -E2BIG when
    src did not fit (dest then holds the cut string)."""
    if count == 0 or count > 0x7FFFFFFF:
        return err(E2BIG)
    data = _s(k, src, count)
    if len(data) >= count:
        k.mem.write(dest, data[:count - 1] + b"\0")
        return err(E2BIG)
    k.mem.write(dest, data + b"\0")
    return len(data)


@kfunc()
def strscpy_pad(k: Kernel, dest: int, src: int, count: int) -> int:
    ret = strscpy(k, dest, src, count)
    n = signed(ret)
    if n >= 0 and count:
        k.mem.write(dest + n + 1, bytes(count - n - 1))
    return ret


@kfunc()
def strlcpy(k: Kernel, dest: int, src: int, size: int) -> int:
    data = _s(k, src)
    if size:
        n = min(len(data), size - 1)
        k.mem.write(dest, data[:n] + b"\0")
    return len(data)


@kfunc()
def strcat(k: Kernel, dest: int, src: int) -> int:
    k.mem.write(dest + len(_s(k, dest)), _s(k, src) + b"\0")
    return dest


@kfunc()
def strncat(k: Kernel, dest: int, src: int, count: int) -> int:
    k.mem.write(dest + len(_s(k, dest)), _s(k, src, count)[:count] + b"\0")
    return dest


@kfunc()
def strlcat(k: Kernel, dest: int, src: int, count: int) -> int:
    d, s = _s(k, dest, count), _s(k, src)
    if len(d) >= count:
        return len(d) + len(s)
    n = min(len(s), count - len(d) - 1)
    k.mem.write(dest + len(d), s[:n] + b"\0")
    return len(d) + len(s)


@kfunc()
def strchr(k: Kernel, s: int, c: int) -> int:
    """lib/string.c: the terminating NUL can be found too."""
    data = _s(k, s)
    ch = c & 0xFF
    if ch == 0:
        return s + len(data)
    i = data.find(bytes((ch,)))
    return s + i if i >= 0 else 0


@kfunc()
def strnchr(k: Kernel, s: int, count: int, c: int) -> int:
    data = _s(k, s, count)[:count]
    i = data.find(bytes((c & 0xFF,)))
    return s + i if i >= 0 else 0


@kfunc()
def strrchr(k: Kernel, s: int, c: int) -> int:
    data = _s(k, s)
    ch = c & 0xFF
    if ch == 0:
        return s + len(data)
    i = data.rfind(bytes((ch,)))
    return s + i if i >= 0 else 0


@kfunc()
def strstr(k: Kernel, s1: int, s2: int) -> int:
    a, b = _s(k, s1), _s(k, s2)
    i = a.find(b)
    return s1 + i if i >= 0 else 0


@kfunc()
def strnstr(k: Kernel, s1: int, s2: int, len_: int) -> int:
    a, b = _s(k, s1, len_)[:len_], _s(k, s2)
    i = a.find(b)
    return s1 + i if i >= 0 else 0


@kfunc()
def strspn(k: Kernel, s: int, accept: int) -> int:
    a, acc = _s(k, s), set(_s(k, accept))
    n = 0
    while n < len(a) and a[n] in acc:
        n += 1
    return n


@kfunc()
def strcspn(k: Kernel, s: int, reject: int) -> int:
    a, rej = _s(k, s), set(_s(k, reject))
    n = 0
    while n < len(a) and a[n] not in rej:
        n += 1
    return n


@kfunc()
def strpbrk(k: Kernel, cs: int, ct: int) -> int:
    a, acc = _s(k, cs), set(_s(k, ct))
    for i, b in enumerate(a):
        if b in acc:
            return cs + i
    return 0


@kfunc()
def strsep(k: Kernel, s: int, ct: int) -> int:
    """lib/string.c: *s advances past the first delimiter, which becomes a NUL."""
    sbegin = k.mem.read_u64(s)
    if not sbegin:
        return 0
    data, delims = _s(k, sbegin), set(_s(k, ct))
    for i, b in enumerate(data):
        if b in delims:
            k.mem.write_u8(sbegin + i, 0)
            k.mem.write_u64(s, sbegin + i + 1)
            return sbegin
    k.mem.write_u64(s, 0)
    return sbegin


@kfunc()
def skip_spaces(k: Kernel, str_: int) -> int:
    data = _s(k, str_)
    n = 0
    while n < len(data) and data[n] in b" \t\n\v\f\r":
        n += 1
    return str_ + n


@kfunc()
def strim(k: Kernel, s: int) -> int:
    """lib/string_helpers.c: trailing spaces become NULs; the first non-space."""
    data = _s(k, s)
    end = len(data)
    while end and data[end - 1] in b" \t\n\v\f\r":
        end -= 1
    if end < len(data):
        k.mem.write_u8(s + end, 0)
    return skip_spaces(k, s)


# -- allocation (mm/util.c) ------------------------------------------------------------------

@kfunc("kstrdup_const")
def kstrdup(k: Kernel, s: int, gfp: int) -> int:
    if not s:
        return 0
    data = _s(k, s) + b"\0"
    buf = kmalloc(k, len(data), gfp)
    k.mem.write(buf, data)
    return buf


@kfunc()
def kstrndup(k: Kernel, s: int, max_: int, gfp: int) -> int:
    if not s:
        return 0
    data = _s(k, s, max_)[:max_] + b"\0"
    buf = kmalloc(k, len(data), gfp)
    k.mem.write(buf, data)
    return buf


@kfunc("kmemdup_noprof")
def kmemdup(k: Kernel, src: int, len_: int, gfp: int) -> int:
    buf = kmalloc(k, len_, gfp)
    if len_:
        k.mem.write(buf, k.mem.read(src, len_))
    return buf


@kfunc("kmemdup_nul")
def kmemdup_nul(k: Kernel, s: int, len_: int, gfp: int) -> int:
    buf = kmalloc(k, len_ + 1, gfp)
    k.mem.write(buf, k.mem.read(s, len_) + b"\0")
    return buf


@kfunc()
def kfree_const(k: Kernel, x: int) -> None:
    from lkm.kernel.api.slab import slab

    slab(k).kfree(x)


# -- lib/kstrtox.c -----------------------------------------------------------------------

def _kstr(k: Kernel, s: int) -> str:
    return _s(k, s).decode("latin-1")


def _store(k: Kernel, res: int, value: int, size: int) -> None:
    k.mem.write(res, (value & ((1 << (8 * size)) - 1)).to_bytes(size, "little"))


def _signed_to(k: Kernel, s: int, base: int, res: int, bits: int) -> int:
    rv, v = _kstrtoll(_kstr(k, s), base)
    if rv:
        return rv & 0xFFFFFFFF
    if not -(1 << (bits - 1)) <= v < (1 << (bits - 1)):
        return (-errno.ERANGE) & 0xFFFFFFFF
    _store(k, res, v, bits // 8)
    return 0


def _unsigned_to(k: Kernel, s: int, base: int, res: int, bits: int) -> int:
    rv, v = _kstrtoull(_kstr(k, s), base)
    if rv:
        return rv & 0xFFFFFFFF
    if v >> bits:
        return (-errno.ERANGE) & 0xFFFFFFFF
    _store(k, res, v, bits // 8)
    return 0


@kfunc()
def kstrtoint(k: Kernel, s: int, base: int, res: int) -> int:
    return _signed_to(k, s, base & 0xFFFFFFFF, res, 32)


@kfunc()
def kstrtouint(k: Kernel, s: int, base: int, res: int) -> int:
    return _unsigned_to(k, s, base & 0xFFFFFFFF, res, 32)


@kfunc("_kstrtol")
def kstrtoll(k: Kernel, s: int, base: int, res: int) -> int:
    return _signed_to(k, s, base & 0xFFFFFFFF, res, 64)


@kfunc("_kstrtoul")
def kstrtoull(k: Kernel, s: int, base: int, res: int) -> int:
    return _unsigned_to(k, s, base & 0xFFFFFFFF, res, 64)


@kfunc()
def kstrtos16(k: Kernel, s: int, base: int, res: int) -> int:
    return _signed_to(k, s, base & 0xFFFFFFFF, res, 16)


@kfunc()
def kstrtou16(k: Kernel, s: int, base: int, res: int) -> int:
    return _unsigned_to(k, s, base & 0xFFFFFFFF, res, 16)


@kfunc()
def kstrtos8(k: Kernel, s: int, base: int, res: int) -> int:
    return _signed_to(k, s, base & 0xFFFFFFFF, res, 8)


@kfunc()
def kstrtou8(k: Kernel, s: int, base: int, res: int) -> int:
    return _unsigned_to(k, s, base & 0xFFFFFFFF, res, 8)


@kfunc()
def kstrtobool(k: Kernel, s: int, res: int) -> int:
    rv, b = _kstrtobool(_kstr(k, s) if s else None)
    if rv:
        return rv & 0xFFFFFFFF
    k.mem.write_u8(res, int(b))
    return 0


def _simple(k: Kernel, cp: int, endp: int, base: int) -> int:
    """lib/vsprintf.c simple_strtoull(): as many digits as parse, no error."""
    from lkm.kernel.params import _parse_integer

    text = _kstr(k, cp)
    i = 0
    if base == 0:
        if text[:1] == "0":
            base = 16 if text[1:2].lower() == "x" and text[2:3].lower() in \
                tuple("0123456789abcdef") and text[2:3] else 8
        else:
            base = 10
    if base == 16 and text[:2].lower() == "0x":
        i = 2
    value, n, _ = _parse_integer(text[i:], base)
    if endp:
        k.mem.write_u64(endp, cp + i + n)
    return value


@kfunc("simple_strtoul")
def simple_strtoull(k: Kernel, cp: int, endp: int, base: int) -> int:
    return _simple(k, cp, endp, base & 0xFFFFFFFF)


@kfunc("simple_strtol")
def simple_strtoll(k: Kernel, cp: int, endp: int, base: int) -> int:
    if k.mem.read_u8(cp) == ord("-"):
        return (-_simple(k, cp + 1, endp, base & 0xFFFFFFFF)) & 0xFFFFFFFFFFFFFFFF
    return _simple(k, cp, endp, base & 0xFFFFFFFF)


# -- fortify (lib/string_helpers.c) ------------------------------------------------------------

@kfunc()
def fortify_panic(k: Kernel, name: int) -> None:
    """6.1: ``detected buffer overflow in <function>``, then BUG()."""
    from lkm.kernel.exec.faults import KernelBug

    k.log.log(0, f"detected buffer overflow in {k.text(name)}")
    raise KernelBug("lib/string_helpers.c", 1027 if k.version[:2] == (6, 1) else 0,
                    k.caller, function="fortify_panic")


FORTIFY_FUNCS = ("strncpy", "strnlen", "strlen", "strscpy", "strlcat", "strcat", "strncat",
                 "memset", "memcpy", "memmove", "memscan", "memcmp", "memchr", "memchr_inv",
                 "kmemdup", "strcpy", "UNKNOWN")


@kfunc()
def __fortify_report(k: Kernel, reason: int, avail: int, size: int) -> None:
    """6.12: ``<func>: detected buffer overflow: <size> byte read|write of buffer size
    <avail>`` and a WARN."""
    func = FORTIFY_FUNCS[min(reason >> 1, len(FORTIFY_FUNCS) - 1)]
    rw = "write" if reason & 1 else "read"
    k.log.log(4, f"{func}: detected buffer overflow: {size} byte {rw} of buffer size {avail}")


@kfunc()
def __fortify_panic(k: Kernel, reason: int, avail: int, size: int) -> None:
    """6.12: the report, then BUG()."""
    from lkm.kernel.exec.faults import KernelBug

    __fortify_report(k, reason, avail, size)
    raise KernelBug("lib/string_helpers.c", 0, k.caller, function="__fortify_panic")
