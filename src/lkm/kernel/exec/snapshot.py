"""The running kernel's memory kept between processes (insmod in one, rmmod in another).

A snapshot holds what module code can have changed or will need again: the modules'
regions and symbols, the kernel data and heap mappings, the per-CPU area and native code,
the symbol table (stub and data addresses are baked into relocated module code, so they
must stay where they were), the kernel API's persistent state (slab books, clock, pid
counter) and the runtime's counters (oopses, the last unloaded module).  Pages that are
all zero are left out; the whole is zstd-compressed and written to a temporary file
renamed over the target, so a killed process leaves the previous snapshot.

Format: ``LKMX`` + u32 length + JSON metadata + the page bytes in metadata order.
"""

from __future__ import annotations

import contextlib
import json
import os
import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lkm.errors import LkmError
from lkm.kernel.exec.abi_x86_64 import KERNEL_TEXT
from lkm.kernel.exec.memory import PAGE_SIZE

if TYPE_CHECKING:
    from lkm.kernel.exec.runtime import Runtime

MAGIC = b"LKMX"
FORMAT = 1
SAVED_KINDS = ("kdata", "heap")  # mappings made while running, recreated from the snapshot
ZERO_PAGE = bytes(PAGE_SIZE)


class SnapshotError(LkmError):
    """A snapshot file is unreadable or of another format."""


def _pages(data: bytearray) -> tuple[list[int], list[bytes]]:
    idx, out = [], []
    mv = memoryview(data)
    for i in range(0, len(data), PAGE_SIZE):
        page = mv[i:i + PAGE_SIZE]
        if page != ZERO_PAGE:
            idx.append(i // PAGE_SIZE)
            out.append(bytes(page))
    return idx, out


def dumps(rt: Runtime) -> bytes:
    blobs: list[bytes] = []

    def pages_of(data: bytearray) -> list[int]:
        idx, out = _pages(data)
        blobs.extend(out)
        return idx

    mappings = []
    for m in rt.mem.mappings:
        if m.kind in SAVED_KINDS or m.name in ("percpu", "native"):
            mappings.append([m.name, m.base, len(m.data), m.perm, m.kind, pages_of(m.data)])
    modules = {}
    for name, code in rt.code.items():
        mm = code.memory
        modules[name] = {
            "regions": [[r.kind, r.base, r.size, r.perm, pages_of(r.data)] for r in mm.regions],
            "symbols": [list(s) for s in mm.symbols], "init": mm.init, "exit": mm.exit,
            "this_module": mm.this_module, "sections": mm.sections,
        }
    meta = {
        "format": FORMAT, "symbols": rt.symbols, "sizes": rt.sizes,
        "next": [rt.next_stub, rt.next_native, rt.next_kdata, rt.kdata_end, rt.next_percpu],
        "mappings": mappings, "modules": modules, "kernel": rt.kernel.to_json(),
        "die_counter": rt.die_counter, "last_unloaded": rt.last_unloaded_module,
        "watchdog": [rt.watchdog, rt.watchdog_thresh], "uts_version": rt.uts_version,
    }
    head = json.dumps(meta, separators=(",", ":")).encode()
    raw = MAGIC + struct.pack("<I", len(head)) + head + b"".join(blobs)
    import zstandard

    return bytes(zstandard.ZstdCompressor(level=3).compress(raw))


def loads(rt: Runtime, data: bytes) -> None:
    """Fill a fresh runtime from a snapshot (module memories included)."""
    import zstandard

    from lkm.kernel.module.state import ModuleMemory, ModuleSymbol, Region

    try:
        raw = zstandard.ZstdDecompressor().decompress(data, max_output_size=1 << 31)
        if raw[:4] != MAGIC:
            raise SnapshotError("not an lkm exec snapshot")
        (n,) = struct.unpack_from("<I", raw, 4)
        meta: dict[str, Any] = json.loads(raw[8:8 + n])
    except (zstandard.ZstdError, ValueError, struct.error) as e:
        raise SnapshotError(f"unreadable exec snapshot: {e}") from e
    if meta.get("format") != FORMAT:
        raise SnapshotError("exec snapshot of another format")
    pos = 8 + n

    def fill(buf: bytearray, idx: list[int]) -> None:
        nonlocal pos
        for i in idx:
            buf[i * PAGE_SIZE:(i + 1) * PAGE_SIZE] = raw[pos:pos + PAGE_SIZE]
            pos += PAGE_SIZE

    for name, base, size, perm, kind, idx in meta["mappings"]:
        m = rt.mem.by_name(name) if name in ("percpu", "native") else None
        if m is None:
            m = rt.mem.map(name, base, size, perm, kind=kind)
        fill(m.data, idx)
    for name, d in meta["modules"].items():
        regions = []
        for kind, base, size, perm, idx in d["regions"]:
            r = Region(kind, base, size, perm)
            fill(r.data, idx)
            regions.append(r)
        mm = ModuleMemory(regions=regions,
                          symbols=[ModuleSymbol(*s) for s in d["symbols"]],
                          init=d["init"], exit=d["exit"], this_module=d["this_module"],
                          sections=dict(d["sections"]))
        mod = rt.kstate.find_module(name, even_unformed=True)
        if mod is not None:
            mod.memory = mm
            rt.attach(name, mm)
    rt.symbols = dict(meta["symbols"])
    rt.names = {a: s for s, a in rt.symbols.items()
                if a >= KERNEL_TEXT and not s.startswith("scratch:")}
    rt.sizes = dict(meta["sizes"])
    (rt.next_stub, rt.next_native, rt.next_kdata, rt.kdata_end, rt.next_percpu) = meta["next"]
    rt.kernel.load_json(meta["kernel"])
    rt.die_counter = meta["die_counter"]
    rt.last_unloaded_module = meta["last_unloaded"]
    rt.watchdog, rt.watchdog_thresh = meta["watchdog"]
    rt.uts_version = meta["uts_version"] or rt.uts_version


def save(rt: Runtime, path: Path) -> None:
    data = dumps(rt)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def load(rt: Runtime, path: Path) -> None:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise SnapshotError(f"{path}: {e.strerror}") from e
    loads(rt, data)
