"""The crypto API's registrations and lookups (crypto/algapi.c, api.c, shash.c,
skcipher.c, aead.c, ahash.c).

crypto_register_alg() and the typed variants (shash, skcipher, aead, ahash, their ``s``
array forms) put a ``struct crypto_alg`` on the list /proc/crypto shows: -EEXIST when its
driver name is taken.  Registration selftests are not run (the list says "passed", as
the kernel's test manager would for a correct algorithm).  crypto_register_template()
keeps templates by name.  crypto_alloc_shash() finds the best-priority algorithm by name
or driver name among those registered and Debian's built-in hashes (md5, sha1, sha224,
sha256: a ``shash_alg`` made for them), builds the tfm and runs ``init_tfm``; an unknown
name is -ENOENT (the kernel would try request_module("crypto-NAME"): modprobe's
softdeps load such modules first).
"""

from __future__ import annotations

import errno
from typing import Any

from lkm.kernel.api.core import IS_ERR_VALUE, Kernel, err, kfunc, signed, substate
from lkm.kernel.api.driver_base import module_name, read_ptr, write_ptr
from lkm.kernel.api.slab import slab

CRYPTO_ALG_TYPE_MASK = 0xF
TYPES = {1: "cipher", 2: "compression", 3: "aead", 5: "skcipher", 0xE: "shash",
         0xF: "ahash", 0xA: "akcipher", 0xC: "rng", 8: "kpp", 4: "lskcipher", 0xB: "sig",
         0xD: "scomp"}
# built-in shash algorithms: name -> (driver, digestsize, blocksize, descsize)
BUILTIN_SHASH = {"md5": ("md5-generic", 16, 64, 88), "sha1": ("sha1-generic", 20, 64, 96),
                 "sha224": ("sha224-generic", 28, 64, 104),
                 "sha256": ("sha256-generic", 32, 64, 104)}


@substate("crypto")
class Crypto:
    """Registered algorithms (struct crypto_alg addresses, in order), templates by name,
    the crypto_alg made for built-in hashes."""

    def __init__(self, k: Kernel | None = None) -> None:
        self.algs: list[int] = []
        self.templates: dict[str, int] = {}
        self.builtin: dict[str, int] = {}

    def to_json(self) -> dict[str, Any]:
        return {"algs": self.algs, "templates": self.templates, "builtin": self.builtin}

    @classmethod
    def from_json(cls, k: Kernel | None, d: dict[str, Any]) -> Crypto:
        s = cls(k)
        s.algs, s.templates, s.builtin = list(d["algs"]), dict(d["templates"]), \
            dict(d["builtin"])
        return s


def _c(k: Kernel) -> Crypto:
    return k.sub(Crypto)


def _f(k: Kernel, alg: int, name: str) -> int:
    return alg + k.layouts.offsetof("crypto_alg", name)


def alg_info(k: Kernel, alg: int) -> dict[str, Any]:
    m = k.mem
    flags = m.read_u32(_f(k, alg, "cra_flags"))
    return {"name": k.text(_f(k, alg, "cra_name"), 128),
            "driver": k.text(_f(k, alg, "cra_driver_name"), 128),
            "module": module_name(k, m.read_u64(_f(k, alg, "cra_module"))) or "kernel",
            "priority": signed(m.read_u32(_f(k, alg, "cra_priority")), 32),
            "type": TYPES.get(flags & CRYPTO_ALG_TYPE_MASK, "unknown"),
            "blocksize": m.read_u32(_f(k, alg, "cra_blocksize"))}


