"""kernel/module/ (the loader) and kernel/profile.py without QEMU.

The real-kernel comparisons are in test_fidelity.py; here: the profile against the
headers and the tree, whole-tree loads (every CRC, signature and symbol of a sample
of Debian's own modules must check out), parameters read from the ELF, the
6.1/6.12 differences, delete_module, hostile images (only KernelError, fast), the
seam to module-code execution (the relocated image, the init/exit hooks), and the
branches test_fidelity checks on QEMU, pinned.
"""

from __future__ import annotations

import errno
import itertools
import random
import re
import signal
import struct
import time
from pathlib import Path

import pytest

from conftest import Tree
from lkm.compress import read_module
from lkm.errors import KernelError, ProcessKilled
from lkm.kernel import taint as T
from lkm.kernel.module.main import delete_module, load_module
from lkm.kernel.module.procfs import proc_modules_line
from lkm.kernel.module.state import (
    MODULE_STATE_COMING,
    MODULE_STATE_GOING,
    KernelState,
    Module,
    ModuleMemory,
)
from lkm.kernel.params import param_get
from lkm.kernel.profile import KernelProfile, from_headers, load_cached
from lkm.kernel.uapi import MODULE_INIT_IGNORE_VERMAGIC, O_NONBLOCK, O_TRUNC
from lkm.kmod.moddir import ModuleDir
from variants import Ko


def _image(path: Path | str) -> bytes:
    data, _ = read_module(path)
    return bytes(data)


@pytest.fixture(scope="module")
def profiles(trees: dict[str, Tree]) -> dict[str, KernelProfile]:
    return {fl: load_cached(t.root) for fl, t in trees.items()}


def _state(profiles: dict[str, KernelProfile], tree: Tree, **kw: object) -> KernelState:
    k = KernelState(profiles[tree.flavour])
    for key, v in kw.items():
        setattr(k, key, v)
    return k


# -- the profile ---------------------------------------------------------------------------

def test_profile_matches_headers(tree: Tree, profiles: dict[str, KernelProfile]) -> None:
    """vmlinux's export table (from vmlinuz) = the vmlinux lines of the headers' Module.symvers."""
    hdr = Path(f"/usr/src/linux-headers-{tree.release}")
    if not (hdr / "Module.symvers").is_file():
        pytest.skip("headers not installed")
    p, h = profiles[tree.flavour], from_headers(hdr)
    assert p.release == h.release == tree.release
    assert p.vermagic == h.vermagic
    assert p.version == h.version
    assert p.exports == h.exports
    assert len(p.exports) > 10000
    assert p.exports["module_layout"][0] is not None
    assert any(ns for _, _, ns in p.exports.values())


def test_profile_facts(tree: Tree, profiles: dict[str, KernelProfile]) -> None:
    p = profiles[tree.flavour]
    assert p.version[:2] == {"6.1": (6, 1), "6.12": (6, 12)}[tree.flavour]
    assert p.certificates, "the built-in signing certificate"
    # sizeof(struct module): __this_module of the tree's modules (readelf -s: 896 on
    # Debian 6.1, 1280 on 6.12; BTF of 6.1's vmlinux agrees: 896)
    assert p.this_module_size == {"6.1": 896, "6.12": 1280}[tree.flavour]
    assert p.enabled("MODVERSIONS") and p.enabled("MODULE_SIG")
    assert not p.enabled("MODULE_SIG_FORCE")
    assert {"module", "kernel", "keyboard"} <= set(p.builtin_sysfs)
    assert p.compression == ("xz" if tree.flavour == "6.12" else None)
    again = KernelProfile.from_json(p.to_json())
    assert again.exports == p.exports and again.certificates == p.certificates


# -- Debian's own modules ------------------------------------------------------------------

