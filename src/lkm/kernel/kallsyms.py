"""The kernel's own symbol table, decoded from the compressed kallsyms tables inside its
image (scripts/kallsyms.c writes them, kernel/kallsyms.c reads them).

A distribution's System.map is often a placeholder (Debian ships the real one in the -dbg
package), but every kernel built with CONFIG_KALLSYMS carries its symbols in .rodata:

- ``kallsyms_token_table``: 256 NUL-terminated strings, ``kallsyms_token_index`` (256
  u16 offsets into it) after it; a byte of a compressed name stands for its token;
- ``kallsyms_num_syms`` (a u32 in an 8-byte slot) followed by ``kallsyms_names``: per
  symbol a length (one byte, or two when the first has bit 7 set: 6.1+) and that many
  token bytes, the first expanded character the type letter;
- ``kallsyms_markers``: the offset of every 256th name (checks the decoding);
- ``kallsyms_offsets`` (s32 each) and ``kallsyms_relative_base``: before num_syms up to
  6.1's layout, after the token index in 6.4+'s; an address is the base plus the offset,
  with CONFIG_KALLSYMS_ABSOLUTE_PERCPU's rule (a non-negative offset is absolute, a
  per-CPU symbol; a negative one is ``base - 1 - offset``).

The tables are found without symbols: the token table by its run of single-digit tokens
("0".."9" stand for themselves), the names by a count that decodes to exactly the names
the markers describe.  The result is cached beside the profile (``<key>.kallsyms``).
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lkm.errors import LkmError

_DIGITS = b"".join(bytes([c]) + b"\0" for c in b"0123456789")
MIN_SYMS, MAX_SYMS = 1000, 2_000_000
SEARCH_BACK = 32 << 20


class KallsymsError(LkmError):
    """The image has no kallsyms tables this decoder recognises."""


@dataclass(frozen=True)
class KernelSymbol:
    addr: int
    type: str
    name: str


def _align8(x: int) -> int:
    return (x + 7) & ~7


def _token_table(v: bytes) -> tuple[int, int, list[bytes]] | None:
    """(token_table, token_index, the 256 tokens)."""
    for m in re.finditer(re.escape(_DIGITS), v):
        p = m.start()
        for _ in range(ord("0")):
            p = v.rfind(b"\0", 0, p - 1) + 1
        table, offs, tokens, q = p, [], [], p
        for _ in range(256):
            e = v.find(b"\0", q)
            if e < 0:
                break
            offs.append(q - table)
            tokens.append(v[q:e])
            q = e + 1
        if len(offs) != 256:
            continue
        index = _align8(q)
        if index + 512 <= len(v) and list(struct.unpack_from("<256H", v, index)) == offs:
            return table, index, tokens
    return None


def _walk_names(v: bytes, start: int, n: int, limit: int) -> tuple[list[int], int] | None:
    """The offsets of ``n`` names from ``start`` and where they end (None: overrun)."""
    at, offs = start, []
    for _ in range(n):
        if at >= limit:
            return None
        offs.append(at - start)
        ln = v[at]
        if ln & 0x80:
            ln = (ln & 0x7F) | (v[at + 1] << 7)
            at += 2
        else:
            at += 1
        if ln == 0:
            return None
        at += ln
    return offs, at


def _names(v: bytes, table: int) -> tuple[int, int, list[int], int] | None:
    """(num_syms position, n, name offsets, markers position)."""
    lo = max(0, table - SEARCH_BACK)
    for p in range(table - 8 - (table % 8), lo, -8):
        n, hi = struct.unpack_from("<II", v, p)
        if hi or not MIN_SYMS <= n <= MAX_SYMS:
            continue
        got = _walk_names(v, p + 8, n, table)
        if got is None:
            continue
        offs, end = got
        markers = _align8(end)
        count = (n + 255) >> 8
        if markers + 4 * count > table:
            continue
        want = [offs[i << 8] for i in range(count)]
        if list(struct.unpack_from(f"<{count}I", v, markers)) == want:
            return p, n, offs, markers
    return None


def _addresses(v: bytes, num_pos: int, index: int, n: int) -> list[int]:
    base_61 = struct.unpack_from("<Q", v, num_pos - 8)[0]
    if base_61 >> 47 == 0x1FFFF:  # relative_base right before num_syms: up to 6.1
        offsets_at = num_pos - 8 - _align8(4 * n)
        base = base_61
    else:  # after the token index
        offsets_at = index + 512
        base = struct.unpack_from("<Q", v, _align8(offsets_at + 4 * n))[0]
    offs = struct.unpack_from(f"<{n}i", v, offsets_at)
    return [o if o >= 0 else base - 1 - o for o in offs]


def decode(vmlinux: bytes) -> list[KernelSymbol]:
    """The kernel's symbols in kallsyms order (by address)."""
    tt = _token_table(vmlinux)
    if tt is None:
        raise KallsymsError("no kallsyms token table in the image")
    table, index, tokens = tt
    found = _names(vmlinux, table)
    if found is None:
        raise KallsymsError("no kallsyms names before the token table")
    num_pos, n, offs, _markers = found
    addrs = _addresses(vmlinux, num_pos, index, n)
    start = num_pos + 8
    out = []
    for i, o in enumerate(offs):
        at = start + o
        ln = vmlinux[at]
        if ln & 0x80:
            ln = (ln & 0x7F) | (vmlinux[at + 1] << 7)
            at += 2
        else:
            at += 1
        text = b"".join(tokens[b] for b in vmlinux[at:at + ln]).decode("ascii", "replace")
        out.append(KernelSymbol(addrs[i], text[:1], text[1:]))
    return out


