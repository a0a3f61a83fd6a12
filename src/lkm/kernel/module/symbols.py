"""Symbols: the module's exports and the resolution of its undefined symbols
(kernel/module/main.c find_symbol(), resolve_symbol(), simplify_symbols(),
verify_exported_symbols(); kallsyms.c for the module's own symbol list).

find_symbol() looks in vmlinux's exports, then in the loaded modules newest first;
a GPL-only export is not found for a proprietary module.  resolve_symbol() adds the
checks on the symbol found: GPL-only symbols from a proprietary module, the CRC
(version.check_version), the namespace import, and the reference on the exporter.
"""

from __future__ import annotations

import errno
import struct

from lkm.kernel.module.internal import (
    SHN_ABS,
    SHN_COMMON,
    SHN_LIVEPATCH,
    SHN_UNDEF,
    STB_WEAK,
    LoadError,
    LoadInfo,
)
from lkm.kernel.module.state import (
    MODULE_STATE_COMING,
    MODULE_STATE_LIVE,
    MODULE_STATE_UNFORMED,
    KernelState,
    Module,
    ModuleSymbol,
)
from lkm.kernel.module.taint import inherit_taint, is_proprietary
from lkm.kernel.module.version import check_version
from lkm.kernel.printk import KERN_ERR, KERN_WARNING, Printk

KERNEL_SYMBOL_SIZE = 12  # struct kernel_symbol with PREL32 references
Export = tuple[int | None, bool, str]  # (CRC, GPL-only, namespace)


def find_symbol(k: KernelState, name: str, gplok: bool
                ) -> tuple[Module | None, int | None, bool, str] | None:
    """find_symbol(): (owner or None for vmlinux, crc, gpl-only, namespace).

    The GPL-only check: a GPL-only export is invisible unless ``gplok``.
    """
    ex = k.profile.exports.get(name)
    if ex is not None and (gplok or not ex[1]):
        return None, ex[0], ex[1], ex[2]
    for m in k.modules:
        if m.state == MODULE_STATE_UNFORMED:
            continue
        s = m.syms.get(name)
        if s is not None and (gplok or not s[1]):
            return m, s[0], s[1], s[2]
    return None


def symbol_value(k: KernelState, owner: Module | None, name: str) -> int:
    """kernel_symbol_value(): a module's export at its address in that module's memory
    (when this process holds it), else where the state places kernel symbols."""
    if owner is not None and owner.memory is not None:
        sym = owner.memory.symbol(name)
        if sym is not None:
            return sym.addr
    return k.symbol_address(name)


def ref_module(mod: Module, owner: Module) -> int:
    """ref_module(): take a reference on the exporter (0, or -errno)."""
    if mod.name in owner.sources:
        return 0
    if owner.state == MODULE_STATE_COMING:  # strong_try_module_get()
        return -errno.EBUSY
    if owner.state != MODULE_STATE_LIVE or owner.refcnt == 0:
        return -errno.ENOENT
    owner.refcnt += 1
    owner.sources.insert(0, mod.name)
    mod.targets.insert(0, owner.name)
    return 0


class _Resolving:
    """What simplify_symbols() remembers between symbols."""

    def __init__(self) -> None:
        self.using_gplonly = False


def resolve_symbol(k: KernelState, info: LoadInfo, mod: Module, name: str, st: _Resolving,
                   log: Printk) -> tuple[int, int] | None:
    """resolve_symbol(): None when not found, else (0 and the address, or -errno)."""
    mref = info.mod
    found = find_symbol(k, name, not is_proprietary(mref))
    if found is None:
        return None
    owner, crc, gpl, ns = found
    if gpl:
        st.using_gplonly = True
    if owner is not None and is_proprietary(owner):
        if st.using_gplonly:
            log.err(f"{mref.name}: module using GPL-only symbols uses symbols {name} from "
                    f"proprietary module {owner.name}.")
            return None
        inherit_taint(mref, owner, name, log)
    if not check_version(k, info, name, mref, crc, log):
        return -errno.EINVAL, 0
    if ns and ns not in info.get_modinfo_all("import_ns"):
        allow = k.profile.enabled("MODULE_ALLOW_MISSING_NAMESPACE_IMPORTS")
        log.log(KERN_WARNING if allow else KERN_ERR,
                f"{mref.name}: module uses symbol ({name}) from namespace {ns}, but does "
                "not import it.")
        if not allow:
            return -errno.EINVAL, 0
    if owner is not None:
        err = ref_module(mod, owner)
        if err:
            return err, 0
    return 0, symbol_value(k, owner, name)