def test_tree_sample_loads(tree: Tree, profiles: dict[str, KernelProfile]) -> None:
    """Every 25th module of the tree, after its modules.dep dependencies: all load without
    a log line (valid signatures, CRCs, namespaces, no unknown symbol; staging modules
    excepted) unless it exports a symbol another loaded module already exports."""
    md = ModuleDir(str(tree.kmod_moddir))
    k = _state(profiles, tree)
    names = sorted(p.name.split(".", 1)[0].replace("-", "_") for p in tree.modules())[::25]
    failures: list[str] = []
    t0 = time.monotonic()
    for name in names:
        entry = md.lookup_name(name)
        assert entry is not None and entry.path is not None
        for path in [*reversed(entry.deps), entry.path]:
            n = Path(path).name.split(".", 1)[0].replace("-", "_")
            if k.find_module(n) is not None:
                continue
            try:
                res = load_module(k, _image(path), "", path=path)
            except KernelError as e:
                if any("exports duplicate symbol" in m for m in e.messages):
                    continue
                failures.append(f"{n}: {e.errno_name} {e.messages[:3]}")
                continue
            msgs = [m for m in res.messages if "staging directory" not in m]
            if msgs:
                failures.append(f"{n}: {msgs[:3]}")
    assert not failures
    assert k.tainted & ~(1 << T.TAINT_CRAP) == 0  # drivers/staging modules taint C
    assert len(k.modules) > len(names) / 2
    assert time.monotonic() - t0 < 120
    for m in k.modules:
        assert m.core_size % 4096 == 0 and m.core_size > 0
        assert m.refcount() == len(m.sources)


# -- the test modules ------------------------------------------------------------------------

def test_params_from_elf(tree: Tree, test_modules: dict[str, Path],
                         profiles: dict[str, KernelProfile]) -> None:
    k = _state(profiles, tree)
    mod = load_module(k, test_modules["lkm_params"].read_bytes()).module
    params = {p.name: p for p in mod.params}
    assert params["p_ushort"].perm == 0o444 and params["p_uint"].perm == 0o600
    assert params["p_hidden"].perm == 0 and "p_named" in params
    got = {n: param_get(p) for n, p in params.items()}
    assert got["p_byte"] == "1\n" and got["p_short"] == "-2\n" and got["p_int"] == "-4\n"
    assert got["p_ullong"] == "8\n" and got["p_hexint"] == "0x000009\n"
    assert got["p_bool"] == "Y\n" and got["p_invbool"] == "Y\n"
    assert got["p_charp"] == "default\n" and got["p_string"] == "fixed\n"
    assert got["p_array"] == "1,2\n"
    assert params["p_string"].maxlen == 16
    assert mod.version == "1.0" and mod.srcversion
    assert set(mod.syms) == {"lkm_params_value", "lkm_params_gpl_value"}
    assert mod.syms["lkm_params_gpl_value"][1] is True
    assert mod.taints == (1 << T.TAINT_OOT_MODULE) | (1 << T.TAINT_UNSIGNED_MODULE)


def test_duplicate_taints_by_version(tree: Tree, test_modules: dict[str, Path],
                                     profiles: dict[str, KernelProfile]) -> None:
    """A second module of a loaded name: 6.1 applies its taints before refusing it, 6.12
    refuses it first (early_mod_check)."""
    k = _state(profiles, tree)
    load_module(k, test_modules["lkm_intree"].read_bytes())
    before = k.tainted
    staging = test_modules["lkm_intree"].read_bytes().replace(b"intree=Y", b"staging=")
    with pytest.raises(KernelError) as ei:
        load_module(k, staging)
    assert ei.value.errno == errno.EEXIST
    if tree.flavour == "6.1":
        assert k.tainted == before | (1 << T.TAINT_OOT_MODULE) | (1 << T.TAINT_CRAP)
        assert len(ei.value.messages) == 2
    else:
        assert k.tainted == before and ei.value.messages == []


