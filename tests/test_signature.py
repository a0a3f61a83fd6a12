"""lkm.signature: the appended signature trailer, as kmod 30's modinfo reads it.

Reference: Debian's kmod 30 (`modinfo -F sig_id/signer/sig_key/sig_hashalgo/signature`)
over the real trees and over crafted trailers.
"""

from __future__ import annotations

import contextlib
import datetime
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import KMOD, Tree
from lkm import signature
from lkm.errors import SignatureError
from lkm.signature import MAGIC, format_hex, modinfo_fields, parse_appended, split

SIG_KEYS = ("sig_id", "signer", "sig_key", "sig_hashalgo", "signature")


def kmod_fields(paths: list[Path]) -> list[list[tuple[str, str]]]:
    """kmod's signature entries for each file (one modinfo run per key for the batch)."""
    per_key: dict[str, list[str]] = {}
    for key in SIG_KEYS:
        values: list[str] = []
        for i in range(0, len(paths), 400):
            out = subprocess.run([KMOD["modinfo"], "-0", "-F", key,
                                  *map(str, paths[i:i + 400])],
                                 capture_output=True, check=True).stdout
            values += out.decode("utf-8", "surrogateescape").split("\0")[:-1]
        per_key[key] = values
    counts = {len(v) for v in per_key.values()}
    assert counts == {len(paths)}, "every module must be signed for the batch form"
    return [[(k, per_key[k][i]) for k in SIG_KEYS] for i in range(len(paths))]


def kmod_fields_one(path: Path) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for key in SIG_KEYS:
        res = subprocess.run([KMOD["modinfo"], "-0", "-F", key, str(path)],
                             capture_output=True).stdout  # non-ELF files: status 1
        out += [(key, v) for v in res.decode("utf-8", "surrogateescape").split("\0")[:-1]]
    return out


def content_of(path: Path) -> bytes:
    from lkm.compress import read_module

    data, _ = read_module(path)
    return bytes(data)


def test_format_hex() -> None:
    assert format_hex(b"") == ""
    assert format_hex(b"\x01") == "01"
    assert format_hex(bytes(range(20))) == ":".join(f"{i:02X}" for i in range(20))
    assert format_hex(bytes(range(21))) == (":".join(f"{i:02X}" for i in range(20))
                                            + ":\n\t\t14")
    assert format_hex(bytes(range(41))).count(":\n\t\t") == 2


@pytest.mark.trees
@pytest.mark.kmod
def test_modinfo_fields_whole_tree(tree: Tree) -> None:
    """Every module of 6.1, every 8th of 6.12 (xz decompression dominates)."""
    mods = tree.modules()
    if tree.flavour == "6.12":
        mods = mods[::8]
    expected = kmod_fields(mods)
    for path, exp in zip(mods, expected, strict=True):
        assert modinfo_fields(content_of(path)) == exp, path


# --- crafted trailers --------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_module(tree61: Tree) -> bytes:
    """A small real module without its signature."""
    path = min((p for p in tree61.modules() if p.name == "crc7.ko"), key=lambda p: len(str(p)))
    body, sig = split(path.read_bytes())
    assert sig is not None
    return path.read_bytes()[:body]


def _cert(name_attrs: list[tuple[str, str]], serial: int, key: object) -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.x509.oid import NameOID

    oids = {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME,
            "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "C": NameOID.COUNTRY_NAME}
    name = x509.Name([x509.NameAttribute(oids[k], v) for k, v in name_attrs])
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
         .public_key(key.public_key())  # type: ignore[attr-defined]
         .serial_number(serial).not_valid_before(now)
         .not_valid_after(now + datetime.timedelta(days=3650))
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(
             key.public_key()), critical=False))  # type: ignore[attr-defined]
    cert = b.sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return cert.public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def rsa_key() -> object:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _trailer(algo: int, hash_: int, id_type: int, signer_len: int, key_id_len: int,
             sig_len: int, pad: bytes = b"\0\0\0") -> bytes:
    return struct.pack(">BBBBB", algo, hash_, id_type, signer_len, key_id_len) + pad + \
        struct.pack(">I", sig_len) + MAGIC


