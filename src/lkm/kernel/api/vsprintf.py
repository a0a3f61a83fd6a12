"""The kernel's vsnprintf (lib/vsprintf.c) for module code running under emulation.

The formatting rules of lib/vsprintf.c are the same in Debian's 6.1 and 6.12 sources (the files
differ only in sscanf helpers and how the hash key is filled).  `format_string` produces the whole
output as if the buffer had no end; `vsnprintf` then cuts it, because what the kernel writes into
a short buffer is always a prefix of that (widen_string's move_right included) and every argument
and every byte of memory is read whatever the size.

The machine supplies what the formatter reads (`VsprintfMachine`): memory, kallsyms, va_lists and
struct layouts; `PointerPolicy` holds the per-boot and per-caller state of the %p family.  A read
the kernel would fault on raises `MemoryFault` out of the formatter: the kernel oopses there, as
only NULL, the first page and ERR_PTR values print "(null)"/"(efault)" (check_pointer_msg()).
Where the kernel differs from C99 (no %n, floats or %j; "%.0d" of 0 is "0"; "%#x" of 0 is "0x0";
the 0 flag pads despite a precision; a negative "*" precision is 0 and "%.s" has none) the kernel
is followed: see number() and format_decode's notes in the tests.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Protocol

from lkm.errors import LkmError
from lkm.kernel.api.errname import errname
from lkm.kernel.api.vsprintf_pointer import (
    ALNUM,
    DIGIT,
    LEFT,
    PLUS,
    PRINTERS,
    SIGN,
    SMALL,
    SPACE,
    SPECIAL,
    U64,
    ZEROPAD,
    Spec,
    at,
    check_pointer,
    error_string,
    is_err_value,
    number,
    pointer_string,
    sbits,
    string_nocheck,
    widen_string,
)

PAGE_SIZE = 4096
INT_MAX = 0x7FFFFFFF
FIELD_WIDTH_MAX = (1 << 23) - 1  # printf_spec.field_width is a signed 24-bit field
PRECISION_MAX = (1 << 15) - 1  # printf_spec.precision: signed 16 bits
_FLAG_CHARS = {ord("-"): LEFT, ord("+"): PLUS, ord(" "): SPACE, ord("#"): SPECIAL,
               ord("0"): ZEROPAD}

# Where lib/vsprintf.c's WARN_ONCE()s are: (function, line in Debian's 6.1.192, in 6.12.117)
WARN_SITES: dict[str, tuple[str, int, int]] = {
    "pA": ("pointer", 2466, 2464),
    "unsupported": ("format_decode", 2661, 2659),
    "width": ("vsnprintf", 2693, 2691),  # set_field_width(), inlined
    "precision": ("vsnprintf", 2702, 2700),  # set_precision(), inlined
    "size": ("vsnprintf", 2743, 2741),  # WARN_ON_ONCE(size > INT_MAX)
}


class MemoryFault(LkmError):
    """A read the kernel takes a page fault on; ``function`` is the lib/vsprintf.c function
    the oops's RIP names (the formatter fills it in when the machine leaves it out)."""

    def __init__(self, addr: int, function: str | None = None) -> None:
        super().__init__(f"unable to handle page fault for address: {addr & U64:016x}")
        self.addr = addr & U64
        self.function = function


class VsprintfUnsupported(LkmError):
    """A %p extension that needs kernel objects the virtual kernel does not model
    (%pC clocks, %pGp/%pGv/%pGg flag tables, %pg block devices, %pfw firmware nodes)."""


class VaListExhausted(LkmError):
    """The caller's argument source ran out (the kernel would read whatever follows)."""


@dataclass(frozen=True)
class KallsymsEntry:
    """What kallsyms_lookup_buildid() finds for an address (kernel/kallsyms.c)."""

    name: str
    offset: int
    size: int
    module: str | None = None  # None: vmlinux


