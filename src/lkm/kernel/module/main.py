"""The module loader's sequences (kernel/module/main.c): load_module(),
do_init_module(), delete_module().

:func:`load_module` takes an image through the kernel's steps in the kernel's order
for the profile's version (6.1, or 6.4+ as 6.12: see :mod:`.history`) and either adds
a :class:`Module` to the :class:`KernelState` or raises
:class:`~lkm.errors.KernelError` with the kernel's errno; every line the kernel would
log goes to the Printk.  Module code runs only through the state's hooks
(``run_init``/``run_exit``; by default init "returns" what ``init_results`` says, or
0); the relocated image is kept on the module (``Module.memory``).
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

from lkm.errors import KernelError, ProcessKilled
from lkm.kernel import taint as T
from lkm.kernel.module import history
from lkm.kernel.module import reloc_x86_64 as arch
from lkm.kernel.module.elf_validity import (
    elf_validity_cache_copy,
    elf_validity_check,
    setup_load_info,
)
from lkm.kernel.module.internal import (
    SHF_ALLOC,
    SHF_RELA_LIVEPATCH,
    SHT_REL,
    SHT_RELA,
    LoadError,
    LoadInfo,
)
from lkm.kernel.module.layout import ModuleLayout, layout_and_allocate, move_module
from lkm.kernel.module.params import module_params, parse_module_args
from lkm.kernel.module.signing import module_sig_check
from lkm.kernel.module.state import (
    MODULE_NAME_LEN,
    MODULE_REF_BASE,
    MODULE_STATE_COMING,
    MODULE_STATE_GOING,
    MODULE_STATE_LIVE,
    MODULE_STATE_UNFORMED,
    KernelState,
    Module,
    ModuleMemory,
    ModuleRef,
)
from lkm.kernel.module.symbols import (
    KERNEL_SYMBOL_SIZE,
    module_exports,
    module_symbols,
    simplify_symbols,
    verify_exported_symbols,
)
from lkm.kernel.module.taint import (
    check_modinfo_retpoline,
    module_augment_kernel_taints,
    module_license_taint_check,
    taint_forced_rmmod,
    taint_livepatch,
    taint_out_of_tree,
    taint_proprietary_names,
    taint_staging,
    taint_test,
    taint_unsigned,
)
from lkm.kernel.module.version import (
    check_export_symbol_versions,
    check_modstruct_version,
    check_vermagic,
)
from lkm.kernel.printk import Printk
from lkm.kernel.uapi import O_NONBLOCK, O_TRUNC

_M64 = (1 << 64) - 1


@dataclass
class LoadResult:
    """What a successful load did: the module, and the log lines printed."""

    module: Module
    messages: list[str]


# -- load_module() ------------------------------------------------------------------------

def load_module(k: KernelState, image: bytes, args: str = "", flags: int = 0,
                comm: str = "insmod", path: str | None = None,
                log: Printk | None = None) -> LoadResult:
    """load_module() + do_init_module(): the module, or KernelError (with the log lines).

    A :class:`~lkm.errors.ProcessKilled` from the init hook passes through (with the
    log lines), the module left as the kernel leaves it.
    """
    log = log if log is not None else Printk(k.once)
    try:
        mod = _load_module(k, LoadInfo(image), args, flags, comm, path, log)
    except LoadError as e:
        raise KernelError(e.err, messages=log.lines) from None
    except ProcessKilled as e:
        e.messages = log.lines
        raise
    return LoadResult(mod, log.lines)


def _load_module(k: KernelState, info: LoadInfo, args: str, flags: int, comm: str,
                 path: str | None, log: Printk) -> Module:
    v = k.profile.version
    module_sig_check(k, info, flags, comm, log)
    if history.elf_validity_cache_copy(v):
        elf_validity_cache_copy(k, info, flags, log)
    else:
        elf_validity_check(info, log)
        setup_load_info(info, flags, log)
    if history.early_mod_check(v):
        early_mod_check(k, info, flags, log)
    else:
        check_blacklist(k, info, log)
        rewrite_section_headers(info)
        if not check_modstruct_version(k, info, info.mod, log):
            raise LoadError(errno.ENOEXEC)
        check_modinfo(k, info, flags, log)  # in layout_and_allocate() on 6.1
    layout = layout_and_allocate(k, info, log)
    mod = add_unformed_module(k, info.mod.name)
    mod.path = path
    try:
        _complete_load(k, info, mod, layout, args, log)
    except LoadError:
        free_module(k, mod)
        raise
    return do_init_module(k, mod, log)


def _complete_load(k: KernelState, info: LoadInfo, mod: Module, layout: ModuleLayout,
                   args: str, log: Printk) -> None:
    """load_module() from add_unformed_module() to complete_formation() and the
    sysfs setup."""
    v = k.profile.version
    mref = info.mod
    if history.taints_after_list(v):
        module_augment_kernel_taints(k, info, mref, log)
    else:
        taint_unsigned(k, info, mref, log)
    mod.sig_ok = info.sig_ok
    mod.refcnt = MODULE_REF_BASE + 1  # module_unload_init(): held during init
    prev = k.test_taint(T.TAINT_PROPRIETARY_MODULE)
    no_crcs = find_module_sections(info, mref, log)
    if not history.taints_after_list(v):
        taint_proprietary_names(k, mref, prev, log)  # check_module_license_and_versions()
    check_export_symbol_versions(k, mref, no_crcs, log)
    mod.version = info.get_modinfo("version")
    mod.srcversion = info.get_modinfo("srcversion")
    simplify_symbols(k, info, mod, layout.addr, log)
    apply_relocations(k, info, layout, log)
    mod.memory = post_relocation(info, layout)
    mod.syms = module_exports(info)
    verify_exported_symbols(k, mod, log)
    mod.taints = mref.taints
    mod.state = MODULE_STATE_COMING  # complete_formation()
    mod.params = [s.instantiate() for s in module_params(info)]
    mod.args = args
    parse_module_args(k, mod, args, log)
    if mref.name in k.profile.builtin_sysfs:  # mod_sysfs_setup(): the directory exists
        log.err(f"{mref.name}: module is already loaded")
        raise LoadError(errno.EINVAL)
    mod.has_init = mod.memory.init is not None
    mod.has_exit = mod.memory.exit is not None
    mod.core_size, mod.init_size = layout.core_size, layout.init_size
    mod.base = layout.core_base
    mod.sections = layout.sect_addrs
    mod.notes = layout.notes
    mod.taints = mref.taints


# -- the steps before allocation -----------------------------------------------------------

def blacklisted(k: KernelState, name: str) -> bool:
    """The module_blacklist= boot parameter names the module."""
    return bool(k.module_blacklist) and name in (k.module_blacklist or "").split(",")


def check_blacklist(k: KernelState, info: LoadInfo, log: Printk) -> None:
    if blacklisted(k, info.name or ""):
        log.err(f"Module {info.name} is blacklisted")
        raise LoadError(errno.EPERM)


def rewrite_section_headers(info: LoadInfo) -> None:
    """rewrite_section_headers(): __versions and .modinfo do not go into memory."""
    info.sechdrs[0].sh_addr = 0
    info.sechdrs[info.index_vers].sh_flags &= ~SHF_ALLOC
    info.sechdrs[info.index_info].sh_flags &= ~SHF_ALLOC


def module_patient_check_exists(k: KernelState, name: str) -> None:
    """A module of that name in the list: EEXIST if live, else EBUSY (the kernel waits
    for a loading one to finish, then says EEXIST or EBUSY)."""
    old = k.find_module(name, even_unformed=True)
    if old is not None:
        raise LoadError(errno.EEXIST if old.state == MODULE_STATE_LIVE else errno.EBUSY)


def check_modinfo_livepatch(k: KernelState, info: LoadInfo, mod: ModuleRef, log: Printk,
                            taint: bool) -> None:
    """A livepatch module needs CONFIG_LIVEPATCH (6.1 also taints K here)."""
    if info.get_modinfo("livepatch") is None:
        return
    if k.profile.enabled("LIVEPATCH"):
        if taint:
            taint_livepatch(k, mod, log)
        return
    log.err(f"{mod.name}: module is marked as livepatch module, but livepatch support is "
            "disabled")
    raise LoadError(errno.ENOEXEC)


def check_modinfo(k: KernelState, info: LoadInfo, flags: int, log: Printk) -> None:
    """check_modinfo(): vermagic and livepatch support; on 6.1 also the modinfo taints,
    in this order."""
    mod = info.mod
    check_vermagic(k, info, mod, flags, log)
    if history.taints_after_list(k.profile.version):
        check_modinfo_livepatch(k, info, mod, log, taint=False)
        return
    taint_out_of_tree(k, info, mod, log)
    check_modinfo_retpoline(k, info, mod, log)
    taint_staging(k, info, mod, log)
    check_modinfo_livepatch(k, info, mod, log, taint=True)
    module_license_taint_check(k, mod, info.get_modinfo("license"), log)
    taint_test(k, info, mod, log)


def early_mod_check(k: KernelState, info: LoadInfo, flags: int, log: Printk) -> None:
    """6.4+: early_mod_check(), before any allocation."""
    check_blacklist(k, info, log)
    rewrite_section_headers(info)
    if not check_modstruct_version(k, info, info.mod, log):
        raise LoadError(errno.ENOEXEC)
    check_modinfo(k, info, flags, log)
    module_patient_check_exists(k, info.mod.name)


# -- after allocation ----------------------------------------------------------------------

def add_unformed_module(k: KernelState, name: str) -> Module:
    """add_unformed_module(): refuse a name in the list, else add the module UNFORMED."""
    module_patient_check_exists(k, name)
    mod = Module(name=name, state=MODULE_STATE_UNFORMED)
    k.modules.insert(0, mod)
    return mod


def find_module_sections(info: LoadInfo, mod: ModuleRef, log: Printk) -> bool:
    """find_module_sections(): the checks on special sections; returns whether exports
    lack their CRC table (for check_export_symbol_versions())."""
    ks = info.find_sec("__ksymtab")
    ksg = info.find_sec("__ksymtab_gpl")
    if info.find_sec(".ctors") and info.find_sec(".init_array"):
        log.warn(f"{mod.name}: has both .ctors and .init_array.")
        raise LoadError(errno.EINVAL)
    if info.find_sec("__obsparm"):
        log.warn(f"{mod.name}: Ignoring obsolete parameters")
    num_syms = info.sechdrs[ks].sh_size // KERNEL_SYMBOL_SIZE if ks else 0
    num_gpl_syms = info.sechdrs[ksg].sh_size // KERNEL_SYMBOL_SIZE if ksg else 0
    return bool((num_syms and not info.find_sec("__kcrctab"))
                or (num_gpl_syms and not info.find_sec("__kcrctab_gpl")))


def apply_relocations(k: KernelState, info: LoadInfo, lay: ModuleLayout, log: Printk) -> None:
    """apply_relocations(): each RELA section applying to an allocated section, by the
    architecture's apply_relocate_add() (x86-64: the only machine accepted)."""
    sh = info.sechdrs
    for i in range(1, info.shnum):
        infosec = sh[i].sh_info
        if infosec >= info.shnum or not sh[infosec].sh_flags & SHF_ALLOC:
            continue
        if sh[i].sh_flags & SHF_RELA_LIVEPATCH:
            continue
        if sh[i].sh_type == SHT_REL:
            log.err(f"module {info.mod.name}: REL relocation unsupported")
            raise LoadError(errno.ENOEXEC)
        if sh[i].sh_type != SHT_RELA:
            continue
        arch.apply_relocate_add(k.profile.version, info.mod.name,
                                info.sec_bytes(i)[:sh[i].sh_size], info.section_buffer(infosec),
                                lay.addr.get(infosec, 0), info.sym_values, log)


