"""The kernel's vsnprintf and printk record rules (lkm.kernel.api.vsprintf, printk_fmt).

- Differential: 4,000 random formats where lib/vsprintf.c and C99 agree, against glibc's
  snprintf through ctypes (output, truncation, return value); the documented differences pinned
  (lib/vsprintf.c and lib/test_printf.c's comments), each shown to differ from glibc.
- Every kernel extension pinned, from lib/test_printf.c's case (its function named) or else from
  the printer in lib/vsprintf.c (named).
- Real-kernel output: lkm_exec_format.c and lkm_exec_printk.c (tests/modules/exec) as Debian's
  6.1.0-57 and 6.12.117 kernels printed them under QEMU (notes/transcripts, printk_formats and
  printk_levels); the lines below are copied from those transcripts.
"""

from __future__ import annotations

import ctypes
import random
import struct
from collections.abc import Iterator
from typing import ClassVar

import pytest

from lkm.kernel.api.errname import errname
from lkm.kernel.api.printk_fmt import (
    KERN_CONT,
    KERN_ERR,
    KERN_INFO,
    LOG_CONT,
    OpenRecord,
    msg_add_ext_text,
    printk_get_level,
    printk_parse_prefix,
    printk_skip_headers,
    printkrb_record_max,
    vprintk_store,
)
from lkm.kernel.api.vsprintf import (
    INT_MAX,
    KallsymsEntry,
    MemoryFault,
    PointerPolicy,
    VaListExhausted,
    VsprintfUnsupported,
    format_string,
    siphash_1u64,
    vscnprintf,
    vsnprintf,
    vsprintf,
    x86_64_va_list_args,
)

U64 = (1 << 64) - 1
KEY = (0x0706050403020100, 0x0F0E0D0C0B0A0908)
MOD = 0xFFFFFFFFC0249000  # where the transcripts' modules were loaded


class Machine:
    """Page-granular memory, a kallsyms table and the BTF offsets the printers ask for."""

    OFFSETS: ClassVar[dict[tuple[str, str], int]] = {
        ("dentry", "d_parent"): 24, ("dentry", "d_name"): 32, ("qstr", "name"): 8,
        ("file", "f_path"): 16, ("path", "dentry"): 8, ("resource", "start"): 0,
        ("resource", "end"): 8, ("resource", "flags"): 24}

    def __init__(self) -> None:
        self.pages: dict[int, bytearray] = {}
        self.symbols: list[tuple[int, int, str, str | None]] = []
        self.next = 0x10000

    def put(self, addr: int, data: bytes) -> int:
        for k, b in enumerate(data):
            a = addr + k
            self.pages.setdefault(a & ~0xFFF, bytearray(4096))[a & 0xFFF] = b
        return addr

    def alloc(self, data: bytes) -> int:
        addr = self.next
        self.next += (len(data) + 16 + 15) // 16 * 16
        return self.put(addr, data)

    def read_memory(self, addr: int, size: int) -> bytes:
        out = bytearray()
        while size:
            page = self.pages.get(addr & ~0xFFF)
            if page is None:
                raise MemoryFault(addr)
            n = min(size, 4096 - (addr & 0xFFF))
            out += page[addr & 0xFFF:(addr & 0xFFF) + n]
            addr, size = addr + n, size - n
        return bytes(out)

    def kallsyms_lookup(self, addr: int) -> KallsymsEntry | None:
        for start, size, name, module in self.symbols:
            if start <= addr < start + size:
                return KallsymsEntry(name, addr - start, size, module)
        return None

    def va_list_args(self, va_list: int) -> Iterator[int]:
        return x86_64_va_list_args(self.read_memory, va_list)

    def member_offset(self, struct_name: str, member: str) -> int:
        return self.OFFSETS[(struct_name, member)]


POLICY = PointerPolicy(KEY)


def kfmt(m: Machine, fmt: bytes, *args: int, policy: PointerPolicy = POLICY) -> bytes:
    return format_string(m, fmt, args, policy).text


# -- differential against glibc -----------------------------------------------------------------
libc = ctypes.CDLL("libc.so.6")
_VALUES = [0, 1, 7, 9, 10, 42, 99, 100, 255, 256, 4095, 65535, 65536, 0x7FFFFFFF, 0x80000000,
           0xFFFFFFFF, 1 << 32, (1 << 63) - 1, 1 << 63, U64, -1, -42, -128, -129, -32768,
           -(1 << 31), -(1 << 63)]
_LENGTHS = ["", "hh", "h", "l", "ll", "z", "t", "L"]
_CTYPE = {"": ctypes.c_int, "hh": ctypes.c_int, "h": ctypes.c_int, "l": ctypes.c_long,
          "ll": ctypes.c_longlong, "L": ctypes.c_longlong, "z": ctypes.c_ssize_t,
          "t": ctypes.c_long}


