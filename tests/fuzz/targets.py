"""The fuzz targets: each an in-process entry point of lkm, how to make its inputs from
the seeds, and what it may raise (lkm.errors.LkmError and its subclasses; OSError only
where the entry point reads a file and that is the honest answer).

A target's ``make(rng)`` returns one input; ``run(data)`` drives the entry point with
it.  Anything else that comes out of ``run`` is a finding (tests/fuzz/harness.py).
"""

from __future__ import annotations

import contextlib
import functools
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import seeds
from mutate import mutate_elf, mutate_module, mutate_signature, split_signature
from mutate_bin import index_keys, mutate_btf, mutate_index, mutate_kimage
from mutate_text import config_file, kernel_cmdline

from lkm.errors import LkmError

_SCRATCH = Path(os.environ.get("LKM_FUZZ_SCRATCH",
                               "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()))


@functools.cache
def scratch() -> Path:
    """A private directory for the targets that read files (removed at exit)."""
    import atexit

    d = Path(tempfile.mkdtemp(prefix="lkm-fuzz-", dir=_SCRATCH))
    atexit.register(shutil.rmtree, d, True)
    return d


@dataclass(frozen=True)
class Target:
    name: str
    make: Callable[[random.Random], bytes]
    run: Callable[[bytes], None]
    allowed: tuple[type[BaseException], ...] = (LkmError,)
    time_bound: float = 5.0  # seconds for one input
    sample: int = 2000  # inputs in the fixed-seed sample of `make test`


def _pick(rng: random.Random, items: list[bytes]) -> bytes:
    return items[rng.randrange(len(items))]


# -- modules -------------------------------------------------------------------------------

def make_module(rng: random.Random) -> bytes:
    mods = seeds.module_bytes()
    return mutate_module(rng, _pick(rng, mods), mods)


def run_module(data: bytes) -> None:
    """Every ModuleFile property and method."""
    from lkm.elf import SHT_REL, SHT_RELA
    from lkm.module import ModuleFile

    def attempt(fn: Callable[[], object]) -> None:
        try:
            fn()
        except LkmError as e:
            assert str(e), f"{type(e).__name__} without a message"

    try:
        m = ModuleFile.from_bytes(data, "/fuzz/m.ko")
        f = m.elf
    except LkmError:
        return
    for s in f.sections:
        attempt(s.data)
        if s.type in (SHT_REL, SHT_RELA):
            attempt(lambda s=s: f.relocations(s))  # type: ignore[misc]
    for fn in (f.symbols, f.undefined_symbols, f.undefined_symbols_with_bind,
               lambda: f.symbol_names_with_prefix(b"__crc_"),
               lambda: f.symbol_names_with_prefix(b"__ksymtab_"), m.export_names_for_depmod):
        attempt(fn)
    for name in ("name", "has_modinfo", "modinfo", "vermagic", "license", "srcversion",
                 "depends", "aliases", "softdeps", "import_ns", "intree", "retpoline",
                 "staging", "params", "undefined_symbols", "weak_undefined", "versions",
                 "extended_versions", "exports", "signature", "signature_offset", "body",
                 "this_module", "this_module_size", "this_module_name"):
        attempt(lambda name=name: getattr(m, name))  # type: ignore[misc]
    attempt(lambda: m.get("alias"))
    attempt(lambda: m.get_first("name"))


def _module_file(data: bytes, name: str = "m") -> Path:
    from lkm.compress import detect

    kind = detect(data)
    ext = {"gzip": ".ko.gz", "xz": ".ko.xz", "zstd": ".ko.zst"}.get(kind or "", ".ko")
    d = scratch()
    for old in d.glob(f"{name}.ko*"):
        old.unlink()
    p = d / f"{name}{ext}"
    p.write_bytes(data)
    return p


def run_depmod_read(data: bytes) -> None:
    """depmod's module reader (never raises), with and without CRCs."""
    from lkm.depmod.read import read_module_data

    p = str(_module_file(data))
    read_module_data(p, False)
    read_module_data(p, True)


@functools.cache
def _depmod_tree() -> tuple[Path, str, str]:
    """A small tree (four seed modules and a slot for the mutant), and a System.map."""
    t = seeds.trees()["6.1"]
    root = scratch() / "tree"
    moddir = root / "lib" / "modules" / t.release
    for rel in seeds.MODULES[:4]:
        src = t.moddir / rel
        if src.is_file():
            dst = moddir / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    smap = root / "System.map"
    lines = (t.root / "boot" / f"System.map-{t.release}").read_text().splitlines()
    smap.write_text("\n".join(lines[::50]) + "\n")
    return moddir, t.release, str(smap)


def run_depmod(data: bytes) -> None:
    """A whole depmod run on a small tree holding the mutant (its indexes written)."""
    from lkm.config.depmod import DepmodConfig
    from lkm.depmod.main import run

    moddir, release, smap = _depmod_tree()
    slot = moddir / "kernel" / "fuzz"
    slot.mkdir(parents=True, exist_ok=True)
    for old in slot.iterdir():
        old.unlink()
    from lkm.compress import detect

    ext = {"gzip": ".ko.gz", "xz": ".ko.xz", "zstd": ".ko.zst"}.get(detect(data) or "", ".ko")
    (slot / f"mutant{ext}").write_bytes(data)
    detail = data[-1:] in (b"\x00", b"\x01", b"\x02")  # about one input in twelve
    run(str(moddir), release, config=DepmodConfig(searches=["updates"]), jobs=1,
        log=lambda _p, _m: None, system_map=smap if detail else None,
        print_unknown=detail, warn_dups=True)


# -- signatures ----------------------------------------------------------------------------

@functools.cache
def _keyrings() -> dict[str, object]:
    from lkm.kernel.profile import load_cached
    from lkm.signing import Keyring

    return {fl: Keyring(load_cached(t.root).certificates) for fl, t in seeds.trees().items()}


def make_signature(rng: random.Random) -> bytes:
    data = _pick(rng, seeds.module_bytes())
    for _ in range(rng.choice((1, 1, 2))):
        data = mutate_signature(rng, data)
    return data


def run_signature(data: bytes) -> None:
    """The kernel's signature check (lkm.signing) and modinfo's reading (lkm.signature)."""
    from lkm import signature
    from lkm.signing import Keyring, verify_module

    for ring in _keyrings().values():
        assert isinstance(ring, Keyring)
        verify_module(data, ring)
    signature.modinfo_fields(data)
    signature.split(data)


# -- the loader ----------------------------------------------------------------------------

@functools.cache
def _profiles() -> dict[str, object]:
    from lkm.kernel.profile import load_cached

    return {fl: load_cached(t.root) for fl, t in seeds.trees().items()}


@functools.cache
def _loadable() -> list[tuple[str, bytes]]:
    """The seed modules that load on their tree's profile as they are (their
    dependencies are not loaded, so the others stop at an unknown symbol)."""
    out = []
    for fl, data in seeds.modules():
        try:
            run_loader(fl.encode() + b"\0\0" + data)
        except LkmError:
            continue
        out.append((fl, data))
    return out or seeds.modules()


def make_loader(rng: random.Random) -> bytes:
    mods = _loadable() if rng.random() < 0.8 else seeds.modules()
    fl, data = mods[rng.randrange(len(mods))]
    body, trailer = split_signature(data)
    r = rng.random()
    if r < 0.7:  # the ELF image, unsigned (a broken signature stops the load first)
        body = mutate_elf(rng, body)
        if rng.random() < 0.1:
            body += trailer
    elif r < 0.85:
        body = mutate_signature(rng, data)
    else:
        body = data if rng.random() < 0.5 else body
    args = kernel_cmdline(rng).replace("\0", " ") if rng.random() < 0.5 else ""
    return fl.encode() + b"\0" + args.encode("utf-8", "surrogateescape") + b"\0" + body


def run_loader(data: bytes) -> None:
    """load_module() on a fresh virtual kernel of the profile, then delete_module()."""
    from lkm.kernel.module.main import delete_module, load_module
    from lkm.kernel.module.state import KernelState
    from lkm.kernel.profile import KernelProfile

    fl, args, image = data.split(b"\0", 2)
    prof = _profiles().get(fl.decode("latin-1")) or next(iter(_profiles().values()))
    assert isinstance(prof, KernelProfile)
    k = KernelState(prof)
    r = load_module(k, image, args.decode("utf-8", "surrogateescape"))
    delete_module(k, r.module.name)


# -- indexes, configuration ----------------------------------------------------------------

def make_index(rng: random.Random) -> bytes:
    data, known = seeds.indexes()[rng.randrange(len(seeds.indexes()))]
    mutant = mutate_index(rng, data)
    keys = index_keys(rng, mutant, known)
    return "\n".join(keys).encode("utf-8", "surrogateescape") + b"\0\0" + mutant


def run_index(data: bytes) -> None:
    """Every lookup of lkm.index.reader.Index, a walk of all entries and the dump."""
    from lkm.index.reader import Index

    keys_raw, _sep, blob = data.partition(b"\0\0")
    ix = Index(blob, "fuzz.bin")
    for key in keys_raw.decode("utf-8", "surrogateescape").split("\n"):
        ix.lookup(key)
        ix.first_value(key)
        ix.lookup_all(key)
        ix.search_wildcard(key)
    for _ in ix.entries():
        pass
    ix.dump()


def make_modprobe_config(rng: random.Random) -> bytes:
    return config_file(rng, False, _pick(rng, seeds.config_seeds()))


def run_modprobe_config(data: bytes) -> None:
    """modprobe.d parsing and every per-module query."""
    from lkm.config.modprobe import ModprobeConfig

    cfg = ModprobeConfig()
    cfg.parse(data, "/etc/modprobe.d/fuzz.conf")
    names = [a for a, _m in cfg.aliases[:5]] + [m for m, _o in cfg.options[:5]] + [
        "snd_hda_intel", "pci:v00008086d00001234sv*", "e1000e", ""]
    for n in names:
        cfg.install_command(n)
        cfg.remove_command(n)
        cfg.softdep(n)
        cfg.module_options(n, "alias")
        cfg.may_match_alias(n)
        cfg.matching_aliases(n)
        cfg.is_blacklisted(n)
    cfg.show()


def make_depmod_config(rng: random.Random) -> bytes:
    return config_file(rng, True, _pick(rng, seeds.config_seeds()))


def run_depmod_config(data: bytes) -> None:
    """depmod.d parsing (kernel-version patterns are POSIX EREs)."""
    from lkm.config.depmod import DepmodConfig

    cfg = DepmodConfig()
    for kv in ("6.1.0-57-amd64", "6.12.117+deb12-amd64"):
        cfg.parse(data, "/etc/depmod.d/fuzz.conf", kv, lambda _p, _m: None)


def make_kcmdline(rng: random.Random) -> bytes:
    return kernel_cmdline(rng).encode("utf-8", "surrogateescape")


def run_kcmdline(data: bytes) -> None:
    """The kernel command line as modprobe reads it, and as the kernel splits it."""
    from lkm.config.kcmdline import kcmdline_options
    from lkm.config.modprobe import ModprobeConfig
    from lkm.kernel.params import next_arg

    text = data.decode("utf-8", "surrogateescape")
    list(kcmdline_options(text))
    cfg = ModprobeConfig()
    cfg.parse_kcmdline(text)
    cfg.module_options("snd_hda_intel")
    rest = text.replace("\0", " ")
    for _ in range(10000):
        rest = rest.lstrip()
        if not rest:
            break
        _p, _v, rest = next_arg(rest)


# -- kernel images and BTF -----------------------------------------------------------------

def make_kimage(rng: random.Random) -> bytes:
    kind, image, vmlinux = seeds.kernel_images()[rng.randrange(len(seeds.kernel_images()))]
    return mutate_kimage(rng, image, kind, vmlinux)


def run_kimage(data: bytes) -> None:
    """The kernel-image reader: the payload, the release, vmlinux's certificates, vermagic,
    sections and symbols."""
    from lkm import kimage

    if kimage.is_bzimage(data):
        name, payload = kimage.bzimage_payload(data)
        vmlinux = kimage.decompress_payload(name, payload, limit=64 << 20)
        img = kimage.KernelImage(vmlinux, kimage.kernel_version(data), name)
    else:
        img = kimage.KernelImage(kimage.vmlinux_from_image(data))
    img.release  # noqa: B018
    img.certificates  # noqa: B018
    img.vermagic  # noqa: B018
    img.elf.sections  # noqa: B018
    img.elf.symbols({"system_certificate_list", "__start___ksymtab"})


def run_profile(data: bytes) -> None:
    """The profile builder on a kernel image file (no module directory)."""
    from lkm.kernel.profile import from_vmlinuz

    p = scratch() / "vmlinuz-fuzz"
    p.write_bytes(data)
    from_vmlinuz(p, moddir=scratch() / "no-moddir", config_text="")


def make_btf(rng: random.Random) -> bytes:
    data = _pick(rng, seeds.btf_blobs())
    for _ in range(rng.choice((1, 1, 2, 4))):
        data = mutate_btf(rng, data)
    return data


def run_btf(data: bytes) -> None:
    """Btf parsing and the queries the loader's layouts use, over every type."""
    from lkm.btf import Btf

    t = Btf(data)
    for fn, args in ((t.find, ("module",)), (t.offsetof, ("task", "comm[3]")),
                     (t.offsetof, ("task", "x")), (t.enum_values, ("module_state",)),
                     (t.enumerator, ("MODULE_STATE_COMING",)), (t.find_all, ("later",)),
                     (t.ids_of_kind, (4, 5))):
        with contextlib.suppress(LkmError):
            fn(*args)
    for tid in range(len(t)):
        for q in (t.type, t.sizeof, t.alignof, t.type_name, t.members, t.resolve):
            with contextlib.suppress(LkmError):
                q(tid)


TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("module", make_module, run_module, sample=2500),
    Target("depmod-read", make_module, run_depmod_read, sample=1500),
    Target("depmod", make_module, run_depmod, sample=300),
    Target("index", make_index, run_index, sample=3000),
    Target("modprobe.d", make_modprobe_config, run_modprobe_config, sample=3000),
    Target("depmod.d", make_depmod_config, run_depmod_config, sample=3000),
    Target("cmdline", make_kcmdline, run_kcmdline, sample=3000),
    Target("kimage", make_kimage, run_kimage, time_bound=10.0, sample=600),
    Target("profile", make_kimage, run_profile, (LkmError, OSError), 10.0, sample=300),
    Target("btf", make_btf, run_btf, sample=1500),
    Target("signature", make_signature, run_signature, sample=1500),
    Target("loader", make_loader, run_loader, sample=1000),
)}
