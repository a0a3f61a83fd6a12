"""Module variants the loader tests use: copies of the Kbuild test modules (and of two of
the tree's) mutated in known ways (vermagic, CRCs, section flags, ELF header fields,
signatures, modinfo), written for test_fidelity's steps or built in memory (Ko).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

_SH_FIELDS = {"type": (4, "<I"), "offset": (24, "<Q"), "size": (32, "<Q")}  # Elf64_Shdr


class Ko:
    """A module image to mutate in place (ELF64 little-endian)."""

    def __init__(self, data: bytes) -> None:
        self.b = bytearray(data)
        (self.shoff,) = struct.unpack_from("<Q", self.b, 0x28)
        self.shnum, self.shstrndx = struct.unpack_from("<HH", self.b, 0x3C)

    def shdr(self, i: int) -> int:
        return self.shoff + 64 * i

    def sec_name(self, i: int) -> str:
        name_off = struct.unpack_from("<I", self.b, self.shdr(i))[0]
        str_off = struct.unpack_from("<Q", self.b, self.shdr(self.shstrndx) + 24)[0]
        start = str_off + name_off
        return self.b[start:self.b.index(0, start)].decode()

    def sec(self, name: str) -> int:
        for i in range(self.shnum):
            if self.sec_name(i) == name:
                return i
        raise KeyError(name)

    def sec_range(self, name: str) -> tuple[int, int]:
        h = self.shdr(self.sec(name))
        off, size = struct.unpack_from("<QQ", self.b, h + 24)
        return off, size

    def set_flags(self, name: str, orflags: int) -> Ko:
        h = self.shdr(self.sec(name))
        flags = struct.unpack_from("<Q", self.b, h + 8)[0]
        struct.pack_into("<Q", self.b, h + 8, flags | orflags)
        return self

    def set_sh(self, name: str, field: str, value: int = 0, add: int = 0) -> Ko:
        """Section ``name``'s header field := value, or += add."""
        off, fmt = _SH_FIELDS[field]
        pos = self.shdr(self.sec(name)) + off
        if add:
            value = struct.unpack_from(fmt, self.b, pos)[0] + add
        struct.pack_into(fmt, self.b, pos, value)
        return self

    def set_rela_type(self, relsec: str, rtype: int) -> Ko:
        """The type of the first relocation of section ``relsec``."""
        rel_off, _ = self.sec_range(relsec)
        info = struct.unpack_from("<Q", self.b, rel_off + 8)[0]
        struct.pack_into("<Q", self.b, rel_off + 8, (info & ~0xFFFFFFFF) | rtype)
        return self

    def set_sym_shndx(self, name: str, shndx: int) -> Ko:
        return self.set_u16(self.symbol(name) + 6, shndx)

    def set_u32(self, off: int, v: int) -> Ko:
        struct.pack_into("<I", self.b, off, v)
        return self

    def set_u16(self, off: int, v: int) -> Ko:
        struct.pack_into("<H", self.b, off, v)
        return self

    def replace(self, old: bytes, new: bytes, count: int = -1) -> Ko:
        assert len(old) == len(new), (old, new)
        assert old in self.b, old
        self.b = bytearray(bytes(self.b).replace(old, new, count))
        return self

    def rename_section(self, old: str, new: str) -> Ko:
        i = self.sec(old)
        name_off = struct.unpack_from("<I", self.b, self.shdr(i))[0]
        str_off = struct.unpack_from("<Q", self.b, self.shdr(self.shstrndx) + 24)[0]
        start = str_off + name_off
        assert len(old) == len(new)
        self.b[start:start + len(new)] = new.encode()
        return self

    def versions_crc(self, sym: str) -> int:
        off, size = self.sec_range("__versions")
        for e in range(off, off + size, 64):
            if self.b[e + 8:e + 8 + len(sym) + 1] == sym.encode() + b"\0":
                return e
        raise KeyError(sym)

    def flip_crc(self, sym: str) -> Ko:
        e = self.versions_crc(sym)
        self.b[e] ^= 0xFF
        return self

    def symbol(self, name: str) -> int:
        """File offset of the symtab entry of ``name``."""
        i = self.sec(".symtab")
        off, size = self.sec_range(".symtab")
        link = struct.unpack_from("<I", self.b, self.shdr(i) + 40)[0]
        stroff = struct.unpack_from("<Q", self.b, self.shdr(link) + 24)[0]
        for e in range(off, off + size, 24):
            n = struct.unpack_from("<I", self.b, e)[0]
            s = stroff + n
            if self.b[s:self.b.index(0, s)] == name.encode():
                return e
        raise KeyError(name)

    def bytes(self) -> bytes:
        return bytes(self.b)


def _sig_trailer_offset(data: bytes) -> int:
    """Offset of struct module_signature in a signed module."""
    assert data.endswith(b"~Module signature appended~\n")
    return len(data) - 28 - 12


