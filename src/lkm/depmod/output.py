"""The content of each file depmod writes (tools/depmod.c, depmod_output_*).

Text files list the modules in module order; the indexes (``.bin``) hold the same
entries with each module's number as priority (:mod:`lkm.index`).  modules.dep lists
each module's transitive dependencies, nearest (in Kahn's order) first;
modules.symbols follows libkmod's hash-table order (2048 buckets) of the symbols.
"""

from __future__ import annotations

import errno as _errno
import re
from array import array
from collections.abc import Callable, Iterator

from lkm.config.depmod import LogFn
from lkm.config.lines import PATH_MAX, fgets_lines
from lkm.depmod.hash import hash_order_key
from lkm.depmod.state import DepmodModule, DepmodState, dec, enc
from lkm.errors import InvalidAlias
from lkm.index import IndexBuilder, Layout
from lkm.kmod.names import alias_normalize as _lookup_key
from lkm.logprio import LOG_ERR, LOG_WARNING

# output files in kmod's order
OUTPUTS = ("modules.dep", "modules.dep.bin", "modules.alias", "modules.alias.bin",
           "modules.softdep", "modules.symbols", "modules.symbols.bin", "modules.builtin.bin",
           "modules.builtin.alias.bin", "modules.devname")
# what depmod -n prints, in this order
TEXT_OUTPUTS = ("modules.dep", "modules.alias", "modules.softdep", "modules.symbols",
                "modules.devname")


def alias_normalize(alias: str) -> str | None:
    """kmod's alias_normalize as depmod uses it: None on an unmatched bracket."""
    try:
        return _lookup_key(alias)
    except InvalidAlias:
        return None


def dep_lines(d: DepmodState) -> list[str]:
    """modules.dep lines (without newline), in module order."""
    if d.dep_lines_cache is not None:
        return d.dep_lines_cache
    lines = []
    for m in d.modules:
        if not m.deps:
            lines.append(m.out_path + ":")
            continue
        lines.append(m.out_path + ": " + " ".join(dep.out_path for dep in _closure(m)))
    d.dep_lines_cache = lines
    return lines


def output_deps(d: DepmodState) -> bytes:
    return enc("".join(line + "\n" for line in dep_lines(d)))


def output_deps_bin(d: DepmodState, layout: Layout = "postorder") -> bytes:
    idx = IndexBuilder()
    if not d.warn_dups:
        idx.extend((m.modname, line, m.idx)
                   for m, line in zip(d.modules, dep_lines(d), strict=True))
        return idx.to_bytes(layout)
    for m, line in zip(d.modules, dep_lines(d), strict=True):
        if idx.add(m.modname, line, m.idx):
            d.log(LOG_WARNING, f"duplicate module deps:\n{line}\n")
    return idx.to_bytes(layout)


def output_aliases(d: DepmodState) -> bytes:
    out = ["# Aliases extracted from modules themselves.\n"]
    for m in d.modules:
        for k, v in m.info:
            if k == "alias":
                out.append(f"alias {v} {m.modname}\n")
    return enc("".join(out))


def output_aliases_bin(d: DepmodState, layout: Layout = "postorder") -> bytes:
    idx = IndexBuilder()
    if not d.warn_dups:
        # a key's values of equal priority come from one module: their order is moot
        entries = []
        for m in d.modules:
            name, prio = m.modname, m.idx
            for k, v in m.info:
                if k == "alias":
                    if "[" not in v and "]" not in v and len(v) < PATH_MAX:
                        entries.append((v.replace("-", "_"), name, prio))
                        continue
                    alias = alias_normalize(v)
                    if alias is None:
                        d.log(LOG_WARNING, f"Unmatched bracket in {v}\n")
                    else:
                        entries.append((alias, name, prio))
        idx.extend(entries)
        return idx.to_bytes(layout)
    for m in d.modules:
        for k, v in m.info:
            if k != "alias":
                continue
            alias = alias_normalize(v)
            if alias is None:
                d.log(LOG_WARNING, f"Unmatched bracket in {v}\n")
                continue
            if idx.add(alias, m.modname, m.idx) and d.warn_dups:
                d.log(LOG_WARNING, f"duplicate module alias:\n{alias} {m.modname}\n")
    return idx.to_bytes(layout)


def output_softdeps(d: DepmodState) -> bytes:
    out = ["# Soft dependencies extracted from modules themselves.\n"]
    for m in d.modules:
        for k, v in m.info:
            if k == "softdep":
                out.append(f"softdep {m.modname} {v}\n")
    return enc("".join(out))