def post_relocation(info: LoadInfo, lay: ModuleLayout) -> ModuleMemory:
    """The module's memory after move_module() and the relocations, with its symbols
    (add_kallsyms()) and struct module's init/exit pointers: the relocations of
    .gnu.linkonce.this_module naming init_module / cleanup_module."""
    mem = move_module(info, lay)
    mem.symbols = module_symbols(info, lay.addr)
    syms = info.symbols()
    values = info.sym_values
    for r in info.relas_for(info.index_mod).values():
        if not 0 <= r.sym < min(len(syms), len(values)):
            continue
        name = info.symname(syms[r.sym].st_name)
        if name == "init_module":
            mem.init = (values[r.sym] + r.r_addend) & _M64
        elif name == "cleanup_module":
            mem.exit = (values[r.sym] + r.r_addend) & _M64
    return mem


# -- init and removal ----------------------------------------------------------------------

def free_module(k: KernelState, mod: Module) -> None:
    """Unlink a module and drop the references it took (module_unload_free())."""
    for t in mod.targets:
        owner = k.find_module(t, even_unformed=True)
        if owner is not None:
            if mod.name in owner.sources:
                owner.sources.remove(mod.name)
            owner.refcnt = max(0, owner.refcnt - 1)
    mod.targets = []
    if mod in k.modules:
        k.modules.remove(mod)


