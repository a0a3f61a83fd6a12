"""Where the module goes in memory: layout_sections(), layout_symtab(), the
allocation and move_module() (kernel/module/main.c, kallsyms.c, strict_rwx.c).

6.1 lays the sections out in a core and an init layout (struct module_layout), each
one allocation whose text, read-only and ro_after_init parts end on page boundaries
under STRICT_MODULE_RWX; 6.4+ has one allocation per struct module_memory type
(history.module_memory).  The result is a :class:`ModuleLayout` (section addresses,
sizes, /sys/module sections and notes) and, after move_module(), the regions of the
module's :class:`ModuleMemory` with the sections copied in.
"""

from __future__ import annotations

import errno
import functools
from dataclasses import dataclass, field

from lkm.kernel.module import history
from lkm.kernel.module.internal import (
    SHF_ALLOC,
    SHF_EXECINSTR,
    SHF_RO_AFTER_INIT,
    SHF_WRITE,
    SHN_UNDEF,
    SHT_NOBITS,
    SHT_NOTE,
    LoadError,
    LoadInfo,
)
from lkm.kernel.module.state import (
    MODULES_LEN,
    KernelState,
    ModuleMemory,
    ModuleRef,
    Region,
    page_align,
)
from lkm.kernel.printk import Printk

# enum mod_mem_type (6.4+)
MOD_TEXT, MOD_DATA, MOD_RODATA, MOD_RO_AFTER_INIT = 0, 1, 2, 3
MOD_INIT_TEXT, MOD_INIT_DATA, MOD_INIT_RODATA = 4, 5, 6
MEM_KINDS = ("text", "data", "rodata", "ro_after_init", "init_text", "init_data",
             "init_rodata")
MEM_PERMS = ("rx", "rw", "r", "rw", "rx", "rw", "r")  # module_enable_rox/ro/nx
_CORE_TYPES = (MOD_TEXT, MOD_DATA, MOD_RODATA, MOD_RO_AFTER_INIT)
_INIT_TYPES = (MOD_INIT_TEXT, MOD_INIT_DATA, MOD_INIT_RODATA)

# layout_sections()'s passes: (flags wanted, flags refused), and the memory type each
# pass fills in the core and the init part (6.4+; -1: none)
_MASKS = ((SHF_EXECINSTR | SHF_ALLOC, 0), (SHF_ALLOC, SHF_WRITE),
          (SHF_RO_AFTER_INIT | SHF_ALLOC, 0), (SHF_WRITE | SHF_ALLOC, 0), (SHF_ALLOC, 0))
_PASS_CORE = (MOD_TEXT, MOD_RODATA, MOD_RO_AFTER_INIT, MOD_DATA, MOD_DATA)
_PASS_INIT = (MOD_INIT_TEXT, MOD_INIT_RODATA, -1, MOD_INIT_DATA, MOD_INIT_DATA)

ELF64_SYM_SIZE = 24
MOD_KALLSYMS_SIZE = 32  # struct mod_kallsyms


@dataclass
class ModuleLayout:
    """The layout decided: section index -> (init?, offset, memory type or 0/1 for
    6.1's core/init layout) and address; sizes as /sys/module shows them."""

    core_size: int = 0
    init_size: int = 0
    core_base: int = 0
    init_base: int = 0
    place: dict[int, tuple[bool, int, int]] = field(default_factory=dict)
    addr: dict[int, int] = field(default_factory=dict)
    sect_addrs: list[tuple[str, int]] = field(default_factory=list)
    notes: list[tuple[str, bytes]] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)


def _align(v: int, a: int) -> int:
    a = a or 1
    return (v + a - 1) // a * a


def module_init_layout_section(k: KernelState, name: str) -> bool:
    """module_init_layout_section(): .init* (and .exit* without MODULE_UNLOAD)."""
    if not k.profile.enabled("MODULE_UNLOAD") and name.startswith(".exit"):
        return True
    return name.startswith(".init")


def module_enforce_rwx_sections(k: KernelState, info: LoadInfo, mod: ModuleRef,
                                log: Printk) -> None:
    """strict_rwx.c: no section may be both writable and executable."""
    if not k.profile.enabled("STRICT_MODULE_RWX"):
        return
    wx = SHF_WRITE | SHF_EXECINSTR
    for i in range(info.shnum):
        if info.sechdrs[i].sh_flags & wx == wx:
            log.err(f"{mod.name}: section {info.secname(i)} (index {i}) has invalid "
                    "WRITE|EXEC flags")
            raise LoadError(errno.ENOEXEC)


