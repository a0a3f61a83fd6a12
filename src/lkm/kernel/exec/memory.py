"""The kernel-like virtual address space module code runs in (pure Python).

A :class:`Mapping` is a page-aligned range of virtual addresses backed by a ``bytearray``
with the page permissions the kernel gives it (``"rx"`` text, ``"r"`` rodata, ``"rw"``
data, ``"x"`` for the stub area whose bytes no code may read).  :class:`AddressSpace`
holds the mappings; the CPU emulator maps the very same buffers (no copies), and the
kernel API reads and writes them through :meth:`AddressSpace.read` / ``write`` without
the emulator.  An access the page tables refuse raises :class:`MemoryFault`, which the
caller turns into the kernel's page fault (arch/x86/mm/fault.c).
"""

from __future__ import annotations

import struct
from collections.abc import Callable

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PAGE_MASK = ~(PAGE_SIZE - 1)
PERMS = frozenset({"", "r", "rw", "rx", "x", "rwx"})

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")


def page_align(n: int) -> int:
    return (n + PAGE_SIZE - 1) & PAGE_MASK


class MemoryFault(Exception):
    """An access the page tables refuse: ``present`` is False for an unmapped page."""

    def __init__(self, address: int, write: bool, fetch: bool = False,
                 present: bool = False) -> None:
        super().__init__(f"fault at {address:#x}")
        self.address = address
        self.write = write
        self.fetch = fetch
        self.present = present


class Mapping:
    """A page-aligned range of the address space and the buffer behind it."""

    __slots__ = ("base", "data", "kind", "name", "perm")

    def __init__(self, name: str, base: int, data: bytearray, perm: str,
                 kind: str = "") -> None:
        if base & ~PAGE_MASK or len(data) & ~PAGE_MASK or not data:
            raise ValueError(f"{name}: mapping not page aligned: {base:#x}+{len(data):#x}")
        if perm not in PERMS:
            raise ValueError(f"{name}: bad permissions {perm!r}")
        self.name = name
        self.base = base
        self.data = data
        self.perm = perm
        self.kind = kind or name

    @property
    def end(self) -> int:
        return self.base + len(self.data)

    def __repr__(self) -> str:
        return f"Mapping({self.name!r}, {self.base:#x}-{self.end:#x}, {self.perm!r})"


Listener = Callable[[str, Mapping], None]


class AddressSpace:
    """The page tables: virtual page number -> mapping, and the mappings themselves.

    Listeners hear ``("map" | "unmap" | "protect", mapping)``: the CPU emulator keeps its
    own view (and its TLB) in step with them.
    """

    def __init__(self) -> None:
        self.pages: dict[int, Mapping] = {}
        self.mappings: list[Mapping] = []
        self.listeners: list[Listener] = []

    # -- the page tables ---------------------------------------------------------------
    def map(self, name: str, base: int, size_or_data: int | bytearray, perm: str,
            kind: str = "") -> Mapping:
        """Map a new range (a size: zero-filled, as the kernel's allocators give it)."""
        data = bytearray(page_align(size_or_data)) if isinstance(size_or_data, int) \
            else size_or_data
        m = Mapping(name, base, data, perm, kind)
        first = base >> PAGE_SHIFT
        npages = len(data) >> PAGE_SHIFT
        for vpn in range(first, first + npages):
            if vpn in self.pages:
                raise ValueError(f"{name}: {base:#x} overlaps {self.pages[vpn]!r}")
        for vpn in range(first, first + npages):
            self.pages[vpn] = m
        self.mappings.append(m)
        for cb in self.listeners:
            cb("map", m)
        return m

    def unmap(self, m: Mapping) -> None:
        first = m.base >> PAGE_SHIFT
        for vpn in range(first, first + (len(m.data) >> PAGE_SHIFT)):
            if self.pages.get(vpn) is m:
                del self.pages[vpn]
        self.mappings.remove(m)
        for cb in self.listeners:
            cb("unmap", m)

    def protect(self, m: Mapping, perm: str) -> None:
        """set_memory_ro() and friends: new permissions for a whole mapping."""
        if perm not in PERMS:
            raise ValueError(f"bad permissions {perm!r}")
        m.perm = perm
        for cb in self.listeners:
            cb("protect", m)

    def find(self, addr: int) -> Mapping | None:
        return self.pages.get(addr >> PAGE_SHIFT)

    def by_name(self, name: str) -> Mapping | None:
        for m in self.mappings:
            if m.name == name:
                return m
        return None

    # -- access as kernel code does it (supervisor mode) --------------------------------
    def _span(self, addr: int, n: int, write: bool) -> tuple[Mapping, int]:
        m = self.pages.get(addr >> PAGE_SHIFT)
        if m is None:
            raise MemoryFault(addr, write)
        if ("w" if write else "r") not in m.perm:
            raise MemoryFault(addr, write, present=True)
        off = addr - m.base
        if off + n > len(m.data):  # crosses into the next mapping
            self._span(m.end, 1, write)
        return m, off

    def read(self, addr: int, n: int) -> bytes:
        if n <= 0:
            return b""
        m, off = self._span(addr, n, False)
        if off + n <= len(m.data):
            return bytes(m.data[off:off + n])
        head = len(m.data) - off
        return bytes(m.data[off:]) + self.read(m.end, n - head)

    def write(self, addr: int, data: bytes | bytearray) -> None:
        n = len(data)
        if n == 0:
            return
        m, off = self._span(addr, n, True)
        if off + n <= len(m.data):
            m.data[off:off + n] = data
            return
        head = len(m.data) - off
        m.data[off:] = data[:head]
        self.write(m.end, data[head:])

    def check(self, addr: int, n: int, write: bool) -> None:
        """Fault as an access of ``n`` bytes at ``addr`` would (nothing read)."""
        end = addr + max(n, 1)
        a = addr
        while a < end:
            m, _off = self._span(a, 1, write)
            a = m.end

    def read_u8(self, addr: int) -> int:
        return self.read(addr, 1)[0]

    def read_u16(self, addr: int) -> int:
        return int(_U16.unpack(self.read(addr, 2))[0])

    def read_u32(self, addr: int) -> int:
        return int(_U32.unpack(self.read(addr, 4))[0])

    def read_u64(self, addr: int) -> int:
        return int(_U64.unpack(self.read(addr, 8))[0])

    def read_s32(self, addr: int) -> int:
        v = self.read_u32(addr)
        return v - (1 << 32) if v & 0x80000000 else v

    def write_u8(self, addr: int, v: int) -> None:
        self.write(addr, bytes((v & 0xFF,)))

    def write_u16(self, addr: int, v: int) -> None:
        self.write(addr, _U16.pack(v & 0xFFFF))

    def write_u32(self, addr: int, v: int) -> None:
        self.write(addr, _U32.pack(v & 0xFFFFFFFF))

    def write_u64(self, addr: int, v: int) -> None:
        self.write(addr, _U64.pack(v & 0xFFFFFFFFFFFFFFFF))

    def read_cstr(self, addr: int, limit: int = 1 << 20) -> bytes:
        """A NUL-terminated string (without the NUL), read page by page as strlen does."""
        out = bytearray()
        a = addr
        while len(out) < limit:
            m, off = self._span(a, 1, False)
            end = m.data.find(0, off, min(len(m.data), off + limit - len(out)))
            if end >= 0:
                out += m.data[off:end]
                return bytes(out)
            chunk = m.data[off:min(len(m.data), off + limit - len(out))]
            out += chunk
            a += len(chunk)
        return bytes(out)

    def strnlen(self, addr: int, limit: int) -> int:
        return len(self.read_cstr(addr, limit))