def register_alg(k: Kernel, alg: int, type_: int = 0) -> int:
    """crypto_register_alg() for a crypto_alg (its type bits set by the typed caller)."""
    s = _c(k)
    if type_:
        at = _f(k, alg, "cra_flags")
        k.mem.write_u32(at, (k.mem.read_u32(at) & ~CRYPTO_ALG_TYPE_MASK) | type_)
    info = alg_info(k, alg)
    if not info["driver"]:
        k.mem.write(_f(k, alg, "cra_driver_name"), info["name"].encode()[:127] + b"\0")
        info["driver"] = info["name"]
    if not info["name"]:
        return err(errno.EINVAL)
    for a in s.algs:
        if alg_info(k, a)["driver"] == info["driver"] or a == alg:
            return err(errno.EEXIST)
    k.mem.write_u32(_f(k, alg, "cra_refcnt"), 1)
    s.algs.append(alg)
    return 0


def unregister_alg(k: Kernel, alg: int) -> int:
    s = _c(k)
    if alg not in s.algs:
        return err(errno.ENOENT)
    s.algs.remove(alg)
    return 0


def _typed(kind: str, struct_: str, base: str, type_: int) -> None:
    def off(k: Kernel) -> int:
        return k.layouts.offsetof(struct_, base) if base else 0

    def reg(k: Kernel, alg: int) -> int:
        return register_alg(k, alg + off(k), type_)

    def unreg(k: Kernel, alg: int) -> None:
        unregister_alg(k, alg + off(k))

    def regs(k: Kernel, algs: int, count: int) -> int:
        size = k.layouts.sizeof(struct_)
        for i in range(count):
            rv = reg(k, algs + i * size)
            if rv:
                for j in reversed(range(i)):
                    unreg(k, algs + j * size)
                return rv
        return 0

    def unregs(k: Kernel, algs: int, count: int) -> None:
        size = k.layouts.sizeof(struct_)
        for i in reversed(range(count)):
            unreg(k, algs + i * size)

    many = f"{kind}es" if kind.endswith("sh") else f"{kind}s"
    for fn, name in ((reg, f"crypto_register_{kind}"), (unreg, f"crypto_unregister_{kind}"),
                     (regs, f"crypto_register_{many}"),
                     (unregs, f"crypto_unregister_{many}")):
        fn.__name__ = name
        kfunc()(fn)


_typed("alg", "crypto_alg", "", 0)
_typed("shash", "shash_alg", "base", 0xE)
_typed("skcipher", "skcipher_alg", "base", 5)
_typed("aead", "aead_alg", "base", 3)
_typed("ahash", "ahash_alg", "halg.base", 0xF)
_typed("akcipher", "akcipher_alg", "base", 0xA)
_typed("kpp", "kpp_alg", "base", 8)
_typed("rng", "rng_alg", "base", 0xC)
_typed("scomp", "scomp_alg", "base", 0xD)


@kfunc()
def crypto_register_template(k: Kernel, tmpl: int) -> int:
    """crypto/algapi.c: -EEXIST for a name taken."""
    name = k.text(tmpl + k.layouts.offsetof("crypto_template", "name"), 128)
    s = _c(k)
    if name in s.templates:
        return err(errno.EEXIST)
    s.templates[name] = tmpl
    return 0


@kfunc()
def crypto_unregister_template(k: Kernel, tmpl: int) -> None:
    s = _c(k)
    for n, t in list(s.templates.items()):
        if t == tmpl:
            del s.templates[n]


@kfunc()
def crypto_register_templates(k: Kernel, tmpls: int, count: int) -> int:
    size = k.layouts.sizeof("crypto_template")
    for i in range(count):
        rv = crypto_register_template(k, tmpls + i * size)
        if rv:
            for j in reversed(range(i)):
                crypto_unregister_template(k, tmpls + j * size)
            return rv
    return 0


@kfunc()
def crypto_unregister_templates(k: Kernel, tmpls: int, count: int) -> None:
    size = k.layouts.sizeof("crypto_template")
    for i in reversed(range(count)):
        crypto_unregister_template(k, tmpls + i * size)


@kfunc("crypto_unregister_notifier")
def crypto_register_notifier(k: Kernel, nb: int) -> int:
    return 0