class VsprintfMachine(Protocol):
    """What lib/vsprintf.c reads from the running kernel."""

    def read_memory(self, addr: int, size: int) -> bytes:
        """``size`` bytes at a kernel virtual address; raises MemoryFault where the kernel
        would fault (an unmapped page)."""
        ...

    def kallsyms_lookup(self, addr: int) -> KallsymsEntry | None:
        """The symbol containing ``addr`` in vmlinux or a module, or None."""
        ...

    def va_list_args(self, va_list: int) -> Iterator[int]:
        """The arguments (u64 each) of the va_list at this address, as va_copy() reads them
        (x86-64: `x86_64_va_list_args`)."""
        ...

    def member_offset(self, struct_name: str, member: str) -> int:
        """offsetof(struct struct_name, member) in the running kernel (from its BTF)."""
        ...


@dataclass(frozen=True)
class PointerPolicy:
    """The state %p, %pK and friends read (ptr_to_id(), restricted_pointer())."""

    ptr_key: tuple[int, int] | None  # the boot's siphash key; None: not filled yet
    kptr_restrict: int = 0  # the kernel's default; Debian ships no sysctl.d setting for it
    cap_syslog: bool = True  # current has CAP_SYSLOG with euid == uid, egid == gid (root)
    in_irq: bool = False
    no_hash_pointers: bool = False  # the no_hash_pointers boot parameter


@dataclass(frozen=True)
class VsprintfWarning:
    """A WARN_ONCE() in lib/vsprintf.c: the kernel prints ``message``, then its WARNING splat
    (once a boot for each site: the caller keeps the once-state)."""

    site: str  # a WARN_SITES key
    message: bytes

    @property
    def function(self) -> str:
        return WARN_SITES[self.site][0]

    def line(self, version: tuple[int, ...]) -> int:
        _function, line_6_1, line_6_12 = WARN_SITES[self.site]
        return line_6_12 if version[:2] >= (6, 12) else line_6_1


@dataclass(frozen=True)
class Formatted:
    """vsnprintf's output into an unbounded buffer."""

    text: bytes
    warnings: tuple[VsprintfWarning, ...] = ()


@dataclass(frozen=True)
class Printed:
    """One vsnprintf-family call: ``stored`` goes into the caller's buffer (its NUL included
    when size > 0); ``ret`` is the function's return value; ``text`` the untruncated output."""

    stored: bytes
    ret: int
    text: bytes
    warnings: tuple[VsprintfWarning, ...] = ()


