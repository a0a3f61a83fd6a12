"""Every taint the module loader applies, in one place (kernel/module/main.c).

The taint table and the kernel-wide add_taint() are kernel/panic.c's
(:mod:`lkm.kernel.taint`, :meth:`KernelState.add_taint`); here are the loader's rules:
which module taints the kernel with what, with the line it prints.  6.1 applies the
modinfo taints from check_modinfo() and the unsigned one after add_unformed_module();
6.4+ applies them all from module_augment_kernel_taints() (history.taints_after_list).
"""

from __future__ import annotations

from lkm.kernel import taint as T
from lkm.kernel.module.internal import LoadInfo
from lkm.kernel.module.state import KernelState, Module, ModuleRef
from lkm.kernel.printk import KERN_NOTICE, Printk

GPL_COMPATIBLE = frozenset({"GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL",
                            "Dual MIT/GPL", "Dual MPL/GPL"})

_PROPRIETARY = 1 << T.TAINT_PROPRIETARY_MODULE


def license_is_gpl_compatible(license: str) -> bool:
    """include/linux/license.h."""
    return license in GPL_COMPATIBLE


def add_taint_module(k: KernelState, mod: ModuleRef | Module, flag: int, log: Printk,
                     now_unreliable: bool = False) -> None:
    """add_taint_module(): taint the kernel and the module."""
    k.add_taint(flag, log, now_unreliable)
    mod.taints |= 1 << flag


def is_proprietary(mod: ModuleRef | Module) -> bool:
    return bool(mod.taints & _PROPRIETARY)


# -- modinfo taints -----------------------------------------------------------------------

def module_license_taint_check(k: KernelState, mod: ModuleRef, license: str | None,
                               log: Printk) -> None:
    """module_license_taint_check() (6.1: set_license()): a license that is not
    GPL-compatible (or none) taints P."""
    lic = license if license is not None else "unspecified"
    if not license_is_gpl_compatible(lic):
        if not k.test_taint(T.TAINT_PROPRIETARY_MODULE):
            log.warn(f"{mod.name}: module license '{lic}' taints kernel.")
        add_taint_module(k, mod, T.TAINT_PROPRIETARY_MODULE, log, now_unreliable=True)


def taint_out_of_tree(k: KernelState, info: LoadInfo, mod: ModuleRef, log: Printk) -> None:
    """No ``intree`` modinfo: O."""
    if info.get_modinfo("intree") is None:
        if not k.test_taint(T.TAINT_OOT_MODULE):
            log.warn(f"{mod.name}: loading out-of-tree module taints kernel.")
        add_taint_module(k, mod, T.TAINT_OOT_MODULE, log)


def taint_staging(k: KernelState, info: LoadInfo, mod: ModuleRef, log: Printk) -> None:
    """``staging`` modinfo: C."""
    if info.get_modinfo("staging") is not None:
        add_taint_module(k, mod, T.TAINT_CRAP, log)
        log.warn(f"{mod.name}: module is from the staging directory, the quality is unknown, "
                 "you have been warned.")


def taint_test(k: KernelState, info: LoadInfo, mod: ModuleRef, log: Printk) -> None:
    """``test`` modinfo: N."""
    if info.get_modinfo("test") is not None:
        if not k.test_taint(T.TAINT_TEST):
            log.warn(f"{mod.name}: loading test module taints kernel.")
        add_taint_module(k, mod, T.TAINT_TEST, log)


def taint_livepatch(k: KernelState, mod: ModuleRef, log: Printk) -> None:
    """A livepatch module (its support checked by check_modinfo_livepatch()): K."""
    add_taint_module(k, mod, T.TAINT_LIVEPATCH, log)
    log.log_once("livepatch", KERN_NOTICE, f"{mod.name}: tainting kernel with TAINT_LIVEPATCH")


