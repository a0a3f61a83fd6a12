"""NLS character set tables (fs/nls/nls_base.c).

The kernel keeps a singly linked list through ``nls_table.next`` headed by ``tables``,
whose last element is the built-in ``default_table`` ("default"): __register_nls() refuses
a table already linked (-EBUSY), sets its owner and pushes it at the head (so its ``next``
is the previous head); unregister_nls() unlinks it (-EINVAL when absent).  load_nls()
finds a table by charset name and takes a reference on its module; the virtual kernel does
not load one on demand (request_module), so an absent charset is NULL.
"""

from __future__ import annotations

import errno
from typing import Any

from lkm.kernel.api.core import Kernel, err, kdata, kfunc, substate
from lkm.kernel.api.driver_base import read_ptr, write_ptr


@substate("nls")
class Nls:
    """The list of registered tables, head first (addresses of struct nls_table)."""

    def __init__(self, k: Kernel | None = None) -> None:
        self.tables: list[int] = []

    def to_json(self) -> list[int]:
        return self.tables

    @classmethod
    def from_json(cls, k: Kernel | None, d: list[Any]) -> Nls:
        s = cls(k)
        s.tables = [int(a) for a in d]
        return s


def _size(k: Kernel) -> int:
    return k.layouts.sizeof("nls_table")


@kdata("default_table", _size)
def _default_table(k: Kernel, addr: int) -> None:
    write_ptr(k, addr, "nls_table", "charset", k.rt.kdata_scratch(b"default\0"))


def _link(k: Kernel, tables: list[int]) -> None:
    """Write the list's ``next`` pointers (the last points at default_table)."""
    default = k.symbol("default_table")
    for i, t in enumerate(tables):
        write_ptr(k, t, "nls_table", "next", tables[i + 1] if i + 1 < len(tables) else default)


@kfunc()
def __register_nls(k: Kernel, nls: int, owner: int) -> int:
    """fs/nls/nls_base.c."""
    s = k.sub(Nls)
    if read_ptr(k, nls, "nls_table", "next") or nls in s.tables:
        return err(errno.EBUSY)
    write_ptr(k, nls, "nls_table", "owner", owner)
    s.tables.insert(0, nls)
    _link(k, s.tables)
    return 0


@kfunc()
def unregister_nls(k: Kernel, nls: int) -> int:
    """fs/nls/nls_base.c."""
    s = k.sub(Nls)
    if nls not in s.tables:
        return err(errno.EINVAL)
    s.tables.remove(nls)
    _link(k, s.tables)
    return 0


def charsets(k: Kernel) -> list[str]:
    return [k.text(read_ptr(k, t, "nls_table", "charset")) for t in k.sub(Nls).tables]


@kfunc()
def load_nls(k: Kernel, charset: int) -> int:
    """fs/nls/nls_base.c: a registered table by name (and a reference on its module)."""
    from lkm.kernel.api.module import try_module_get

    name = k.text(charset)
    for t in k.sub(Nls).tables:
        if k.text(read_ptr(k, t, "nls_table", "charset")) == name:
            if try_module_get(k, read_ptr(k, t, "nls_table", "owner")):
                return t
            return 0
    return k.symbol("default_table") if name == "default" else 0


@kfunc()
def unload_nls(k: Kernel, nls: int) -> None:
    from lkm.kernel.api.module import module_put

    if nls:
        module_put(k, read_ptr(k, nls, "nls_table", "owner"))


@kfunc()
def load_nls_default(k: Kernel) -> int:
    """CONFIG_NLS_DEFAULT is "utf8": that table when registered, else default_table."""
    for t in k.sub(Nls).tables:
        if k.text(read_ptr(k, t, "nls_table", "charset")) == "utf8":
            return t
    return k.symbol("default_table")
