"""Seed inputs for the fuzz targets, taken from the Debian trees of the test set-up
(~/.cache/lkm-tests): small real modules of both trees (signed, as Debian ships them),
the indexes of a small module tree written by depmod, the trees' kernel images cut down
to a small bzImage around a mini vmlinux (real banner, vermagic, export names and
certificate), BTF (a prefix of the real vmlinux's, and a crafted one of every kind),
and configuration files."""

from __future__ import annotations

import contextlib
import functools
import os
import struct
import sys
import tempfile
from pathlib import Path

from mutate import compress_as

HERE = Path(__file__).resolve().parent
TESTS = HERE.parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from conftest import Tree, _load_trees  # noqa: E402

# small modules with exports, parameters, aliases, __versions, a livepatch-free init
MODULES = ("kernel/lib/crc-itu-t.ko", "kernel/lib/crc7.ko", "kernel/lib/crc8.ko",
           "kernel/lib/libcrc32c.ko", "kernel/drivers/i2c/i2c-stub.ko",
           "kernel/drivers/input/misc/pcspkr.ko", "kernel/lib/ts_kmp.ko",
           "kernel/drivers/char/hw_random/virtio-rng.ko",
           "kernel/drivers/media/dvb-frontends/lgdt330x.ko", "kernel/fs/nls/nls_utf8.ko")


@functools.cache
def trees() -> dict[str, Tree]:
    return dict(_load_trees())


def _read(p: Path) -> bytes:
    from lkm.compress import read_module

    data, _kind = read_module(p)
    return bytes(data)


@functools.cache
def modules() -> list[tuple[str, bytes]]:
    """(flavour, decompressed bytes) of the seed modules found in both trees."""
    out = []
    for fl, t in sorted(trees().items()):
        moddir = t.moddir
        for rel in MODULES:
            for p in (moddir / rel, moddir / (rel + ".xz")):
                if p.is_file():
                    out.append((fl, _read(p)))
                    break
    if not out:
        raise RuntimeError("no seed modules: run scripts/test-fixtures.py first")
    return out


def module_bytes() -> list[bytes]:
    return [d for _fl, d in modules()]


@functools.cache
def small_tree() -> Path:
    """A module tree of the seed modules (6.1), with depmod's outputs written."""
    from lkm.depmod.main import run

    t = trees()["6.1"]
    import atexit
    import shutil

    root = Path(tempfile.mkdtemp(prefix="lkm-fuzz-tree-"))
    atexit.register(shutil.rmtree, root, True)
    release = t.release
    moddir = root / "lib" / "modules" / release
    for rel in MODULES:
        src = t.moddir / rel
        if src.is_file():
            dst = moddir / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_bytes(src.read_bytes())
    from lkm.config.depmod import DepmodConfig

    run(str(moddir), release, config=DepmodConfig(searches=["updates"]), jobs=1,
        log=lambda _p, _m: None)
    return moddir


@functools.cache
def indexes() -> list[tuple[bytes, list[str]]]:
    """(index bytes, some keys it holds) for each .bin depmod wrote on the small tree."""
    from lkm.index.reader import Index

    out = []
    for p in sorted(small_tree().glob("modules.*.bin")):
        data = p.read_bytes()
        if len(data) < 12:  # an empty index (modules.builtin.alias.bin of a small tree)
            continue
        keys = [k for k, _v in Index(data).items()][:200]
        out.append((data, keys))
    return out


# -- kernel images -------------------------------------------------------------------------

BASE = 0xFFFFFFFF81000000


def _elf(sections: dict[str, tuple[int, bytes]]) -> bytes:
    """A small ELF64 vmlinux: PROGBITS sections at their addresses, and a .shstrtab."""
    names = ["", *sections, ".shstrtab"]
    shstr = b"\0" + b"".join(n.encode() + b"\0" for n in names[1:])
    body = bytearray(64)
    heads = [struct.pack("<IIQQQQIIQQ", *([0] * 10))]
    pos = 1
    for name, (addr, data) in sections.items():
        off = len(body)
        body += data
        heads.append(struct.pack("<IIQQQQIIQQ", shstr.index(name.encode() + b"\0"), 1, 2,
                                 addr, off, len(data), 0, 0, 8, 0))
        pos += 1
    off = len(body)
    body += shstr
    heads.append(struct.pack("<IIQQQQIIQQ", shstr.index(b".shstrtab\0"), 3, 0, 0, off,
                             len(shstr), 0, 0, 1, 0))
    while len(body) % 8:
        body.append(0)
    shoff = len(body)
    body += b"".join(heads)
    hdr = b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack(
        "<HHIQQQIHHHHHH", 2, 62, 1, BASE, 0, shoff, 0, 64, 0, 0, 64, len(names), len(names) - 1)
    body[:64] = hdr
    return bytes(body)


