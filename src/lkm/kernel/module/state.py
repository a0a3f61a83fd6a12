"""struct module and the kernel's module state (include/linux/module.h, kernel/module/main.c).

:class:`Module` holds what struct module holds that the views and the loader's later
decisions read; :class:`KernelState` is the rest of the kernel the loader touches (the
module list, the taint mask, boot settings) plus the three hooks through which module
code can be run (:meth:`KernelState.symbol_address`, :meth:`KernelState.run_init`,
:meth:`KernelState.run_exit`).  Both persist as JSON (the virtual kernel's state.json);
the relocated image (:class:`ModuleMemory`) is kept on a loaded module for the process
that loaded it and is not persisted.
"""

from __future__ import annotations

import base64
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from lkm.kernel.params import KernelParam
from lkm.kernel.printk import Printk
from lkm.kernel.profile import KernelProfile
from lkm.kernel.uapi import PAGE_SIZE

# enum module_state (include/linux/module.h)
MODULE_STATE_LIVE = 0
MODULE_STATE_COMING = 1
MODULE_STATE_GOING = 2
MODULE_STATE_UNFORMED = 3

MODULE_REF_BASE = 1  # kernel/module/main.c: the reference the module holds on itself
MODULE_NAME_LEN = 56  # 64 - sizeof(unsigned long)

# where the virtual kernel places things (x86_64 with KASLR off)
MODULES_VADDR = 0xFFFFFFFFC0000000
MODULES_LEN = 0x3F000000  # MODULES_END - MODULES_VADDR (a little under 1 GiB)
KERNEL_TEXT = 0xFFFFFFFF81000000