def _rol(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & U64


def siphash_1u64(first: int, key: tuple[int, int]) -> int:
    """lib/siphash.c siphash_1u64(): SipHash-2-4 of one little-endian u64."""
    k0, k1 = key
    v = [0x736F6D6570736575 ^ k0, 0x646F72616E646F6D ^ k1,
         0x6C7967656E657261 ^ k0, 0x7465646279746573 ^ k1]

    def rounds(n: int) -> None:
        for _ in range(n):
            v[0] = (v[0] + v[1]) & U64
            v[1] = _rol(v[1], 13) ^ v[0]
            v[0] = _rol(v[0], 32)
            v[2] = (v[2] + v[3]) & U64
            v[3] = _rol(v[3], 16) ^ v[2]
            v[0] = (v[0] + v[3]) & U64
            v[3] = _rol(v[3], 21) ^ v[0]
            v[2] = (v[2] + v[1]) & U64
            v[1] = _rol(v[1], 17) ^ v[2]
            v[2] = _rol(v[2], 32)

    for m in (first & U64, 8 << 56):  # the message word, then the length byte
        v[3] ^= m
        rounds(2)
        v[0] ^= m
    v[2] ^= 0xFF
    rounds(4)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def x86_64_va_list_args(read_memory: Callable[[int, int], bytes], va_list: int
                        ) -> Iterator[int]:
    """The integer arguments of an x86-64 va_list {gp_offset, fp_offset, overflow_arg_area,
    reg_save_area}, read as va_copy() would: the list in memory is not advanced."""
    gp, _fp, overflow, save = struct.unpack("<IIQQ", read_memory(va_list, 24))

    def args() -> Iterator[int]:
        nonlocal gp, overflow
        while True:
            if gp < 48:
                addr, gp = save + gp, gp + 8
            else:
                addr, overflow = overflow, overflow + 8
            yield int.from_bytes(read_memory(addr & U64, 8), "little")

    return args()


def _atoi(s: bytes, i: int) -> tuple[int, int]:
    """skip_atoi(): the decimal number at s[i:] (an int: it wraps at 32 bits)."""
    v = 0
    while at(s, i) in DIGIT:
        v = sbits(v * 10 + s[i] - 0x30, 32)
        i += 1
    return v, i


def _integer(v: int, qualifier: int, signed: int) -> int:
    """va_arg() by length qualifier: L (ll), l, z, t 64 bits; H (hh) 8; h 16; none 32."""
    if qualifier in b"Llzt":
        return v
    bits = 8 if qualifier == ord("H") else 16 if qualifier == ord("h") else 32
    return sbits(v, bits) & U64 if signed else v & ((1 << bits) - 1)


class _Vsprintf:
    """One vsnprintf() call (and the ones %pV nests in it); the PrinterContext of
    vsprintf_pointer's printers."""

    def __init__(self, machine: VsprintfMachine, policy: PointerPolicy) -> None:
        self.m = machine
        self.policy = policy
        self.warnings: list[VsprintfWarning] = []

    # -- memory ------------------------------------------------------------------------------
    def read(self, addr: int, size: int, function: str) -> bytes:
        if size == 0:
            return b""
        try:
            data = self.m.read_memory(addr & U64, size)
        except MemoryFault as e:
            e.function = e.function or function
            raise
        if len(data) != size:
            raise MemoryFault(addr + len(data), function)
        return data

    def cstring(self, addr: int, limit: int, function: str) -> bytes:
        """Bytes up to the NUL, at most ``limit`` (< 0: no limit), never reading past the
        page the NUL is on."""
        out = bytearray()
        while limit < 0 or len(out) < limit:
            chunk = min(256, PAGE_SIZE - (addr & (PAGE_SIZE - 1)))
            if limit >= 0:
                chunk = min(chunk, limit - len(out))
            data = self.read(addr, chunk, function)
            z = data.find(0)
            if z >= 0:
                out += data[:z]
                break
            out += data
            addr = (addr + chunk) & U64
        return bytes(out)

    def member_offset(self, struct_name: str, member: str) -> int:
        return self.m.member_offset(struct_name, member)

    def warn(self, site: str, message: bytes) -> None:
        self.warnings.append(VsprintfWarning(site, message))

    # -- vsnprintf() and format_decode() -----------------------------------------------------
    def format(self, fmt: bytes, args: Iterator[int]) -> bytes:
        def arg() -> int:
            try:
                return next(args) & U64
            except StopIteration:
                raise VaListExhausted("vsnprintf: no argument left for the format") from None

        out = bytearray()
        n, i = len(fmt), 0
        while i < n:
            j = fmt.find(b"%", i)
            if j < 0:
                out += fmt[i:]
                break
            out += fmt[i:j]
            i = j + 1
            spec = Spec()
            while (f := _FLAG_CHARS.get(at(fmt, i))) is not None:
                spec.flags |= f
                i += 1
            if at(fmt, i) in DIGIT:
                w, i = _atoi(fmt, i)
                spec.width = sbits(w, 24)
            elif at(fmt, i) == ord("*"):
                i += 1
                spec.width = self.set_field_width(sbits(arg(), 32))
                if spec.width < 0:
                    spec.width = sbits(-spec.width, 24)
                    spec.flags |= LEFT
            if at(fmt, i) == ord("."):
                i += 1
                if at(fmt, i) in DIGIT:
                    p, i = _atoi(fmt, i)
                    spec.precision = max(sbits(p, 16), 0)
                elif at(fmt, i) == ord("*"):
                    i += 1
                    spec.precision = max(self.set_precision(sbits(arg(), 32)), 0)
            qualifier = at(fmt, i)
            if qualifier in b"hlLzt":
                i += 1
                if at(fmt, i) == qualifier and qualifier in b"lh":
                    qualifier = ord("L") if qualifier == ord("l") else ord("H")
                    i += 1
            else:
                qualifier = 0
            c = at(fmt, i)
            i += 1
            if c == ord("c"):
                out += widen_string(bytes([arg() & 0xFF]), spec)
            elif c == ord("s"):
                out += self.string(arg(), spec)
            elif c == ord("p"):
                k = i
                while at(fmt, k) in ALNUM:
                    k += 1
                out += self.pointer(fmt[i:k], arg(), spec)
                i = k
            elif c == ord("%"):
                out += b"%"
            elif c in b"oxXdiu":
                spec.base = 8 if c == ord("o") else 16 if c in b"xX" else 10
                spec.flags |= SMALL if c == ord("x") else SIGN if c in b"di" else 0
                out += number(_integer(arg(), qualifier, spec.flags & SIGN), spec)
            else:  # %n, floats, %j, a lone "%"...: FORMAT_TYPE_INVALID ends the output
                self.warn("unsupported",
                          b"Please remove unsupported %%%c in format string\n" % c)
                break
        return bytes(out)

    def set_field_width(self, width: int) -> int:
        if sbits(width, 24) != width:
            self.warn("width", b"field width %d too large" % width)
            return max(-FIELD_WIDTH_MAX, min(width, FIELD_WIDTH_MAX))
        return width

    def set_precision(self, prec: int) -> int:
        if sbits(prec, 16) != prec:
            self.warn("precision", b"precision %d too large" % prec)
            return max(0, min(prec, PRECISION_MAX))
        return prec

    def string(self, ptr: int, spec: Spec) -> bytes:
        """string(): %s."""
        if (err := check_pointer(ptr, spec)) is not None:
            return err
        return widen_string(self.cstring(ptr, spec.precision, "string_nocheck"), spec)

    # -- pointer() ---------------------------------------------------------------------------
    def pointer(self, ext: bytes, ptr: int, spec: Spec) -> bytes:
        """pointer(): the letters after %p choose the printer; unknown ones hash as %p."""
        k = at(ext, 0)
        if k in b"SsB":
            return self.symbol_string(ext, ptr, spec)
        if k == ord("K"):
            return self.restricted_pointer(ptr, spec)
        if k == ord("V"):
            return self.va_format(ptr, spec)
        if k == ord("e"):
            if not is_err_value(ptr):
                return self.default_pointer(ptr, spec)
            err = sbits(ptr, 32)
            name = errname(err)
            if name is not None:
                return string_nocheck(name.encode(), spec)
            return number(err, replace(spec, flags=spec.flags | SIGN, base=10))
        if k == ord("x"):
            return pointer_string(ptr, spec)
        if k in b"ku":  # BPF's kernel/user strings
            return self.string(ptr, spec) if at(ext, 1) == ord("s") else error_string(
                b"(einval)", spec)
        if k == ord("O"):  # no CONFIG_OF in Debian's x86-64 kernels
            return error_string(b"(%pOF?)", spec)
        if k == ord("A"):  # no CONFIG_RUST
            self.warn("pA", b"Please remove %pA from non-Rust code\n")
            return error_string(b"(%pA?)", spec)
        if k in b"CgGf":
            return self.unmodelled(ext, ptr, spec)
        printer = PRINTERS.get(k)
        if printer is not None:
            return printer(self, ext, ptr, spec)
        return self.default_pointer(ptr, spec)

    def ptr_to_id(self, ptr: int, spec: Spec) -> bytes:
        """ptr_to_id(): NULL and ERR_PTRs as they are, others the low 32 bits of their
        siphash with the boot's key (16 digits: 8 zeros first), "(____ptrval____)" before
        the key exists."""
        if ptr == 0 or is_err_value(ptr):
            return pointer_string(ptr, spec)
        if self.policy.ptr_key is None:
            return error_string(b"(____ptrval____)", replace(spec, width=16))
        return pointer_string(siphash_1u64(ptr, self.policy.ptr_key) & 0xFFFFFFFF, spec)

    def default_pointer(self, ptr: int, spec: Spec) -> bytes:
        if self.policy.no_hash_pointers:
            return pointer_string(ptr, spec)
        return self.ptr_to_id(ptr, spec)

    def restricted_pointer(self, ptr: int, spec: Spec) -> bytes:
        """%pK by kptr_restrict: 0 hashes as %p, 1 shows it to CAP_SYSLOG, 2 prints zeros."""
        kr = self.policy.kptr_restrict
        if kr == 0:
            return self.default_pointer(ptr, spec)
        if kr == 1 and self.policy.in_irq:
            return error_string(b"pK-error", replace(spec, width=16) if spec.width == -1
                                else spec)
        if kr != 1 or not self.policy.cap_syslog:
            ptr = 0
        return pointer_string(ptr, spec)

    def symbol_string(self, ext: bytes, ptr: int, spec: Spec) -> bytes:
        """%pS %ps %pB, and their R and b forms (the same on x86-64 without
        CONFIG_STACKTRACE_BUILD_ID): kernel/kallsyms.c __sprint_symbol().  %pB looks up
        address-1, for return addresses past a noreturn call."""
        sym_off = -1 if ext[0] == ord("B") else 0
        entry = self.m.kallsyms_lookup((ptr + sym_off) & U64)
        if entry is None:
            text = b"0x%x" % ptr
        else:
            text = entry.name.encode()
            if ext[0] != ord("s"):
                text += b"+0x%x/0x%x" % (entry.offset - sym_off, entry.size)
            if entry.module is not None:
                text += b" [%s]" % entry.module.encode()
        return string_nocheck(text, spec)

    def va_format(self, ptr: int, spec: Spec) -> bytes:
        """%pV: struct va_format {fmt, va}: a nested vsnprintf over a va_copy of *va."""
        if (err := check_pointer(ptr, spec)) is not None:
            return err
        fmt_ptr, va_ptr = struct.unpack("<QQ", self.read(ptr, 16, "va_format"))
        try:
            args = self.m.va_list_args(va_ptr)
        except MemoryFault as e:
            e.function = e.function or "va_format"
            raise
        return self.format(self.cstring(fmt_ptr, -1, "vsnprintf"), args)

    def unmodelled(self, ext: bytes, ptr: int, spec: Spec) -> bytes:
        """%pC, %pg, %pG[pvg], %pfw: their error strings are printed; what they print of a
        real object needs kernel structures the virtual kernel does not model."""
        k = ext[0]
        if k == ord("f") and at(ext, 1) != ord("w"):
            return error_string(b"(%pf?)", spec)
        if (err := check_pointer(ptr, spec)) is not None:
            return err
        if k == ord("G") and at(ext, 1) not in b"pvg":
            return error_string(b"(%pG?)", spec)
        raise VsprintfUnsupported(f"%p{ext.decode('latin-1')}: not emulated")


def format_string(machine: VsprintfMachine, fmt: bytes, args: Iterable[int],
                  policy: PointerPolicy) -> Formatted:
    """What vsnprintf() produces for this format and these arguments, unbounded."""
    f = _Vsprintf(machine, policy)
    text = f.format(fmt, iter(args))
    return Formatted(text, tuple(f.warnings))


def vsnprintf(machine: VsprintfMachine, size: int, fmt: bytes, args: Iterable[int],
              policy: PointerPolicy) -> Printed:
    """vsnprintf()/snprintf(): writes at most size-1 bytes and a NUL, returns the length of
    the whole output.  A size over INT_MAX (a negative int too: size_t) warns, returns 0."""
    size &= U64
    if size > INT_MAX:
        return Printed(b"", 0, b"", (VsprintfWarning("size", b""),))
    out = format_string(machine, fmt, args, policy)
    stored = out.text[:size - 1] + b"\0" if size else b""
    return Printed(stored, len(out.text), out.text, out.warnings)


def vscnprintf(machine: VsprintfMachine, size: int, fmt: bytes, args: Iterable[int],
               policy: PointerPolicy) -> Printed:
    """vscnprintf()/scnprintf(): as vsnprintf, returning what was written (0 for size 0,
    which formats nothing at all)."""
    if size & U64 == 0:
        return Printed(b"", 0, b"")
    p = vsnprintf(machine, size, fmt, args, policy)
    return replace(p, ret=min(p.ret, (size & U64) - 1))


def vsprintf(machine: VsprintfMachine, fmt: bytes, args: Iterable[int],
             policy: PointerPolicy) -> Printed:
    """vsprintf()/sprintf(): vsnprintf with size INT_MAX."""
    return vsnprintf(machine, INT_MAX, fmt, args, policy)