def test_force_flags_and_once(tree: Tree, test_modules: dict[str, Path],
                              profiles: dict[str, KernelProfile]) -> None:
    k = _state(profiles, tree)
    bad = test_modules["lkm_alias"].read_bytes().replace(b"mod_unload ", b"mod_unlaod ")
    with pytest.raises(KernelError) as ei:
        load_module(k, bad)
    assert ei.value.errno == errno.ENOEXEC and "version magic" in ei.value.messages[0]
    res = load_module(k, bad, flags=MODULE_INIT_IGNORE_VERMAGIC)
    assert res.messages[:2] == ["lkm_alias: bad vermagic: kernel tainted.",
                                "Disabling lock debugging due to kernel taint"]
    assert res.module.taints & (1 << T.TAINT_FORCED_MODULE)
    res = load_module(k, test_modules["lkm_weak"].read_bytes())
    assert res.messages == []  # O and E were printed once, by the first module


def test_delete_module(tree: Tree, test_modules: dict[str, Path],
                       profiles: dict[str, KernelProfile]) -> None:
    k = _state(profiles, tree, init_results={"lkm_init_fail": -12})
    for n in ("lkm_params", "lkm_user", "lkm_noexit"):
        load_module(k, test_modules[n].read_bytes())
    with pytest.raises(KernelError) as ei:
        load_module(k, test_modules["lkm_init_fail"].read_bytes())
    assert ei.value.errno == errno.ENOMEM and k.find_module("lkm_init_fail") is None
    params = k.find_module("lkm_params")
    assert params is not None and params.sources == ["lkm_user"] and params.refcount() == 1

    def rm(name: str, flags: int = O_NONBLOCK) -> int:
        try:
            delete_module(k, name, flags)
        except KernelError as e:
            return e.errno
        return 0

    assert rm("lkm_params") == errno.EWOULDBLOCK
    assert rm("lkm_noexit") == errno.EBUSY
    assert rm("nope") == errno.ENOENT
    assert rm("x" * 56) == errno.ENOENT
    assert rm("lkm_noexit", O_NONBLOCK | O_TRUNC) == 0
    assert k.test_taint(T.TAINT_FORCED_RMMOD)
    assert rm("lkm_user") == 0 and rm("lkm_params") == 0
    assert k.modules == []


