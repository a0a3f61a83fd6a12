"""Symbol resolution and the dependency order (tools/depmod.c).

* vmlinux's symbols come from ``-E Module.symvers`` (with CRCs) or ``-F System.map``
  (depmod_load_symvers, depmod_load_system_map), with libkmod's fake symbols;
* each module export has one owner, the last module in module order exporting it;
* a module depends on the owners of its dependency symbols (depmod_load_dependencies),
  with ``-e`` the unknown symbols and CRC mismatches reported;
* Kahn's sort (a LIFO of modules nobody uses) numbers the modules topologically
  (depmod_calculate_dependencies); what it cannot number is in a cycle, reported as
  kmod reports it.
"""

from __future__ import annotations

import errno as _errno
import os
import re
from collections.abc import Iterable

from lkm.config.lines import fgets_lines, read_file
from lkm.depmod.errors import DependencyCycleError
from lkm.depmod.read import ModuleData
from lkm.depmod.state import DepmodModule, DepmodState, dec, enc
from lkm.logprio import LOG_ERR, LOG_WARNING

# --------------------------------------------------------------------------- vmlinux


def _symbol_add(d: DepmodState, name: str, prefix_skipped: bool, crc: int) -> None:
    """A vmlinux symbol, from Module.symvers or System.map."""
    if not prefix_skipped and d.sym_prefix and name.startswith(d.sym_prefix):
        name = name[1:]
    d.vmlinux_symbols[name] = crc


def _symbol_known(d: DepmodState, name: str) -> bool:
    if name.startswith("."):
        name = name[1:]
    if d.sym_prefix and name.startswith(d.sym_prefix):
        name = name[1:]
    return name in d.vmlinux_symbols


def _add_fake_symbols(d: DepmodState) -> None:
    """libkmod's fake symbols, which every module may use (depmod_add_fake_syms)."""
    _symbol_add(d, "__this_module", True, 0)
    _symbol_add(d, "_GLOBAL_OFFSET_TABLE_", True, 0)
    if not _symbol_known(d, "TOC."):
        _symbol_add(d, "TOC.", True, 0)


def load_symvers(d: DepmodState, filename: str) -> None:
    """Add vmlinux's symbols and CRCs from a Module.symvers (OSError if unreadable)."""
    data = read_file(filename)
    for lineno, raw in enumerate(fgets_lines(data, 10240), 1):
        toks = [t for t in re.split(rb"[ \t]+", raw) if t]
        if len(toks) < 3 or toks[2] != b"vmlinux":
            continue
        ver = toks[0]
        m = re.match(rb"\s*[+-]?(?:0[xX])?([0-9a-fA-F]*)", ver)
        assert m is not None
        rest = ver[m.end():]
        if rest:
            d.log(LOG_ERR, f"{filename}:{lineno} Invalid symbol version {dec(ver)}: "
                           f"{os.strerror(0)}\n")
            continue
        crc = int(m.group(1), 16) if m.group(1) else 0
        if ver.lstrip().startswith(b"-"):
            crc = (-crc) & 0xFFFFFFFFFFFFFFFF
        _symbol_add(d, dec(toks[1]), False, min(crc, 0xFFFFFFFFFFFFFFFF))
    _add_fake_symbols(d)


def load_system_map(d: DepmodState, filename: str) -> None:
    """Add vmlinux's exports from the ``__ksymtab_*`` lines of a System.map."""
    data = read_file(filename)
    prefix = enc(d.sym_prefix)
    for lineno, raw in enumerate(fgets_lines(data, 10240), 1):
        p = raw.find(b" ")
        q = raw.find(b" ", p + 1) if p >= 0 else -1
        if q < 0:
            d.log(LOG_ERR, f"{filename}:{lineno}: invalid line: {dec(raw)}")
            continue
        rest = raw[q + 1:]
        if prefix and rest.startswith(prefix):
            rest = rest[1:]
        if not rest.startswith(b"__ksymtab_"):
            continue
        nl = rest.find(b"\n")
        if nl >= 0:
            rest = rest[:nl]
        _symbol_add(d, dec(rest[10:]), True, 0)
    _add_fake_symbols(d)


# --------------------------------------------------------------------------- modules


def resolve(d: DepmodState, results: list[ModuleData]) -> None:
    """Attach each module's read ``results`` (in module order), give every export its
    owner, find the dependencies and sort the modules topologically.

    Raises DependencyCycleError (after logging each cycle) when there are cycles.
    """
    owner = d.owner
    prefix = d.sym_prefix
    for m, data in zip(d.modules, results, strict=True):
        if data.error and data.error != _errno.ENOENT:
            d.log(LOG_ERR, f"failed to load symbols from {m.path}: "
                           f"{os.strerror(data.error)}\n")
        m.data = data
        m.info = data.info
        if prefix:
            for name in data.exports:
                owner[name[1:] if name.startswith(prefix) else name] = m
        else:
            owner.update(dict.fromkeys(data.exports, m))
    if d.check_symvers:
        for m in d.modules:
            assert m.data is not None and m.data.export_crcs is not None
            for name, crc in zip(m.data.exports, m.data.export_crcs, strict=True):
                d.export_crc[name[1:] if prefix and name.startswith(prefix) else name] = crc
    if (d.verbose or d.print_unknown or d.check_symvers or prefix
            or any(m.data is not None and m.data.dotted for m in d.modules)):
        _load_dependencies(d)
    else:
        _load_dependencies_fast(d)
    _calculate_dependencies(d)