def simplify_symbols(k: KernelState, info: LoadInfo, mod: Module, addrs: dict[int, int],
                     log: Printk) -> None:
    """simplify_symbols(): every symbol gets its final value (``info.sym_values``:
    section address + value, the resolved address, or as it is); the last error wins."""
    mref = info.mod
    ret = 0
    st = _Resolving()
    syms = info.symbols()
    values = info.sym_values = [s.st_value for s in syms]
    for i in range(1, len(syms)):
        s = syms[i]
        shndx = s.st_shndx
        if shndx == SHN_COMMON:
            if info.symname(s.st_name).startswith("__gnu_lto"):
                continue
            log.warn(f"{mref.name}: please compile with -fno-common")
            ret = -errno.ENOEXEC
        elif shndx in (SHN_ABS, SHN_LIVEPATCH):
            continue
        elif shndx == SHN_UNDEF:
            name = info.symname(s.st_name)
            res = resolve_symbol(k, info, mod, name, st, log)
            if res is not None and res[0] == 0:
                values[i] = res[1]
                continue
            if res is None and (s.st_info >> 4 == STB_WEAK or name == "_GLOBAL_OFFSET_TABLE_"):
                continue
            ret = res[0] if res is not None else -errno.ENOENT
            log.warn(f"{mref.name}: Unknown symbol {name} (err {ret})")
        elif shndx >= info.shnum:
            log.err(f"{mref.name}: Symbol {info.symname(s.st_name)} has an invalid section "
                    f"index {shndx} (max {info.shnum - 1})")
            ret = -errno.ENOEXEC
        else:
            values[i] = addrs.get(shndx, 0) + s.st_value
    if ret < 0:
        raise LoadError(ret)


def module_exports(info: LoadInfo) -> dict[str, Export]:
    """The module's __ksymtab and __ksymtab_gpl with CRCs and namespaces, as relocated."""
    out: dict[str, Export] = {}
    for tab, crctab, gpl in (("__ksymtab", "__kcrctab", False),
                             ("__ksymtab_gpl", "__kcrctab_gpl", True)):
        ks = info.find_sec(tab)
        if not ks:
            continue
        kc = info.find_sec(crctab)
        crcs = info.sec_bytes(kc) if kc else b""
        for j in range(info.sechdrs[ks].sh_size // KERNEL_SYMBOL_SIZE):
            t = info.reloc_target(ks, j * KERNEL_SYMBOL_SIZE + 4)
            if t is None:
                continue
            sec, off, _ = t
            name = info.string_at(sec, off) if sec else ""
            if not name:
                continue
            ns = ""
            t2 = info.reloc_target(ks, j * KERNEL_SYMBOL_SIZE + 8)
            if t2 is not None and t2[0]:
                ns = info.string_at(t2[0], t2[1])
            crc = struct.unpack_from("<I", crcs, j * 4)[0] if kc and len(crcs) >= j * 4 + 4 \
                else None
            out.setdefault(name, (crc, gpl, ns))
    return out


def verify_exported_symbols(k: KernelState, mod: Module, log: Printk) -> None:
    """verify_exported_symbols(): no export may already be exported (by vmlinux or a
    loaded module)."""
    for name in mod.syms:
        found = find_symbol(k, name, True)
        if found is not None:
            owner = found[0]
            log.err(f"{mod.name}: exports duplicate symbol {name} (owned by "
                    f"{owner.name if owner is not None else 'kernel'})")
            raise LoadError(errno.ENOEXEC)


def module_symbols(info: LoadInfo, addrs: dict[int, int]) -> list[ModuleSymbol]:
    """The module's own named symbols at their addresses (what kallsyms lists for it
    while it initialises)."""
    out: list[ModuleSymbol] = []
    values = info.sym_values
    for i, s in enumerate(info.symbols()):
        if not s.st_name or s.st_shndx == SHN_UNDEF or i >= len(values):
            continue
        if s.st_shndx != SHN_ABS and s.st_shndx not in addrs:
            continue
        out.append(ModuleSymbol(info.symname(s.st_name), values[i], s.st_size, s.st_info,
                                s.st_shndx))
    return out