def _owned_symbols(d: DepmodState) -> list[tuple[str, DepmodModule]]:
    """Module-owned symbols in libkmod's hash-table order (2048 buckets)."""
    if d.sorted_symbols_cache is None:
        owner = d.owner
        bucket: dict[str, int] = {}
        if not d.sym_prefix:  # the readers hashed the names of the exports
            for m in d.modules:
                data = m.data
                if data is not None and data.export_buckets:
                    bucket.update(zip(data.exports, array("H", data.export_buckets),
                                      strict=True))
        get = bucket.get
        names = sorted(owner, key=lambda n: (get(n), enc(n)) if n in bucket
                       else hash_order_key(n, 2048))
        d.sorted_symbols_cache = [(n, owner[n]) for n in names]
    return d.sorted_symbols_cache


def output_symbols(d: DepmodState) -> bytes:
    out = ["# Aliases for symbols, used by symbol_request().\n"]
    for name, owner in _owned_symbols(d):
        out.append(f"alias symbol:{name} {owner.modname}\n")
    return enc("".join(out))


def output_symbols_bin(d: DepmodState, layout: Layout = "postorder") -> bytes:
    idx = IndexBuilder()
    if not d.warn_dups:  # one value per key: the insertion order is moot
        idx.extend(("symbol:" + n, o.modname, o.idx) for n, o in d.owner.items())
        return idx.to_bytes(layout)
    for name, owner in _owned_symbols(d):
        if idx.add("symbol:" + name, owner.modname, owner.idx) and d.warn_dups:
            d.log(LOG_WARNING, f"duplicate module syms:\nsymbol:{name} "
                                  f"{owner.modname}\n")
    return idx.to_bytes(layout)


def output_builtin_bin(d: DepmodState, layout: Layout = "postorder") -> bytes:
    data = d.read_input("modules.builtin")
    if data is None:
        return b""
    idx = IndexBuilder()
    last: str | None = None
    for raw in fgets_lines(data):
        if not raw[:1].isalpha():
            d.log(LOG_ERR, f"Invalid modules.builtin line: {dec(raw)}\n")
            continue
        name = _builtin_modname(raw)
        if name is None:  # kmod reuses its buffer: the previous name again
            if last is None:
                continue
            name = last
        last = name
        idx.add(name, "", 0)
    return idx.to_bytes(layout)


def output_builtin_alias_bin(d: DepmodState, layout: Layout = "postorder") -> bytes:
    data = d.read_input("modules.builtin.modinfo")
    if data is None:
        return b""
    idx = IndexBuilder()
    for modname, alias in _builtin_aliases(data, d.log):
        norm = alias_normalize(alias)
        if norm is None:
            d.log(LOG_WARNING, f"Unmatched bracket in {alias}\n")
            continue
        idx.add(norm, modname, 0)
    return idx.to_bytes(layout)


def output_devname(d: DepmodState) -> bytes:
    out: list[str] = []
    for m in d.modules:
        if not any(k == "alias" and v.startswith("devname:") for k, v in m.info):
            continue  # nothing to write for a module without a devname alias
        devname: str | None = None
        kind = ""
        major = minor = 0
        for k, v in m.info:
            if k != "alias":
                continue
            if v.startswith("devname:"):
                devname = v[8:]
            else:
                for prefix, t in (("char-major-", "c"), ("block-major-", "b")):
                    got = _scan_major_minor(v, prefix)
                    if got is not None:
                        kind, (major, minor) = t, got
                        break
            if kind and devname is not None:
                break
        if devname is None:
            continue
        if kind:
            if not out:
                out.append("# Device nodes to trigger on-demand module loading.\n")
            out.append(f"{m.modname} {devname} {kind}{major}:{minor}\n")
        else:
            d.log(LOG_ERR, f"Module '{m.modname}' has devname ({devname}) but lacks "
                              "major and minor information. Ignoring.\n")
    return enc("".join(out))


_TEXT: dict[str, Callable[[DepmodState], bytes]] = {
    "modules.dep": output_deps,
    "modules.alias": output_aliases,
    "modules.softdep": output_softdeps,
    "modules.symbols": output_symbols,
    "modules.devname": output_devname,
}
_INDEXES: dict[str, Callable[[DepmodState, Layout], bytes]] = {
    "modules.dep.bin": output_deps_bin,
    "modules.alias.bin": output_aliases_bin,
    "modules.symbols.bin": output_symbols_bin,
    "modules.builtin.bin": output_builtin_bin,
    "modules.builtin.alias.bin": output_builtin_alias_bin,
}


