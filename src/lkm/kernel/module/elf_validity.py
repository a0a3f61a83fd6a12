"""ELF validity: the checks load_module() makes on the image before anything else
(kernel/module/main.c elf_validity_check(), setup_load_info(); 6.4+
elf_validity_cache_copy(), see history.elf_validity_cache_copy).

Both fill the LoadInfo's indexes (.modinfo, symtab, strtab, this_module, __versions,
.data..percpu) and the module's name; every failure is ENOEXEC with the kernel's line.
"""

from __future__ import annotations

import errno

from lkm.kernel.module.internal import (
    EHDR,
    EM_X86_64,
    ET_REL,
    MODULE_NAME_OFFSET,
    SHDR_SIZE,
    SHF_ALLOC,
    SHN_UNDEF,
    SHT_NOBITS,
    SHT_NULL,
    SHT_STRTAB,
    SHT_SYMTAB,
    LoadError,
    LoadInfo,
    SectionHeader,
)
from lkm.kernel.module.state import MODULE_NAME_LEN, KernelState, ModuleRef
from lkm.kernel.printk import Printk
from lkm.kernel.uapi import MODULE_INIT_IGNORE_MODVERSIONS

NO_NAME = "(missing .modinfo section or name field)"


def _fail(log: Printk, text: str) -> LoadError:
    log.err(text)
    return LoadError(errno.ENOEXEC)


def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


# -- the checks both versions make ---------------------------------------------------------

def elf_header_check(info: LoadInfo, log: Printk) -> tuple[int, int]:
    """The ELF header (elf_validity_ehdr()); loads the section headers.  Returns
    (e_shnum, e_shstrndx)."""
    if info.len < EHDR.size:
        raise _fail(log, f"Invalid ELF header len {info.len}")
    (ident, e_type, e_machine, _version, _entry, _phoff, shoff, _flags, _ehsize,
     _phentsize, _phnum, shentsize, shnum, shstrndx) = EHDR.unpack_from(info.data, 0)
    if ident[:4] != b"\x7fELF":
        raise _fail(log, "Invalid ELF header magic: != \\x7fELF")
    if e_type != ET_REL:
        raise _fail(log, f"Invalid ELF header type: {e_type} != {ET_REL}")
    if e_machine != EM_X86_64:
        raise _fail(log, f"Invalid architecture in ELF header: {e_machine}")
    if shentsize != SHDR_SIZE:
        raise _fail(log, "Invalid ELF section header size")
    if shoff >= info.len or shnum * SHDR_SIZE > info.len - shoff:
        raise _fail(log, "Invalid ELF section header overflow")
    info.load_sechdrs(shoff, shnum)
    return shnum, shstrndx


def validate_section_offset(info: LoadInfo, h: SectionHeader) -> bool:
    """validate_section_offset(): the section lies inside the image."""
    end = h.sh_offset + h.sh_size
    return not (end >= 1 << 64 or end > info.len)


def check_section0(info: LoadInfo, log: Printk) -> None:
    """Section 0 is SHT_NULL with no size and no address.  With e_shnum 0 the kernel
    still reads a header at e_shoff (past the image if need be: zeros here)."""
    s0 = info.sechdrs[0] if info.sechdrs else SectionHeader.unpack_from(
        info.read(info.shoff, SHDR_SIZE), 0)
    if s0.sh_type != SHT_NULL or s0.sh_size != 0 or s0.sh_addr != 0:
        raise _fail(log, f"ELF Spec violation: section 0 type({_s32(s0.sh_type)})!=SH_NULL "
                         "or non-zero len or addr")


def check_shstrndx(shstrndx: int, shnum: int, log: Printk) -> None:
    if shstrndx == SHN_UNDEF or shstrndx >= shnum:
        raise _fail(log, f"Invalid ELF section name index: {shstrndx} || e_shstrndx "
                         f"({shstrndx}) >= e_shnum ({shnum})")


def set_secstrings(info: LoadInfo, strhdr: SectionHeader, log: Printk) -> None:
    """Record the section name table: not empty, NUL-terminated."""
    info.secstrings_off, info.secstrings_size = strhdr.sh_offset, strhdr.sh_size
    if strhdr.sh_size == 0:
        raise _fail(log, "empty section name table")
    if info.data[strhdr.sh_offset + strhdr.sh_size - 1] != 0:
        raise _fail(log, "ELF Spec violation: section name table isn't null terminated")


def check_symtab_link(link: int, shnum: int, log: Printk) -> None:
    if link == SHN_UNDEF or link >= shnum:
        raise _fail(log, f"Invalid ELF sh_link!=SHN_UNDEF({link}) or (sh_link({link}) >= "
                         f"hdr->e_shnum({shnum})")


def check_section_offset(info: LoadInfo, i: int, h: SectionHeader, log: Printk) -> None:
    if not validate_section_offset(info, h):
        raise _fail(log, f"Invalid ELF section in module (section {i} type {h.sh_type})")


def finish_load_info(info: LoadInfo, flags: int) -> None:
    """The module's name from struct module, the __versions and per-CPU indexes."""
    h = info.sechdrs[info.index_mod]
    modname = info.read(h.sh_offset + MODULE_NAME_OFFSET, MODULE_NAME_LEN).split(b"\0", 1)[0]
    info.mod = ModuleRef(modname.decode("utf-8", "surrogateescape"))
    if not info.name:
        info.name = info.mod.name
    ignore = flags & MODULE_INIT_IGNORE_MODVERSIONS
    info.index_vers = 0 if ignore else info.find_sec("__versions")
    info.index_pcpu = info.find_sec(".data..percpu")