def _random_case(rng: random.Random, m: Machine) -> tuple[bytes, list[int], list[object]]:
    """A format of 1-4 conversions in the subset where the kernel and C99 agree, with the
    arguments as the kernel reads them (u64; junk above the 32 bits of an int) and as ctypes
    passes them to glibc."""
    fmt = b""
    kargs: list[int] = []
    cargs: list[object] = []
    for _ in range(rng.randint(1, 4)):
        fmt += bytes(rng.choice(b"ab :[]-=xyz") for _ in range(rng.randint(0, 4)))
        conv = rng.choice("diuxXocs%" + "dxu")
        if conv == "%":
            fmt += b"%%"
            continue
        flags = set(rng.sample("-+ #0", rng.randint(0, 3)))
        if conv in "cs":
            flags &= {"-"}
        if conv not in "xXo":
            flags.discard("#")
        width: str = rng.choice(["", "", str(rng.randint(0, 30)), "*"])
        prec: str = "" if conv == "c" else rng.choice(["", "", f".{rng.randint(0, 20)}", ".*"])
        length = rng.choice(_LENGTHS) if conv in "diuxXo" else ""
        value = rng.choice([*_VALUES, rng.getrandbits(64), rng.getrandbits(16)])
        if conv in "diuxXo":
            if prec:
                flags.discard("0")  # C99 ignores 0 with a precision; the kernel pads
            if "#" in flags and conv == "o":
                prec = ""  # "#o" with a precision: the kernel adds its 0 before them
        spec = "%" + "".join(sorted(flags)) + width + prec + length + conv
        if width == "*":
            w = rng.randint(-25, 25)
            kargs.append((w & 0xFFFFFFFF) | rng.getrandbits(32) << 32)
            cargs.append(ctypes.c_int(w))
        p = -1
        if prec == ".*":
            p = rng.randint(0, 20)
            kargs.append(p)
            cargs.append(ctypes.c_int(p))
        if conv in "diuxXo":
            ctype = _CTYPE[length]
            bits = 8 * ctypes.sizeof(ctype)
            v = value & ((1 << bits) - 1)
            zero_prec = prec == ".0" or p == 0
            eff = v & ((1 << {"hh": 8, "h": 16}.get(length, bits)) - 1)
            if eff == 0 and (zero_prec or ("#" in flags and conv in "xX")):
                v = 5  # "%.0d" of 0 and "%#x" of 0: documented differences
            kargs.append(v | (rng.getrandbits(32) << 32 if bits == 32 else 0))
            cargs.append(ctype(v - (1 << bits) if v >> (bits - 1) else v))
        elif conv == "c":
            ch = rng.randint(0x20, 0x7E)
            kargs.append(ch | rng.getrandbits(32) << 32)
            cargs.append(ctypes.c_int(ch))
        else:
            s = bytes(rng.choice(b"abcdefghij") for _ in range(rng.randint(0, 20)))
            kargs.append(m.alloc(s + b"\0"))
            cargs.append(ctypes.c_char_p(s))
        fmt += spec.encode()
    return fmt, kargs, cargs


@pytest.mark.parametrize("seed", range(8))
def test_differential_against_glibc(seed: int) -> None:
    rng = random.Random(seed)
    m = Machine()
    for _ in range(500):
        fmt, kargs, cargs = _random_case(rng, m)
        size = rng.choice([0, 1, 2, 5, 17, 64, 4096])
        buf = ctypes.create_string_buffer(max(size, 1))
        ret = libc.snprintf(buf, ctypes.c_size_t(size), fmt, *cargs)
        got = vsnprintf(m, size, fmt, kargs, POLICY)
        assert (got.stored, got.ret) == (buf.raw[:len(got.stored)], ret), (fmt, kargs)


# -- the documented differences from C99 --------------------------------------------------------
def glibc(fmt: bytes, *args: object) -> bytes:
    buf = ctypes.create_string_buffer(256)
    libc.snprintf(buf, ctypes.c_size_t(256), fmt, *args)
    return buf.value


@pytest.mark.parametrize("fmt, kargs, cargs, kernel", [
    # lib/test_printf.c test_number(): zero with precision 0 still prints a digit
    (b"%.0d|%.*d|%1.0d", [0, 0, 0, 0], [0, 0, 0, 0], b"0|0|0"),
    # number(): SPECIAL prints "0x" for 0 too
    (b"%#x|%#X", [0, 0], [0, 0], b"0x0|0X0"),
    # number(): ZEROPAD pads even when a precision is given
    (b"%08.3d|%06.2x", [5, 10], [5, 10], b"00000005|00000a"),
    # number(): "#o" puts its 0 before the precision's zeros
    (b"%#.3o", [8], [8], b"0010"),
    # test_string(): a negative "*" precision is 0; "%.s" has no precision
    (b"[%.*s][%.s]", [-1 & U64, "S", "S"], [-1, b"kernel", b"kernel"], b"[][kernel]"),
    # string(): NULL is "(null)" under any precision
    (b"[%.3s]", [0], [None], b"[(nu]"),
])
def test_documented_differences(fmt: bytes, kargs: list[object], cargs: list[object],
                                kernel: bytes) -> None:
    m = Machine()
    s = m.alloc(b"kernel\0")
    args = [s if a == "S" else a for a in kargs]
    assert kfmt(m, fmt, *(int(a) for a in args)) == kernel  # type: ignore[call-overload]
    c = [ctypes.c_int(a) if isinstance(a, int) else a for a in cargs]
    assert glibc(fmt, *c) != kernel


@pytest.mark.parametrize("fmt, text, char", [
    (b"a%nb", b"a", b"n"),  # format_decode(): %n is refused like any unsupported conversion
    (b"x=%f!", b"x=", b"f"),  # no floating point in the kernel
    (b"%e%g%a", b"", b"e"),
    (b"%jd", b"", b"j"),  # 'j' (intmax_t) is not a kernel qualifier
    (b"%qd", b"", b"q"),
    (b"%lld%LLd", b"1", b"L"),  # "LL" is not "ll": the second L is the conversion
    (b"50%", b"50", b"\0"),  # a lone % at the end
])
def test_invalid_conversions_stop_the_output(fmt: bytes, text: bytes, char: bytes) -> None:
    out = format_string(Machine(), fmt, [1, 2, 3], POLICY)
    assert out.text == text
    (w,) = out.warnings
    assert w.message == b"Please remove unsupported %" + char + b" in format string\n"
    assert (w.function, w.line((6, 1)), w.line((6, 12))) == ("format_decode", 2661, 2659)


