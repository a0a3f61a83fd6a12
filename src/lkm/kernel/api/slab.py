"""The slab allocator as Debian configures SLUB (mm/slub.c, mm/slab_common.c, mm/util.c).

- kmalloc sizes round up to the kmalloc caches (8 ... 8192 bytes, 96 and 192 included);
  larger requests come from the page allocator (kmalloc_large).
- CONFIG_INIT_ON_ALLOC_DEFAULT_ON: memory comes back zeroed (unless the cache has a
  constructor).  init_on_free is off: freed memory keeps its bytes...
- ... except SLUB's freelist pointer, kept in the middle of a free object (``s->offset``),
  encoded by CONFIG_SLAB_FREELIST_HARDENED as ``next ^ s->random ^ swab(address)``: a
  use-after-free read there sees those bytes.
- Freeing the object that is already the freelist head (a double kfree with nothing in
  between) is set_freepointer()'s ``BUG_ON(object == fp)``.
- A freed object is the next one allocated from its cache (LIFO freelist).

Objects live in slab pages of the direct map; the allocator's books persist with the
virtual kernel (:class:`Slab`).
"""

from __future__ import annotations

import random
from typing import Any

from lkm.kernel.api.core import Kernel, kdata, kfunc, substate
from lkm.kernel.exec import abi_x86_64 as abi
from lkm.kernel.exec.faults import KernelBug
from lkm.kernel.exec.memory import PAGE_SIZE, page_align

GFP_ZERO = 0x100
ZERO_SIZE_PTR = 16
KMALLOC_SHIFT_HIGH = 13  # PAGE_SHIFT + 1
KMALLOC_MAX_CACHE_SIZE = 1 << KMALLOC_SHIFT_HIGH
HEAP_CHUNK = 0x100000
SLAB_ORDER_BYTES = 4 * PAGE_SIZE  # one slab: 4 pages (SLUB picks 0-3 orders; invisible)
MASK = (1 << 64) - 1

# set_freepointer()'s BUG_ON (CONFIG_SLAB_FREELIST_HARDENED), by version
SET_FREEPOINTER_LINE = {(6, 1): 379, (6, 12): 410}


def kmalloc_index(size: int) -> int:
    """include/linux/slab.h __kmalloc_index(): the kmalloc cache for a size (0: none)."""
    if not size:
        return 0
    if size <= 8:
        return 3
    if 64 < size <= 96:
        return 1
    if 128 < size <= 192:
        return 2
    return (size - 1).bit_length()


def kmalloc_size(index: int) -> int:
    return {1: 96, 2: 192}.get(index, 1 << index)


def swab64(v: int) -> int:
    return int.from_bytes((v & MASK).to_bytes(8, "little"), "big")