@pytest.fixture(scope="module")
def crafted(small_module: bytes, rsa_key: object, tmp_path_factory: pytest.TempPathFactory
            ) -> dict[str, Path]:
    from lkm.signing import sign_module

    d = tmp_path_factory.mktemp("crafted")
    cases: dict[str, bytes] = {}
    cases["plain"] = sign_module(small_module, rsa_key,
                                 _cert([("O", "Org"), ("CN", "Plain key")], 0x1234, rsa_key))
    cases["highbit_serial"] = sign_module(
        small_module, rsa_key, _cert([("CN", "High")], 0x80112233445566778899, rsa_key),
        "sha512")
    cases["no_cn"] = sign_module(small_module, rsa_key,
                                 _cert([("C", "DE"), ("O", "No CN Org"), ("OU", "Unit")], 7,
                                       rsa_key), "sha384")
    cases["sha1"] = sign_module(small_module, rsa_key, _cert([("CN", "x")], 99, rsa_key), "sha1")
    signer, key_id, sig = b"Old Style Signer", bytes(range(1, 21)), bytes(range(100, 200))
    cases["x509_raw"] = small_module + signer + key_id + sig + _trailer(
        1, 4, 1, len(signer), len(key_id), len(sig))
    cases["pgp_raw"] = small_module + b"PGP" + b"\x01\x02" + b"s" * 30 + _trailer(
        0, 2, 0, 3, 2, 30)
    paths = {}
    for name, data in cases.items():
        p = d / f"{name}.ko"
        p.write_bytes(data)
        paths[name] = p
    return paths


@pytest.mark.trees
@pytest.mark.kmod
@pytest.mark.parametrize("case", ["plain", "highbit_serial", "no_cn", "sha1", "x509_raw",
                                  "pgp_raw"])
def test_crafted_against_kmod(case: str, crafted: dict[str, Path]) -> None:
    path = crafted[case]
    assert modinfo_fields(path.read_bytes()) == kmod_fields_one(path)


@pytest.mark.trees
def test_crafted_values(crafted: dict[str, Path]) -> None:
    sig = parse_appended(crafted["plain"].read_bytes())
    assert sig is not None
    assert (sig.id_type_name, sig.signer, sig.key_id, sig.hash_algo) == (
        "PKCS#7", "Plain key", b"\x12\x34", "sha256")
    assert not sig.by_skid
    sig = parse_appended(crafted["no_cn"].read_bytes())
    assert sig is not None and sig.signer == "Unit"  # kmod: the last entry when no CN
    sig = parse_appended(crafted["highbit_serial"].read_bytes())
    assert sig is not None and sig.key_id == bytes.fromhex("80112233445566778899")
    raw = crafted["x509_raw"].read_bytes()
    sig = parse_appended(raw)
    assert sig is not None
    assert (sig.id_type_name, sig.signer, sig.key_id, sig.hash_algo) == (
        "X509", "Old Style Signer", bytes(range(1, 21)), "sha256")
    body, _ = split(raw)
    assert raw[:body] == raw[:signature.body_length(raw)]


@pytest.mark.trees
@pytest.mark.kmod
def test_skid_signature_is_invisible_to_kmod(small_module: bytes, rsa_key: object,
                                             tmp_path: Path) -> None:
    """OpenSSL's PKCS7 decoder (kmod 30) refuses a SignerInfo naming its key by SKID."""
    from lkm.signing import sign_module

    cert = _cert([("CN", "Skid")], 5, rsa_key)
    p = tmp_path / "skid.ko"
    p.write_bytes(sign_module(small_module, rsa_key, cert, "sha256", use_skid=True))
    assert kmod_fields_one(p) == []
    assert modinfo_fields(p.read_bytes()) == []
    sig = parse_appended(p.read_bytes())
    assert sig is not None and sig.by_skid and len(sig.key_id) == 20