def mini_vmlinux(banner: str, vermagic: str, exports: list[str], cert: bytes | None) -> bytes:
    """A vmlinux with the real banner and vermagic in .rodata, PREL32 export tables over
    ``exports`` with CRCs, a __param entry, and the certificate in .init.data."""
    strings = b"".join(n.encode() + b"\0" for n in exports)
    str_addr, tab_addr, crc_addr, ro_addr = BASE + 0x100000, BASE + 0x200000, \
        BASE + 0x300000, BASE + 0x400000
    tab = bytearray()
    pos = 0
    for i, n in enumerate(exports):
        entry = tab_addr + 12 * i
        tab += struct.pack("<iii", 0, str_addr + pos - (entry + 4), 0)
        pos += len(n) + 1
    crcs = b"".join(struct.pack("<I", (0x9E3779B1 * (i + 1)) & 0xFFFFFFFF)
                    for i in range(len(exports)))
    rodata = b"\0" + banner.encode() + b"\0" + vermagic.encode() + b"\0" + b"p.debug\0"
    param = struct.pack("<QQQHbbIQ", ro_addr + rodata.index(b"p.debug"), 0, 0, 0o644, 0, 0,
                        0, 0)
    init = bytes(64) + (cert or b"") + bytes(64)
    return _elf({".text": (BASE, b"\x90" * 256), "__ksymtab_strings": (str_addr, strings),
                 "__ksymtab": (tab_addr, bytes(tab)), "__kcrctab": (crc_addr, crcs),
                 ".rodata": (ro_addr, rodata), "__param": (BASE + 0x500000, param),
                 ".init.data": (BASE + 0x600000, init)})


@functools.cache
def kernel_images() -> list[tuple[str, bytes, bytes]]:
    """(compression, bzImage, its vmlinux): each tree's real setup header and banner
    around a mini vmlinux compressed as the tree's was (xz, zstd), and a gzip one."""
    from lkm import kimage
    from lkm.kernel.profile import load_cached

    out = []
    for _fl, t in sorted(trees().items()):
        raw = Path(t.vmlinuz).read_bytes()
        prof = load_cached(t.root)
        kind, _payload = kimage.bzimage_payload(raw)
        version = kimage.kernel_version(raw) or ""
        names = sorted(prof.exports)[:: max(1, len(prof.exports) // 150)]
        cert = prof.certificates[0] if prof.certificates else None
        vml = mini_vmlinux(f"Linux version {version}", prof.vermagic, names, cert)
        setup_len = ((raw[0x1F1] or 4) + 1) * 512
        for k in dict.fromkeys((kind if kind in ("xz", "zstd", "gzip") else "xz", "gzip")):
            payload = compress_as(k, vml)
            setup = bytearray(raw[:setup_len])
            struct.pack_into("<II", setup, 0x248, 0, len(payload) + 4)
            out.append((k, bytes(setup) + payload + struct.pack("<I", len(vml)), vml))
    return out


# -- BTF ---------------------------------------------------------------------------------

@functools.cache
def btf_blobs() -> list[bytes]:
    """The crafted BTF of tests/test_btf.py (every kind) and the first 600 types of the
    6.1 vmlinux's BTF (its strings cut after the last name those types use)."""
    from lkm.kernel.layouts import extract_btf
    from test_btf import sample

    out = [sample().data("<"), sample().data(">")]
    t = trees().get("6.1")
    if t is not None:
        data = extract_btf(t.vmlinuz)
        from lkm.btf import Btf

        full = Btf(data)
        hl, to, tl, so, sl = struct.unpack_from("<IIIII", data, 4)
        offs = full._offs
        n = 600
        end = offs[n + 1] * 4 if n + 1 < len(offs) else tl
        types = data[hl + to:hl + to + end]
        strs = data[hl + so:hl + so + min(sl, 1 << 16)]
        strs = strs[:strs.rfind(b"\0") + 1]
        hdr = struct.pack("<HBBIIIII", 0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strs))
        out.append(hdr + types + strs)
    return out


# -- configuration -------------------------------------------------------------------------

def config_seeds() -> list[bytes]:
    out = []
    for d in ("/etc/modprobe.d", "/lib/modprobe.d", "/usr/lib/modprobe.d", "/etc/depmod.d",
              "/lib/depmod.d"):
        try:
            names = sorted(os.listdir(d))
        except OSError:
            continue
        for n in names[:20]:
            with contextlib.suppress(OSError):
                out.append(Path(d, n).read_bytes()[:20000])
    return out or [b"alias a b\noptions a p=1\n"]
