"""The kernel's module loader (kernel/module/main.c) reproduced: load_module, delete_module.

:func:`load_module` takes a module image through the checks of the kernel's
``load_module()`` in the kernel's order, for the profile's kernel version (6.1, or
6.4+ as in 6.12), and either adds a :class:`Module` to the :class:`KernelState`
or raises :class:`~lkm.errors.KernelError` with the kernel's errno.  Every line
the kernel would log goes to the state's log.  The module's code is never run:
``init`` is taken to return 0 unless the state says otherwise
(``init_results``).

The image is read the way the kernel reads it: an ELF64 little-endian x86_64
relocatable object, taken field by field with only the kernel's own checks.
"""

from __future__ import annotations

import errno
import functools
import struct
from dataclasses import dataclass, field
from typing import Any

from lkm.errors import KernelError, ProcessKilled
from lkm.kernel import taint as T
from lkm.kernel.module.state import (
    MODULE_NAME_LEN,
    MODULE_REF_BASE,
    MODULE_STATE_COMING,
    MODULE_STATE_GOING,
    MODULE_STATE_LIVE,
    MODULE_STATE_UNFORMED,
    MODULES_LEN,
    PAGE_SIZE,
    KernelState,
    Module,
    ModuleMemory,
    ModuleRef,
    ModuleSymbol,
    Region,
)
from lkm.kernel.params import KernelParam, ParamSpec, parse_args
from lkm.kernel.printk import KERN_ERR, KERN_NOTICE, KERN_WARNING, Printk
from lkm.kernel.profile import KernelProfile
from lkm.kernel.uapi import (
    MODULE_INIT_IGNORE_MODVERSIONS,
    MODULE_INIT_IGNORE_VERMAGIC,
    O_NONBLOCK,
    O_TRUNC,
)
from lkm.signature import MAGIC as MODULE_SIG_STRING

# ELF
ET_REL = 1
EM_X86_64 = 62
SHT_NULL, SHT_SYMTAB, SHT_STRTAB, SHT_RELA, SHT_NOBITS, SHT_REL, SHT_NOTE = 0, 2, 3, 4, 8, 9, 7
SHF_WRITE, SHF_ALLOC, SHF_EXECINSTR = 0x1, 0x2, 0x4
SHF_RO_AFTER_INIT = 0x00200000
SHF_RELA_LIVEPATCH = 0x00100000
SHN_UNDEF, SHN_ABS, SHN_COMMON, SHN_LIVEPATCH = 0, 0xFFF1, 0xFFF2, 0xFF20
STB_WEAK = 2
INIT_OFFSET_MASK = 1 << 63
ENTSIZE_UNSET = (1 << 64) - 1

R_X86_64_NONE, R_X86_64_64, R_X86_64_PC32, R_X86_64_32, R_X86_64_32S = 0, 1, 2, 10, 11
R_X86_64_PLT32, R_X86_64_PC64 = 4, 24


_EHDR = struct.Struct("<16sHHIQQQIHHHHHH")
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")
_RELA = struct.Struct("<QQq")

GPL_COMPATIBLE = frozenset({"GPL", "GPL v2", "GPL and additional rights", "Dual BSD/GPL",
                            "Dual MIT/GPL", "Dual MPL/GPL"})

# enum module_state names for the views
STATE_PROC = {MODULE_STATE_LIVE: "Live", MODULE_STATE_COMING: "Loading",
              MODULE_STATE_GOING: "Unloading"}
STATE_SYSFS = {MODULE_STATE_LIVE: "live", MODULE_STATE_COMING: "coming",
               MODULE_STATE_GOING: "going"}


def license_is_gpl_compatible(license: str) -> bool:
    return license in GPL_COMPATIBLE


def kmsg_escape(s: str) -> str:
    """Text as /dev/kmsg shows it: control characters and DEL as \\xNN."""
    if all(" " <= c < "\x7f" for c in s):
        return s
    return "".join(c if " " <= c < "\x7f" or ord(c) > 0x7f else f"\\x{ord(c):02x}" for c in s)


# -- reading the image as the kernel does -------------------------------------------------