def layout_and_allocate(k: KernelState, info: LoadInfo, log: Printk) -> ModuleLayout:
    """layout_and_allocate() after check_modinfo(): section flags, layout, allocation."""
    module_enforce_rwx_sections(k, info, info.mod, log)
    sh = info.sechdrs
    sh[info.index_pcpu].sh_flags &= ~SHF_ALLOC
    for name in (".data..ro_after_init", "__jump_table"):
        ndx = info.find_sec(name)
        if ndx:
            sh[ndx].sh_flags |= SHF_RO_AFTER_INIT
    names = info.secnames()
    is_init = [module_init_layout_section(k, n) for n in names]
    lay = ModuleLayout()
    if history.module_memory(k.profile.version):
        _layout_module_memory(k, info, lay, is_init)
    else:
        _layout_core_init(k, info, lay, is_init)
    for i, h in enumerate(sh):
        if h.sh_flags & SHF_ALLOC and h.sh_size and i in lay.addr:
            lay.sect_addrs.append((names[i], lay.addr[i]))
            if h.sh_type == SHT_NOTE:
                lay.notes.append((names[i], info.sec_bytes(i)))
    return lay


def _layout_pass(info: LoadInfo, lay: ModuleLayout, is_init: list[bool], sizes: list[int],
                 init: bool, m: int, t: int) -> None:
    """One of layout_sections()'s passes: the sections with _MASKS[m]'s flags of the core
    or the init part, appended to ``sizes[t]``."""
    want, deny = _MASKS[m]
    for i, h in enumerate(info.sechdrs):
        f = h.sh_flags
        if (f & want) != want or f & deny or i in lay.place or is_init[i] != init:
            continue
        off = _align(sizes[t], h.sh_addralign)
        sizes[t] = off + h.sh_size
        lay.place[i] = (init, off, t)


def _layout_module_memory(k: KernelState, info: LoadInfo, lay: ModuleLayout,
                          is_init: list[bool]) -> None:
    """6.4+: a size per struct module_memory type, each allocated apart."""
    sizes = [0] * 7
    for init, types in ((False, _PASS_CORE), (True, _PASS_INIT)):
        for m, t in enumerate(types):
            if t >= 0:
                _layout_pass(info, lay, is_init, sizes, init, m, t)
    layout_symtab(k, info, lay, sizes, MOD_INIT_DATA, MOD_DATA, strict_align=False)
    lay.core_size = sum(page_align(sizes[t]) for t in _CORE_TYPES)
    lay.init_size = sum(page_align(sizes[t]) for t in _INIT_TYPES)
    if lay.core_size + lay.init_size > MODULES_LEN:
        raise LoadError(errno.ENOMEM)  # execmem_alloc() fails
    strict = k.profile.enabled("STRICT_MODULE_RWX")
    bases = [k.allocate(page_align(s)) if s else 0 for s in sizes]
    lay.core_base = bases[MOD_TEXT]
    for t, size in enumerate(sizes):
        if size:
            lay.regions.append(Region(MEM_KINDS[t], bases[t], page_align(size),
                                      MEM_PERMS[t] if strict else "rwx"))
    for i, (_init, off, t) in lay.place.items():
        lay.addr[i] = bases[t] + off


def _layout_core_init(k: KernelState, info: LoadInfo, lay: ModuleLayout,
                      is_init: list[bool]) -> None:
    """6.1: a core and an init layout; with STRICT_MODULE_RWX the text, ro and
    ro_after_init parts end on page boundaries (strict_align())."""
    strict = k.profile.enabled("STRICT_MODULE_RWX")
    sizes = [0, 0]  # core, init
    bounds: list[list[int]] = [[], []]  # text_size, ro_size, ro_after_init_size
    for init in (False, True):
        j = int(init)
        for m in range(len(_MASKS)):
            _layout_pass(info, lay, is_init, sizes, init, m, j)
            if strict and (m in (0, 1, 4) or (m == 2 and not init)):
                sizes[j] = page_align(sizes[j])
            if m < 3:
                bounds[j].append(sizes[j])
    layout_symtab(k, info, lay, sizes, 1, 0, strict_align=strict)
    lay.core_size, lay.init_size = sizes[0], sizes[1]
    if sizes[0] + sizes[1] > MODULES_LEN:
        raise LoadError(errno.ENOMEM)  # module_alloc() fails
    lay.core_base = k.allocate(sizes[0])
    lay.init_base = k.allocate(sizes[1]) if sizes[1] else 0
    for i, (init, off, _t) in lay.place.items():
        lay.addr[i] = (lay.init_base if init else lay.core_base) + off
    for j, base in ((0, lay.core_base), (1, lay.init_base)):
        if sizes[j]:
            lay.regions += _layout_regions(j == 1, base, bounds[j], sizes[j], strict)