@pytest.mark.trees
@pytest.mark.kmod
def test_pkcs7_forms_against_kmod(small_module: bytes, rsa_key: object, tmp_path: Path) -> None:
    """The BER and CMS forms where the kernel's and OpenSSL's readers differ (see
    lkm.pkcs7): modinfo shows what kmod 30 (OpenSSL 3's d2i_PKCS7) shows."""
    from lkm.signing import sign_module
    from test_pkcs7 import FORMS, variant

    signed = sign_module(small_module, rsa_key, _cert([("CN", "Forms")], 0x1234, rsa_key))
    _body, sig = split(signed)
    assert sig is not None
    shown = {}
    for form in FORMS:
        raw = variant(sig.raw, form)
        data = small_module + raw + _trailer(0, 0, 2, 0, 0, len(raw))
        p = tmp_path / f"{form}.ko"
        p.write_bytes(data)
        assert modinfo_fields(data) == kmod_fields_one(p), form
        shown[form] = bool(modinfo_fields(data))
    assert shown == {"long2": True, "long2_null": False, "long3": True, "indefinite": True,
                     "indefinite_sets": True, "seq_signer_infos": False,
                     "big_unauth": True, "trailing": True, "two_signers": True,
                     "padded_serial": False, "early_end": False}


# --- malformed trailers ------------------------------------------------------------------


@pytest.mark.trees
@pytest.mark.kmod
def test_malformed_against_kmod(small_module: bytes, tmp_path: Path) -> None:
    cases = {
        "zero_len": small_module + _trailer(0, 0, 2, 0, 0, 0),
        "too_long": small_module + b"x" * 10 + _trailer(0, 0, 2, 0, 0, len(small_module) + 11),
        "bad_algo": small_module + b"x" * 10 + _trailer(2, 0, 1, 0, 0, 10),
        "bad_hash": small_module + b"x" * 10 + _trailer(0, 9, 1, 0, 0, 10),
        "bad_id": small_module + b"x" * 10 + _trailer(0, 0, 3, 0, 0, 10),
        "garbage_pkcs7": small_module + b"\x30\x03abc" + _trailer(0, 0, 2, 0, 0, 5),
        "magic_only": MAGIC,
        "short": b"\0" * 5 + MAGIC,
    }
    for name, data in cases.items():
        p = tmp_path / f"{name}.ko"
        p.write_bytes(data)
        assert kmod_fields_one(p) == [], name
        assert modinfo_fields(data) == [], name
        with pytest.raises(SignatureError):
            parse_appended(data)


def test_body_length_ignores_the_signature_contents() -> None:
    data = b"module" + b"\x30\x03abc" + _trailer(0, 0, 2, 0, 0, 5)
    assert signature.body_length(data) == 6
    assert data[:signature.body_length(data)] == b"module"
    with pytest.raises(SignatureError):
        parse_appended(data)
    assert signature.body_length(b"module") == 6
    with pytest.raises(SignatureError):
        signature.body_length(b"m" + _trailer(0, 0, 2, 0, 0, 5))


def test_unsigned() -> None:
    assert split(b"plain module") == (12, None)
    assert parse_appended(b"") is None
    assert modinfo_fields(b"\x7fELF") == []


def test_truncations_never_crash(crafted: dict[str, Path]) -> None:
    """Any cut of the PKCS#7 blob gives SignatureError or a result, never another error."""
    data = crafted["plain"].read_bytes()
    body, sig = split(data)
    assert sig is not None
    blob = sig.raw
    for cut in range(0, len(blob), 7):
        bad = data[:body] + blob[:cut] + _trailer(0, 0, 2, 0, 0, cut)
        with contextlib.suppress(SignatureError):
            parse_appended(bad)
    for i in range(0, len(blob), 5):
        flipped = bytearray(data)
        flipped[body + i] ^= 0xFF
        with contextlib.suppress(SignatureError):
            parse_appended(bytes(flipped))