class _Info:
    """struct load_info: the image, its section headers (mutable, as the kernel rewrites
    them) and the indexes found."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.len = len(data)
        self.sechdrs: list[list[int]] = []
        self.secstrings_off = 0
        self.secstrings_size = 0
        self.shnum = 0
        self.machine = 0
        self.name: str | None = None
        self.idx_info = 0
        self.idx_sym = 0
        self.idx_str = 0
        self.idx_mod = 0
        self.idx_vers = 0
        self.idx_pcpu = 0
        self.sig_ok = False
        self.modref = ModuleRef("")
        self._syms: list[tuple[int, int, int, int, int, int]] | None = None
        self._versions: dict[bytes, int] | None = None
        self._relas: dict[int, dict[int, tuple[int, int, int]]] = {}
        self.buffers: dict[int, bytearray] = {}  # sections being relocated, as in memory
        self.sym_values: list[int] = []  # each symbol's value after simplify_symbols

    # raw access, zero-padded outside the image (the kernel would read garbage)
    def read(self, off: int, n: int) -> bytes:
        b = self.data[off:off + n] if 0 <= off < len(self.data) else b""
        return b + bytes(n - len(b)) if len(b) < n else b

    def cstr(self, off: int, limit: int = 4096) -> str:
        if not 0 <= off < len(self.data):
            return ""
        end = self.data.find(b"\0", off, off + limit)
        raw = self.data[off:end if end >= 0 else min(len(self.data), off + limit)]
        return raw.decode("utf-8", "surrogateescape")

    def secname(self, i: int) -> str:
        return self.cstr(self.secstrings_off + self.sechdrs[i][0])

    def secnames(self) -> list[str]:
        return [self.secname(i) for i in range(self.shnum)]

    def find_sec(self, name: str) -> int:
        """First SHF_ALLOC section called ``name`` (0: none)."""
        for i in range(1, self.shnum):
            if self.sechdrs[i][2] & SHF_ALLOC and self.secname(i) == name:
                return i
        return 0

    def find_any_sec(self, name: str) -> int:
        for i in range(1, self.shnum):
            if self.secname(i) == name:
                return i
        return 0

    def find_any_unique_sec(self, name: str) -> int:
        found = [i for i in range(1, self.shnum) if self.secname(i) == name]
        if len(found) == 1:
            return found[0]
        return -len(found)

    def sec_bytes(self, i: int) -> bytes:
        """Contents of section ``i``; a NOBITS section reads as zeros (only small ones are
        materialised: reads past what is returned count as zeros everywhere)."""
        h = self.sechdrs[i]
        if h[1] == SHT_NOBITS:
            return bytes(h[5]) if h[5] < (1 << 24) else b""
        return self.read(h[4], h[5]) if h[5] < (1 << 31) else b""

    def section_buffer(self, i: int) -> bytearray:
        """Section ``i`` as it lies in the module's memory (relocations write here)."""
        buf = self.buffers.get(i)
        if buf is None:
            buf = self.buffers[i] = bytearray(self.sec_bytes(i))
        return buf

    def section_contents(self, i: int) -> bytes | bytearray:
        buf = self.buffers.get(i)
        return buf if buf is not None else self.sec_bytes(i)

    # .modinfo
    def modinfo_strings(self) -> list[bytes]:
        if not self.idx_info:
            return []
        return [s for s in self.sec_bytes(self.idx_info).split(b"\0") if s]

    def get_modinfo_all(self, tag: str) -> list[str]:
        t = tag.encode() + b"="
        return [s[len(t):].decode("utf-8", "surrogateescape")
                for s in self.modinfo_strings() if s.startswith(t)]

    def get_modinfo(self, tag: str) -> str | None:
        vals = self.get_modinfo_all(tag)
        return vals[0] if vals else None

    # symbols: (st_name, st_info, st_other, st_shndx, st_value, st_size)
    def symbols(self) -> list[tuple[int, int, int, int, int, int]]:
        if self._syms is None:
            h = self.sechdrs[self.idx_sym]
            raw = self.sec_bytes(self.idx_sym)
            n = h[5] // _SYM.size
            raw = raw[:n * _SYM.size]
            self._syms = list(_SYM.iter_unpack(raw))
        return self._syms

    def strtab_off(self) -> int:
        return self.sechdrs[self.idx_str][4]

    def symname(self, st_name: int) -> str:
        return self.cstr(self.strtab_off() + st_name)

    def relas_for(self, target: int) -> dict[int, tuple[int, int, int]]:
        """offset -> (symbol index, type, addend) of the RELA sections applying to ``target``."""
        if target not in self._relas:
            out: dict[int, tuple[int, int, int]] = {}
            for i in range(1, self.shnum):
                h = self.sechdrs[i]
                if h[1] == SHT_RELA and h[7] == target:
                    raw = self.sec_bytes(i)
                    raw = raw[:len(raw) // 24 * 24]
                    for off, rinfo, addend in _RELA.iter_unpack(raw):
                        out.setdefault(off, (rinfo >> 32, rinfo & 0xFFFFFFFF, addend))
            self._relas[target] = out
        return self._relas[target]

    def reloc_target(self, sec: int, off: int) -> tuple[int, int, str] | None:
        """Where a relocated pointer at (sec, off) points: (section, offset, symbol name);
        section is 0 for an undefined (external) symbol."""
        r = self.relas_for(sec).get(off)
        if r is None:
            return None
        symidx, _typ, addend = r
        syms = self.symbols()
        if not 0 <= symidx < len(syms):
            return None
        st_name, _info, _other, shndx, value, _size = syms[symidx]
        name = self.symname(st_name)
        if shndx == SHN_UNDEF or shndx >= self.shnum:
            return 0, addend, name
        return shndx, value + addend, name

    def string_at(self, sec: int, off: int) -> str:
        h = self.sechdrs[sec]
        if h[1] == SHT_NOBITS:
            return ""
        return self.cstr(h[4] + off)


# -- the loader ---------------------------------------------------------------------------

class _Fail(Exception):
    def __init__(self, err: int) -> None:
        self.err = err


@dataclass
class LoadResult:
    """What a successful load did: the module, and the log lines printed."""

    module: Module
    messages: list[str]


def load_module(k: KernelState, image: bytes, args: str = "", flags: int = 0,
                comm: str = "insmod", path: str | None = None,
                log: Printk | None = None) -> LoadResult:
    """load_module() + do_init_module(); raises KernelError (with the log lines)."""
    log = log if log is not None else Printk(k.once)
    try:
        mod = _load(k, image, args, flags, comm, log)
    except _Fail as f:
        raise KernelError(-f.err if f.err < 0 else f.err, messages=log.lines) from None
    except ProcessKilled as e:
        e.messages = log.lines
        raise
    mod.path = path
    return LoadResult(mod, log.lines)


def _load(k: KernelState, image: bytes, args: str, flags: int, comm: str,
          log: Printk) -> Module:
    p = k.profile
    modern = p.modern
    info = _Info(image)

    _module_sig_check(k, info, flags, comm, log)
    if modern:
        _elf_validity_cache_copy(k, info, flags, log)
        _early_mod_check(k, info, flags, log)
    else:
        _elf_validity_check(info, log)
        _setup_load_info(info, flags, log)
        if _blacklisted(k, info.name or ""):
            log.err(f"Module {info.name} is blacklisted")
            raise _Fail(errno.EPERM)
        _rewrite_section_headers(info)
        if not _check_modstruct_version(k, info, info.modref, log):
            raise _Fail(errno.ENOEXEC)

    mref = info.modref
    layout = _layout_and_allocate(k, info, flags, log, modern)

    # add_unformed_module
    old = k.find_module(mref.name, even_unformed=True)
    if old is not None:
        raise _Fail(errno.EEXIST if old.state == MODULE_STATE_LIVE else errno.EBUSY)
    mod = Module(name=mref.name, state=MODULE_STATE_UNFORMED)
    k.modules.insert(0, mod)
    try:
        if modern:
            _module_augment_kernel_taints(k, info, mref, log)
        else:
            _taint_unsigned(k, info, mref, log)
        mod.sig_ok = info.sig_ok
        mod.refcnt = MODULE_REF_BASE + 1  # module_unload_init: held during init
        sections = _find_module_sections(info, mref, log)
        if not modern:
            _check_module_license_and_versions(k, info, mref, sections, log)
        elif p.enabled("MODVERSIONS") and sections["no_crcs"]:
            _try_to_force_load(k, mref, "no versions for exported symbols", log)
        mod.version = info.get_modinfo("version")
        mod.srcversion = info.get_modinfo("srcversion")
        _simplify_symbols(k, info, mref, mod, layout, log)
        _apply_relocations(k, info, mref, layout, log)
        mod.memory = _module_memory(info, layout)
        mod.syms = _module_exports(info)
        _verify_exported_symbols(k, mod, log)
        mod.taints = mref.taints
        mod.state = MODULE_STATE_COMING
        mod.params = [s.instantiate() for s in _module_params(info)]
        mod.args = args
        _parse_module_args(k, mod, args, log)
        if mref.name in k.profile.builtin_sysfs:
            log.err(f"{mref.name}: module is already loaded")
            raise _Fail(errno.EINVAL)
        mod.has_init, mod.has_exit = _init_exit(info)
        mod.core_size, mod.init_size = layout.core_size, layout.init_size
        mod.base = layout.core_base
        mod.sections = layout.sect_addrs
        mod.notes = layout.notes
        mod.taints = mref.taints
    except _Fail:
        _free_module(k, mod)
        raise
    return _do_init_module(k, mod, log)


# -- module_sig_check (kernel/module/signing.c) --------------------------------------------

_keyrings: dict[int, Any] = {}


def _keyring(p: KernelProfile) -> Any:
    from lkm.signing import Keyring

    key = id(p)
    if key not in _keyrings:
        _keyrings.clear()
        _keyrings[key] = Keyring(p.certificates)
    return _keyrings[key]


def _module_sig_check(k: KernelState, info: _Info, flags: int, comm: str, log: Printk) -> None:
    if not k.profile.enabled("MODULE_SIG"):
        return
    err = errno.ENODATA
    mangled = flags & (MODULE_INIT_IGNORE_MODVERSIONS | MODULE_INIT_IGNORE_VERMAGIC)
    marker = len(MODULE_SIG_STRING)
    if not mangled and info.len > marker and info.data.endswith(MODULE_SIG_STRING):
        err = _mod_verify_sig(k, info, log)
        if err == 0:
            info.sig_ok = True
            return
    reasons = {errno.ENODATA: "unsigned module", errno.ENOPKG: "module with unsupported crypto",
               errno.ENOKEY: "module with unavailable key"}
    reason = reasons.get(err)
    if reason is None:
        raise _Fail(err)
    if k.sig_enforce:
        log.notice(f"Loading of {reason} is rejected")
        raise _Fail(errno.EKEYREJECTED)
    if k.lockdown and k.profile.enabled("SECURITY_LOCKDOWN_LSM"):
        log.notice(f"Lockdown: {comm}: unsigned module loading is restricted; "
                   "see man kernel_lockdown.7")
        raise _Fail(errno.EPERM)


def _mod_verify_sig(k: KernelState, info: _Info, log: Printk) -> int:
    from lkm.signing import mod_check_sig, verify_module

    check = mod_check_sig(info.data, info.len - len(MODULE_SIG_STRING))
    if check.errno:
        if check.logged:
            log.err(check.reason)
        return check.errno
    body = check.body
    # from here on the kernel works on the module without its signature
    verdict = verify_module(info.data, _keyring(k.profile))
    info.data = info.data[:body]
    info.len = body
    e = verdict.errno
    if e == errno.EINVAL and verdict.reason == "Data already supplied":
        log.warn("PKCS7: Data already supplied")
        log.err("PKCS#7 signature with non-detached data")
        return errno.EBADMSG
    if e == errno.EKEYREJECTED and verdict.reason.startswith("Invalid module sig"):
        log.warn(f"PKCS7: {verdict.reason}")
    return e


# -- ELF validity (main.c) ----------------------------------------------------------------

def _ehdr(info: _Info) -> tuple[Any, ...]:
    return _EHDR.unpack_from(info.data, 0)


def _validate_section_offset(info: _Info, h: list[int]) -> bool:
    end = h[4] + h[5]
    return not (end >= 1 << 64 or end > info.len)


def _load_sechdrs(info: _Info, shoff: int, shnum: int) -> None:
    info.shnum = shnum
    info.sechdrs = [list(_SHDR.unpack_from(info.data, shoff + i * 64)) for i in range(shnum)]


def _elf_header_checks(info: _Info, log: Printk, modern: bool) -> tuple[Any, ...]:
    if info.len < 64:
        log.err(f"Invalid ELF header len {info.len}")
        raise _Fail(errno.ENOEXEC)
    e = _ehdr(info)
    ident, e_type, e_machine = e[0], e[1], e[2]
    if ident[:4] != b"\x7fELF":
        log.err("Invalid ELF header magic: != \\x7fELF")
        raise _Fail(errno.ENOEXEC)
    if e_type != ET_REL:
        log.err(f"Invalid ELF header type: {e_type} != {ET_REL}")
        raise _Fail(errno.ENOEXEC)
    if e_machine != EM_X86_64:
        log.err(f"Invalid architecture in ELF header: {e_machine}")
        raise _Fail(errno.ENOEXEC)
    info.machine = e_machine
    shoff, shentsize, shnum = e[6], e[11], e[12]
    if shentsize != 64:
        log.err("Invalid ELF section header size")
        raise _Fail(errno.ENOEXEC)
    if shoff >= info.len or shnum * 64 > info.len - shoff:
        log.err("Invalid ELF section header overflow")
        raise _Fail(errno.ENOEXEC)
    _load_sechdrs(info, shoff, shnum)
    return e


def _check_section0(info: _Info, log: Printk) -> None:
    """Section 0 is SHT_NULL with no size and no address."""
    s0 = info.sechdrs[0]
    if s0[1] != SHT_NULL or s0[5] != 0 or s0[3] != 0:
        log.err(f"ELF Spec violation: section 0 type({_s32(s0[1])})!=SH_NULL or non-zero "
                "len or addr")
        raise _Fail(errno.ENOEXEC)


def _check_shstrndx(shstrndx: int, shnum: int, log: Printk) -> None:
    if shstrndx == SHN_UNDEF or shstrndx >= shnum:
        log.err(f"Invalid ELF section name index: {shstrndx} || e_shstrndx ({shstrndx}) "
                f">= e_shnum ({shnum})")
        raise _Fail(errno.ENOEXEC)


def _set_secstrings(info: _Info, strhdr: list[int], log: Printk) -> None:
    """Record the section name table: not empty, NUL-terminated."""
    info.secstrings_off, info.secstrings_size = strhdr[4], strhdr[5]
    if strhdr[5] == 0:
        log.err("empty section name table")
        raise _Fail(errno.ENOEXEC)
    if info.data[strhdr[4] + strhdr[5] - 1] != 0:
        log.err("ELF Spec violation: section name table isn't null terminated")
        raise _Fail(errno.ENOEXEC)


def _check_symtab_link(link: int, shnum: int, log: Printk) -> None:
    if link == SHN_UNDEF or link >= shnum:
        log.err(f"Invalid ELF sh_link!=SHN_UNDEF({link}) or (sh_link({link}) >= "
                f"hdr->e_shnum({shnum})")
        raise _Fail(errno.ENOEXEC)


def _check_section_offset(info: _Info, i: int, h: list[int], log: Printk) -> None:
    if not _validate_section_offset(info, h):
        log.err(f"Invalid ELF section in module (section {i} type {h[1]})")
        raise _Fail(errno.ENOEXEC)


def _elf_validity_check(info: _Info, log: Printk) -> None:
    """6.1: elf_validity_check()."""
    e = _elf_header_checks(info, log, False)
    shnum, shstrndx = e[12], e[13]
    _check_shstrndx(shstrndx, shnum, log)
    strhdr = info.sechdrs[shstrndx]
    if not _validate_section_offset(info, strhdr):
        log.err(f"Invalid ELF section hdr(type {strhdr[1]})")
        raise _Fail(errno.ENOEXEC)
    _set_secstrings(info, strhdr, log)
    _check_section0(info, log)
    for i in range(1, shnum):
        h = info.sechdrs[i]
        if h[1] in (SHT_NULL, SHT_NOBITS):
            continue
        if h[1] == SHT_SYMTAB:
            _check_symtab_link(h[6], shnum, log)
        _check_section_offset(info, i, h, log)
        if h[2] & SHF_ALLOC and h[0] >= strhdr[5]:
            log.err(f"Invalid ELF section name in module (section {i} type {h[1]})")
            raise _Fail(errno.ENOEXEC)


def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def _setup_load_info(info: _Info, flags: int, log: Printk) -> None:
    """6.1: setup_load_info()."""
    info.idx_info = info.find_sec(".modinfo")
    if info.idx_info:
        info.name = info.get_modinfo("name")
    for i in range(1, info.shnum):
        if info.sechdrs[i][1] == SHT_SYMTAB:
            info.idx_sym = i
            info.idx_str = info.sechdrs[i][6]
            break
    noname = "(missing .modinfo section or name field)"
    if not info.idx_sym:
        log.warn(f"{info.name or noname}: module has no symbols (stripped?)")
        raise _Fail(errno.ENOEXEC)
    info.idx_mod = info.find_sec(".gnu.linkonce.this_module")
    if not info.idx_mod:
        log.warn(f"{info.name or noname}: No module found in object")
        raise _Fail(errno.ENOEXEC)
    _finish_load_info(info, flags)


def _finish_load_info(info: _Info, flags: int) -> None:
    h = info.sechdrs[info.idx_mod]
    modname = info.read(h[4] + 24, MODULE_NAME_LEN).split(b"\0", 1)[0]
    info.modref = ModuleRef(modname.decode("utf-8", "surrogateescape"))
    if not info.name:
        info.name = info.modref.name
    info.idx_vers = 0 if flags & MODULE_INIT_IGNORE_MODVERSIONS else info.find_sec("__versions")
    info.idx_pcpu = info.find_sec(".data..percpu")


def _elf_validity_cache_copy(k: KernelState, info: _Info, flags: int, log: Printk) -> None:
    """6.4+ (6.12): elf_validity_cache_copy()."""
    e = _elf_header_checks(info, log, True)
    shnum, shstrndx = e[12], e[13]
    _check_section0(info, log)
    for i in range(1, shnum):
        h = info.sechdrs[i]
        if h[1] in (SHT_NULL, SHT_NOBITS):
            continue
        _check_section_offset(info, i, h, log)
    _check_shstrndx(shstrndx, shnum, log)
    strhdr = info.sechdrs[shstrndx]
    if strhdr[1] != SHT_STRTAB:
        log.err(f"Invalid ELF section name table type: {strhdr[1]}")
        raise _Fail(errno.ENOEXEC)
    _set_secstrings(info, strhdr, log)
    for i in range(shnum):
        h = info.sechdrs[i]
        if h[1] == SHT_NULL:
            continue
        if h[0] >= strhdr[5]:
            log.err(f"Invalid ELF section name in module (section {i} type {h[1]})")
            raise _Fail(errno.ENOEXEC)
    noname = "(missing .modinfo section or name field)"
    idx = info.find_any_unique_sec(".modinfo")
    if idx < 0:
        log.err("Only one .modinfo section must exist.")
        raise _Fail(errno.ENOEXEC)
    if idx:
        info.idx_info = idx
        info.name = info.get_modinfo("name")
    idx = info.find_any_unique_sec(".gnu.linkonce.this_module")
    who = info.name or noname
    if idx <= 0:
        log.err(f"module {who}: Exactly one .gnu.linkonce.this_module section must exist.")
        raise _Fail(errno.ENOEXEC)
    h = info.sechdrs[idx]
    if h[1] == SHT_NOBITS:
        log.err(f"module {who}: .gnu.linkonce.this_module section must have a size set")
        raise _Fail(errno.ENOEXEC)
    if not h[2] & SHF_ALLOC:
        log.err(f"module {who}: .gnu.linkonce.this_module must occupy memory during "
                "process execution")
        raise _Fail(errno.ENOEXEC)
    size = k.profile.this_module_size
    if size is not None and h[5] != size:
        log.err(f"module {who}: .gnu.linkonce.this_module section size must match the "
                "kernel's built struct module size at run time")
        raise _Fail(errno.ENOEXEC)
    info.idx_mod = idx
    syms = [i for i in range(1, shnum) if info.sechdrs[i][1] == SHT_SYMTAB]
    if len(syms) != 1:
        log.warn(f"{who}: module has no symbols (stripped?)")
        raise _Fail(errno.ENOEXEC)
    info.idx_sym = syms[0]
    stri = info.sechdrs[info.idx_sym][6]
    _check_symtab_link(stri, shnum, log)
    if info.sechdrs[stri][1] != SHT_STRTAB:
        log.err(f"Invalid ELF symbol string table type: {info.sechdrs[stri][1]}")
        raise _Fail(errno.ENOEXEC)
    info.idx_str = stri
    _finish_load_info(info, flags)


def _early_mod_check(k: KernelState, info: _Info, flags: int, log: Printk) -> None:
    """6.4+: blacklist, module_layout, vermagic, duplicate name — before any allocation."""
    if _blacklisted(k, info.name or ""):
        log.err(f"Module {info.name} is blacklisted")
        raise _Fail(errno.EPERM)
    _rewrite_section_headers(info)
    if not _check_modstruct_version(k, info, info.modref, log):
        raise _Fail(errno.ENOEXEC)
    _check_modinfo_magic(k, info, info.modref, flags, log)
    _check_modinfo_livepatch(k, info, info.modref, log, modern=True)
    old = k.find_module(info.modref.name, even_unformed=True)
    if old is not None:
        raise _Fail(errno.EEXIST if old.state == MODULE_STATE_LIVE else errno.EBUSY)


def _blacklisted(k: KernelState, name: str) -> bool:
    if not k.module_blacklist:
        return False
    return name in k.module_blacklist.split(",")


def _rewrite_section_headers(info: _Info) -> None:
    info.sechdrs[0][3] = 0
    info.sechdrs[info.idx_vers][2] &= ~SHF_ALLOC
    info.sechdrs[info.idx_info][2] &= ~SHF_ALLOC


# -- versions (kernel/module/version.c) ---------------------------------------------------

def _try_to_force_load(k: KernelState, mod: ModuleRef, reason: str, log: Printk) -> None:
    if not k.profile.enabled("MODULE_FORCE_LOAD"):
        raise _Fail(errno.ENOEXEC)
    if not k.test_taint(T.TAINT_FORCED_MODULE):
        log.warn(f"{mod.name}: {reason}: kernel tainted.")
    k.add_taint_module(mod, T.TAINT_FORCED_MODULE, log, now_unreliable=True)


def _versions(info: _Info) -> dict[bytes, int]:
    """__versions as the kernel searches it: name -> CRC of the first entry of that name."""
    if info._versions is None:
        out: dict[bytes, int] = {}
        if info.idx_vers:
            raw = info.sec_bytes(info.idx_vers)
            n = info.sechdrs[info.idx_vers][5] // 64
            for i in range(min(n, len(raw) // 64)):
                name = raw[i * 64 + 8:].split(b"\0", 1)[0]
                if name not in out:
                    out[name] = struct.unpack_from("<Q", raw, i * 64)[0]
        info._versions = out
    return info._versions


def _check_version(k: KernelState, info: _Info, symname: str, mod: ModuleRef,
                   crc: int | None, log: Printk) -> bool:
    if crc is None:
        return True
    if not info.idx_vers:
        try:
            _try_to_force_load(k, mod, symname, log)
        except _Fail:
            return False
        return True
    vcrc = _versions(info).get(symname.encode("utf-8", "surrogateescape"))
    if vcrc is None:
        log.warn(f"{info.name}: no symbol version for {symname}")
        return False
    if vcrc == crc:
        return True
    log.warn(f"{info.name}: disagrees about version of symbol {symname}")
    return False


def _check_modstruct_version(k: KernelState, info: _Info, mod: ModuleRef, log: Printk) -> bool:
    ex = k.profile.exports.get("module_layout")
    crc = ex[0] if ex is not None else None
    return _check_version(k, info, "module_layout", mod, crc, log)


def _same_magic(amagic: str, bmagic: str, has_crcs: bool) -> bool:
    if has_crcs:
        amagic = amagic[len(amagic.split(" ", 1)[0]):]
        bmagic = bmagic[len(bmagic.split(" ", 1)[0]):]
    return amagic == bmagic


# -- check_modinfo and taints ------------------------------------------------------------

def _check_modinfo_magic(k: KernelState, info: _Info, mod: ModuleRef, flags: int,
                         log: Printk) -> None:
    modmagic = info.get_modinfo("vermagic")
    if flags & MODULE_INIT_IGNORE_VERMAGIC:
        modmagic = None
    if modmagic is None:
        _try_to_force_load(k, mod, "bad vermagic", log)
    elif not _same_magic(modmagic, k.profile.vermagic, bool(info.idx_vers)):
        log.err(f"{info.name}: version magic '{modmagic}' should be '{k.profile.vermagic}'")
        raise _Fail(errno.ENOEXEC)


def _check_modinfo_retpoline(k: KernelState, info: _Info, mod: ModuleRef, log: Printk) -> None:
    if not (k.profile.enabled("RETPOLINE") or k.profile.enabled("MITIGATION_RETPOLINE")):
        return
    if not k.spectre_v2_mitigated or info.get_modinfo("retpoline") is not None:
        return
    log.err("Spectre V2 : System may be vulnerable to spectre v2")
    log.warn(f"{mod.name}: loading module not compiled with retpoline compiler.")


def _check_modinfo_livepatch(k: KernelState, info: _Info, mod: ModuleRef, log: Printk,
                             modern: bool) -> None:
    if info.get_modinfo("livepatch") is None:
        return
    if k.profile.enabled("LIVEPATCH"):
        if not modern:
            _taint_livepatch(k, mod, log)
        return
    log.err(f"{mod.name}: module is marked as livepatch module, but livepatch support is "
            "disabled")
    raise _Fail(errno.ENOEXEC)


def _set_license(k: KernelState, mod: ModuleRef, license: str | None, log: Printk) -> None:
    lic = license if license is not None else "unspecified"
    if not license_is_gpl_compatible(lic):
        if not k.test_taint(T.TAINT_PROPRIETARY_MODULE):
            log.warn(f"{mod.name}: module license '{lic}' taints kernel.")
        k.add_taint_module(mod, T.TAINT_PROPRIETARY_MODULE, log, now_unreliable=True)


def _taint_out_of_tree(k: KernelState, info: _Info, mod: ModuleRef, log: Printk) -> None:
    if info.get_modinfo("intree") is None:
        if not k.test_taint(T.TAINT_OOT_MODULE):
            log.warn(f"{mod.name}: loading out-of-tree module taints kernel.")
        k.add_taint_module(mod, T.TAINT_OOT_MODULE, log)


def _taint_staging(k: KernelState, info: _Info, mod: ModuleRef, log: Printk) -> None:
    if info.get_modinfo("staging") is not None:
        k.add_taint_module(mod, T.TAINT_CRAP, log)
        log.warn(f"{mod.name}: module is from the staging directory, the quality is unknown, "
                 "you have been warned.")


def _taint_test(k: KernelState, info: _Info, mod: ModuleRef, log: Printk) -> None:
    if info.get_modinfo("test") is not None:
        if not k.test_taint(T.TAINT_TEST):
            log.warn(f"{mod.name}: loading test module taints kernel.")
        k.add_taint_module(mod, T.TAINT_TEST, log)


def _taint_livepatch(k: KernelState, mod: ModuleRef, log: Printk) -> None:
    k.add_taint_module(mod, T.TAINT_LIVEPATCH, log)
    log.log_once("livepatch", KERN_NOTICE, f"{mod.name}: tainting kernel with TAINT_LIVEPATCH")


def _taint_unsigned(k: KernelState, info: _Info, mod: ModuleRef, log: Printk) -> None:
    if k.profile.enabled("MODULE_SIG") and not info.sig_ok:
        log.log_once("modsig", KERN_NOTICE,
                     f"{mod.name}: module verification failed: signature and/or required key "
                     "missing - tainting kernel")
        k.add_taint_module(mod, T.TAINT_UNSIGNED_MODULE, log)


def _check_modinfo_6_1(k: KernelState, info: _Info, mod: ModuleRef, flags: int,
                       log: Printk) -> None:
    _check_modinfo_magic(k, info, mod, flags, log)
    _taint_out_of_tree(k, info, mod, log)
    _check_modinfo_retpoline(k, info, mod, log)
    _taint_staging(k, info, mod, log)
    _check_modinfo_livepatch(k, info, mod, log, modern=False)
    _set_license(k, mod, info.get_modinfo("license"), log)
    _taint_test(k, info, mod, log)


def _module_augment_kernel_taints(k: KernelState, info: _Info, mod: ModuleRef,
                                  log: Printk) -> None:
    """6.4+: the taints, applied once the module is in the list."""
    prev = k.test_taint(T.TAINT_PROPRIETARY_MODULE)
    _taint_out_of_tree(k, info, mod, log)
    _check_modinfo_retpoline(k, info, mod, log)
    _taint_staging(k, info, mod, log)
    if info.get_modinfo("livepatch") is not None:
        _taint_livepatch(k, mod, log)
    _set_license(k, mod, info.get_modinfo("license"), log)
    _taint_test(k, info, mod, log)
    _taint_unsigned(k, info, mod, log)
    _special_names(k, mod, prev, log)


def _special_names(k: KernelState, mod: ModuleRef, prev: bool, log: Printk) -> None:
    if mod.name == "ndiswrapper":
        k.add_taint(T.TAINT_PROPRIETARY_MODULE, log, now_unreliable=True)
    if mod.name in ("driverloader", "lve"):
        k.add_taint_module(mod, T.TAINT_PROPRIETARY_MODULE, log, now_unreliable=True)
    if not prev and k.test_taint(T.TAINT_PROPRIETARY_MODULE):
        log.warn(f"{mod.name}: module license taints kernel.")


# -- layout (layout_sections, layout_symtab) ---------------------------------------------

@dataclass
class _Layout:
    core_size: int = 0
    init_size: int = 0
    core_base: int = 0
    init_base: int = 0
    # section index -> (is_init, offset, mem type for 6.4+)
    place: dict[int, tuple[bool, int, int]] = field(default_factory=dict)
    sect_addrs: list[tuple[str, int]] = field(default_factory=list)
    notes: list[tuple[str, bytes]] = field(default_factory=list)
    addr: dict[int, int] = field(default_factory=dict)  # section index -> address
    regions: list[Region] = field(default_factory=list)


_MASKS = ((SHF_EXECINSTR | SHF_ALLOC, 0), (SHF_ALLOC, SHF_WRITE),
          (SHF_RO_AFTER_INIT | SHF_ALLOC, 0), (SHF_WRITE | SHF_ALLOC, 0), (SHF_ALLOC, 0))
# 6.4+ struct module_memory types
MOD_TEXT, MOD_DATA, MOD_RODATA, MOD_RO_AFTER_INIT = 0, 1, 2, 3
MOD_INIT_TEXT, MOD_INIT_DATA, MOD_INIT_RODATA = 4, 5, 6
_CORE_TYPES = (MOD_TEXT, MOD_RODATA, MOD_RO_AFTER_INIT, MOD_DATA, MOD_DATA)
_INIT_TYPES = (MOD_INIT_TEXT, MOD_INIT_RODATA, -1, MOD_INIT_DATA, MOD_INIT_DATA)


def _align(v: int, a: int) -> int:
    a = a or 1
    return (v + a - 1) // a * a


def _page_align(v: int) -> int:
    return (v + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)


def _init_layout_section(k: KernelState, name: str) -> bool:
    if not k.profile.enabled("MODULE_UNLOAD") and name.startswith(".exit"):
        return True
    return name.startswith(".init")


def _enforce_rwx(k: KernelState, info: _Info, mod: ModuleRef, log: Printk) -> None:
    if not k.profile.enabled("STRICT_MODULE_RWX"):
        return
    wx = SHF_WRITE | SHF_EXECINSTR
    for i in range(info.shnum):
        if info.sechdrs[i][2] & wx == wx:
            log.err(f"{mod.name}: section {info.secname(i)} (index {i}) has invalid "
                    "WRITE|EXEC flags")
            raise _Fail(errno.ENOEXEC)


def _layout_and_allocate(k: KernelState, info: _Info, flags: int, log: Printk,
                         modern: bool) -> _Layout:
    mod = info.modref
    if not modern:
        _check_modinfo_6_1(k, info, mod, flags, log)
    _enforce_rwx(k, info, mod, log)
    sh = info.sechdrs
    sh[info.idx_pcpu][2] &= ~SHF_ALLOC
    for name in (".data..ro_after_init", "__jump_table"):
        ndx = info.find_sec(name)
        if ndx:
            sh[ndx][2] |= SHF_RO_AFTER_INIT
    names = [info.secname(i) for i in range(info.shnum)]
    is_init = [_init_layout_section(k, n) for n in names]
    strict = k.profile.enabled("STRICT_MODULE_RWX")
    lay = _Layout()
    for h in sh:
        h[9] = ENTSIZE_UNSET
    if modern:
        sizes = [0] * 7
        for init in (False, True):
            types = _INIT_TYPES if init else _CORE_TYPES
            for m, (want, deny) in enumerate(_MASKS):
                t = types[m]
                for i, h in enumerate(sh):
                    if (h[2] & want) != want or h[2] & deny or h[9] != ENTSIZE_UNSET \
                            or is_init[i] != init or t < 0:
                        continue
                    off = _align(sizes[t], h[8])
                    sizes[t] = off + h[5]
                    h[9] = off | (t << 60)
                    lay.place[i] = (init, off, t)
        sizes, symtab_core = _layout_symtab(k, info, lay, sizes, modern, names)
        core = sum(_page_align(sizes[t]) for t in (MOD_TEXT, MOD_DATA, MOD_RODATA,
                                                  MOD_RO_AFTER_INIT))
        initsz = sum(_page_align(sizes[t]) for t in (MOD_INIT_TEXT, MOD_INIT_DATA,
                                                    MOD_INIT_RODATA))
        lay.core_size, lay.init_size = core, initsz
        if core + initsz > MODULES_LEN:
            raise _Fail(errno.ENOMEM)  # execmem_alloc() fails
        bases = [k.allocate(_page_align(s)) if s else 0 for s in sizes]
        lay.core_base = bases[MOD_TEXT]
        for t, size in enumerate(sizes):
            if size:
                lay.regions.append(Region(_MEM_NAMES[t], bases[t], _page_align(size),
                                          _MEM_PERMS[t] if strict else "rwx"))
        for i, (_init, off, t) in lay.place.items():
            lay.addr[i] = bases[t] + off
    else:
        sizes = [0, 0]  # core, init
        bounds: list[list[int]] = [[], []]  # text_size, ro_size, ro_after_init_size
        for init in (False, True):
            for m, (want, deny) in enumerate(_MASKS):
                for i, h in enumerate(sh):
                    if (h[2] & want) != want or h[2] & deny or h[9] != ENTSIZE_UNSET \
                            or is_init[i] != init:
                        continue
                    j = 1 if init else 0
                    off = _align(sizes[j], h[8])
                    sizes[j] = off + h[5]
                    h[9] = off | (INIT_OFFSET_MASK if init else 0)
                    lay.place[i] = (init, off, j)
                j = 1 if init else 0
                if strict and (m in (0, 1, 4) or (m == 2 and not init)):
                    sizes[j] = _page_align(sizes[j])
                if m < 3:
                    bounds[j].append(sizes[j])
        sizes, symtab_core = _layout_symtab(k, info, lay, sizes, modern, names)
        lay.core_size, lay.init_size = sizes[0], sizes[1]
        if sizes[0] + sizes[1] > MODULES_LEN:
            raise _Fail(errno.ENOMEM)  # module_alloc() fails
        lay.core_base = k.allocate(sizes[0])
        lay.init_base = k.allocate(sizes[1]) if sizes[1] else 0
        for i, (init, off, _t) in lay.place.items():
            lay.addr[i] = (lay.init_base if init else lay.core_base) + off
        for j, base in ((0, lay.core_base), (1, lay.init_base)):
            if sizes[j]:
                lay.regions += _layout_regions(j == 1, base, bounds[j], sizes[j], strict)
    del symtab_core
    for i, h in enumerate(sh):
        if h[2] & SHF_ALLOC and h[5] and i in lay.addr:
            lay.sect_addrs.append((names[i], lay.addr[i]))
            if h[1] == SHT_NOTE:
                lay.notes.append((names[i], info.sec_bytes(i)))
    return lay


_MEM_NAMES = ("text", "data", "rodata", "ro_after_init", "init_text", "init_data",
              "init_rodata")
_MEM_PERMS = ("rx", "rw", "r", "rw", "rx", "rw", "r")


def _layout_regions(init: bool, base: int, bounds: list[int], size: int, strict: bool
                    ) -> list[Region]:
    """6.1: a layout (struct module_layout) as its STRICT_MODULE_RWX ranges."""
    if not strict:
        return [Region("init" if init else "core", base, _page_align(size), "rwx")]
    text, ro, ro_after_init = bounds
    pre = "init_" if init else ""
    ranges = [("text", 0, text, "rx"), ("rodata", text, ro, "r"),
              ("ro_after_init", ro, ro_after_init, "rw"), ("data", ro_after_init, size, "rw")]
    return [Region(pre + kind, base + start, _page_align(end) - start, perm)
            for kind, start, end, perm in ranges if end > start]


def _layout_symtab(k: KernelState, info: _Info, lay: _Layout, sizes: list[int], modern: bool,
                   names: list[str]) -> tuple[list[int], int]:
    sh = info.sechdrs
    strict = k.profile.enabled("STRICT_MODULE_RWX")
    kallsyms_all = k.profile.enabled("KALLSYMS_ALL")
    symsect, _strsect = sh[info.idx_sym], sh[info.idx_str]
    init_t = MOD_INIT_DATA if modern else 1
    core_t = MOD_DATA if modern else 0

    def place(idx: int) -> None:
        h = sh[idx]
        h[2] |= SHF_ALLOC
        off = _align(sizes[init_t], h[8])
        sizes[init_t] = off + h[5]
        h[9] = off | ((init_t << 60) if modern else INIT_OFFSET_MASK)
        lay.place[idx] = (True, off, init_t)

    place(info.idx_sym)
    syms = info.symbols()
    nsrc = len(syms)
    if not k.profile.enabled("KALLSYMS"):
        return sizes, 0
    is_livepatch = info.get_modinfo("livepatch") is not None
    ndst = 0
    strtab_size = 0
    shnum = info.shnum
    pcpu = info.idx_pcpu
    strtab = info.sec_bytes(info.idx_str) if sh[info.idx_str][1] != SHT_NOBITS else b""
    core_ok = []
    for i in range(shnum):
        h = sh[i]
        init = h[9] != ENTSIZE_UNSET and (
            (h[9] >> 60) in (MOD_INIT_TEXT, MOD_INIT_DATA, MOD_INIT_RODATA) if modern
            else bool(h[9] & INIT_OFFSET_MASK))
        ok = bool(h[2] & SHF_ALLOC) and (kallsyms_all or bool(h[2] & SHF_EXECINSTR)) \
            and not init
        core_ok.append(ok)
    for i, s in enumerate(syms):
        st_name, shndx = s[0], s[3]
        keep = i == 0 or is_livepatch
        if not keep and shndx != SHN_UNDEF and shndx < shnum and st_name:
            keep = (kallsyms_all and shndx == pcpu) or core_ok[shndx]
        if keep:
            end = strtab.find(b"\0", st_name)
            strtab_size += (end - st_name if end >= 0 else max(0, len(strtab) - st_name)) + 1
            ndst += 1
    symoffs = _align(sizes[core_t], symsect[8])
    sizes[core_t] = symoffs + ndst * 24 + strtab_size + ndst
    if strict and not modern:
        sizes[core_t] = _page_align(sizes[core_t])
    place(info.idx_str)
    sizes[init_t] = _align(sizes[init_t], 8) + 32 + nsrc  # struct mod_kallsyms + typetab
    if strict and not modern:
        sizes[init_t] = _page_align(sizes[init_t])
    return sizes, ndst


# -- find_module_sections, license and versions -------------------------------------------

def _find_module_sections(info: _Info, mod: ModuleRef, log: Printk) -> dict[str, Any]:
    ks = info.find_sec("__ksymtab")
    ksg = info.find_sec("__ksymtab_gpl")
    num_syms = info.sechdrs[ks][5] // 12 if ks else 0
    num_gpl = info.sechdrs[ksg][5] // 12 if ksg else 0
    crcs = info.find_sec("__kcrctab")
    gpl_crcs = info.find_sec("__kcrctab_gpl")
    if info.find_sec(".ctors") and info.find_sec(".init_array"):
        log.warn(f"{mod.name}: has both .ctors and .init_array.")
        raise _Fail(errno.EINVAL)
    if info.find_sec("__obsparm"):
        log.warn(f"{mod.name}: Ignoring obsolete parameters")
    no_crcs = (num_syms and not crcs) or (num_gpl and not gpl_crcs)
    return {"no_crcs": bool(no_crcs)}


def _check_module_license_and_versions(k: KernelState, info: _Info, mod: ModuleRef,
                                       sections: dict[str, Any], log: Printk) -> None:
    prev = k.test_taint(T.TAINT_PROPRIETARY_MODULE)
    _special_names(k, mod, prev, log)
    if k.profile.enabled("MODVERSIONS") and sections["no_crcs"]:
        _try_to_force_load(k, mod, "no versions for exported symbols", log)


# -- symbols -----------------------------------------------------------------------------

def _find_symbol(k: KernelState, name: str, gplok: bool
                 ) -> tuple[Module | None, int | None, bool, str] | None:
    """find_symbol(): vmlinux first, then the loaded modules newest first."""
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


class _SymState:
    def __init__(self) -> None:
        self.using_gplonly = False


def _resolve_symbol(k: KernelState, info: _Info, mref: ModuleRef, mod: Module, name: str,
                    st: _SymState, log: Printk) -> tuple[str, int, int]:
    """("ok"|"none"|"err", errno, address); the kernel's resolve_symbol()."""
    found = _find_symbol(k, name, not mref.taints & (1 << T.TAINT_PROPRIETARY_MODULE))
    if found is None:
        return "none", 0, 0
    owner, crc, gpl, ns = found
    if gpl:
        st.using_gplonly = True
    if owner is not None and owner.taints & (1 << T.TAINT_PROPRIETARY_MODULE):
        if st.using_gplonly:
            log.err(f"{mref.name}: module using GPL-only symbols uses symbols {name} from "
                    f"proprietary module {owner.name}.")
            return "none", 0, 0
        if not mref.taints & (1 << T.TAINT_PROPRIETARY_MODULE):
            log.warn(f"{mref.name}: module uses symbols {name} from proprietary module "
                     f"{owner.name}, inheriting taint.")
            mref.taints |= 1 << T.TAINT_PROPRIETARY_MODULE
    if not _check_version(k, info, name, mref, crc, log):
        return "err", errno.EINVAL, 0
    if ns and ns not in info.get_modinfo_all("import_ns"):
        allow = k.profile.enabled("MODULE_ALLOW_MISSING_NAMESPACE_IMPORTS")
        log.log(KERN_WARNING if allow else KERN_ERR,
                f"{mref.name}: module uses symbol ({name}) from namespace {ns}, but does "
                "not import it.")
        if not allow:
            return "err", errno.EINVAL, 0
    if owner is not None and mref.name not in owner.sources:
        # ref_module(): strong_try_module_get()
        if owner.state == MODULE_STATE_COMING:
            return "err", errno.EBUSY, 0
        if owner.state != MODULE_STATE_LIVE or owner.refcnt == 0:
            return "err", errno.ENOENT, 0
        owner.refcnt += 1
        owner.sources.insert(0, mref.name)
        mod.targets.insert(0, owner.name)
    return "ok", 0, _symbol_value(k, owner, name)


def _symbol_value(k: KernelState, owner: Module | None, name: str) -> int:
    """kernel_symbol_value(): a module's export at its address in that module's memory (when
    this process holds it), else where the state places kernel symbols."""
    if owner is not None and owner.memory is not None:
        sym = owner.memory.symbol(name)
        if sym is not None:
            return sym.addr
    return k.symbol_address(name)


def _simplify_symbols(k: KernelState, info: _Info, mref: ModuleRef, mod: Module,
                      lay: _Layout, log: Printk) -> None:
    """simplify_symbols(): every symbol gets its final value (info.sym_values); the last
    error is returned."""
    ret = 0
    st = _SymState()
    syms = info.symbols()
    values = info.sym_values = [0] * len(syms)
    for i in range(1, len(syms)):
        st_name, st_info, _other, shndx, value, _size = syms[i]
        values[i] = value
        if shndx == SHN_COMMON:
            name = info.symname(st_name)
            if name.startswith("__gnu_lto"):
                continue
            log.warn(f"{mref.name}: please compile with -fno-common")
            ret = -errno.ENOEXEC
        elif shndx in (SHN_ABS, SHN_LIVEPATCH):
            continue
        elif shndx == SHN_UNDEF:
            name = info.symname(st_name)
            what, err, addr = _resolve_symbol(k, info, mref, mod, name, st, log)
            if what == "ok":
                values[i] = addr
                continue
            if what == "none" and (st_info >> 4 == STB_WEAK or name == "_GLOBAL_OFFSET_TABLE_"):
                continue
            ret = -(err or errno.ENOENT)
            log.warn(f"{mref.name}: Unknown symbol {name} (err {ret})")
        elif shndx >= info.shnum:
            name = info.symname(st_name)
            log.err(f"{mref.name}: Symbol {name} has an invalid section index {shndx} "
                    f"(max {info.shnum - 1})")
            ret = -errno.ENOEXEC
        else:
            values[i] = lay.addr.get(shndx, 0) + value
    if ret < 0:
        raise _Fail(ret)


_RELOC_SIZE = {R_X86_64_64: 8, R_X86_64_32: 4, R_X86_64_32S: 4, R_X86_64_PC32: 4,
               R_X86_64_PLT32: 4, R_X86_64_PC64: 8}
_PCREL = frozenset({R_X86_64_PC32, R_X86_64_PLT32, R_X86_64_PC64})
_ZERO = {4: bytes(4), 8: bytes(8)}
_M64 = (1 << 64) - 1


def _apply_relocations(k: KernelState, info: _Info, mref: ModuleRef, lay: _Layout,
                       log: Printk) -> None:
    sh = info.sechdrs
    modern = k.profile.modern
    for i in range(1, info.shnum):
        infosec = sh[i][7]
        if infosec >= info.shnum or not sh[infosec][2] & SHF_ALLOC:
            continue
        if sh[i][2] & SHF_RELA_LIVEPATCH:
            continue
        if sh[i][1] == SHT_REL:
            log.err(f"module {mref.name}: REL relocation unsupported")
            raise _Fail(errno.ENOEXEC)
        if sh[i][1] != SHT_RELA:
            continue
        addrs = info.sym_values
        nsyms = len(addrs)
        target = info.section_buffer(infosec)
        tlen = len(target)
        base = lay.addr.get(infosec, 0)
        raw = info.sec_bytes(i)
        raw = raw[:sh[i][5] // 24 * 24]
        for off, rinfo, addend in _RELA.iter_unpack(raw):
            rtype = rinfo & 0xFFFFFFFF
            if rtype == R_X86_64_NONE:
                continue
            size = _RELOC_SIZE.get(rtype)
            if size is None:
                log.err(f"module: {mref.name}: Unknown rela relocation: {rtype}")
                raise _Fail(errno.ENOEXEC)
            symidx = rinfo >> 32
            val = ((addrs[symidx] if symidx < nsyms else 0) + addend) & _M64
            if rtype in _PCREL:
                val = (val - base - off) & _M64
            inside = off + size <= tlen
            nonzero = inside and target[off:off + size] != _ZERO[size]
            overflow = False
            if rtype == R_X86_64_32:
                overflow = val >> 32 != 0
            elif rtype == R_X86_64_32S:
                overflow = not (val < 0x80000000 or val >= 0xFFFFFFFF80000000)
            if nonzero or overflow:
                _bad_relocation(mref, rtype, base + off, val, nonzero, overflow, modern, log)
            if inside:
                target[off:off + size] = (val & ((1 << (8 * size)) - 1)).to_bytes(size, "little")


def _bad_relocation(mref: ModuleRef, rtype: int, loc: int, val: int, nonzero: bool,
                    overflow: bool, modern: bool, log: Printk) -> None:
    """6.1 checks the target before writing (then overflow); 6.4+ the reverse."""
    ptr = f"{loc & 0xFFFFFFFF:016x}"
    if modern and overflow:
        _overflow(mref, rtype, val, log)
    if nonzero:
        what = "Invalid" if modern else "Skipping invalid"
        log.err(f"module: x86/modules: {what} relocation target, existing value is nonzero "
                f"for type {rtype}, loc {ptr}, val {val:x}")
        raise _Fail(errno.ENOEXEC)
    _overflow(mref, rtype, val, log)


def _overflow(mref: ModuleRef, rtype: int, val: int, log: Printk) -> None:
    log.err(f"module: overflow in relocation type {rtype} val {val:x}")
    log.err(f"module: `{mref.name}' likely not compiled with -mcmodel=kernel")
    raise _Fail(errno.ENOEXEC)


def _module_exports(info: _Info) -> dict[str, tuple[int | None, bool, str]]:
    """The module's __ksymtab/__ksymtab_gpl with CRCs and namespaces, as relocated."""
    out: dict[str, tuple[int | None, bool, str]] = {}
    for tab, crctab, gpl in (("__ksymtab", "__kcrctab", False),
                             ("__ksymtab_gpl", "__kcrctab_gpl", True)):
        ks = info.find_sec(tab)
        if not ks:
            continue
        n = info.sechdrs[ks][5] // 12
        kc = info.find_sec(crctab)
        crcs = info.sec_bytes(kc) if kc else b""
        for j in range(n):
            t = info.reloc_target(ks, j * 12 + 4)
            if t is None:
                continue
            sec, off, _ = t
            name = info.string_at(sec, off) if sec else ""
            if not name:
                continue
            ns = ""
            t2 = info.reloc_target(ks, j * 12 + 8)
            if t2 is not None and t2[0]:
                ns = info.string_at(t2[0], t2[1])
            crc = struct.unpack_from("<I", crcs, j * 4)[0] if kc and len(crcs) >= j * 4 + 4 \
                else None
            out.setdefault(name, (crc, gpl, ns))
    return out


def _verify_exported_symbols(k: KernelState, mod: Module, log: Printk) -> None:
    for name in mod.syms:
        found = _find_symbol(k, name, True)
        if found is not None:
            owner = found[0]
            log.err(f"{mod.name}: exports duplicate symbol {name} (owned by "
                    f"{owner.name if owner is not None else 'kernel'})")
            raise _Fail(errno.ENOEXEC)


def _module_memory(info: _Info, lay: _Layout) -> ModuleMemory:
    """The relocated image as the kernel holds it after move_module() and
    apply_relocations(): regions with the sections copied in, the module's symbols at
    their addresses, and struct module's init/exit/__this_module addresses."""
    mem = ModuleMemory(regions=lay.regions)
    names = info.secnames()
    for i, addr in lay.addr.items():
        h = info.sechdrs[i]
        if h[1] == SHT_NOBITS or not h[5] or not h[2] & SHF_ALLOC:
            continue
        region = mem.region_at(addr)
        if region is not None:
            region.place(addr - region.base, functools.partial(info.section_contents, i))
    for i, addr in lay.addr.items():
        mem.sections[names[i]] = addr
    syms = info.symbols()
    values = info.sym_values
    for i, (st_name, st_info, _o, shndx, _v, size) in enumerate(syms):
        if not st_name or shndx == SHN_UNDEF or i >= len(values):
            continue
        if shndx != SHN_ABS and shndx not in lay.addr:
            continue
        mem.symbols.append(ModuleSymbol(info.symname(st_name), values[i], size, st_info,
                                        shndx))
    mem.this_module = lay.addr.get(info.idx_mod, 0)
    for symidx, _t, addend in info.relas_for(info.idx_mod).values():
        if not 0 <= symidx < len(syms) or symidx >= len(values):
            continue
        name = info.symname(syms[symidx][0])
        if name == "init_module":
            mem.init = (values[symidx] + addend) & _M64
        elif name == "cleanup_module":
            mem.exit = (values[symidx] + addend) & _M64
    return mem


def _init_exit(info: _Info) -> tuple[bool, bool]:
    """Whether struct module's init/exit are set: relocations of .gnu.linkonce.this_module
    naming init_module / cleanup_module."""
    has_init = has_exit = False
    syms = info.symbols()
    for symidx, _t, _a in info.relas_for(info.idx_mod).values():
        if 0 <= symidx < len(syms):
            n = info.symname(syms[symidx][0])
            if n == "init_module":
                has_init = True
            elif n == "cleanup_module":
                has_exit = True
    return has_init, has_exit


# -- parameters -------------------------------------------------------------------------

_OPS = {"param_ops_byte": "byte", "param_ops_short": "short", "param_ops_ushort": "ushort",
        "param_ops_int": "int", "param_ops_uint": "uint", "param_ops_long": "long",
        "param_ops_ulong": "ulong", "param_ops_ullong": "ullong", "param_ops_hexint": "hexint",
        "param_ops_bool": "bool", "param_ops_invbool": "invbool", "param_ops_bint": "bint",
        "param_ops_bool_enable_only": "bool_enable_only", "param_ops_charp": "charp",
        "param_ops_string": "string", "param_array_ops": "array"}
_SIZES = {"byte": (1, False), "short": (2, True), "ushort": (2, False), "int": (4, True),
          "uint": (4, False), "long": (8, True), "ulong": (8, False), "ullong": (8, False),
          "hexint": (4, False), "bint": (4, True)}


def _read_value(info: _Info, typ: str, sec: int, off: int) -> Any:
    h = info.sechdrs[sec] if 0 < sec < info.shnum else None
    if h is None:
        return None
    if typ == "charp":
        t = info.reloc_target(sec, off)
        if t is None or not t[0]:
            return None
        return info.string_at(t[0], t[1])
    data = info.sec_bytes(sec)
    if typ in ("bool", "invbool", "bool_enable_only"):
        return bool(data[off]) if 0 <= off < len(data) else False
    size, signed = _SIZES.get(typ, (4, True))
    raw = data[off:off + size] if off >= 0 else b""
    if len(raw) < size:
        return 0
    return int.from_bytes(raw, "little", signed=signed)


def _module_params(info: _Info) -> list[ParamSpec]:
    """The module's struct kernel_param array (__param), with initial values."""
    kp = info.find_sec("__param")
    if not kp:
        return []
    n = info.sechdrs[kp][5] // 40
    raw = info.sec_bytes(kp)
    out: list[ParamSpec] = []
    for j in range(n):
        o = j * 40
        t = info.reloc_target(kp, o)
        name = info.string_at(t[0], t[1]) if t is not None and t[0] else ""
        perm, level, pflags = struct.unpack_from("<HbB", raw, o + 24) if len(raw) >= o + 28 \
            else (0, -1, 0)
        ops = info.reloc_target(kp, o + 16)
        typ = _OPS.get(ops[2], "") if ops is not None and not ops[0] else ""
        spec = ParamSpec(name, typ, perm, pflags, level)
        arg = info.reloc_target(kp, o + 32)
        if arg is not None and arg[0]:
            sec, off = arg[0], arg[1]
            if typ == "string":
                data = info.sec_bytes(sec)
                spec.maxlen = struct.unpack_from("<I", data, off)[0] if len(data) >= off + 4 \
                    else 0
                st = info.reloc_target(sec, off + 8)
                spec.value = info.string_at(st[0], st[1]) if st is not None and st[0] else ""
            elif typ == "array":
                data = info.sec_bytes(sec)
                mx, elemsize = struct.unpack_from("<II", data, off) if len(data) >= off + 8 \
                    else (0, 0)
                eops = info.reloc_target(sec, off + 16)
                spec.elem_type = _OPS.get(eops[2], "") if eops is not None and not eops[0] \
                    else ""
                spec.max = mx
                nump = info.reloc_target(sec, off + 8)
                if nump is not None and nump[0]:
                    spec.num = _read_value(info, "uint", nump[0], nump[1])
                elem = info.reloc_target(sec, off + 24)
                vals = []
                for e in range(min(mx, 4096)):
                    if elem is not None and elem[0]:
                        vals.append(_read_value(info, spec.elem_type, elem[0],
                                                elem[1] + e * elemsize))
                    else:
                        vals.append(None)
                spec.value = vals
            elif typ:
                spec.value = _read_value(info, typ, sec, off)
        out.append(spec)
    return out


def _parse_module_args(k: KernelState, mod: Module, args: str, log: Printk) -> None:
    dyndbg = k.profile.enabled("DYNAMIC_DEBUG")

    def unknown(param: str, val: str | None) -> int:
        if param == "async_probe":
            return 0
        p = param.split(".", 1)[1] if "." in param else param
        if dyndbg and p == "dyndbg":
            return 0
        log.warn(f"{mod.name}: unknown parameter '{param}' ignored")
        return 0

    def unsafe(_kp: KernelParam) -> None:
        k.add_taint(T.TAINT_USER, log)

    err, after = parse_args(mod.name, args, mod.params, log, unknown, on_unsafe=unsafe)
    if err:
        raise _Fail(err)
    if after is not None:
        log.warn(f"{mod.name}: parameters '{after}' after `--' ignored")


# -- init and removal ---------------------------------------------------------------------

def _free_module(k: KernelState, mod: Module) -> None:
    """Unlink a module and drop the references it took (module_unload_free)."""
    for t in mod.targets:
        owner = k.find_module(t, even_unformed=True)
        if owner is not None:
            if mod.name in owner.sources:
                owner.sources.remove(mod.name)
            owner.refcnt = max(0, owner.refcnt - 1)
    mod.targets = []
    if mod in k.modules:
        k.modules.remove(mod)


def _do_init_module(k: KernelState, mod: Module, log: Printk) -> Module:
    """do_init_module(): mod->init through the state's hook; a ProcessKilled from it
    leaves the module COMING with the init reference held, as an oops in init does."""
    ret = k.run_init(mod) if mod.has_init else 0
    if ret < 0:
        mod.state = MODULE_STATE_GOING
        _free_module(k, mod)
        raise _Fail(ret)
    if ret > 0:
        log.warn(f"do_init_module: '{mod.name}'->init suspiciously returned {ret}, it should "
                 "follow 0/-E convention\ndo_init_module: loading module anyway...")
    mod.state = MODULE_STATE_LIVE
    mod.refcnt -= 1
    mod.init_size = 0
    if mod.memory is not None:
        mod.memory.free_init()
    return mod


def delete_module(k: KernelState, name: str, flags: int = O_NONBLOCK,
                  log: Printk | None = None) -> list[str]:
    """delete_module(2); returns the log lines, raises KernelError (or ProcessKilled from
    mod->exit, the module left GOING)."""
    log = log if log is not None else Printk(k.once)
    if len(name.encode()) == 0 or len(name.encode()) >= MODULE_NAME_LEN:
        raise KernelError(errno.ENOENT, messages=log.lines)
    mod = k.find_module(name)
    if mod is None:
        raise KernelError(errno.ENOENT, messages=log.lines)
    if mod.sources:
        raise KernelError(errno.EWOULDBLOCK, messages=log.lines)
    if mod.state != MODULE_STATE_LIVE:
        raise KernelError(errno.EBUSY, messages=log.lines)
    force_ok = k.profile.enabled("MODULE_FORCE_UNLOAD") and bool(flags & O_TRUNC)

    def try_force() -> bool:
        if force_ok:
            k.add_taint(T.TAINT_FORCED_RMMOD, log, now_unreliable=True)
        return force_ok

    if mod.has_init and not mod.has_exit and not try_force():
        raise KernelError(errno.EBUSY, messages=log.lines)
    # try_stop_module(): try_release_module_ref() drops the base reference when no other
    # is left (module_refcount() reads -1 from here on); forced, the others stay
    if mod.refcount() != 0:
        if not try_force():
            raise KernelError(errno.EWOULDBLOCK, messages=log.lines)
    else:
        mod.refcnt -= MODULE_REF_BASE
    mod.state = MODULE_STATE_GOING
    if mod.has_exit:
        try:
            k.run_exit(mod)
        except ProcessKilled as e:
            e.messages = log.lines
            raise
    _free_module(k, mod)
    return log.lines