def make_variants(kos: dict[str, Path], tree: Any, out: Path) -> dict[str, Path]:
    """Every module file the steps use, written under ``out``."""
    from lkm.compress import compress, read_module

    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}

    def put(name: str, data: bytes) -> None:
        p = out / f"{name}.ko"
        p.write_bytes(data)
        files[name] = p

    for name, path in kos.items():
        put(name, path.read_bytes())
    rel = tree.release

    def tree_module(name: str) -> bytes:
        hits = sorted((tree.moddir / "kernel").rglob(f"{name}.ko*"))
        data, _ = read_module(hits[0])
        return bytes(data)

    crc7 = tree_module("crc7")
    put("crc7", crc7)
    itu = tree_module("crc-itu-t")
    put("crc_itu_t", itu)
    b = bytearray(itu)
    b[len(b) // 3] ^= 0x01  # inside the signed body
    put("crc_itu_t_tampered", bytes(b))
    b = bytearray(itu)
    b[_sig_trailer_offset(itu)] = 1  # algo
    put("crc_itu_t_sigparams", bytes(b))
    b = bytearray(itu)
    b[_sig_trailer_offset(itu) + 2] = 1  # id_type X509
    put("crc_itu_t_idtype", bytes(b))
    put("crc8_xz", compress(tree_module("crc8"), "xz"))

    # an unknown signing key
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    from lkm.signing import sign_module

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lkm test key")])
    import datetime

    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(1234).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=3650))
            .sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    put("lkm_testmod_signed", sign_module(kos["lkm_testmod"].read_bytes(), key, der))

    for name, build in ko_variants(kos, rel).items():
        put(name, build())
    return files




def ko_variants(kos: dict[str, Path], release: str) -> dict[str, Callable[[], bytes]]:
    """The mutated copies of the Kbuild test modules, by file name, built when called."""
    def ko(name: str) -> Ko:
        return Ko(kos[name].read_bytes())

    # vermagic: another release of the same length (modversions skips it), other flags
    other = re.sub(r"\d", "9", release[:-1]) + release[-1]
    if other == release:
        other = "9" + release[1:]
    a = "lkm_alias"
    return {
        "lkm_alias_otherrel": lambda: ko(a).replace(f"vermagic={release} ".encode(),
                                                    f"vermagic={other} ".encode()).bytes(),
        "lkm_alias_badmagic": lambda: ko(a).replace(b"mod_unload ", b"mod_unlaod ").bytes(),
        "lkm_alias_layoutcrc": lambda: ko(a).flip_crc("module_layout").bytes(),
        "lkm_alias_wx": lambda: ko(a).set_flags(".text", 0x1).bytes(),
        "lkm_alias_machine": lambda: ko(a).set_u16(18, 3).bytes(),
        "lkm_alias_type": lambda: ko(a).set_u16(16, 2).bytes(),
        "lkm_alias_short": lambda: kos[a].read_bytes()[:50],
        "lkm_alias_magic": lambda: ko(a).set_u16(0, 0x457E).bytes(),
        "lkm_alias_shentsize": lambda: ko(a).set_u16(0x3A, 32).bytes(),
        "lkm_alias_secoff": lambda: ko(a).set_sh(".modinfo", "offset",
                                                 len(kos[a].read_bytes()) + 4096).bytes(),
        "lkm_alias_nosym": lambda: ko(a).set_sh(".symtab", "type", 1).bytes(),
        "lkm_alias_nothis": lambda: ko(a).rename_section(
            ".gnu.linkonce.this_module", ".gnu.linkonce.this_modulX").bytes(),
        "lkm_alias_badrela": lambda: ko(a).set_rela_type(".rela.init.text", 99).bytes(),
        "lkm_alias_badshndx": lambda: ko(a).set_sym_shndx("init_module", 0x400).bytes(),
        "lkm_alias_livepatch": lambda: ko(a).replace(b"description=", b"livepatch=Y\0").bytes(),
        "lkm_alias_noretpoline": lambda: ko(a).replace(b"retpoline=Y", b"retpolinX=Y").bytes(),
        "lkm_alias_twomodinfo": lambda: ko(a).rename_section(".comment", ".modinfo").bytes(),
        "lkm_alias_bigthis": lambda: ko(a).set_sh(".gnu.linkonce.this_module", "size",
                                                  add=64).bytes(),
        "keyboard": lambda: ko("lkm_weak").replace(b"lkm_weak", b"keyboard").bytes(),
        "lkm_intree_staging": lambda: ko("lkm_intree").replace(b"intree=Y", b"staging=")
        .bytes(),
        "lkm_params_bsd": lambda: ko("lkm_params").replace(b"license=GPL", b"license=BSD")
        .bytes(),
        "lkm_prop_gpl_license": lambda: ko("lkm_prop").replace(
            b"license=Proprietary", b"license=GPL\0\0\0\0\0\0\0\0").bytes(),
        "lkm_user_badcrc": lambda: ko("lkm_user").flip_crc("lkm_params_value").bytes(),
        "lkm_user_nover": lambda: ko("lkm_user").replace(
            b"lkm_params_value\0", b"lkm_params_valuX\0", 1).bytes(),
    }