class Cache:
    """struct kmem_cache: sizes, the freelist, the live objects."""

    def __init__(self, addr: int, name: str, object_size: int, align: int = 8,
                 ctor: int = 0, flags: int = 0, rnd: int | None = None) -> None:
        self.addr = addr
        self.name = name
        self.object_size = object_size
        self.align = max(8, align)
        self.size = (max(object_size, 8) + self.align - 1) // self.align * self.align
        self.ctor = ctor
        self.flags = flags
        # calculate_sizes(): the free pointer goes after the object with a ctor
        if ctor:
            self.offset = self.size
            self.size += 8
        else:
            self.offset = (object_size // 2) & ~7
        self.random = random.getrandbits(64) if rnd is None else rnd
        self.free: list[int] = []  # free objects; the last is the freelist head
        self.live: set[int] = set()

    def to_json(self) -> list[Any]:
        return [self.addr, self.name, self.object_size, self.align, self.ctor, self.flags,
                self.random, self.free, sorted(self.live)]

    @classmethod
    def from_json(cls, v: list[Any]) -> Cache:
        c = cls(v[0], v[1], v[2], v[3], v[4], v[5], v[6])
        c.free, c.live = list(v[7]), set(v[8])
        return c


@substate("slab")
class Slab:
    """The allocator's books: caches by struct kmem_cache address, slab pages, large
    allocations, the heap arena's extent."""

    def __init__(self, k: Kernel) -> None:
        self.k = k
        self.caches: dict[int, Cache] = {}
        self.page_cache: dict[int, int] = {}  # page number -> cache address
        self.large: dict[int, int] = {}  # address -> size in pages
        self.freed_large: set[int] = set()
        self.heap_next = abi.HEAP_BASE
        self.heap_end = abi.HEAP_BASE
        self.kmalloc_caches: dict[int, int] = {}  # kmalloc index -> normal cache

    def to_json(self) -> dict[str, Any]:
        return {"caches": [c.to_json() for c in self.caches.values()],
                "pages": sorted(self.page_cache.items()), "large": sorted(self.large.items()),
                "freed_large": sorted(self.freed_large), "next": self.heap_next,
                "end": self.heap_end, "kmalloc": sorted(self.kmalloc_caches.items())}

    @classmethod
    def from_json(cls, k: Kernel, d: dict[str, Any]) -> Slab:
        s = cls(k)
        s.caches = {c.addr: c for c in (Cache.from_json(v) for v in d["caches"])}
        s.page_cache = {int(p): int(c) for p, c in d["pages"]}
        s.large = {int(a): int(n) for a, n in d["large"]}
        s.freed_large = set(d["freed_large"])
        s.heap_next, s.heap_end = d["next"], d["end"]
        s.kmalloc_caches = {int(i): int(c) for i, c in d["kmalloc"]}
        return s

    # -- pages ---------------------------------------------------------------------------
    def pages(self, size: int) -> int:
        """Contiguous zeroed pages from the direct map."""
        n = page_align(max(size, 1))
        addr = self.heap_next
        if addr + n > self.heap_end:
            grow = max(HEAP_CHUNK, page_align(addr + n - self.heap_end))
            self.k.mem.map("heap", self.heap_end, grow, "rw", kind="heap")
            self.heap_end += grow
        self.heap_next = addr + n
        return addr

    # -- caches --------------------------------------------------------------------------
    def cache(self, addr: int) -> Cache | None:
        return self.caches.get(addr)

    def create(self, addr: int, name: str, size: int, align: int = 8, ctor: int = 0,
               flags: int = 0) -> Cache:
        c = Cache(addr, name, size, align, ctor, flags)
        self.caches[addr] = c
        return c

    def kmalloc_cache(self, size: int) -> Cache:
        index = kmalloc_index(size)
        addr = self.kmalloc_caches.get(index)
        if addr is None:
            self.k.symbol("kmalloc_caches")  # creates them
            addr = self.kmalloc_caches[index]
        return self.caches[addr]

    def alloc(self, c: Cache, flags: int) -> int:
        if not c.free:
            base = self.pages(SLAB_ORDER_BYTES)
            for p in range(base, base + SLAB_ORDER_BYTES, PAGE_SIZE):
                self.page_cache[p >> 12] = c.addr
            n = SLAB_ORDER_BYTES // c.size
            c.free.extend(reversed([base + i * c.size for i in range(n)]))
        obj = c.free.pop()
        c.live.add(obj)
        if not c.ctor:
            self.k.mem.write(obj, bytes(c.object_size))  # init_on_alloc
        else:
            self.k.cpu.call(c.ctor, [obj])
        return obj

    def free_object(self, c: Cache, obj: int) -> None:
        """do_slab_free(): set_freepointer() onto the freelist head."""
        head = c.free[-1] if c.free else 0
        if obj == head:
            line = SET_FREEPOINTER_LINE.get(self.k.version[:2], 0)
            raise KernelBug("mm/slub.c", line, self.k.caller, function="kfree")
        ptr_addr = obj + c.offset
        self.k.mem.write_u64(ptr_addr, head ^ c.random ^ swab64(ptr_addr))
        c.live.discard(obj)
        c.free.append(obj)

    def owner(self, obj: int) -> Cache | None:
        addr = self.page_cache.get(obj >> 12)
        return self.caches.get(addr) if addr is not None else None

    # -- kmalloc -------------------------------------------------------------------------
    def kmalloc(self, size: int, flags: int) -> int:
        if size == 0:
            return ZERO_SIZE_PTR
        if size > KMALLOC_MAX_CACHE_SIZE:
            return self.kmalloc_large(size)
        return self.alloc(self.kmalloc_cache(size), flags)

    def kmalloc_large(self, size: int) -> int:
        npages = 1 << (page_align(size) // PAGE_SIZE - 1).bit_length()
        addr = self.pages(npages * PAGE_SIZE)
        self.large[addr] = npages
        return addr

    def kfree(self, obj: int) -> None:
        if obj <= ZERO_SIZE_PTR:
            return
        c = self.owner(obj)
        if c is not None:
            self.free_object(c, obj)
            return
        if obj in self.large:
            del self.large[obj]
            self.freed_large.add(obj)

    def ksize(self, obj: int) -> int:
        if obj <= ZERO_SIZE_PTR:
            return 0
        c = self.owner(obj)
        if c is not None:
            return c.object_size
        n = self.large.get(obj)
        return n * PAGE_SIZE if n else 0


def slab(k: Kernel) -> Slab:
    return k.sub(Slab)


def kmalloc(k: Kernel, size: int, flags: int = 0) -> int:
    """For other kernel functions (kstrdup, kasprintf): kmalloc(size, flags)."""
    return slab(k).kmalloc(size, flags)


# -- the kmalloc caches ------------------------------------------------------------------

def _kmalloc_caches_size(k: Kernel) -> int:
    """kmem_buckets kmalloc_caches[NR_KMALLOC_TYPES] (enum kmalloc_cache_type)."""
    lay: Any = k.layouts
    ntypes = lay.enum("kmalloc_cache_type").get("NR_KMALLOC_TYPES", 4)
    return int(ntypes) * (KMALLOC_SHIFT_HIGH + 1) * 8


@kdata("kmalloc_caches", _kmalloc_caches_size, align=64)
def _init_kmalloc_caches(k: Kernel, addr: int) -> None:
    """create_kmalloc_caches(): kmalloc_caches[type][index] for every type."""
    s = slab(k)
    per = KMALLOC_SHIFT_HIGH + 1
    ntypes = max(1, _kmalloc_caches_size(k) // (8 * per))
    prefixes = ("kmalloc", "kmalloc-cg", "kmalloc-rcl", "dma-kmalloc")
    for t in range(ntypes):
        for i in range(1, per):
            size = kmalloc_size(i)
            name = f"{prefixes[t] if t < len(prefixes) else 'kmalloc'}-" + (
                f"{size // 1024}k" if size >= 1024 else str(size))
            caddr = k.rt.kdata_alloc(256, 64)
            s.create(caddr, name, size)
            if t == 0:
                s.kmalloc_caches[i] = caddr
            k.mem.write_u64(addr + (t * per + i) * 8, caddr)


# -- kmalloc and kfree -------------------------------------------------------------------

@kfunc("__kmalloc_cache_noprof", "kmalloc_trace_noprof")
def kmalloc_trace(k: Kernel, s: int, gfpflags: int, size: int) -> int:
    """mm/slab_common.c (6.1) / mm/slub.c __kmalloc_cache_noprof (6.12)."""
    sl = slab(k)
    c = sl.cache(s)
    return sl.alloc(c, gfpflags) if c is not None else sl.kmalloc(size, gfpflags)


@kfunc("__kmalloc_cache_node_noprof")
def kmalloc_node_trace(k: Kernel, s: int, gfpflags: int, node: int, size: int) -> int:
    """mm/slab_common.c: the node is ignored (one node)."""
    return kmalloc_trace(k, s, gfpflags, size)


@kfunc()
def __kmalloc(k: Kernel, size: int, flags: int) -> int:
    """mm/slab_common.c."""
    return slab(k).kmalloc(size, flags)


@kfunc()
def __kmalloc_noprof(k: Kernel, size: int, flags: int) -> int:
    """mm/slub.c (6.12)."""
    return slab(k).kmalloc(size, flags)


@kfunc()
def __kmalloc_node(k: Kernel, size: int, flags: int, node: int) -> int:
    """mm/slab_common.c."""
    return slab(k).kmalloc(size, flags)


@kfunc()
def __kmalloc_node_noprof(k: Kernel, size: int, b: int, flags: int, node: int) -> int:
    """mm/slub.c (6.12, CONFIG_SLAB_BUCKETS: the buckets argument)."""
    return slab(k).kmalloc(size, flags)


@kfunc()
def __kmalloc_node_track_caller(k: Kernel, size: int, flags: int, node: int,
                                caller: int) -> int:
    """mm/slab_common.c."""
    return slab(k).kmalloc(size, flags)


@kfunc()
def __kmalloc_node_track_caller_noprof(k: Kernel, size: int, b: int, flags: int, node: int,
                                       caller: int) -> int:
    """mm/slub.c (6.12)."""
    return slab(k).kmalloc(size, flags)


@kfunc("__kmalloc_large_noprof")
def kmalloc_large(k: Kernel, size: int, flags: int) -> int:
    """mm/slab_common.c: straight from the page allocator."""
    return slab(k).kmalloc_large(size)


@kfunc("__kmalloc_large_node_noprof")
def kmalloc_large_node(k: Kernel, size: int, flags: int, node: int) -> int:
    return slab(k).kmalloc_large(size)


@kfunc()
def kfree(k: Kernel, objp: int) -> None:
    """mm/slab_common.c (6.1), mm/slub.c (6.12)."""
    slab(k).kfree(objp)


@kfunc()
def kfree_sensitive(k: Kernel, p: int) -> None:
    """mm/slab_common.c: zero the object, then kfree."""
    sl = slab(k)
    n = sl.ksize(p)
    if n:
        k.mem.write(p, bytes(n))
    sl.kfree(p)


@kfunc("__ksize")
def ksize(k: Kernel, objp: int) -> int:
    """mm/slab_common.c: the usable size (the cache's object size)."""
    return slab(k).ksize(objp)


@kfunc()
def kmalloc_size_roundup(k: Kernel, size: int) -> int:
    """mm/slab_common.c."""
    if size <= KMALLOC_MAX_CACHE_SIZE:
        return kmalloc_size(kmalloc_index(size)) if size else 0
    return page_align(size)


@kfunc("krealloc_noprof")
def krealloc(k: Kernel, p: int, new_size: int, flags: int) -> int:
    """mm/slab_common.c: in place when ksize() allows, else a new object (the old one's
    whole usable size copied) and the old one freed."""
    sl = slab(k)
    if new_size == 0:
        sl.kfree(p)
        return ZERO_SIZE_PTR
    ks = sl.ksize(p)
    if ks >= new_size:
        return p
    ret = sl.kmalloc(new_size, flags)
    if p > ZERO_SIZE_PTR:
        k.mem.write(ret, k.mem.read(p, ks))
        sl.kfree(p)
    return ret


# -- kmem_cache ----------------------------------------------------------------------------

def _new_cache(k: Kernel, name: int, size: int, align: int, flags: int, ctor: int) -> int:
    sl = slab(k)
    addr = sl.kmalloc(256, 0)
    sl.create(addr, k.text(name, 256), size, align or 8, ctor, flags)
    return addr


@kfunc()
def kmem_cache_create(k: Kernel, name: int, size: int, align: int, flags: int,
                      ctor: int) -> int:
    """mm/slab_common.c."""
    return _new_cache(k, name, size, align, flags, ctor)


@kfunc()
def kmem_cache_create_usercopy(k: Kernel, name: int, size: int, align: int, flags: int,
                               useroffset: int, usersize: int, ctor: int) -> int:
    """mm/slab_common.c."""
    return _new_cache(k, name, size, align, flags, ctor)


@kfunc()
def __kmem_cache_create_args(k: Kernel, name: int, object_size: int, args: int,
                             flags: int) -> int:
    """mm/slab_common.c (6.12): struct kmem_cache_args {align, useroffset, usersize,
    freeptr_offset, use_freeptr_offset, ctor}."""
    align = k.mem.read_u32(args) if args else 0
    ctor = k.mem.read_u64(args + 24) if args else 0
    return _new_cache(k, name, object_size, align, flags, ctor)


@kfunc("kmem_cache_alloc_noprof")
def kmem_cache_alloc(k: Kernel, s: int, gfpflags: int) -> int:
    """mm/slub.c."""
    sl = slab(k)
    c = sl.cache(s)
    if c is None:
        raise KernelBug("mm/slub.c", 0, k.caller, function="kmem_cache_alloc")
    return sl.alloc(c, gfpflags)


@kfunc("kmem_cache_alloc_lru_noprof")
def kmem_cache_alloc_lru(k: Kernel, s: int, lru: int, gfpflags: int) -> int:
    return kmem_cache_alloc(k, s, gfpflags)


@kfunc("kmem_cache_alloc_node_noprof")
def kmem_cache_alloc_node(k: Kernel, s: int, gfpflags: int, node: int) -> int:
    return kmem_cache_alloc(k, s, gfpflags)


@kfunc()
def kmem_cache_free(k: Kernel, s: int, x: int) -> None:
    """mm/slub.c."""
    slab(k).kfree(x)


@kfunc()
def kmem_cache_destroy(k: Kernel, s: int) -> None:
    """mm/slab_common.c."""
    sl = slab(k)
    c = sl.caches.pop(s, None)
    if c is not None:
        sl.kfree(s)


@kfunc()
def kmem_cache_size(k: Kernel, s: int) -> int:
    c = slab(k).cache(s)
    return c.object_size if c is not None else 0


# -- vmalloc (mm/vmalloc.c) ----------------------------------------------------------------

@kfunc("vmalloc_noprof", "vzalloc", "vzalloc_noprof", "__vmalloc", "__vmalloc_noprof")
def vmalloc(k: Kernel, size: int) -> int:
    """Zeroed pages (init_on_alloc), from the heap arena here."""
    return slab(k).kmalloc_large(size) if size else 0


@kfunc("kvmalloc_node_noprof")
def kvmalloc_node(k: Kernel, size: int, flags: int, node: int) -> int:
    """mm/util.c: kmalloc first."""
    return slab(k).kmalloc(size, flags)


@kfunc()
def __kvmalloc_node_noprof(k: Kernel, size: int, b: int, flags: int, node: int) -> int:
    return slab(k).kmalloc(size, flags)


@kfunc("vfree", "kvfree_sensitive")
def kvfree(k: Kernel, addr: int) -> None:
    slab(k).kfree(addr)