def test_qualifiers_and_field_limits() -> None:
    m = Machine()
    # format_decode(): hh, h, l, ll, L (= ll), z, t; 32-bit conversions ignore the upper half
    assert kfmt(m, b"%hhd %hd %d %ld %lld %Ld %zd %td", *[0xDEADBEEF_FFFFFFFF] * 3,
                *[U64] * 5) == b"-1 -1 -1 -1 -1 -1 -1 -1"
    assert kfmt(m, b"%hhx %hx %x %lx", *[0x1234567890ABCDEF] * 4) == (
        b"ef cdef 90abcdef 1234567890abcdef")
    assert kfmt(m, b"%lc|%hs", ord("z"), m.alloc(b"narrow\0")) == b"z|narrow"
    assert kfmt(m, b"%5%|%-+ #0%") == b"%|%"
    # set_field_width()/set_precision(): a "*" value past the bit-fields warns and is clamped
    out = format_string(m, b"%*d|%.*d", [1 << 24, 1, 1 << 16, 1], POLICY)
    assert len(out.text) == (1 << 23) - 1 + 1 + (1 << 15) - 1
    assert [(w.site, w.message) for w in out.warnings] == [
        ("width", b"field width 16777216 too large"), ("precision", b"precision 65536 too large")]
    assert kfmt(m, b"[%-*d]", -3 & U64, 7) == b"[7  ]"  # a negative width left-justifies
    assert kfmt(m, b"[%*d]", -3 & U64, 7) == b"[7  ]"
    with pytest.raises(VaListExhausted):
        format_string(m, b"%d %d", [1], POLICY)


# -- vsnprintf, vscnprintf, vsprintf ------------------------------------------------------------
def test_snprintf_family_return_values() -> None:
    m = Machine()
    p = vsnprintf(m, 5, b"hello world %d", [42], POLICY)
    assert (p.stored, p.ret) == (b"hell\0", 14)
    assert (vsnprintf(m, 0, b"hello", [], POLICY).stored, vsnprintf(m, 0, b"hi", [], POLICY).ret
            ) == (b"", 2)
    assert vsnprintf(m, 1, b"hello", [], POLICY).stored == b"\0"
    assert (vscnprintf(m, 5, b"hello world", [], POLICY).ret,
            vscnprintf(m, 64, b"hello", [], POLICY).ret) == (4, 5)
    assert vscnprintf(m, 0, b"%s", [0xBAD0000], POLICY).ret == 0  # size 0: nothing is read
    assert vsprintf(m, b"%d-%s", [7, m.alloc(b"x\0")], POLICY).stored == b"7-x\0"
    big = vsnprintf(m, -1, b"hello", [], POLICY)  # WARN_ON_ONCE(size > INT_MAX), 0
    assert (big.stored, big.ret, big.warnings[0].site) == (b"", 0, "size")
    assert vsnprintf(m, INT_MAX, b"ok", [], POLICY).ret == 2
    # widen_string()/move_right(): a cut right-aligned field is a prefix of the whole
    assert vsnprintf(m, 6, b"[%8s]", [m.alloc(b"abc\0")], POLICY).stored == b"[    \0"


# -- strings and bad pointers -------------------------------------------------------------------
def test_string_pointers_checked_and_faulting() -> None:
    m = Machine()
    # check_pointer_msg(): NULL, the first page and ERR_PTRs are not followed
    assert kfmt(m, b"[%s][%s][%s][%8s]", 0, 0x10, -22 & U64, 0) == (
        b"[(null)][(efault)][(efault)][  (null)]")
    # any other bad pointer is dereferenced: the kernel oopses in string_nocheck()
    with pytest.raises(MemoryFault) as e:
        kfmt(m, b"%s", 0xFFFF888000001000)
    assert (e.value.addr, e.value.function) == (0xFFFF888000001000, "string_nocheck")
    # a string ending right before an unmapped page is read without touching it, and a
    # precision stops the read before an unterminated end
    assert kfmt(m, b"%s", m.put(0x50000 - 4, b"abc\0")) == b"abc"
    m.put(0x60000 - 3, b"xyz")
    assert kfmt(m, b"%.3s", 0x60000 - 3) == b"xyz"
    with pytest.raises(MemoryFault):
        kfmt(m, b"%s", 0x60000 - 3)


# -- %p: hashing, %px, %pK ----------------------------------------------------------------------
def test_plain_pointer_hash() -> None:
    # SipHash-2-4 of bytes 00..07 with key 00..0f (the SipHash paper's vector for length 8)
    assert siphash_1u64(0x0706050403020100, KEY) == 0x93F5F5799A932462
    m = Machine()
    p = 0xFFFF0123456789AB
    h = siphash_1u64(p, KEY) & 0xFFFFFFFF
    # ptr_to_id(): the low 32 bits of the hash, as 16 digits (lib/test_printf.c plain())
    assert kfmt(m, b"%p", p) == b"%016x" % h
    assert kfmt(m, b"%p", p)[:8] == b"00000000"
    # null_pointer(), error_pointer(): as they are
    assert kfmt(m, b"%p|%px|%pE", 0, 0, 0) == b"0000000000000000|0000000000000000|(null)"
    assert kfmt(m, b"%p|%px|%pE", -11 & U64, -11 & U64, -11 & U64) == (
        b"fffffffffffffff5|fffffffffffffff5|(efault)")
    assert kfmt(m, b"%px|%20p|%-20p|", p, p, p) == (
        b"ffff0123456789ab|%20x|%-20x|" % (h, h))
    # before the RNG fills the key
    assert kfmt(m, b"%p", p, policy=PointerPolicy(None)) == b"(____ptrval____)"
    assert kfmt(m, b"%p", p, policy=PointerPolicy(KEY, no_hash_pointers=True)) == (
        b"ffff0123456789ab")
    # unknown extensions and the removed %pF are plain hashed pointers
    assert kfmt(m, b"%pF %pZ %pS", p, p, 0) == b"%016x %016x 0x0" % (h, h)