# -- 6.1 -----------------------------------------------------------------------------------

def elf_validity_check(info: LoadInfo, log: Printk) -> None:
    """6.1: elf_validity_check()."""
    shnum, shstrndx = elf_header_check(info, log)
    check_shstrndx(shstrndx, shnum, log)
    strhdr = info.sechdrs[shstrndx]
    if not validate_section_offset(info, strhdr):
        raise _fail(log, f"Invalid ELF section hdr(type {strhdr.sh_type})")
    set_secstrings(info, strhdr, log)
    check_section0(info, log)
    for i in range(1, shnum):
        h = info.sechdrs[i]
        if h.sh_type in (SHT_NULL, SHT_NOBITS):
            continue
        if h.sh_type == SHT_SYMTAB:
            check_symtab_link(h.sh_link, shnum, log)
        check_section_offset(info, i, h, log)
        if h.sh_flags & SHF_ALLOC and h.sh_name >= strhdr.sh_size:
            raise _fail(log, f"Invalid ELF section name in module (section {i} type "
                             f"{h.sh_type})")


def setup_load_info(info: LoadInfo, flags: int, log: Printk) -> None:
    """6.1: setup_load_info(): .modinfo's name, the symbol table, this_module."""
    info.index_info = info.find_sec(".modinfo")
    if info.index_info:
        info.name = info.get_modinfo("name")
    for i in range(1, info.shnum):
        if info.sechdrs[i].sh_type == SHT_SYMTAB:
            info.index_sym = i
            info.index_str = info.sechdrs[i].sh_link
            break
    if not info.index_sym:
        log.warn(f"{info.name or NO_NAME}: module has no symbols (stripped?)")
        raise LoadError(errno.ENOEXEC)
    info.index_mod = info.find_sec(".gnu.linkonce.this_module")
    if not info.index_mod:
        log.warn(f"{info.name or NO_NAME}: No module found in object")
        raise LoadError(errno.ENOEXEC)
    finish_load_info(info, flags)


# -- 6.4+ ----------------------------------------------------------------------------------

def elf_validity_cache_copy(k: KernelState, info: LoadInfo, flags: int, log: Printk) -> None:
    """6.4+ (as 6.12): elf_validity_cache_copy()."""
    shnum, shstrndx = elf_header_check(info, log)
    check_section0(info, log)
    for i in range(1, shnum):
        h = info.sechdrs[i]
        if h.sh_type not in (SHT_NULL, SHT_NOBITS):
            check_section_offset(info, i, h, log)
    check_shstrndx(shstrndx, shnum, log)
    strhdr = info.sechdrs[shstrndx]
    if strhdr.sh_type != SHT_STRTAB:
        raise _fail(log, f"Invalid ELF section name table type: {strhdr.sh_type}")
    set_secstrings(info, strhdr, log)
    for i in range(shnum):
        h = info.sechdrs[i]
        if h.sh_type != SHT_NULL and h.sh_name >= strhdr.sh_size:
            raise _fail(log, f"Invalid ELF section name in module (section {i} type "
                             f"{h.sh_type})")
    _cache_index_info(info, log)
    _cache_index_mod(k, info, log)
    _cache_index_sym(info, shnum, log)
    finish_load_info(info, flags)


def _cache_index_info(info: LoadInfo, log: Printk) -> None:
    idx = info.find_any_unique_sec(".modinfo")
    if idx < 0:
        raise _fail(log, "Only one .modinfo section must exist.")
    if idx:
        info.index_info = idx
        info.name = info.get_modinfo("name")


def _cache_index_mod(k: KernelState, info: LoadInfo, log: Printk) -> None:
    idx = info.find_any_unique_sec(".gnu.linkonce.this_module")
    who = info.name or NO_NAME
    if idx <= 0:
        raise _fail(log, f"module {who}: Exactly one .gnu.linkonce.this_module section must "
                         "exist.")
    h = info.sechdrs[idx]
    if h.sh_type == SHT_NOBITS:
        raise _fail(log, f"module {who}: .gnu.linkonce.this_module section must have a size "
                         "set")
    if not h.sh_flags & SHF_ALLOC:
        raise _fail(log, f"module {who}: .gnu.linkonce.this_module must occupy memory during "
                         "process execution")
    size = k.profile.this_module_size
    if size is not None and h.sh_size != size:
        raise _fail(log, f"module {who}: .gnu.linkonce.this_module section size must match "
                         "the kernel's built struct module size at run time")
    info.index_mod = idx


def _cache_index_sym(info: LoadInfo, shnum: int, log: Printk) -> None:
    syms = [i for i in range(1, shnum) if info.sechdrs[i].sh_type == SHT_SYMTAB]
    if len(syms) != 1:
        log.warn(f"{info.name or NO_NAME}: module has no symbols (stripped?)")
        raise LoadError(errno.ENOEXEC)
    info.index_sym = syms[0]
    stri = info.sechdrs[info.index_sym].sh_link
    check_symtab_link(stri, shnum, log)
    if info.sechdrs[stri].sh_type != SHT_STRTAB:
        raise _fail(log, f"Invalid ELF symbol string table type: "
                         f"{info.sechdrs[stri].sh_type}")
    info.index_str = stri