def do_init_module(k: KernelState, mod: Module, log: Printk) -> Module:
    """do_init_module(): mod->init through the state's hook.  A ProcessKilled from it
    leaves the module COMING with the init reference held, as an oops in init does."""
    ret = k.run_init(mod) if mod.has_init else 0
    if ret < 0:
        mod.state = MODULE_STATE_GOING
        free_module(k, mod)
        raise LoadError(ret)
    if ret > 0:
        log.warn(f"do_init_module: '{mod.name}'->init suspiciously returned {ret}, it should "
                 "follow 0/-E convention\ndo_init_module: loading module anyway...")
        k.init_suspicious(mod, ret)
    mod.state = MODULE_STATE_LIVE
    mod.refcnt -= 1  # module_put()
    mod.init_size = 0
    if mod.memory is not None:
        mod.memory.free_init()
    return mod


def delete_module(k: KernelState, name: str, flags: int = O_NONBLOCK,
                  log: Printk | None = None) -> list[str]:
    """delete_module(2): the log lines, or KernelError; a ProcessKilled from the exit
    hook passes through, the module left GOING."""
    log = log if log is not None else Printk(k.once)
    try:
        _delete_module(k, name, flags, log)
    except LoadError as e:
        raise KernelError(e.err, messages=log.lines) from None
    except ProcessKilled as e:
        e.messages = log.lines
        raise
    return log.lines