_loaded: dict[Path, list[KernelSymbol]] = {}


def kernel_symbols(profile: Any) -> list[KernelSymbol]:
    """The profile's kernel symbols (decoded once, cached as ``<key>.kallsyms``)."""
    cache = Path(profile.cache_path(".kallsyms"))
    got = _loaded.get(cache)
    if got is not None:
        return got
    syms: list[KernelSymbol] | None = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        syms = [KernelSymbol(int(a, 16), t, nm) for a, t, nm in
                (ln.split(" ", 2) for ln in cache.read_text().splitlines())]
    if not syms:
        from lkm import kimage
        from lkm.kernel.layouts import image_of

        syms = decode(kimage.load_vmlinux(image_of(profile)))
        tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
        with contextlib.suppress(OSError):
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text("".join(f"{s.addr:016x} {s.type} {s.name}\n" for s in syms))
            os.replace(tmp, cache)
    _loaded[cache] = syms
    return syms


# -- /proc/kallsyms (kernel/kallsyms.c s_show, kernel/module/kallsyms.c) ---------------------------

STB_LOCAL, STT_SECTION, STT_FILE = 0, 3, 4
SHN_UNDEF, SHN_LORESERVE = 0, 0xFF00


def module_symbol_type(mm: Any, sym: Any) -> str:
    """elf_type(): the letter of a module symbol by its section (found by address: the
    section starting last at or before it), lower case ("local")."""
    bind = sym.st_info >> 4
    if bind == 2:  # STB_WEAK
        return "v" if sym.st_info & 0xF == 1 else "w"
    region = mm.region_at(sym.addr)
    if region is None:
        return "?"
    if "x" in region.perm:
        return "t"
    best, at = "", -1
    for name, base in mm.sections.items():
        if at < base <= sym.addr and region.base <= base:
            best, at = name, base
    if best.startswith(".bss"):
        return "b"
    return "r" if "rodata" in region.kind else "d"


def module_kallsyms(mod: Any) -> list[tuple[int, str, str]]:
    """(address, type, name) of the symbols a live module keeps (is_core_symbol(): named,
    defined in a section, in memory that outlives init), in symbol table order; upper
    case when the module exports it."""
    mm = mod.memory
    if mm is None:
        return []
    live = [r for r in mm.regions if not r.kind.startswith("init")]
    out = []
    for s in mm.symbols:
        if not s.name or s.shndx == SHN_UNDEF or s.shndx >= SHN_LORESERVE:
            continue
        if s.st_info & 0xF in (STT_SECTION, STT_FILE):
            continue
        if not any(r.base <= s.addr < r.end for r in live):
            continue
        t = module_symbol_type(mm, s)
        out.append((s.addr, t.upper() if s.name in mod.syms else t, s.name))
    return out


def proc_kallsyms(k: Any, privileged: bool = True) -> str:
    """The text of /proc/kallsyms: the kernel's symbols, then each live module's with
    ``\\t[module]``; addresses zeroed for a reader kallsyms_show_value() refuses."""
    from lkm.kernel.module.state import MODULE_STATE_UNFORMED

    def addr(a: int) -> str:
        return f"{a if privileged else 0:016x}"

    parts = [f"{addr(s.addr)} {s.type} {s.name}\n" for s in kernel_symbols(k.profile)]
    for m in k.modules:
        if m.state == MODULE_STATE_UNFORMED:
            continue
        parts.extend(f"{addr(a)} {t} {n}\t[{m.name}]\n" for a, t, n in module_kallsyms(m))
    return "".join(parts)
