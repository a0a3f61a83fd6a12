"""Dynamic debug (lib/dynamic_debug.c): pr_debug() sites enabled by ``dyndbg=`` queries.

Each pr_debug() of a module is a ``struct _ddebug`` in its ``__dyndbg`` section and a
static branch: a NOP in the code, listed in ``__jump_table``, which the kernel rewrites
into a jump to the call of __dynamic_pr_debug() when the site's ``p`` flag is set
(static_branch_enable(), arch/x86/kernel/jump_label.c).  The ``dyndbg=`` module
parameter applies its query to the module's sites before init runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from lkm.kernel.api.core import Kernel, kfunc

if TYPE_CHECKING:
    from lkm.kernel.module.state import ModuleMemory

_DPRINTK_FLAGS_PRINT = 1 << 0
FLAG_CHARS = {"p": 1 << 0, "m": 1 << 1, "f": 1 << 2, "l": 1 << 3, "t": 1 << 4, "s": 1 << 5,
              "_": 0}
NOP5 = b"\x0f\x1f\x44\x00\x00"
NOP2 = b"\x66\x90"
JUMP_ENTRY = 16  # s32 code, s32 target, s64 key (relative; low bits: branch, init)


@dataclass
class Site:
    """A struct _ddebug of a module."""

    addr: int
    modname: str
    function: str
    filename: str
    format: str
    lineno: int
    flags: int


def _span(mm: ModuleMemory, name: str) -> tuple[int, int] | None:
    """A section's extent: to the next section of its region (sizes are not kept)."""
    addr = mm.sections.get(name)
    if addr is None:
        return None
    region = mm.region_at(addr)
    if region is None:
        return None
    later = [a for a in mm.sections.values() if addr < a < region.end]
    return addr, min(later, default=region.end)


def _bitfield(k: Kernel, addr: int, member: str) -> tuple[int, int, int]:
    """(word address, shift, mask) of a bitfield of struct _ddebug."""
    f = k.layouts.field("_ddebug", member)
    return addr + f.bit_offset // 32 * 4, f.bit_offset % 32, (1 << f.bitfield_size) - 1


def sites(k: Kernel, mm: ModuleMemory, modname: str) -> list[Site]:
    span = _span(mm, "__dyndbg")
    if span is None:
        return []
    lay = k.layouts
    size = lay.sizeof("_ddebug")
    out = []
    for a in range(span[0], span[1] - size + 1, size):
        name_p = k.mem.read_u64(a + lay.offsetof("_ddebug", "modname"))
        if not name_p or k.text(name_p, 64) != modname:
            break
        w, sh, m = _bitfield(k, a, "lineno")
        fw, fsh, fm = _bitfield(k, a, "flags")

        def s(member: str, at: int = a) -> str:
            p = k.mem.read_u64(at + lay.offsetof("_ddebug", member))
            return k.text(p, 4096) if p else ""
        out.append(Site(a, modname, s("function"), s("filename"), s("format"),
                        k.mem.read_u32(w) >> sh & m, k.mem.read_u32(fw) >> fsh & fm))
    return out


def _set_flags(k: Kernel, site: Site, flags: int) -> None:
    w, sh, m = _bitfield(k, site.addr, "flags")
    v = k.mem.read_u32(w)
    k.mem.write_u32(w, (v & ~(m << sh)) | ((flags & m) << sh))
    site.flags = flags


def set_branch(k: Kernel, mm: ModuleMemory, key: int, enabled: bool) -> None:
    """jump_label_update(): every jump entry of ``key`` becomes a JMP or the NOP again."""
    span = _span(mm, "__jump_table")
    if span is None:
        return
    for e in range(span[0], span[1] - JUMP_ENTRY + 1, JUMP_ENTRY):
        code = e + k.mem.read_s32(e)
        target = e + 4 + k.mem.read_s32(e + 4)
        raw = k.mem.read_u64(e + 8)
        raw = raw - (1 << 64) if raw >> 63 else raw
        entry_key = (e + 8 + (raw & ~3)) & 0xFFFFFFFFFFFFFFFF
        branch = raw & 1
        if entry_key != key:
            continue
        r = mm.region_at(code)
        if r is None:
            continue
        old = bytes(r.data[code - r.base:code - r.base + 5])
        short = old[:5] != NOP5 and old[:1] != b"\xe9" and (old[:2] == NOP2
                                                            or old[:1] == b"\xeb")
        jump = enabled != bool(branch)
        if short:
            new = (b"\xeb" + bytes(((target - code - 2) & 0xFF,))) if jump else NOP2
        else:
            new = (b"\xe9" + ((target - code - 5) & 0xFFFFFFFF).to_bytes(4, "little")) \
                if jump else NOP5
        r.data[code - r.base:code - r.base + len(new)] = new
    k.rt.code_changed()