def _delete_module(k: KernelState, name: str, flags: int, log: Printk) -> None:
    if not 0 < len(name.encode("utf-8", "surrogateescape")) < MODULE_NAME_LEN:
        raise LoadError(errno.ENOENT)
    mod = k.find_module(name)
    if mod is None:
        raise LoadError(errno.ENOENT)
    if mod.sources:
        raise LoadError(errno.EWOULDBLOCK)
    if mod.state != MODULE_STATE_LIVE:
        raise LoadError(errno.EBUSY)
    force_ok = k.profile.enabled("MODULE_FORCE_UNLOAD") and bool(flags & O_TRUNC)

    def try_force_unload() -> bool:
        if force_ok:
            taint_forced_rmmod(k, log)
        return force_ok

    if mod.has_init and not mod.has_exit and not try_force_unload():
        raise LoadError(errno.EBUSY)
    # try_stop_module(): try_release_module_ref() drops the base reference when no other
    # is left (module_refcount() reads -1 from here on); forced, the others stay
    if mod.refcount() != 0:
        if not try_force_unload():
            raise LoadError(errno.EWOULDBLOCK)
    else:
        mod.refcnt -= MODULE_REF_BASE
    mod.state = MODULE_STATE_GOING
    if mod.has_exit:
        k.run_exit(mod)
    free_module(k, mod)
