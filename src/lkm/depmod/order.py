"""How depmod numbers the modules (tools/depmod.c: depmod_modules_build_array,
depmod_modules_sort): libkmod's hash-table order of the names (512 buckets), then the
modules listed in modules.order first, in its order.  The number is the priority of a
module's entries in the indexes."""

from __future__ import annotations

from lkm.config.lines import fgets_lines
from lkm.depmod.hash import hash_order_key
from lkm.depmod.state import DepmodState, dec
from lkm.logprio import LOG_ERR


def build_array(d: DepmodState) -> None:
    """Number the modules found: ``d.modules`` in module order, each ``idx`` set."""
    d.built = True
    mods = sorted(d.by_name.values(), key=lambda m: hash_order_key(m.modname, 512))
    for i, m in enumerate(mods):
        m.idx = i
    d.modules = mods
    _sort_by_order(d)


def _sort_by_order(d: DepmodState) -> None:
    """modules.order's modules first; nothing changes if it is missing or a line lacks
    its newline."""
    fname = "modules.order"
    data = d.read_input(fname)
    if data is None:
        return
    lines = list(fgets_lines(data))
    for idx, line in enumerate(lines, 1):
        if line and not line.endswith(b"\n"):
            d.log(LOG_ERR, f"{d.dirname}/{fname}:{idx} corrupted line misses '\\n'\n")
            return
    total = len(lines) + 1
    by_unc = {m.uncrelpath: m for m in d.modules if m.uncrelpath is not None}
    for idx, line in enumerate(lines, 1):
        if not line:
            continue
        m = by_unc.get(dec(line[:-1]))
        if m is not None:
            m.sort_idx = idx - total
    d.modules.sort(key=lambda m: m.sort_idx)
    for i, m in enumerate(d.modules):
        m.idx = i