@pytest.mark.parametrize("policy, out", [
    (PointerPolicy(KEY), b"%016x" % (siphash_1u64(0xFFFFFFFFC024B004, KEY) & 0xFFFFFFFF)),
    (PointerPolicy(KEY, kptr_restrict=1), b"ffffffffc024b004"),
    (PointerPolicy(KEY, kptr_restrict=1, cap_syslog=False), b"0000000000000000"),
    (PointerPolicy(KEY, kptr_restrict=1, in_irq=True), b"        pK-error"),
    (PointerPolicy(KEY, kptr_restrict=2), b"0000000000000000"),
])
def test_restricted_pointer(policy: PointerPolicy, out: bytes) -> None:
    assert kfmt(Machine(), b"%pK", 0xFFFFFFFFC024B004, policy=policy) == out


# -- %pS %ps %pB (kernel/kallsyms.c __sprint_symbol) ---------------------------------------------
def test_symbols() -> None:
    m = Machine()
    helper = MOD + 0x10
    m.symbols = [(helper, 0x13, "format_helper", "lkm_exec_format"),
                 (MOD + 0x1000, 0x1000, "init_module", "lkm_exec_format"),
                 (0xFFFFFFFF81234560, 0x110, "kfree", None)]
    assert kfmt(m, b"%pS|%ps|%pSR|%pB", helper, helper, helper + 4, helper + 4) == (
        b"format_helper+0x0/0x13 [lkm_exec_format]|format_helper [lkm_exec_format]|"
        b"format_helper+0x4/0x13 [lkm_exec_format]|format_helper+0x4/0x13 [lkm_exec_format]")
    assert kfmt(m, b"%pS %ps", 0xFFFFFFFF81234560, 0xFFFFFFFF81234560) == b"kfree+0x0/0x110 kfree"
    # sprint_backtrace(): address-1 is looked up, so a return address just past a function
    # (a call at its end) still names it
    assert kfmt(m, b"%pB|%pS", helper + 0x13, helper + 0x13) == (
        b"format_helper+0x13/0x13 [lkm_exec_format]|0xffffffffc0249023")
    assert kfmt(m, b"[%-12ps]", 0xFFFFFFFF81234560) == b"[kfree       ]"


# -- %pe (lib/errname.c) ------------------------------------------------------------------------
def test_errptr() -> None:
    m = Machine()
    def e(n: int) -> int:
        return -n & U64

    # lib/test_printf.c errptr()
    assert kfmt(m, b"%pe", e(1234)) == b"-1234"
    assert kfmt(m, b"(%pe)|(%pe)|[%-8pe]|[%8pe]|%pe", e(88), e(11), e(5), e(5), e(517)) == (
        b"(-ENOTSOCK)|(-EAGAIN)|[-EIO    ]|[    -EIO]|-EPROBE_DEFER")
    assert kfmt(m, b"%pe %pe", 0, 0xFFFF0123456789AB) == b"0000000000000000 %016x" % (
        siphash_1u64(0xFFFF0123456789AB, KEY) & 0xFFFFFFFF)
    assert (errname(-35), errname(5), errname(41), errname(-520), errname(-531)) == (
        "-EDEADLK", "EIO", None, None, None)
    assert (errname(-133), errname(-512), errname(-530)) == (
        "-EHWPOISON", "-ERESTARTSYS", "-ERECALLCONFLICT")


# -- buffers and addresses (lib/test_printf.c) --------------------------------------------------
def test_hex_mac_uuid_ip() -> None:
    m = Machine()
    buf = m.alloc(bytes([0xC0, 0xFF, 0xEE]))
    assert kfmt(m, b"%3ph|%3phC|%3phD|%3phN", buf, buf, buf, buf) == (
        b"c0 ff ee|c0:ff:ee|c0-ff-ee|c0ffee")  # hex_string()
    # the default length is 1; "%0ph" is the 0 flag, a width of 0 prints nothing
    assert kfmt(m, b"%*ph|%ph|%0ph|%*ph.", 3, buf, buf, buf, 0, buf) == b"c0 ff ee|c0|c0|."
    mac = m.alloc(bytes([0x2D, 0x48, 0xD6, 0xFC, 0x7A, 0x05]))
    assert kfmt(m, b"%pM|%pMR|%pMF|%pm|%pmR", *[mac] * 5) == (
        b"2d:48:d6:fc:7a:05|05:7a:fc:d6:48:2d|2d-48-d6-fc-7a-05|2d48d6fc7a05|057afcd6482d")
    uuid = m.alloc(bytes(range(16)))
    assert kfmt(m, b"%pUb|%pUB|%pUl|%pUL", *[uuid] * 4) == (
        b"00010203-0405-0607-0809-0a0b0c0d0e0f|00010203-0405-0607-0809-0A0B0C0D0E0F|"
        b"03020100-0504-0706-0809-0a0b0c0d0e0f|03020100-0504-0706-0809-0A0B0C0D0E0F")
    sin = m.alloc(struct.pack("<H", 2) + struct.pack(">HI", 12345, 0x7F000001))
    assert kfmt(m, b"%pi4|%pI4|%piS|%pIS", sin + 4, sin + 4, sin, sin) == (
        b"127.000.000.001|127.0.0.1|127.000.000.001|127.0.0.1")  # ip4()
    sin2 = m.alloc(struct.pack("<H", 2) + struct.pack(">HI", 12345, 0x01020304))
    assert kfmt(m, b"%piSp|%pISp|%pI4h|%pI4l|%pI4n", sin2, sin2, sin2 + 4, sin2 + 4,
                sin2 + 4) == b"001.002.003.004:12345|1.2.3.4:12345|4.3.2.1|4.3.2.1|1.2.3.4"
    assert kfmt(m, b"%pI5|%pi5|%pIS", sin, sin, m.alloc(b"\x01\x00")) == (
        b"(%pI?)|(%pi?)|(einval)")


