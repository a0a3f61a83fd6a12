"""Module versions: modversions CRCs and vermagic (kernel/module/version.c, main.c).

check_version() compares a symbol's CRC with the module's ``__versions`` entry;
check_modstruct_version() does it for ``module_layout``; same_magic() compares
vermagic strings (skipping the release when the module has ``__versions``);
check_vermagic() is check_modinfo()'s vermagic step; try_to_force_load() lets a
module through a failed check on CONFIG_MODULE_FORCE_LOAD, tainting F.
"""

from __future__ import annotations

import errno
import struct

from lkm.kernel.module.internal import LoadError, LoadInfo
from lkm.kernel.module.state import KernelState, ModuleRef
from lkm.kernel.module.taint import taint_forced_module
from lkm.kernel.printk import Printk
from lkm.kernel.uapi import MODULE_INIT_IGNORE_VERMAGIC

MODVERSION_INFO_SIZE = 64  # struct modversion_info: unsigned long crc; char name[56]


def try_to_force_load(k: KernelState, mod: ModuleRef, reason: str, log: Printk) -> None:
    """try_to_force_load(): raise ENOEXEC unless CONFIG_MODULE_FORCE_LOAD (then taint F)."""
    if not k.profile.enabled("MODULE_FORCE_LOAD"):
        raise LoadError(errno.ENOEXEC)
    taint_forced_module(k, mod, reason, log)


def versions(info: LoadInfo) -> dict[bytes, int]:
    """__versions as the kernel searches it: name -> CRC of the first entry of that name."""
    if info.versions is None:
        out: dict[bytes, int] = {}
        if info.index_vers:
            raw = info.sec_bytes(info.index_vers)
            n = info.sechdrs[info.index_vers].sh_size // MODVERSION_INFO_SIZE
            for i in range(min(n, len(raw) // MODVERSION_INFO_SIZE)):
                entry = i * MODVERSION_INFO_SIZE
                name = raw[entry + 8:entry + MODVERSION_INFO_SIZE].split(b"\0", 1)[0]
                if name not in out:
                    out[name] = struct.unpack_from("<Q", raw, entry)[0]
        info.versions = out
    return info.versions


def check_version(k: KernelState, info: LoadInfo, symname: str, mod: ModuleRef,
                  crc: int | None, log: Printk) -> bool:
    """check_version(): the symbol's CRC against __versions.

    No CRC exported: fine.  No __versions: try_to_force_load().  A symbol missing from
    __versions fails with a warning (Debian's change; upstream warns once and passes).
    """
    if crc is None:
        return True
    if not info.index_vers:
        try:
            try_to_force_load(k, mod, symname, log)
        except LoadError:
            return False
        return True
    vcrc = versions(info).get(symname.encode("utf-8", "surrogateescape"))
    if vcrc is None:
        log.warn(f"{info.name}: no symbol version for {symname}")
        return False
    if vcrc == crc:
        return True
    log.warn(f"{info.name}: disagrees about version of symbol {symname}")
    return False


def check_modstruct_version(k: KernelState, info: LoadInfo, mod: ModuleRef,
                            log: Printk) -> bool:
    """check_modstruct_version(): the CRC of ``module_layout`` (struct module's layout)."""
    ex = k.profile.exports.get("module_layout")
    crc = ex[0] if ex is not None else None
    return check_version(k, info, "module_layout", mod, crc, log)


def same_magic(amagic: str, bmagic: str, has_crcs: bool) -> bool:
    """same_magic(): with CRCs the release (up to the first space) is not compared."""
    if has_crcs:
        amagic = amagic[len(amagic.split(" ", 1)[0]):]
        bmagic = bmagic[len(bmagic.split(" ", 1)[0]):]
    return amagic == bmagic


def check_vermagic(k: KernelState, info: LoadInfo, mod: ModuleRef, flags: int,
                   log: Printk) -> None:
    """check_modinfo()'s vermagic step: missing or MODULE_INIT_IGNORE_VERMAGIC ->
    try_to_force_load("bad vermagic"); different -> ENOEXEC."""
    modmagic = info.get_modinfo("vermagic")
    if flags & MODULE_INIT_IGNORE_VERMAGIC:
        modmagic = None
    if modmagic is None:
        try_to_force_load(k, mod, "bad vermagic", log)
    elif not same_magic(modmagic, k.profile.vermagic, bool(info.index_vers)):
        log.err(f"{info.name}: version magic '{modmagic}' should be '{k.profile.vermagic}'")
        raise LoadError(errno.ENOEXEC)


def check_export_symbol_versions(k: KernelState, mod: ModuleRef, no_crcs: bool,
                                 log: Printk) -> None:
    """check_export_symbol_versions() (6.1: in check_module_license_and_versions()):
    exports without CRCs on a MODVERSIONS kernel -> try_to_force_load()."""
    if k.profile.enabled("MODVERSIONS") and no_crcs:
        try_to_force_load(k, mod, "no versions for exported symbols", log)