def _layout_regions(init: bool, base: int, bounds: list[int], size: int, strict: bool
                    ) -> list[Region]:
    """6.1: a layout (struct module_layout) as its STRICT_MODULE_RWX ranges."""
    if not strict:
        return [Region("init" if init else "core", base, page_align(size), "rwx")]
    text, ro, ro_after_init = bounds
    pre = "init_" if init else ""
    ranges = [("text", 0, text, "rx"), ("rodata", text, ro, "r"),
              ("ro_after_init", ro, ro_after_init, "rw"), ("data", ro_after_init, size, "rw")]
    return [Region(pre + kind, base + start, page_align(end) - start, perm)
            for kind, start, end, perm in ranges if end > start]


def layout_symtab(k: KernelState, info: LoadInfo, lay: ModuleLayout, sizes: list[int],
                  init_t: int, core_t: int, strict_align: bool) -> None:
    """layout_symtab() (kallsyms.c): the full symbol and string tables go in init data;
    the symbols kallsyms keeps, their names and types in core data."""
    sh = info.sechdrs

    def place(idx: int) -> None:
        h = sh[idx]
        h.sh_flags |= SHF_ALLOC
        off = _align(sizes[init_t], h.sh_addralign)
        sizes[init_t] = off + h.sh_size
        lay.place[idx] = (True, off, init_t)

    place(info.index_sym)
    syms = info.symbols()
    if not k.profile.enabled("KALLSYMS"):
        return
    kallsyms_all = k.profile.enabled("KALLSYMS_ALL")
    is_livepatch = info.get_modinfo("livepatch") is not None
    strtab = info.sec_bytes(info.index_str) if sh[info.index_str].sh_type != SHT_NOBITS \
        else b""
    core_ok = [bool(h.sh_flags & SHF_ALLOC) and (kallsyms_all or bool(h.sh_flags & SHF_EXECINSTR))
               and not (i in lay.place and lay.place[i][0]) for i, h in enumerate(sh)]
    ndst = strtab_size = 0
    for i, s in enumerate(syms):
        keep = i == 0 or is_livepatch
        if not keep and s.st_shndx != SHN_UNDEF and s.st_shndx < info.shnum and s.st_name:
            keep = (kallsyms_all and s.st_shndx == info.index_pcpu) or core_ok[s.st_shndx]
        if keep:
            end = strtab.find(b"\0", s.st_name)
            strtab_size += (end - s.st_name if end >= 0
                            else max(0, len(strtab) - s.st_name)) + 1
            ndst += 1
    symoffs = _align(sizes[core_t], sh[info.index_sym].sh_addralign)
    sizes[core_t] = symoffs + ndst * ELF64_SYM_SIZE + strtab_size + ndst  # + typetab
    if strict_align:
        sizes[core_t] = page_align(sizes[core_t])
    place(info.index_str)
    sizes[init_t] = _align(sizes[init_t], 8) + MOD_KALLSYMS_SIZE + len(syms)
    if strict_align:
        sizes[init_t] = page_align(sizes[init_t])


def move_module(info: LoadInfo, lay: ModuleLayout) -> ModuleMemory:
    """move_module(): the regions with each allocated section placed at its address
    (copied, with its relocations, when the region's data is first read)."""
    mem = ModuleMemory(regions=lay.regions)
    names = info.secnames()
    for i, addr in lay.addr.items():
        mem.sections[names[i]] = addr
        h = info.sechdrs[i]
        if h.sh_type == SHT_NOBITS or not h.sh_size or not h.sh_flags & SHF_ALLOC:
            continue
        region = mem.region_at(addr)
        if region is not None:
            region.place(addr - region.base, functools.partial(info.section_contents, i))
    mem.this_module = lay.addr.get(info.index_mod, 0)
    return mem