@pytest.mark.parametrize("addr, compressed", [
    ("20010db8000000000000000000000001", b"2001:db8::1"),
    ("00000000000000000000000000000000", b"::"),
    ("00000000000000000000000000000001", b"::1"),
    ("00000000000000000000ffffc0a80101", b"::ffff:192.168.1.1"),  # v4-mapped
    ("fe8000000000000002005efec0a80101", b"fe80::200:5efe:192.168.1.1"),  # ISATAP
    ("20010db8000100000001000000000001", b"2001:db8:1:0:1::1"),  # a single 0 stays
    ("20010000000000010000000000000001", b"2001:0:0:1::1"),  # the longest run
    ("20010000000000010000000000010001", b"2001::1:0:0:1:1"),  # the first of equal runs
])
def test_ipv6_compressed(addr: str, compressed: bytes) -> None:
    m = Machine()
    a = m.alloc(bytes.fromhex(addr))
    assert kfmt(m, b"%pI6c", a) == compressed  # ip6_compressed_string()
    sa = m.alloc(struct.pack("<H", 10) + struct.pack(">HI", 443, 0xF0012345)
                 + bytes.fromhex(addr) + struct.pack("<I", 3))
    assert kfmt(m, b"%pISpfsc", sa) == b"[%s]:443/74565%%3" % compressed  # ip6_addr_string_sa


def test_escaped_netdev_fourcc_addr() -> None:
    m = Machine()
    s = m.alloc(b"a\tb\n\\\"\x00\xe9\x01z")
    # ESCAPE_ANY_NP: printable bytes (Latin-1 too) pass, then space, special, null, octal
    assert kfmt(m, b"%*pE", 10, s) == b"a\\tb\\n\\\"\\0\xe9\\001z"
    assert kfmt(m, b"%*pEh|%*pEo|%*pEs|%pE|%0pE|%*pE.", 3, s, 2, s, 3, s, s, s, 0, s) == (
        b"\\x61\\x09\\x62|\\141\\011|a\\tb|a|a|.")
    feat = m.alloc(struct.pack("<Q", 0x1234))
    assert kfmt(m, b"%pNF|%pNx|%pad|%pap|%pa", feat, feat, feat, feat, feat) == (
        b"0x0000000000001234|(%pN?)|0x0000000000001234|0x0000000000001234|0x0000000000001234")
    # lib/test_printf.c fourcc_pointer()
    for code, text in [(0x3231564E, b"NV12 little-endian (0x3231564e)"),
                       (0xB231564E, b"NV12 big-endian (0xb231564e)"),
                       (0x10111213, b".... little-endian (0x10111213)"),
                       (0x20303159, b"Y10  little-endian (0x20303159)")]:
        assert kfmt(m, b"%p4cc", m.alloc(struct.pack("<I", code))) == text
    assert kfmt(m, b"%p4c", feat) == b"(%p4?)"


def test_time_and_date() -> None:
    m = Machine()
    # lib/test_printf.c time_and_date(): 2018-11-26 05:35:43 and time64_t 1546615943
    tm = m.alloc(struct.pack("<9i", 43, 35, 5, 26, 10, 118, 1, 0, 0))
    t = m.alloc(struct.pack("<q", 1546615943))
    assert kfmt(m, b"%pt|%ptR|%ptRr|%ptRt|%ptRd|%ptRttr|%ptRt tr", *[tm] * 7) == (
        b"(%pt?)|2018-11-26T05:35:43|0118-10-26T05:35:43|05:35:43|2018-11-26|05:35:43|"
        b"05:35:43 tr")
    assert kfmt(m, b"%ptT|%ptTr|%ptTs|%ptTsr|%ptTds", *[t] * 5) == (
        b"2019-01-04T15:32:23|0119-00-04T15:32:23|2019-01-04 15:32:23|0119-00-04 15:32:23|"
        b"2019-01-04")


def test_bitmaps() -> None:
    m = Machine()
    # lib/test_printf.c bitmap()
    zero = m.alloc(bytes(8))
    assert kfmt(m, b"%20pb|%*pb|%20pbl|%*pbl", zero, 20, zero, zero, 20, zero) == (
        b"00000|00000||")
    primes = m.alloc(struct.pack("<Q", sum(1 << b for b in (2, 3, 5, 7, 11, 13, 17, 19))))
    assert kfmt(m, b"%20pb|%20pbl", primes, primes) == b"a28ac|2-3,5,7,11,13,17,19"
    ones = m.alloc(struct.pack("<Q", (1 << 20) - 1))
    assert kfmt(m, b"%20pb|%20pbl", ones, ones) == b"fffff|0-19"
    big = m.alloc(struct.pack("<2Q", 0xFFFFFFFF00000001, 0x5))
    assert kfmt(m, b"%*pb|%*pbl|%pb", 68, big, 68, big, big) == (
        b"5,ffffffff,00000001|0,32-64,66|")