def page_align(v: int) -> int:
    return (v + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


# -- the relocated image ------------------------------------------------------------------

class Region:
    """One allocation (or STRICT_MODULE_RWX permission range) of a module's memory.

    ``kind`` is the memory type in 6.4's words (``text``, ``data``, ``rodata``,
    ``ro_after_init``, ``init_text``, ``init_data``, ``init_rodata``; "core" and "init"
    on a kernel without STRICT_MODULE_RWX, where a layout has one permission).  6.1
    splits its core and init layouts at the page-aligned text/ro/ro_after_init sizes;
    6.4+ allocates each struct module_memory type apart.  ``perm`` is what
    module_enable_rox/ro/nx (6.1: module_enable_x/ro/nx) set: "rx", "r" or "rw"
    ("rwx" without STRICT_MODULE_RWX); ``ro_after_init`` is "rw" until init returned.

    ``data`` (``size`` bytes, page aligned, zero-filled like the kernel's allocation)
    is assembled from the relocated sections when first read, so a load that nobody
    runs does not copy the image.
    """

    __slots__ = ("_data", "_fill", "base", "kind", "perm", "size")

    def __init__(self, kind: str, base: int, size: int, perm: str) -> None:
        self.kind = kind
        self.base = base
        self.size = size
        self.perm = perm
        self._data: bytearray | None = None
        self._fill: list[tuple[int, Callable[[], bytes | bytearray]]] = []

    def place(self, offset: int, contents: Callable[[], bytes | bytearray]) -> None:
        """Copy ``contents()`` to ``offset`` when the data is assembled (move_module())."""
        self._fill.append((offset, contents))

    @property
    def data(self) -> bytearray:
        if self._data is None:
            buf = bytearray(self.size)
            for off, contents in self._fill:
                b = contents()
                n = max(0, min(len(b), self.size - off))
                buf[off:off + n] = b[:n]
            self._data = buf
            self._fill = []
        return self._data

    @property
    def end(self) -> int:
        return self.base + self.size

    def __repr__(self) -> str:
        return f"Region({self.kind!r}, {self.base:#x}, size={self.size:#x}, {self.perm!r})"


class ModuleSymbol(NamedTuple):
    """A symbol of the module's own symbol table, at its address after layout (kallsyms)."""

    name: str
    addr: int
    size: int
    st_info: int  # type in the low 4 bits, binding in the high 4
    shndx: int

    @property
    def type(self) -> int:
        return self.st_info & 0xF

    @property
    def bind(self) -> int:
        return self.st_info >> 4


@dataclass
class ModuleMemory:
    """The module as loaded: its regions, its symbols, and struct module's pointers.

    ``init`` / ``exit`` are the addresses the relocated struct module holds in its
    init and exit fields (None when unset); ``this_module`` is the address of
    ``__this_module`` (.gnu.linkonce.this_module).  do_init_module() drops the init
    regions once init succeeded, as the kernel frees the init layout.
    """

    regions: list[Region] = field(default_factory=list)
    symbols: list[ModuleSymbol] = field(default_factory=list)
    init: int | None = None
    exit: int | None = None
    this_module: int = 0
    sections: dict[str, int] = field(default_factory=dict)  # name -> address
    _by_name: dict[str, ModuleSymbol] | None = field(default=None, init=False, repr=False)

    def region_at(self, addr: int) -> Region | None:
        for r in self.regions:
            if r.base <= addr < r.end:
                return r
        return None

    def symbol(self, name: str) -> ModuleSymbol | None:
        """The module's symbol ``name`` (the first one of that name in its symtab)."""
        if self._by_name is None:
            self._by_name = {}
            for s in reversed(self.symbols):
                self._by_name[s.name] = s
        return self._by_name.get(name)

    def free_init(self) -> None:
        """do_free_init(): the init layout is gone; ro_after_init becomes read-only."""
        self.regions = [r for r in self.regions if not r.kind.startswith("init")]
        for r in self.regions:
            if r.kind == "ro_after_init":
                r.perm = "r"


# -- struct module ------------------------------------------------------------------------

@dataclass
class Module:
    """A module in the kernel's list: what struct module holds that the views show."""

    name: str
    state: int = MODULE_STATE_UNFORMED
    refcnt: int = MODULE_REF_BASE
    taints: int = 0
    sources: list[str] = field(default_factory=list)  # users, newest first (source_list)
    targets: list[str] = field(default_factory=list)  # modules it uses (target_list)
    params: list[KernelParam] = field(default_factory=list)
    syms: dict[str, tuple[int | None, bool, str]] = field(default_factory=dict)
    has_init: bool = False
    has_exit: bool = False
    core_size: int = 0
    init_size: int = 0
    version: str | None = None
    srcversion: str | None = None
    sections: list[tuple[str, int]] = field(default_factory=list)
    notes: list[tuple[str, bytes]] = field(default_factory=list)
    base: int = 0
    args: str = ""
    sig_ok: bool = False
    path: str | None = None
    # the relocated image: kept by the process that loaded the module, not persisted
    memory: ModuleMemory | None = field(default=None, compare=False, repr=False)

    def refcount(self) -> int:
        """module_refcount(): references beyond the loader's base one."""
        return self.refcnt - MODULE_REF_BASE

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "state": self.state, "refcnt": self.refcnt,
            "taints": self.taints, "sources": self.sources, "targets": self.targets,
            "params": [p.to_json() for p in self.params],
            "syms": {k: list(v) for k, v in self.syms.items()},
            "has_init": self.has_init, "has_exit": self.has_exit,
            "core_size": self.core_size, "init_size": self.init_size,
            "version": self.version, "srcversion": self.srcversion,
            "sections": [list(s) for s in self.sections],
            "notes": [[n, base64.b64encode(d).decode()] for n, d in self.notes],
            "base": self.base, "args": self.args, "sig_ok": self.sig_ok, "path": self.path,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Module:
        return cls(
            name=d["name"], state=d["state"], refcnt=d["refcnt"], taints=d["taints"],
            sources=list(d["sources"]), targets=list(d["targets"]),
            params=[KernelParam.from_json(p) for p in d["params"]],
            syms={k: (v[0], bool(v[1]), v[2]) for k, v in d["syms"].items()},
            has_init=d["has_init"], has_exit=d["has_exit"], core_size=d["core_size"],
            init_size=d["init_size"], version=d.get("version"), srcversion=d.get("srcversion"),
            sections=[(s[0], s[1]) for s in d["sections"]],
            notes=[(n, base64.b64decode(b)) for n, b in d["notes"]],
            base=d["base"], args=d.get("args", ""), sig_ok=d.get("sig_ok", False),
            path=d.get("path"))


class ModuleRef:
    """The struct module being loaded, before it is in the list: its name and taints."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.taints = 0


# -- the kernel ---------------------------------------------------------------------------

@dataclass
class KernelState:
    """The mutable state of a (virtual) kernel: modules, taints, settings.

    The hooks :meth:`symbol_address`, :meth:`run_init` and :meth:`run_exit` are where
    module code execution plugs in (override them in a subclass, or assign callables to
    the instance); the defaults run nothing.
    """

    profile: KernelProfile
    modules: list[Module] = field(default_factory=list)  # newest first, as the kernel's list
    tainted: int = 0
    once: set[str] = field(default_factory=set)
    debug_locks: bool = True
    sig_enforce: bool = False
    lockdown: int = 0  # 0 none, 1 integrity, 2 confidentiality
    module_blacklist: str | None = None
    cmdline: str = ""
    spectre_v2_mitigated: bool = True
    init_results: dict[str, int] = field(default_factory=dict)
    modules_disabled: bool = False  # /proc/sys/kernel/modules_disabled, "nomodule"
    next_base: int = MODULES_VADDR + 0x200000

    # -- the hooks -------------------------------------------------------------------------
    def symbol_address(self, name: str) -> int:
        """The address an undefined symbol that vmlinux exports resolves to.

        Default: an invented address in the kernel's text, the same for a name every
        time (within ±2 GiB of the modules, as -mcmodel=kernel needs).
        """
        return KERNEL_TEXT + (zlib.crc32(name.encode("utf-8", "surrogateescape"))
                              & 0xFFFFFF) * 16

    def run_init(self, mod: Module) -> int:
        """Call mod->init (do_init_module(), only when the module has one); its return.

        Default: what ``init_results`` says for the module, else 0.  May raise
        :class:`lkm.errors.ProcessKilled` (an oops in init).
        """
        return self.init_results.get(mod.name, 0)

    def run_exit(self, mod: Module) -> None:
        """Call mod->exit (delete_module(), only when the module has one).

        Default: nothing.  May raise :class:`lkm.errors.ProcessKilled`.
        """

    # -- the module list -------------------------------------------------------------------
    def find_module(self, name: str, even_unformed: bool = False) -> Module | None:
        for m in self.modules:
            if m.name == name and (even_unformed or m.state != MODULE_STATE_UNFORMED):
                return m
        return None

    # -- taints (kernel/panic.c; the loader's rules are kernel/module/taint.py) -----------
    def test_taint(self, flag: int) -> bool:
        return bool(self.tainted >> flag & 1)

    def add_taint(self, flag: int, log: Printk, now_unreliable: bool = False) -> None:
        """add_taint(): the first LOCKDEP_NOW_UNRELIABLE taint turns lock debugging off.
        (The module loader taints through :mod:`lkm.kernel.module.taint`.)"""
        if now_unreliable and self.debug_locks:
            self.debug_locks = False
            log.warn("Disabling lock debugging due to kernel taint")
        self.tainted |= 1 << flag

    # -- memory ----------------------------------------------------------------------------
    def allocate(self, size: int) -> int:
        """module_alloc() / execmem_alloc(): the next free address (a guard page between)."""
        base = self.next_base
        self.next_base += max(PAGE_SIZE, page_align(size)) + PAGE_SIZE
        return base

    # -- persistence -----------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "modules": [m.to_json() for m in self.modules], "tainted": self.tainted,
            "once": sorted(self.once), "debug_locks": self.debug_locks,
            "sig_enforce": self.sig_enforce, "lockdown": self.lockdown,
            "module_blacklist": self.module_blacklist, "cmdline": self.cmdline,
            "spectre_v2_mitigated": self.spectre_v2_mitigated,
            "init_results": self.init_results, "next_base": self.next_base,
            "modules_disabled": self.modules_disabled,
        }

    def load_json(self, d: dict[str, Any]) -> None:
        """Fill this state from :meth:`to_json`'s form."""
        self.modules = [Module.from_json(m) for m in d["modules"]]
        self.tainted = d["tainted"]
        self.once = set(d["once"])
        self.debug_locks = d["debug_locks"]
        self.sig_enforce = d["sig_enforce"]
        self.lockdown = d["lockdown"]
        self.module_blacklist = d["module_blacklist"]
        self.cmdline = d["cmdline"]
        self.spectre_v2_mitigated = d["spectre_v2_mitigated"]
        self.init_results = dict(d["init_results"])
        self.next_base = d["next_base"]
        self.modules_disabled = bool(d.get("modules_disabled", False))


__all__ = [
    "KERNEL_TEXT", "MODULES_LEN", "MODULES_VADDR", "MODULE_NAME_LEN", "MODULE_REF_BASE",
    "MODULE_STATE_COMING", "MODULE_STATE_GOING", "MODULE_STATE_LIVE", "MODULE_STATE_UNFORMED",
    "PAGE_SIZE", "KernelState", "Module", "ModuleMemory", "ModuleRef", "ModuleSymbol", "Region",
    "page_align",
]
