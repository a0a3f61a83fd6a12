"""kernel/loader.py and kernel/profile.py without QEMU.

The real-kernel comparisons are in test_fidelity.py; here: the profile against the
headers and the tree, whole-tree loads (every CRC, signature and symbol of a sample
of Debian's own modules must check out), parameters read from the ELF, the
6.1/6.12 differences, delete_module, and hostile images (only KernelError, fast).
"""

from __future__ import annotations

import errno
import random
import struct
import time
from pathlib import Path

import pytest

from conftest import Tree
from lkm.compress import read_module
from lkm.errors import KernelError
from lkm.kernel import taint as T
from lkm.kernel.loader import (
    MODULE_INIT_IGNORE_VERMAGIC,
    O_NONBLOCK,
    O_TRUNC,
    KernelState,
    delete_module,
    load_module,
)
from lkm.kernel.params import param_get
from lkm.kernel.profile import KernelProfile, from_headers, load_cached
from lkm.moddb import ModuleDir


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
    assert p.modern == (tree.flavour == "6.12")
    assert p.certificates, "the built-in signing certificate"
    assert p.this_module_size in (896, 1280) or p.this_module_size
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