def test_dentry_file_resource() -> None:
    m = Machine()

    def dentry(name: bytes, parent: int | None) -> int:
        d = m.alloc(bytes(48))
        m.put(d + 24, struct.pack("<Q", d if parent is None else parent))
        m.put(d + 40, struct.pack("<Q", m.alloc(name + b"\0")))
        return d

    root = dentry(b"/", None)
    bravo = dentry(b"bravo", root)
    alfa = dentry(b"alfa", bravo)
    romeo = dentry(b"romeo", alfa)
    # lib/test_printf.c dentry()
    assert kfmt(m, b"%pd|%pd2|%pd3|%pd4|%pd4", romeo, romeo, romeo, romeo, alfa) == (
        b"romeo|alfa/romeo|bravo/alfa/romeo|/bravo/alfa/romeo|/bravo/alfa")
    assert kfmt(m, b"%-12pd2|%*pd2|%12pd2", alfa, -12 & U64, alfa, alfa) == (
        b"bravo/alfa  |bravo/alfa  |  bravo/alfa")
    assert kfmt(m, b"%pd|%pd|%pD|%pD|%pd", 0, 0xAB, 0, 0xAB, root) == (
        b"(null)|(efault)|(null)|(efault)|/")
    f = m.alloc(bytes(16) + struct.pack("<QQ", 0, romeo))
    assert kfmt(m, b"%pD2|%.7pd3", f, romeo) == b"alfa/romeo|bravo/a"
    res = m.alloc(struct.pack("<QQQQ", 0xFE000000, 0xFE00FFFF, 0, 0x200 | 0x2000 | 0x100000))
    io = m.alloc(struct.pack("<QQQQ", 0x3F8, 0x3FF, 0, 0x100))
    irq = m.alloc(struct.pack("<QQQQ", 4, 4, 0, 0x400))
    # resource_string()
    assert kfmt(m, b"%pR|%pr|%pR|%pR", res, res, io, irq) == (
        b"[mem 0xfe000000-0xfe00ffff 64bit pref]|[mem 0xfe000000-0xfe00ffff flags 0x102200]|"
        b"[io  0x03f8-0x03ff]|[irq 4]")


def test_va_format_recursion() -> None:
    m = Machine()
    # struct va_format {fmt, va}; an x86-64 va_list with two args in registers, one on the stack
    save = m.alloc(struct.pack("<6Q", 0, 0, 0, 0, 7, m.alloc(b"inner\0")))
    stack = m.alloc(struct.pack("<Q", 0xABC))
    va = m.alloc(struct.pack("<IIQQ", 32, 48, stack, save))
    vaf = m.alloc(struct.pack("<QQ", m.alloc(b"%d %s %x"), va))
    assert kfmt(m, b"[%pV] [%pV]", vaf, vaf) == b"[7 inner abc] [7 inner abc]"  # va_copy
    assert kfmt(m, b"%pV|%10pV", 0, vaf) == b"(null)|7 inner abc"
    nested = m.alloc(struct.pack("<QQ", m.alloc(b"<%pV>"),
                                 m.alloc(struct.pack("<IIQQ", 8, 48, 0, m.alloc(
                                     struct.pack("<QQ", 0, vaf))))))
    assert kfmt(m, b"%pV", nested) == b"<7 inner abc>"
    p = vsnprintf(m, 6, b"%pV!", [vaf], POLICY)
    assert (p.stored, p.ret) == (b"7 inn\0", 12)


def test_fixed_error_strings_and_unmodelled() -> None:
    m = Machine()
    obj = m.alloc(bytes(64))
    assert kfmt(m, b"%pOF|%pf|%pGx|%pks|%puy|%pC|%pg", obj, obj, obj, m.alloc(b"k\0"), obj, 0,
                0) == b"(%pOF?)|(%pf?)|(%pG?)|k|(einval)|(null)|(null)"
    out = format_string(m, b"%pA", [obj], POLICY)
    assert out.text == b"(%pA?)" and out.warnings[0].site == "pA"
    for ext in (b"%pC", b"%pCn", b"%pg", b"%pGp", b"%pGg", b"%pGv", b"%pfw"):
        with pytest.raises(VsprintfUnsupported):
            kfmt(m, ext, obj)
    # the letters after %p are skipped while isalnum() (Latin-1 letters included)
    mac = m.alloc(bytes(6))
    assert kfmt(m, b"%pMxyz.", mac) == b"00:00:00:00:00:00."
    assert kfmt(m, b"%pM\xe9\xa9", mac) == b"00:00:00:00:00:00\xa9"


# -- real-kernel output (notes/transcripts/*/printk_formats.txt, lkm_exec_format.c) -------------
def _s32(v: int) -> int:  # gcc passes an int with a 32-bit register write
    return v & 0xFFFFFFFF

FORMAT_CASES = [
    (b"d: [%d] [%5d] [%-5d] [%05d] [%+d] [% d] [%.4d] [%8.4d]\n", [42] * 8,
     b"d: [42] [   42] [42   ] [00042] [+42] [ 42] [0042] [    0042]"),
    (b"neg: [%d] [%6d] [%-6d] [%06d] [%+d] [%.4d]\n", [_s32(-42)] * 6,
     b"neg: [-42] [   -42] [-42   ] [-00042] [-42] [-0042]"),
    (b"u: [%u] [%x] [%X] [%#x] [%#X] [%o] [%#o] [%08x] [%#010x] [%-8x]\n", [3000000000] * 10,
     b"u: [3000000000] [b2d05e00] [B2D05E00] [0xb2d05e00] [0XB2D05E00] [26264057000] "
     b"[026264057000] [b2d05e00] [0xb2d05e00] [b2d05e00]"),
    (b"ll: [%lld] [%llu] [%llx] [%#llx] [%20lld]\n",
     [-1234567890123 & U64, U64, U64, U64, -1234567890123 & U64],
     b"ll: [-1234567890123] [18446744073709551615] [ffffffffffffffff] [0xffffffffffffffff] "
     b"[      -1234567890123]"),
    (b"sizes: [%zu] [%zd] [%hd] [%hu] [%hhu] [%hhx]\n", [16, U64, _s32(-1234), 64302, 200, 200],
     b"sizes: [16] [-1] [-1234] [64302] [200] [c8]"),
    (b"star: [%*d] [%-*d] [%.*d] [%*.*d]\n", [6, 42, 6, 42, 5, 42, 8, 3, 42],
     b"star: [    42] [42    ] [00042] [     042]"),
    (b"zero: [%d] [%x] [%#x] [%#o] [%.0d] [%5.0d]\n", [0] * 6,
     b"zero: [0] [0] [0x0] [0] [0] [    0]"),
    (b"chars: [%c] [%3c] [%-3c] [%%]\n", [ord("a"), ord("b"), ord("c")],
     b"chars: [a] [  b] [c  ] [%]"),
    (b"limits: [%d] [%d] [%u] [%ld] [%lu]\n", [0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 1 << 63, U64],
     b"limits: [2147483647] [-2147483648] [4294967295] [-9223372036854775808] "
     b"[18446744073709551615]"),
    (b"null: [%s] [%10s] [%.2s]\n", [0, 0, 0], b"null: [(null)] [    (null)] [(n]"),
    (b"error pointer as string: [%s]\n", [-22 & U64], b"error pointer as string: [(efault)]"),
    (b"NULL: %%p [%p] %%px [%px] %%pK [%pK]\n", [0, 0, 0],
     b"NULL: %p [0000000000000000] %px [0000000000000000] %pK [0000000000000000]"),
    (b"%%pe: [%pe] [%pe] [%pe] [%pe]\n", [-12 & U64, -19 & U64, -1 & U64, -517 & U64],
     b"%pe: [-ENOMEM] [-ENODEV] [-EPERM] [-EPROBE_DEFER]"),
    (b"%%pe of an unknown error: [%pe]\n", [-4000 & U64], b"%pe of an unknown error: [-4000]"),
    (b"%%pe of NULL: [%pe]\n", [0], b"%pe of NULL: [0000000000000000]"),
]