def output(d: DepmodState, name: str, layout: Layout = "postorder") -> bytes:
    """The content of output file ``name`` (one of :data:`OUTPUTS`); the indexes in
    ``layout``."""
    text = _TEXT.get(name)
    if text is not None:
        return text(d)
    return _INDEXES[name](d, layout)


def show_text(d: DepmodState) -> Iterator[bytes]:
    """What ``depmod -n`` prints: the text outputs in kmod's order."""
    for name in TEXT_OUTPUTS:
        yield output(d, name)


def _closure(m: DepmodModule) -> list[DepmodModule]:
    """Every module ``m`` depends on, directly or not, nearest (lowest dep_sort_idx) first."""
    seen: set[int] = set()
    out: list[DepmodModule] = []
    stack = list(reversed(m.deps))
    while stack:
        d = stack.pop()
        if id(d) in seen:
            continue
        seen.add(id(d))
        out.append(d)
        stack.extend(reversed(d.deps))
    out.sort(key=lambda d: d.dep_sort_idx)
    return out


def _builtin_modname(line: bytes) -> str | None:
    """path_to_modname of a modules.builtin line (its newline kept, as fgets gives it)."""
    base = line[line.rfind(b"/") + 1:]
    if not base:
        return None
    dot = base.find(b".")
    if dot >= 0:
        base = base[:dot]
    return dec(base[:PATH_MAX - 1]).replace("-", "_")


def _builtin_aliases(data: bytes, log: LogFn) -> Iterator[tuple[str, str]]:
    """(module, alias) pairs of modules.builtin.modinfo (``module.key=value\\0`` records),
    read with kmod's stream rules."""
    pos, n = 0, len(data)
    size = PATH_MAX

    def field_to(end: int) -> tuple[bytes, int]:
        """flush_stream_to: the bytes before ``end`` (or NUL/EOF); (b"", ...) if the stop
        was not ``end``.  Returns (value, length) with length 0 meaning 'nothing'."""
        nonlocal pos
        start = pos
        stop = n
        e = data.find(bytes((end,)), start, start + size + 1) if end else -1
        z = data.find(b"\0", start, start + size + 1)
        for cand in (e, z):
            if 0 <= cand < stop:
                stop = cand
        if stop - start > size - 1 and stop - start >= size:
            # the buffer filled up: size bytes stored, one more read
            got = data[start:start + size]
            extra = data[start + size:start + size + 1]
            pos = start + size + 1
            log(LOG_WARNING, f"Could not flush stream: {_errno.ENOSPC}. Partial content: "
                             f"{dec(got)}\n")
            if extra and extra[0] == end:
                return got[:size - 1], size - 1
            return b"", 0
        got = data[start:stop]
        if stop < n:
            pos = stop + 1
            if data[stop] == end:
                return got, len(got)
            return b"", 0
        pos = n
        return b"", 0

    def flush() -> None:
        """Skip past the next NUL."""
        nonlocal pos
        z = data.find(b"\0", pos)
        pos = n if z < 0 else z + 1

    while pos < n:
        modname, ln = field_to(0x2E)  # '.'
        if not ln:
            continue
        key, _ = field_to(0x3D)  # '='
        if key != b"alias":
            flush()
            continue
        value, ln = field_to(0)
        if not ln:
            continue
        yield dec(modname), dec(value)


def _scan_major_minor(value: str, prefix: str) -> tuple[int, int] | None:
    """sscanf(value, "<prefix>%u-%u") == 2."""
    if not value.startswith(prefix):
        return None
    m = re.match(r"\s*([+-]?)(\d+)-\s*([+-]?)(\d+)", value[len(prefix):])
    if m is None:
        return None
    return _scanf_u(m.group(1), m.group(2)), _scanf_u(m.group(3), m.group(4))


def _scanf_u(sign: str, digits: str) -> int:
    v = int(digits)
    if v > 0xFFFFFFFFFFFFFFFF:
        v = 0xFFFFFFFFFFFFFFFF
    if sign == "-":
        v = (-v) & 0xFFFFFFFFFFFFFFFF
    return v & 0xFFFFFFFF