def exec_queries(k: Kernel, mm: ModuleMemory, modname: str, query: str) -> int:
    """ddebug_exec_queries(): ``[match-spec ...] flags`` queries separated by ; or
    newlines, for the module's sites; the number of sites changed."""
    changed = 0
    all_sites = sites(k, mm, modname)
    for q in query.replace("\n", ";").split(";"):
        words = q.split()
        if not words:
            continue
        spec, matches = words[-1], dict(zip(words[:-1:2], words[1:-1:2], strict=False))
        op, chars = spec[:1], spec[1:]
        if op not in "+-=" or not op or any(c not in FLAG_CHARS for c in chars):
            continue
        mask = 0
        for c in chars:
            mask |= FLAG_CHARS[c]
        for s in all_sites:
            if "func" in matches and matches["func"] != s.function:
                continue
            if "file" in matches and not s.filename.endswith(matches["file"]):
                continue
            if "format" in matches and matches["format"] not in s.format:
                continue
            if "line" in matches and str(s.lineno) != matches["line"]:
                continue
            if "module" in matches and matches["module"] != modname:
                continue
            new = s.flags | mask if op == "+" else s.flags & ~mask if op == "-" else mask
            if new == s.flags:
                continue
            if (new ^ s.flags) & _DPRINTK_FLAGS_PRINT:
                set_branch(k, mm, s.addr + k.layouts.offsetof("_ddebug", "key"),
                           bool(new & _DPRINTK_FLAGS_PRINT))
            _set_flags(k, s, new)
            changed += 1
    return changed


def _prefix(k: Kernel, desc: int) -> bytes:
    """__dynamic_emit_prefix(): [pid] modname:function:line: as the flags ask."""
    lay = k.layouts
    fw, fsh, fm = _bitfield(k, desc, "flags")
    flags = k.mem.read_u32(fw) >> fsh & fm
    out = ""
    if flags & FLAG_CHARS["t"]:
        out += f"[{k.rt.current().pid}] "
    mark = len(out)
    for c, member in (("m", "modname"), ("f", "function"), ("s", "filename")):
        if flags & FLAG_CHARS[c]:
            out += k.text(k.mem.read_u64(desc + lay.offsetof("_ddebug", member))) + ":"
    if flags & FLAG_CHARS["l"]:
        w, sh, m = _bitfield(k, desc, "lineno")
        out += f"{k.mem.read_u32(w) >> sh & m}:"
    if len(out) > mark:
        out += " "
    return out.encode()


@kfunc()
def __dynamic_pr_debug(k: Kernel, descriptor: int, fmt: int) -> None:
    """printk(KERN_DEBUG "%s%pV", prefix, message)."""
    from lkm.kernel.api.printk import emit, format_text

    emit(k, b"\x017" + _prefix(k, descriptor) + format_text(k, fmt, k.cpu.args(2)))


@kfunc()
def __dynamic_dev_dbg(k: Kernel, descriptor: int, dev: int, fmt: int) -> None:
    """dev_printk_emit(LOGLEVEL_DEBUG, dev, "%s%s %s: %pV", prefix, driver, name, ...)."""
    from lkm.kernel.api.printk import dev_driver_string, dev_name, emit, format_text

    msg = format_text(k, fmt, k.cpu.args(3))
    if not dev:
        emit(k, b"\x017" + _prefix(k, descriptor) + b"(NULL device *): " + msg)
        return
    head = f"{dev_driver_string(k, dev)} {dev_name(k, dev)}: ".encode()
    emit(k, _prefix(k, descriptor) + head + msg, 7, dev_info=True)