def _load_dependencies_fast(d: DepmodState) -> None:
    """Dependencies when no symbol needs reporting: a set intersection per module,
    owners in the order of their first symbol (as kmod appends them)."""
    owner = d.owner
    keys = owner.keys()
    for m in d.modules:
        assert m.data is not None
        names = m.data.dep_names
        if not names:
            continue
        hits = keys & names
        if not hits:
            continue
        if len(hits) == 1:
            owners: Iterable[DepmodModule] = (owner[next(iter(hits))],)
        else:
            owners = dict.fromkeys([owner[n] for n in names if n in hits])
        deps = m.deps
        for o in owners:
            deps.append(o)
            o.users += 1


def _load_dependencies(d: DepmodState) -> None:
    """Dependencies one symbol at a time, with the -e reports, the -v lines, the
    symbol prefix and dotted names."""
    owner = d.owner
    vmlinux = d.vmlinux_symbols
    export_crc = d.export_crc
    prefix = d.sym_prefix
    check, warn = d.check_symvers, d.print_unknown
    verbose = d.verbose
    for m in d.modules:
        data = m.data
        assert data is not None
        deps = m.deps
        crcs = data.dep_crcs
        weaks = data.dep_weak
        for k, name in enumerate(data.dep_names):
            key = name[1:] if name.startswith(".") else name
            if prefix and key.startswith(prefix):
                key = key[1:]
            weak = weaks[k] if weaks is not None else False
            o = owner.get(key)
            if o is not None:
                sym_crc = export_crc.get(key, 0)
            elif key in vmlinux:
                sym_crc = vmlinux[key]
            else:
                if warn and not weak:
                    d.log(LOG_WARNING, f"{m.path} needs unknown symbol {name}\n")
                continue
            crc = crcs[k] if crcs is not None else 0
            if check and sym_crc != crc and not weak and warn:
                d.log(LOG_WARNING, f"{m.path} disagrees about version of symbol "
                                   f"{name}\n")
            if o is None or o in deps:
                continue
            deps.append(o)
            o.users += 1
            if verbose:
                d.show(f'{m.path} needs "{key}": {o.path}\n')


def _calculate_dependencies(d: DepmodState) -> None:
    """Kahn's sort: ``dep_sort_idx`` of each module, each ``deps`` sorted by it."""
    mods = d.modules
    users = [m.users for m in mods]
    roots = [i for i, u in enumerate(users) if u == 0]
    n_sorted = 0
    while roots:
        src = mods[roots.pop()]
        src.dep_sort_idx = n_sorted
        n_sorted += 1
        for dst in src.deps:
            j = dst.idx
            users[j] -= 1
            if users[j] == 0:
                roots.append(j)
    if n_sorted < len(mods):
        cycles, count = _report_cycles(d, users)
        raise DependencyCycleError(cycles, count)
    for m in mods:
        if len(m.deps) > 1:
            m.deps.sort(key=lambda dep: dep.dep_sort_idx)


def _report_cycles(d: DepmodState, users: list[int]) -> tuple[list[list[str]], int]:
    """kmod's cycle report: from each remaining module (array order) walk the
    dependencies depth first; reaching the start module again is a cycle."""
    roots = [m for i, m in enumerate(d.modules) if users[i] > 0]
    in_loops: set[str] = set()
    cycles: list[list[str]] = []
    visited: set[int] = set()
    while roots:
        root = roots.pop(0)
        stack = [_Vertex(root, None)]
        budget = 1 << 20
        while stack and budget:
            budget -= 1
            vertex = stack.pop()
            m = vertex.mod
            if id(m) in visited and m is root:
                chain: list[DepmodModule] = []
                p = vertex.parent
                while p is not None:
                    chain.append(p.mod)
                    p = p.parent
                for c in chain:
                    in_loops.add(c.modname)
                names = [c.modname for c in reversed(chain)] + [m.modname]
                for c in reversed(chain):
                    if c in roots:
                        roots.remove(c)
                cycles.append(names)
                d.log(LOG_ERR, "Cycle detected: " + " -> ".join(names) + "\n")
                continue
            visited.add(id(m))
            if not m.deps:
                if m in roots:
                    roots.remove(m)
                continue
            on_path = set()
            p = vertex.parent
            while p is not None:
                on_path.add(id(p.mod))
                p = p.parent
            for dep in m.deps:
                # kmod loops forever on a cycle that does not pass through the root
                if id(dep) in on_path and dep is not root:
                    continue
                stack.append(_Vertex(dep, vertex))
    d.log(LOG_ERR, f"Found {len(in_loops)} modules in dependency cycles!\n")
    return cycles, len(in_loops)


class _Vertex:
    """A step of the cycle search: a module and the vertex it was reached from."""

    __slots__ = ("mod", "parent")

    def __init__(self, mod: DepmodModule, parent: _Vertex | None) -> None:
        self.mod = mod
        self.parent = parent