def _builtin_shash(k: Kernel, name: str) -> int:
    s = _c(k)
    if name in s.builtin:
        return s.builtin[name]
    driver, digest, block, desc = BUILTIN_SHASH[name]
    lay = k.layouts
    alg = slab(k).kmalloc(lay.sizeof("shash_alg"), 0)
    k.mem.write_u32(alg + lay.offsetof("shash_alg", "digestsize"), digest)
    k.mem.write_u32(alg + lay.offsetof("shash_alg", "descsize"), desc)
    base = alg + lay.offsetof("shash_alg", "base")
    k.mem.write(_f(k, base, "cra_name"), name.encode() + b"\0")
    k.mem.write(_f(k, base, "cra_driver_name"), driver.encode() + b"\0")
    k.mem.write_u32(_f(k, base, "cra_blocksize"), block)
    k.mem.write_u32(_f(k, base, "cra_priority"), 100)
    k.mem.write_u32(_f(k, base, "cra_flags"), 0xE)
    s.builtin[name] = base
    return base


def find_alg(k: Kernel, name: str, type_: int) -> int:
    best, prio = 0, -(1 << 31)
    for a in _c(k).algs:
        info = alg_info(k, a)
        flags = k.mem.read_u32(_f(k, a, "cra_flags"))
        if name in (info["name"], info["driver"]) and (flags & CRYPTO_ALG_TYPE_MASK) == type_:
            exact = name == info["driver"]
            if exact or info["priority"] > prio:
                best, prio = a, (1 << 31) if exact else info["priority"]
    if not best and type_ == 0xE and name in BUILTIN_SHASH:
        return _builtin_shash(k, name)
    return best


@kfunc()
def crypto_alloc_shash(k: Kernel, alg_name: int, type_: int, mask: int) -> int:
    """crypto/shash.c: the tfm (its descsize from the algorithm), init_tfm run."""
    lay = k.layouts
    base = find_alg(k, k.text(alg_name, 128), 0xE)
    if not base:
        return err(errno.ENOENT)
    alg = base - lay.offsetof("shash_alg", "base")
    tfm = slab(k).kmalloc(lay.sizeof("crypto_shash") + 64, 0)
    write_ptr(k, tfm + lay.offsetof("crypto_shash", "base"), "crypto_tfm", "__crt_alg", base)
    k.mem.write_u32(tfm + lay.offsetof("crypto_shash", "descsize"),
                    k.mem.read_u32(alg + lay.offsetof("shash_alg", "descsize")))
    init = read_ptr(k, alg, "shash_alg", "init_tfm")
    if init:
        rv = signed(k.cpu.call(init, [tfm]), 32)
        if rv:
            slab(k).kfree(tfm)
            return err(-rv)
    return tfm


@kfunc()
def crypto_destroy_tfm(k: Kernel, mem: int, tfm: int) -> None:
    if mem and not IS_ERR_VALUE(mem):
        slab(k).kfree(mem)


@kfunc()
def crypto_has_alg(k: Kernel, name: int, type_: int, mask: int) -> int:
    n = k.text(name, 128)
    return int(any(n in (alg_info(k, a)["name"], alg_info(k, a)["driver"])
                   for a in _c(k).algs) or n in BUILTIN_SHASH)


def proc_crypto(k: Kernel) -> str:
    """/proc/crypto's entries for the algorithms modules registered (newest first, as the
    kernel's list is walked)."""
    out = []
    for a in reversed(_c(k).algs):
        i = alg_info(k, a)
        out.append(f"name         : {i['name']}\ndriver       : {i['driver']}\n"
                   f"module       : {i['module']}\npriority     : {i['priority']}\n"
                   f"refcnt       : 1\nselftest     : passed\ninternal     : no\n"
                   f"type         : {i['type']}\nblocksize    : {i['blocksize']}\n")
        if i["type"] == "shash":
            shash = a - k.layouts.offsetof("shash_alg", "base")
            digest = k.mem.read_u32(shash + k.layouts.offsetof("shash_alg", "digestsize"))
            out.append(f"digestsize   : {digest}\n")
        out.append("\n")
    return "".join(out)