@pytest.mark.parametrize("version", [(6, 1), (6, 12)])
def test_transcript_printk_formats(version: tuple[int, int]) -> None:
    m = Machine()
    pr_fmt = KERN_INFO + b"lkm_exec_format: "

    def record(fmt: bytes, args: list[int]) -> tuple[int, bytes]:
        s = vprintk_store(kfmt(m, pr_fmt + fmt, *args), version)
        assert s.final and not s.append
        return s.level, s.text

    for fmt, args, text in FORMAT_CASES:
        assert record(fmt, args) == (6, b"lkm_exec_format: " + text)
    s = m.alloc(b"kernel\0")
    assert record(b"s: [%s] [%10s] [%-10s] [%.3s] [%10.3s] [%-10.3s] [%.0s]\n", [s] * 7)[1] == (
        b"lkm_exec_format: s: [kernel] [    kernel] [kernel    ] [ker] [       ker] "
        b"[ker       ] []")
    assert record(b"star: [%*s] [%.*s]\n", [8, s, 2, s])[1].endswith(b"[  kernel] [ke]")
    p = 0xFFFFFFFFC024B004  # the 6.1 transcript's raw record: %px shows it
    line = record(b"%%p: %p %%px: %px %%pK: %pK\n", [p, p, p])[1].split()
    assert line[4] == b"ffffffffc024b004" and line[2] == line[6] and line[2][:8] == b"00000000"
    size, ksize = (0x13, 0x110) if version == (6, 1) else (0x20, 0x370)
    m.symbols = [(MOD, size, "format_helper", "lkm_exec_format"),
                 (0xFFFFFFFF81300000, ksize, "kfree", None)]
    assert record(b"%%pS+%d: %pS\n", [4, MOD + 4])[1] == (
        b"lkm_exec_format: %%pS+4: format_helper+0x4/0x%x [lkm_exec_format]" % size)
    assert record(b"%%pS of a kernel function: %pS %ps\n", [0xFFFFFFFF81300000] * 2)[1] == (
        b"lkm_exec_format: %%pS of a kernel function: kfree+0x0/0x%x kfree" % ksize)
    ip = m.alloc(bytes([192, 168, 1, 1]))
    ip6 = m.alloc(bytes.fromhex("20010db8000000000000000000000001"))
    mac = m.alloc(bytes.fromhex("001122aabbcc"))
    uuid = m.alloc(bytes.fromhex("123456789abcdef00123456789abcdef"))
    data = m.alloc(bytes(i * 13 for i in range(20)))
    for fmt, args, text in [
        (b"ipv4: %pI4 %pi4\n", [ip, ip], b"192.168.1.1 192.168.001.001"),
        (b"ipv6: %pI6 %pI6c %pi6\n", [ip6] * 3, b"2001:0db8:0000:0000:0000:0000:0000:0001 "
         b"2001:db8::1 20010db8000000000000000000000001"),
        (b"mac: %pM %pMR %pm %pMF\n", [mac] * 4,
         b"00:11:22:aa:bb:cc cc:bb:aa:22:11:00 001122aabbcc 00-11-22-aa-bb-cc"),
        (b"uuid: %pU %pUb %pUB %pUl %pUL\n", [uuid] * 5,
         b"12345678-9abc-def0-0123-456789abcdef 12345678-9abc-def0-0123-456789abcdef "
         b"12345678-9ABC-DEF0-0123-456789ABCDEF 78563412-bc9a-f0de-0123-456789abcdef "
         b"78563412-BC9A-F0DE-0123-456789ABCDEF"),
        (b"hex: [%*ph] [%*phC] [%*phD] [%*phN]\n", [6, data] * 4,
         b"[00 0d 1a 27 34 41] [00:0d:1a:27:34:41] [00-0d-1a-27-34-41] [000d1a273441]"),
        (b"hex default length: [%ph]\n", [data], b"[00]"),
    ]:
        assert record(fmt, args)[1] == b"lkm_exec_format: " + fmt.split(b":")[0] + b": " + text