def taint_unsigned(k: KernelState, info: LoadInfo, mod: ModuleRef, log: Printk) -> None:
    """module_sig_check() let an unverified module through: E (the line once a boot)."""
    if k.profile.enabled("MODULE_SIG") and not info.sig_ok:
        log.log_once("modsig", KERN_NOTICE,
                     f"{mod.name}: module verification failed: signature and/or required key "
                     "missing - tainting kernel")
        add_taint_module(k, mod, T.TAINT_UNSIGNED_MODULE, log)


def taint_proprietary_names(k: KernelState, mod: ModuleRef, prev: bool, log: Printk) -> None:
    """The modules known to lie about their license (ndiswrapper taints only the
    kernel); "module license taints kernel" if P is new since ``prev``."""
    if mod.name == "ndiswrapper":
        k.add_taint(T.TAINT_PROPRIETARY_MODULE, log, now_unreliable=True)
    if mod.name in ("driverloader", "lve"):
        add_taint_module(k, mod, T.TAINT_PROPRIETARY_MODULE, log, now_unreliable=True)
    if not prev and k.test_taint(T.TAINT_PROPRIETARY_MODULE):
        log.warn(f"{mod.name}: module license taints kernel.")


def module_augment_kernel_taints(k: KernelState, info: LoadInfo, mod: ModuleRef,
                                 log: Printk) -> None:
    """6.4+: every modinfo taint, once the module is in the list."""
    prev = k.test_taint(T.TAINT_PROPRIETARY_MODULE)
    taint_out_of_tree(k, info, mod, log)
    check_modinfo_retpoline(k, info, mod, log)
    taint_staging(k, info, mod, log)
    if info.get_modinfo("livepatch") is not None:
        taint_livepatch(k, mod, log)
    module_license_taint_check(k, mod, info.get_modinfo("license"), log)
    taint_test(k, info, mod, log)
    taint_unsigned(k, info, mod, log)
    taint_proprietary_names(k, mod, prev, log)


def check_modinfo_retpoline(k: KernelState, info: LoadInfo, mod: ModuleRef,
                            log: Printk) -> None:
    """A module built without retpoline on a mitigated kernel: a warning, no taint
    (applied among the taints, where the kernel checks it)."""
    if not (k.profile.enabled("RETPOLINE") or k.profile.enabled("MITIGATION_RETPOLINE")):
        return
    if not k.spectre_v2_mitigated or info.get_modinfo("retpoline") is not None:
        return
    log.err("Spectre V2 : System may be vulnerable to spectre v2")
    log.warn(f"{mod.name}: loading module not compiled with retpoline compiler.")


# -- taints of other steps ----------------------------------------------------------------

def taint_forced_module(k: KernelState, mod: ModuleRef, reason: str, log: Printk) -> None:
    """try_to_force_load() allowed (CONFIG_MODULE_FORCE_LOAD): F."""
    if not k.test_taint(T.TAINT_FORCED_MODULE):
        log.warn(f"{mod.name}: {reason}: kernel tainted.")
    add_taint_module(k, mod, T.TAINT_FORCED_MODULE, log, now_unreliable=True)


def inherit_taint(mod: ModuleRef, owner: Module, symbol: str, log: Printk) -> None:
    """resolve_symbol() -> inherit_taint(): a module using a proprietary module's symbol
    becomes proprietary itself (the module only, not the kernel).  The caller refuses
    it first when the module also uses GPL-only symbols."""
    if not is_proprietary(mod):
        log.warn(f"{mod.name}: module uses symbols {symbol} from proprietary module "
                 f"{owner.name}, inheriting taint.")
        mod.taints |= _PROPRIETARY


def taint_forced_rmmod(k: KernelState, log: Printk) -> None:
    """delete_module() with O_TRUNC on CONFIG_MODULE_FORCE_UNLOAD: R."""
    k.add_taint(T.TAINT_FORCED_RMMOD, log, now_unreliable=True)


def taint_unsafe_param(k: KernelState, log: Printk) -> None:
    """param_check_unsafe(): setting a parameter marked unsafe taints U."""
    k.add_taint(T.TAINT_USER, log)