def test_sig_enforce_and_blacklist(tree: Tree, test_modules: dict[str, Path],
                                   profiles: dict[str, KernelProfile]) -> None:
    crc7 = _image(next(p for p in tree.modules() if p.name.startswith("crc7.")))
    k = _state(profiles, tree, sig_enforce=True, module_blacklist="crc7")
    with pytest.raises(KernelError) as ei:
        load_module(k, test_modules["lkm_params"].read_bytes())
    assert ei.value.errno == errno.EKEYREJECTED
    assert ei.value.messages == ["Loading of unsigned module is rejected"]
    with pytest.raises(KernelError) as ei:
        load_module(k, crc7)
    assert ei.value.errno == errno.EPERM
    assert ei.value.messages == ["Module crc7 is blacklisted"]
    k.module_blacklist = None
    assert load_module(k, crc7).module.taints == 0
    tampered = bytearray(crc7)
    tampered[len(tampered) // 3] ^= 1
    k2 = _state(profiles, tree)
    with pytest.raises(KernelError) as ei:
        load_module(k2, bytes(tampered))
    assert ei.value.errno == errno.EKEYREJECTED and k2.tainted == 0


# -- hostile images ------------------------------------------------------------------------

def _mutants(data: bytes, rng: random.Random) -> list[bytes]:
    out = [b"", b"\x7fELF", data[:63], data[:64], data[:200], data[: len(data) // 2],
           bytes(len(data)), rng.randbytes(4096), data + b"~Module signature appended~\n",
           data[:-10] + b"~Module signature appended~\n"]
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shnum = struct.unpack_from("<H", data, 0x3C)[0]
    for _ in range(300):
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            if rng.random() < 0.5:
                pos = rng.randrange(0, 64)
            else:
                pos = shoff + rng.randrange(0, shnum * 64)
            if pos < len(b):
                b[pos] = rng.randrange(256)
        out.append(bytes(b))
    for _ in range(60):  # big values in section headers
        b = bytearray(data)
        i = rng.randrange(1, shnum)
        field = rng.choice((24, 32, 40, 44, 48))  # offset, size, link, info, align
        struct.pack_into("<I", b, shoff + i * 64 + field + 4 * (field < 40),
                         rng.choice((0xFFFFFFFF, 0x7FFFFFFF, 0x10000, shnum)))
        out.append(bytes(b))
    return out


def test_hostile_images(tree: Tree, test_modules: dict[str, Path],
                        profiles: dict[str, KernelProfile]) -> None:
    """Mutated, truncated and random images: a KernelError or a load, nothing else, fast."""
    rng = random.Random(6)
    base = test_modules["lkm_params"].read_bytes()
    worst = 0.0
    outcomes: dict[str, int] = {}
    for img in _mutants(base, rng):
        k = _state(profiles, tree)
        t0 = time.perf_counter()
        try:
            load_module(k, img, "p_int=1")
            key = "loaded"
        except KernelError as e:
            key = e.errno_name
            assert isinstance(e.messages, list)
        worst = max(worst, time.perf_counter() - t0)
        outcomes[key] = outcomes.get(key, 0) + 1
    assert worst < 2.0
    assert outcomes.get("ENOEXEC", 0) > 50


# -- the seam to module-code execution (the relocated image and the init/exit hooks) ----------

def _read(mem: ModuleMemory, addr: int, n: int) -> bytes:
    r = mem.region_at(addr)
    assert r is not None, hex(addr)
    return bytes(r.data[addr - r.base:addr - r.base + n])


class _Recording(KernelState):
    """A state whose hooks record what the loader asks of them."""

    def __init__(self, profile: KernelProfile) -> None:
        super().__init__(profile)
        self.asked: list[str] = []
        self.inits: list[str] = []
        self.exits: list[str] = []
        self.init_ret: dict[str, int | ProcessKilled] = {}
        self.exit_kill: set[str] = set()

    def symbol_address(self, name: str) -> int:
        self.asked.append(name)
        return 0xFFFFFFFF82000000 + 0x40 * len(self.asked)

    def run_init(self, mod: Module) -> int:
        self.inits.append(mod.name)
        assert mod.state == MODULE_STATE_COMING and mod.memory is not None
        r = self.init_ret.get(mod.name, 0)
        if isinstance(r, ProcessKilled):
            raise r
        return r

    def run_exit(self, mod: Module) -> None:
        self.exits.append(mod.name)
        assert mod.state == MODULE_STATE_GOING
        if mod.name in self.exit_kill:
            raise ProcessKilled(signal.SIGSEGV)


def test_module_memory(tree: Tree, test_modules: dict[str, Path],
                       profiles: dict[str, KernelProfile]) -> None:
    """The relocated image is kept: regions by memory type with STRICT_MODULE_RWX
    permissions, the sections copied in, struct module's pointers, the module's symbols."""
    k = _Recording(profiles[tree.flavour])
    mod = load_module(k, test_modules["lkm_params"].read_bytes()).module
    mem = mod.memory
    assert mem is not None
    kinds = {r.kind: r.perm for r in mem.regions}
    assert kinds["text"] == "rx" and kinds["data"] == "rw" and kinds["rodata"] == "r"
    assert not any(kind.startswith("init") for kind in kinds)  # freed after init
    for r in mem.regions:
        assert r.base % 4096 == 0 and r.size % 4096 == 0 and len(r.data) == r.size
    if tree.flavour == "6.1":  # one core allocation split at the permission boundaries
        core = sorted(mem.regions, key=lambda r: r.base)
        assert core[0].base == mod.base and all(
            a.end == b.base for a, b in itertools.pairwise(core))
        assert sum(r.size for r in core) == mod.core_size
    else:  # 6.4+: one allocation per struct module_memory type
        assert mem.region_at(mod.base) is not None and mem.region_at(mod.base).kind == "text"
        assert sum(r.size for r in mem.regions) == mod.core_size
    # __this_module: the name at offset 24, the init/exit pointers relocated into it
    assert mem.this_module == dict(mod.sections)[".gnu.linkonce.this_module"]
    assert _read(mem, mem.this_module + 24, 11) == b"lkm_params\0"
    this = _read(mem, mem.this_module, profiles[tree.flavour].this_module_size or 896)
    init_sym, exit_sym = mem.symbol("init_module"), mem.symbol("cleanup_module")
    assert init_sym is not None and exit_sym is not None
    assert mem.init == init_sym.addr and mem.exit == exit_sym.addr
    assert struct.pack("<Q", mem.init) in this and struct.pack("<Q", mem.exit) in this
    assert mem.region_at(mem.exit) is not None and mem.region_at(mem.exit).kind == "text"
    # __param entries: mod -> __this_module, ops -> the hook's address of param_ops_*
    param = mem.sections["__param"]
    entries = [_read(mem, param + 40 * i, 40) for i in range(len(mod.params))]
    assert {struct.unpack_from("<Q", e, 8)[0] for e in entries} == {mem.this_module}
    ops = {struct.unpack_from("<Q", e, 16)[0] for e in entries}
    assert ops == {0xFFFFFFFF82000000 + 0x40 * (i + 1) for i, n in enumerate(k.asked)
                   if n.startswith("param_ops_") or n == "param_array_ops"}
    assert {"lkm_params_value", "lkm_params_gpl_value", "p_int"} <= {s.name for s in mem.symbols}
    # the default hook: a fixed address in the kernel's text per name
    plain = KernelState(profiles[tree.flavour])
    assert plain.symbol_address("jiffies") == plain.symbol_address("jiffies")
    assert 0xFFFFFFFF80000000 <= plain.symbol_address("printk") < 0xFFFFFFFFC0000000


def test_exports_resolve_to_the_exporter(tree: Tree, test_modules: dict[str, Path],
                                         profiles: dict[str, KernelProfile]) -> None:
    """A module's undefined symbols exported by a loaded module get the exporter's
    address, not the kernel hook's."""
    k = _Recording(profiles[tree.flavour])
    params = load_module(k, test_modules["lkm_params"].read_bytes()).module
    k.asked.clear()
    user = load_module(k, test_modules["lkm_user"].read_bytes()).module
    assert "lkm_params_value" not in k.asked and "lkm_params_gpl_value" not in k.asked
    assert params.memory is not None and user.memory is not None
    target = params.memory.symbol("lkm_params_value")
    assert target is not None and params.memory.region_at(target.addr) is not None


def test_init_exit_hooks(tree: Tree, test_modules: dict[str, Path],
                         profiles: dict[str, KernelProfile]) -> None:
    k = _Recording(profiles[tree.flavour])
    k.init_ret["lkm_params"] = -errno.EIO
    with pytest.raises(KernelError) as ei:
        load_module(k, test_modules["lkm_params"].read_bytes())
    assert ei.value.errno == errno.EIO and k.modules == [] and k.inits == ["lkm_params"]
    del k.init_ret["lkm_params"]
    load_module(k, test_modules["lkm_params"].read_bytes())
    load_module(k, test_modules["lkm_noexit"].read_bytes())
    delete_module(k, "lkm_params")
    assert k.exits == ["lkm_params"]
    delete_module(k, "lkm_noexit", O_NONBLOCK | O_TRUNC)  # forced: no exit to call
    assert k.exits == ["lkm_params"] and k.modules == []


def test_oops_in_init_leaves_module_coming(tree: Tree, test_modules: dict[str, Path],
                                           profiles: dict[str, KernelProfile]) -> None:
    """An init that kills the process: the module stays COMING ("Loading") with the init
    reference held, and cannot be removed; the log lines ride on the exception."""
    k = _Recording(profiles[tree.flavour])
    k.init_ret["lkm_params"] = ProcessKilled(signal.SIGSEGV)
    with pytest.raises(ProcessKilled) as ei:
        load_module(k, test_modules["lkm_params"].read_bytes())
    assert ei.value.signal == signal.SIGSEGV
    assert any("taints kernel" in m for m in ei.value.messages)
    mod = k.find_module("lkm_params")
    assert mod is not None and mod.state == MODULE_STATE_COMING and mod.refcount() == 1
    line = proc_modules_line(mod).split()
    assert line[2] == "1" and line[4] == "Loading" and line[6] == "(OE+)"
    with pytest.raises(KernelError) as e2:
        delete_module(k, "lkm_params")
    assert e2.value.errno == errno.EBUSY
    with pytest.raises(KernelError) as e2:  # the kernel waits for it forever; we say EBUSY
        load_module(k, test_modules["lkm_params"].read_bytes())
    assert e2.value.errno == errno.EBUSY


def test_oops_in_exit_leaves_module_going(tree: Tree, test_modules: dict[str, Path],
                                          profiles: dict[str, KernelProfile]) -> None:
    """An exit that kills rmmod: the module stays GOING ("Unloading"), its base reference
    dropped (refcount -1, as /proc/modules shows a module stuck in unload)."""
    k = _Recording(profiles[tree.flavour])
    load_module(k, test_modules["lkm_params"].read_bytes())
    k.exit_kill.add("lkm_params")
    with pytest.raises(ProcessKilled):
        delete_module(k, "lkm_params")
    mod = k.find_module("lkm_params")
    assert mod is not None and mod.state == MODULE_STATE_GOING
    line = proc_modules_line(mod).split()
    assert line[2] == "-1" and line[4] == "Unloading" and line[6] == "(OE-)"


# -- branches the QEMU runs check against the real kernels, pinned here ----------------------

OE = (1 << T.TAINT_OOT_MODULE) | (1 << T.TAINT_UNSIGNED_MODULE)
_OOT = "{}: loading out-of-tree module taints kernel."
_UNSIGNED = ("{}: module verification failed: signature and/or required key missing - "
             "tainting kernel")


def _variant(kos: dict[str, Path], case: str) -> bytes:
    def ko(name: str) -> Ko:
        return Ko(kos[name].read_bytes())

    k = ko("lkm_alias")
    if case == "wx":
        return k.set_flags(".text", 0x1).bytes()
    if case == "machine":
        return k.set_u16(18, 3).bytes()
    if case == "type":
        return k.set_u16(16, 2).bytes()
    if case == "short":
        return k.bytes()[:50]
    if case == "magic":
        return k.set_u16(0, 0x457E).bytes()
    if case == "shentsize":
        return k.set_u16(0x3A, 32).bytes()
    if case == "secoff":
        struct.pack_into("<Q", k.b, k.shdr(k.sec(".modinfo")) + 24, len(k.b) + 4096)
        return k.bytes()
    if case == "nosym":
        return k.set_u32(k.shdr(k.sec(".symtab")) + 4, 1).bytes()
    if case == "nothis":
        return k.rename_section(".gnu.linkonce.this_module", ".gnu.linkonce.this_modulX").bytes()
    if case == "badrela":
        rel_off, _ = k.sec_range(".rela.init.text")
        info = struct.unpack_from("<Q", k.b, rel_off + 8)[0]
        struct.pack_into("<Q", k.b, rel_off + 8, (info & ~0xFFFFFFFF) | 99)
        return k.bytes()
    if case == "badshndx":
        return k.set_u16(k.symbol("init_module") + 6, 0x400).bytes()
    if case == "livepatch":
        return k.replace(b"description=", b"livepatch=Y\0").bytes()
    if case == "noretpoline":
        return k.replace(b"retpoline=Y", b"retpolinX=Y").bytes()
    if case == "twomodinfo":
        return k.rename_section(".comment", ".modinfo").bytes()
    if case == "bigthis":
        h = k.shdr(k.sec(".gnu.linkonce.this_module"))
        struct.pack_into("<Q", k.b, h + 32, struct.unpack_from("<Q", k.b, h + 32)[0] + 64)
        return k.bytes()
    if case == "layoutcrc":
        return k.flip_crc("module_layout").bytes()
    if case == "keyboard":
        return ko("lkm_weak").replace(b"lkm_weak", b"keyboard").bytes()
    return kos[case].read_bytes()


# case -> (errno name or "ok", the last log line, the kernel's taints); a dict when the
# flavours differ
_By = dict[str, str]
BRANCHES: dict[str, tuple[str | _By, str | _By, int | dict[str, int]]] = {
    "wx": ("ENOEXEC", {"6.1": "lkm_alias: section .text (index 3) has invalid WRITE|EXEC flags",
                       "6.12": "lkm_alias: section .text (index 1) has invalid WRITE|EXEC "
                               "flags"}, {"6.1": 1 << T.TAINT_OOT_MODULE, "6.12": 0}),
    "machine": ("ENOEXEC", "Invalid architecture in ELF header: 3", 0),
    "type": ("ENOEXEC", "Invalid ELF header type: 2 != 1", 0),
    "short": ("ENOEXEC", "Invalid ELF header len 50", 0),
    "magic": ("ENOEXEC", "Invalid ELF header magic: != \\x7fELF", 0),
    "shentsize": ("ENOEXEC", "Invalid ELF section header size", 0),
    "secoff": ("ENOEXEC", {"6.1": "Invalid ELF section in module (section 10 type 1)",
                           "6.12": "Invalid ELF section in module (section 8 type 1)"}, 0),
    "nosym": ("ENOEXEC", "lkm_alias: module has no symbols (stripped?)", 0),
    "nothis": ("ENOEXEC", {"6.1": "lkm_alias: No module found in object",
                           "6.12": "module lkm_alias: Exactly one .gnu.linkonce.this_module "
                                   "section must exist."}, 0),
    "badrela": ("ENOEXEC", "module: lkm_alias: Unknown rela relocation: 99", OE),
    "badshndx": ("ENOEXEC", {"6.1": "lkm_alias: Symbol init_module has an invalid section "
                                    "index 1024 (max 42)",
                             "6.12": "lkm_alias: Symbol init_module has an invalid section "
                                     "index 1024 (max 49)"}, OE),
    "livepatch": ("ok", _UNSIGNED.format("lkm_alias"), OE | 1 << T.TAINT_LIVEPATCH),
    "noretpoline": ("ok", _UNSIGNED.format("lkm_alias"), OE),
    "twomodinfo": ({"6.1": "ok", "6.12": "ENOEXEC"},
                   {"6.1": _UNSIGNED.format("lkm_alias"),
                    "6.12": "Only one .modinfo section must exist."}, {"6.1": OE, "6.12": 0}),
    "bigthis": ({"6.1": "ok", "6.12": "ENOEXEC"},
                {"6.1": _UNSIGNED.format("lkm_alias"),
                 "6.12": "module lkm_alias: .gnu.linkonce.this_module section size must "
                         "match the kernel's built struct module size at run time"},
                {"6.1": OE, "6.12": 0}),
    "layoutcrc": ("ENOEXEC", "lkm_alias: disagrees about version of symbol module_layout", 0),
    "keyboard": ("EINVAL", "keyboard: module is already loaded", OE),
    "lkm_common": ("ENOEXEC", "lkm_common: please compile with -fno-common", OE),
    "lkm_dup_kernel": ("ENOEXEC", "lkm_dup_kernel: exports duplicate symbol jiffies_to_msecs "
                                  "(owned by kernel)", OE),
    "lkm_prop": ("ENOENT", "lkm_prop: Unknown symbol lkm_params_value (err -2)",
                 OE | 1 << T.TAINT_PROPRIETARY_MODULE),
    "lkm_testmod": ("ok", _UNSIGNED.format("lkm_testmod"), OE | 1 << T.TAINT_TEST),
    "lkm_staging": ("ok", _UNSIGNED.format("lkm_staging"), OE | 1 << T.TAINT_CRAP),
    "lkm_init_positive": ("ok", "do_init_module: 'lkm_init_positive'->init suspiciously "
                                "returned 1, it should follow 0/-E convention\n"
                                "do_init_module: loading module anyway...", OE),
}


@pytest.mark.parametrize("case", sorted(BRANCHES))
def test_loader_branch(case: str, tree: Tree, test_modules: dict[str, Path],
                       profiles: dict[str, KernelProfile]) -> None:
    """One load on a fresh kernel: the errno, the last line, the kernel's taints — as
    test_fidelity's steps check them against the real kernels on QEMU."""
    want, last, taints = (v[tree.flavour] if isinstance(v, dict) else v
                          for v in BRANCHES[case])
    k = _state(profiles, tree, init_results={"lkm_init_positive": 1})
    try:
        messages = load_module(k, _variant(test_modules, case)).messages
        got = "ok"
    except KernelError as e:
        got, messages = e.errno_name, e.messages
    assert (got, messages[-1], k.tainted) == (want, last, taints)
    if want == "ok":
        assert messages[0] == _OOT.format(k.modules[0].name)


class _FarSymbols(KernelState):
    """__fentry__ placed where no 32-bit relocation reaches."""

    def symbol_address(self, name: str) -> int:
        return 0x123456780000 if name == "__fentry__" else super().symbol_address(name)


@pytest.mark.parametrize("nonzero,as_32s", [(True, False), (True, True), (False, True)])
def test_relocation_check_order(nonzero: bool, as_32s: bool, tree: Tree,
                                test_modules: dict[str, Path],
                                profiles: dict[str, KernelProfile]) -> None:
    """x86's "existing value is nonzero" and 32S overflow checks: 6.1 checks the target
    first ("Skipping invalid ..."), 6.3+ the overflow first ("Invalid ...")."""
    k = Ko(test_modules["lkm_alias"].read_bytes())
    rel_off, _ = k.sec_range(".rela.init.text")  # [0]: the call of __fentry__ in init
    r_offset, info = struct.unpack_from("<QQ", k.b, rel_off)
    if as_32s:
        struct.pack_into("<Q", k.b, rel_off + 8, (info & ~0xFFFFFFFF) | 11)
    if nonzero:
        text, _ = k.sec_range(".init.text")
        k.b[text + r_offset] = 0x90
    state = _FarSymbols(profiles[tree.flavour])
    with pytest.raises(KernelError) as ei:
        load_module(state, k.bytes())
    lines = [re.sub(r"loc [0-9a-f]{16}, val [0-9a-f]+", "loc X, val Y", m)
             for m in ei.value.messages[2:]]
    assert ei.value.errno == errno.ENOEXEC
    modern = tree.flavour == "6.12"
    overflow = ["module: overflow in relocation type 11 val 12345677fffc",
                "module: `lkm_alias' likely not compiled with -mcmodel=kernel"]
    target = (f"module: x86/modules: {'Invalid' if modern else 'Skipping invalid'} relocation "
              f"target, existing value is nonzero for type {11 if as_32s else 4}, loc X, val Y")
    if nonzero and not (as_32s and modern):
        assert lines == [target]
    else:
        assert lines == overflow