# -- printk records (kernel/printk/printk.c) ----------------------------------------------------
def test_printk_levels_and_prefix() -> None:
    assert (printk_get_level(b"\x016x"), printk_get_level(b"\x01cx"), printk_get_level(b"\x018"),
            printk_get_level(b"\x01")) == (ord("6"), ord("c"), 0, 0)
    assert printk_skip_headers(b"\x013\x01chello") == b"hello"
    assert printk_parse_prefix(b"\x01c\x014\x016x") == (4, LOG_CONT, 6)
    assert printk_parse_prefix(b"\x01\x00\x016") == (-1, 0, 0)
    assert printkrb_record_max((6, 1, 0)) == 992 and printkrb_record_max((6, 12, 117)) == 1024
    s = vprintk_store(b"plain\n", (6, 1))
    assert (s.level, s.text, s.final, s.cont) == (4, b"plain", True, False)
    # the level comes from the formatted text: a "%s" argument can carry it
    assert vprintk_store(KERN_ERR + b"x", (6, 1)).level == 3
    assert vprintk_store(b"\x013\x016both\n", (6, 1)).level == 3  # the first digit wins
    # only the first 7 bytes are parsed for the level, but every prefix pair is stripped
    s = vprintk_store(b"\x01c\x01c\x01c\x016text\n", (6, 1))
    assert (s.level, s.text) == (4, b"text")
    s = vprintk_store(b"two\nlines\n\n", (6, 1))
    assert (s.text, s.final) == (b"two\nlines\n", True)
    assert vprintk_store(b"dev: x", (6, 1), level=6, dev_info=True).final
    assert vprintk_store(KERN_INFO + b"x", (6, 1), level=3).level == 3


@pytest.mark.parametrize("version, room", [((6, 1), 992), ((6, 12), 1024)])
def test_printk_record_truncation(version: tuple[int, int], room: int) -> None:
    # vscnprintf into reserve_size bytes: room-1 bytes, then the prefix is stripped; the
    # newline is cut off, so the record is not final
    long = KERN_INFO + b"x" * 2000 + b"\n"
    s = vprintk_store(long, version)
    assert (len(s.text), s.final) == (room - 1 - 2, False)
    assert len(vprintk_store(b"y" * 2000, version).text) == room - 1
    fits = KERN_INFO + b"z" * (room - 4) + b"\n"
    assert vprintk_store(fits, version).final


def test_printk_continuation() -> None:
    v = (6, 1)
    opened = OpenRecord(caller_id=100, text_len=10)
    s = vprintk_store(KERN_CONT + b" more\n", v, caller_id=100, last=opened)
    assert (s.append, s.text, s.final, s.cont) == (True, b" more", True, True)
    full = OpenRecord(caller_id=100, text_len=992 - 3)  # another caller, no KERN_CONT, no room
    assert not any(vprintk_store(f, v, caller_id=c, last=r).append for f, c, r in [
        (KERN_CONT + b"x", 101, opened), (b"no", 100, opened), (KERN_CONT + b"xyz", 100, full)])
    s = vprintk_store(KERN_CONT + b"alone\n", v, caller_id=100, last=None)
    assert (s.append, s.level, s.cont) == (False, 4, True)


def test_transcript_printk_levels() -> None:
    """lkm_exec_printk.c's init as Debian's 6.1 and 6.12 kernels logged it (printk_levels)."""
    calls = [b"\x010lkm_exec_printk: emerg (0)\n", b"\x011lkm_exec_printk: alert (1)\n",
             b"\x012lkm_exec_printk: crit (2)\n", b"\x013lkm_exec_printk: err (3)\n",
             b"\x014lkm_exec_printk: warning (4)\n", b"\x015lkm_exec_printk: notice (5)\n",
             b"\x016lkm_exec_printk: info (6)\n",  # pr_debug: dynamic debug is off
             b"lkm_exec_printk: printk without a level\n", b"lkm_exec_printk: KERN_DEFAULT\n",
             b"\x016lkm_exec_printk: a line made of ", b"\x01ctwo printk calls\n",
             b"\x016lkm_exec_printk: counting:", b"\x01c 1", b"\x01c 2", b"\x01c 3",
             b"\x01c done\n", b"\x016lkm_exec_printk: first line\nsecond line\nthird line\n",
             b"\x016lkm_exec_printk: a line without a newline",
             b"\x016lkm_exec_printk: the next line\n",
             b"\x014lkm_exec_printk: a tab\there, a backslash \\ and 100%\n",
             b"\x013lkm_exec_printk: a string argument\n", b"\x016\n",
             b"\x016lkm_exec_printk: after an empty line\n"]
    log: list[tuple[int, bytes]] = []
    final = True
    for formatted in calls:
        opened = None if final else OpenRecord(1, len(log[-1][1]))
        s = vprintk_store(formatted, (6, 1), caller_id=1, last=opened)
        if s.append:
            log[-1] = (log[-1][0], log[-1][1] + s.text)
        else:
            log.append((s.level, s.text))
        final = s.final
    raw = [(lv, msg_add_ext_text(t)) for lv, t in log]  # as /dev/kmsg shows them
    assert raw == [
        (0, "lkm_exec_printk: emerg (0)"), (1, "lkm_exec_printk: alert (1)"),
        (2, "lkm_exec_printk: crit (2)"), (3, "lkm_exec_printk: err (3)"),
        (4, "lkm_exec_printk: warning (4)"), (5, "lkm_exec_printk: notice (5)"),
        (6, "lkm_exec_printk: info (6)"), (4, "lkm_exec_printk: printk without a level"),
        (4, "lkm_exec_printk: KERN_DEFAULT"),
        (6, "lkm_exec_printk: a line made of two printk calls"),
        (6, "lkm_exec_printk: counting: 1 2 3 done"),
        (6, "lkm_exec_printk: first line\\x0asecond line\\x0athird line"),
        (6, "lkm_exec_printk: a line without a newline"), (6, "lkm_exec_printk: the next line"),
        (4, "lkm_exec_printk: a tab\\x09here, a backslash \\x5c and 100%"),
        (3, "lkm_exec_printk: a string argument"), (6, ""),
        (6, "lkm_exec_printk: after an empty line")]
