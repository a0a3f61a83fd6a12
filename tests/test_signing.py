"""lkm.signing and the sign-file / verify / extract-certs / strip-sig tools.

References: Debian's scripts/sign-file (linux-kbuild-6.1) for the bytes of a signature;
the Debian trees' own signatures and built-in certificates for verification; the
kernel's module_sig_check/mod_verify_sig/pkcs7 code for the result of each defect.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import random
import shutil
import struct
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Tree
from lkm import signing
from lkm.cli import run_tool
from lkm.signature import MAGIC, split
from lkm.signing import Keyring, Status, verify_module

SIGN_FILE = Path("/usr/lib/linux-kbuild-6.1/scripts/sign-file")
needs_sign_file = pytest.mark.skipif(not SIGN_FILE.exists(), reason="no Debian sign-file")


# --- keys -------------------------------------------------------------------------------


def make_key_pair(d: Path, kind: str, cn: str = "lkm test signing key") -> dict[str, Path]:
    """A private key and a self-signed certificate like the kernel's x509.genkey makes
    (subjectKeyIdentifier, keyUsage digitalSignature), as PEM and DER files in ``d``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa
    from cryptography.x509.oid import NameOID

    key: Any = (rsa.generate_private_key(public_exponent=65537, key_size=2048)
                if kind == "rsa" else ec.generate_private_key(ec.SECP384R1()))
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lkm"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=36500))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                           critical=False)
            .sign(key, hashes.SHA256()))
    d.mkdir(parents=True, exist_ok=True)
    out = {"key": d / f"{kind}.key", "pem": d / f"{kind}.crt", "der": d / f"{kind}.der"}
    out["key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                             serialization.PrivateFormat.PKCS8,
                                             serialization.NoEncryption()))
    out["pem"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    out["der"].write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return out


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Path]]:
    d = tmp_path_factory.mktemp("keys")
    return {"rsa": make_key_pair(d, "rsa"), "ec": make_key_pair(d, "ec")}


@pytest.fixture(scope="module")
def unsigned(tree61: Tree, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """crc7.ko of the 6.1 tree without its signature."""
    src = next(p for p in tree61.modules() if p.name == "crc7.ko")
    data = src.read_bytes()
    body, sig = split(data)
    assert sig is not None
    p = tmp_path_factory.mktemp("mod") / "crc7.ko"
    p.write_bytes(data[:body])
    return p


def lkm(tool: str, *args: str | Path) -> int:
    return run_tool(tool, [str(a) for a in args])


def sign_file(*args: str | Path) -> None:
    subprocess.run([str(SIGN_FILE), *map(str, args)], check=True, capture_output=True)


# --- sign-file compatibility -------------------------------------------------------------


@needs_sign_file
@pytest.mark.trees
@pytest.mark.parametrize("hash_name", ["sha256", "sha384", "sha512"])
@pytest.mark.parametrize("skid", [False, True], ids=["issuer-serial", "skid"])
@pytest.mark.parametrize("cert_form", ["pem", "der"])
def test_rsa_byte_identical(hash_name: str, skid: bool, cert_form: str,
                            keys: dict[str, dict[str, Path]], unsigned: Path,
                            tmp_path: Path) -> None:
    k = keys["rsa"]
    opts = ["-k"] if skid else []
    sign_file(*opts, hash_name, k["key"], k[cert_form], unsigned, tmp_path / "ref.ko")
    assert lkm("sign-file", *opts, hash_name, k["key"], k[cert_form], unsigned,
               tmp_path / "lkm.ko") == 0
    assert (tmp_path / "lkm.ko").read_bytes() == (tmp_path / "ref.ko").read_bytes()


@needs_sign_file
@pytest.mark.trees
def test_in_place_detached_keep_and_raw(keys: dict[str, dict[str, Path]], unsigned: Path,
                                        tmp_path: Path) -> None:
    k = keys["rsa"]
    ref, mine = tmp_path / "ref", tmp_path / "mine"
    for d in (ref, mine):
        d.mkdir()
        shutil.copy(unsigned, d / "m.ko")
    # -d: only the detached signature, module untouched
    sign_file("-d", "sha256", k["key"], k["pem"], ref / "m.ko")
    assert lkm("sign-file", "-d", "sha256", k["key"], k["pem"], mine / "m.ko") == 0
    assert (mine / "m.ko").read_bytes() == unsigned.read_bytes()
    assert (mine / "m.ko.p7s").read_bytes() == (ref / "m.ko.p7s").read_bytes()
    # -s: append that raw signature
    sign_file("-s", ref / "m.ko.p7s", "sha256", k["pem"], ref / "m.ko", ref / "raw.ko")
    assert lkm("sign-file", "-s", mine / "m.ko.p7s", "sha256", k["pem"], mine / "m.ko",
               mine / "raw.ko") == 0
    assert (mine / "raw.ko").read_bytes() == (ref / "raw.ko").read_bytes()
    # -p in place (options after operands, as getopt permutes)
    sign_file("sha512", k["key"], k["pem"], ref / "m.ko", "-p")
    assert lkm("sign-file", "sha512", k["key"], k["pem"], mine / "m.ko", "-p") == 0
    for name in ("m.ko", "m.ko.p7s"):
        assert (mine / name).read_bytes() == (ref / name).read_bytes()
    assert not list(mine.glob(".*tmp"))


@needs_sign_file
@pytest.mark.trees
def test_resign_signed_module(keys: dict[str, dict[str, Path]], tree61: Tree,
                              tmp_path: Path) -> None:
    """sign-file signs whatever it is given, an existing signature included."""
    src = next(p for p in tree61.modules() if p.name == "crc8.ko")
    k = keys["rsa"]
    sign_file("sha256", k["key"], k["der"], src, tmp_path / "ref.ko")
    assert lkm("sign-file", "sha256", k["key"], k["der"], src, tmp_path / "lkm.ko") == 0
    assert (tmp_path / "lkm.ko").read_bytes() == (tmp_path / "ref.ko").read_bytes()


@needs_sign_file
@pytest.mark.trees
@pytest.mark.parametrize("hash_name", ["sha256", "sha384", "sha512"])
@pytest.mark.parametrize("skid", [False, True], ids=["issuer-serial", "skid"])
def test_ecdsa_structure(hash_name: str, skid: bool, keys: dict[str, dict[str, Path]],
                         unsigned: Path, tmp_path: Path) -> None:
    """ECDSA signatures are randomised: same structure, both verify."""
    from asn1crypto import cms

    k = keys["ec"]
    opts = ["-k"] if skid else []
    sign_file(*opts, hash_name, k["key"], k["pem"], unsigned, tmp_path / "ref.ko")
    assert lkm("sign-file", *opts, hash_name, k["key"], k["pem"], unsigned,
               tmp_path / "lkm.ko") == 0
    ring = Keyring.from_paths([k["der"]])

    def shape(path: Path) -> Any:
        data = path.read_bytes()
        body, sig = split(data)
        assert sig is not None and data[:body] == unsigned.read_bytes()
        ci = cms.ContentInfo.load(sig.raw)
        si = ci["content"]["signer_infos"][0]
        native = ci.native
        native["content"]["signer_infos"][0]["signature"] = None
        return native, si["signature_algorithm"].dump(), si["digest_algorithm"].dump()

    assert shape(tmp_path / "lkm.ko") == shape(tmp_path / "ref.ko")
    for name in ("lkm.ko", "ref.ko"):
        v = verify_module((tmp_path / name).read_bytes(), ring)
        assert v.status is Status.VALID, v


# --- verification on the real trees ------------------------------------------------------


@pytest.mark.trees
def test_whole_tree_verifies_against_own_kernel(tree: Tree) -> None:
    """Every module of 6.1 (RSA) and 6.12 (ECDSA P-384 in .ko.xz) against the certificate
    built into the tree's own vmlinuz."""
    ring = Keyring.from_kernel(tree.vmlinuz)
    assert len(ring) == 1
    files = tree.modules()
    stats = signing.VerifyStats()
    bad = [(p, v) for p, v in signing.verify_files(files, ring, jobs=2, stats=stats)
           if v.status is not Status.VALID]
    assert bad == []
    assert stats.by_status == {"valid": len(files)}
    expected_key = {"6.1": "RSAPublicKey", "6.12": "ECPublicKey"}[tree.flavour]
    assert expected_key in type(ring.keys[0].public_key).__name__


@pytest.fixture(scope="module")
def real_signed(trees: dict[str, Tree]) -> dict[str, tuple[bytes, Keyring]]:
    """A Debian-signed module (decompressed) and its kernel's keyring, per tree."""
    from lkm.compress import read_module

    out = {}
    for flavour, tree in trees.items():
        path = next(p for p in tree.modules() if p.name.startswith("crc8.ko"))
        content, _ = read_module(path)
        out[flavour] = (bytes(content), Keyring.from_kernel(tree.vmlinuz))
    return out


def _resign_trailer(body: bytes, pkcs7: bytes, **fields: int) -> bytes:
    vals = {"algo": 0, "hash": 0, "id_type": 2, "signer_len": 0, "key_id_len": 0, "pad": 0,
            "sig_len": len(pkcs7)}
    vals.update(fields)
    return body + pkcs7 + struct.pack(">BBBBBBBBI", vals["algo"], vals["hash"],
                                      vals["id_type"], vals["signer_len"],
                                      vals["key_id_len"], vals["pad"], 0, 0,
                                      vals["sig_len"]) + MAGIC


@pytest.mark.trees
@pytest.mark.parametrize("flavour", ["6.1", "6.12"])
def test_defects(flavour: str, real_signed: dict[str, tuple[bytes, Keyring]],
                 keys: dict[str, dict[str, Path]]) -> None:
    data, ring = real_signed[flavour]
    body_len, sig = split(data)
    assert sig is not None
    body, pkcs7 = data[:body_len], sig.raw

    def check(content: bytes, status: Status, err: int) -> None:
        v = verify_module(content, ring)
        assert (v.status, v.errno) == (status, err), v

    check(data, Status.VALID, 0)
    flipped = bytearray(data)
    flipped[body_len // 2] ^= 0x01  # one byte of the module body
    check(bytes(flipped), Status.REJECTED, errno.EKEYREJECTED)
    flipped = bytearray(data)
    flipped[body_len + len(pkcs7) - 3] ^= 0x01  # one byte of the signature value
    check(bytes(flipped), Status.REJECTED, errno.EKEYREJECTED)
    check(body, Status.UNSIGNED, errno.ENODATA)
    check(_resign_trailer(body, pkcs7, id_type=1), Status.UNSUPPORTED, errno.ENOPKG)
    check(_resign_trailer(body, pkcs7, hash=4), Status.MALFORMED, errno.EBADMSG)
    check(_resign_trailer(body, pkcs7, pad=1), Status.MALFORMED, errno.EBADMSG)
    check(_resign_trailer(body, pkcs7, sig_len=len(data)), Status.MALFORMED, errno.EBADMSG)
    check(MAGIC + b"x", Status.UNSIGNED, errno.ENODATA)
    check(b"\0" * 5 + MAGIC, Status.MALFORMED, errno.EBADMSG)
    check(_resign_trailer(body, b"\x30\x80garbage"), Status.MALFORMED, errno.EBADMSG)
    # a signature algorithm the kernel does not know (rsaEncryption -> RSASSA-PSS)
    rsa_oid = bytes.fromhex("06092a864886f70d010101")
    if rsa_oid in pkcs7:
        check(_resign_trailer(body, pkcs7.replace(rsa_oid, rsa_oid[:-1] + b"\x0a")),
              Status.UNSUPPORTED, errno.ENOPKG)
    # a digest the kernel's parser refuses (sha256 -> an unassigned NIST hash arc)
    sha256_oid = bytes.fromhex("0609608648016503040201")
    check(_resign_trailer(body, pkcs7.replace(sha256_oid, sha256_oid[:-1] + b"\x7f")),
          Status.UNSUPPORTED, errno.ENOPKG)
    # signed by a key the kernel does not hold
    k = keys["rsa"]
    other = signing.sign_module(body, signing.load_private_key(k["key"]),
                                signing.load_certificate(k["der"]))
    check(other, Status.UNKNOWN_KEY, errno.ENOKEY)
    v = verify_module(other, ring)
    assert v.signer == "lkm test signing key"
    # the same module signed with that key is valid once the certificate is trusted
    ring2 = Keyring([*ring.ders, signing.load_certificate(k["der"])])
    assert verify_module(other, ring2).status is Status.VALID


@pytest.mark.trees
def test_pkcs7_shapes(unsigned: Path, keys: dict[str, dict[str, Path]]) -> None:
    """Messages sign-file does not make, built with cryptography's PKCS#7 builder."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.serialization import pkcs7

    k = keys["rsa"]
    key = signing.load_private_key(k["key"])
    cert = x509.load_der_x509_certificate(k["der"].read_bytes())
    ring = Keyring([k["der"].read_bytes()])
    body = unsigned.read_bytes()
    base = pkcs7.PKCS7SignatureBuilder().set_data(body).add_signer(cert, key, hashes.SHA256())
    opts = [pkcs7.PKCS7Options.DetachedSignature, pkcs7.PKCS7Options.Binary,
            pkcs7.PKCS7Options.NoCerts]
    # NULL digest parameters (4 bytes longer than sign-file's): the kernel accepts them
    plain = base.sign(serialization.Encoding.DER, [*opts, pkcs7.PKCS7Options.NoAttributes])
    assert verify_module(_resign_trailer(body, plain), ring).status is Status.VALID
    # authenticated attributes: refused for modules
    attrs = base.sign(serialization.Encoding.DER, opts)
    v = verify_module(_resign_trailer(body, attrs), ring)
    assert (v.status, v.reason) == (Status.REJECTED, "Invalid module sig (has authattrs)")
    # two signers, the first unknown to the kernel: the second one counts
    ec_key = signing.load_private_key(keys["ec"]["key"])
    ec_cert = x509.load_der_x509_certificate(keys["ec"]["der"].read_bytes())
    two = (pkcs7.PKCS7SignatureBuilder().set_data(body).add_signer(ec_cert, ec_key,
                                                                    hashes.SHA256())
           .add_signer(cert, key, hashes.SHA256())
           .sign(serialization.Encoding.DER, [*opts, pkcs7.PKCS7Options.NoAttributes]))
    v = verify_module(_resign_trailer(body, two), ring)
    assert (v.status, v.signer) == (Status.VALID, "lkm test signing key")
    v = verify_module(_resign_trailer(body, two), Keyring([keys["ec"]["der"].read_bytes()]))
    assert v.status is Status.VALID
    v = verify_module(_resign_trailer(body + b"x", two), ring)
    assert v.status is Status.REJECTED
    # content attached: "Data already supplied"
    attached = base.sign(serialization.Encoding.DER,
                         [pkcs7.PKCS7Options.Binary, pkcs7.PKCS7Options.NoAttributes])
    v = verify_module(_resign_trailer(body, attached), ring)
    assert (v.status, v.errno) == (Status.MALFORMED, errno.EINVAL)


def test_kernel_key_lookup(keys: dict[str, dict[str, Path]]) -> None:
    """pkcs7_note_signed_info: the key id follows the SignerInfo's version (v1: serial and
    issuer, v3: SKID), whatever the SignerIdentifier holds; serial octets compare as they
    are; a message without SignerInfo fails pkcs7_check_authattrs (EINVAL)."""
    from test_pkcs7 import emit, tree, variant

    k = keys["rsa"]
    key, der = signing.load_private_key(k["key"]), signing.load_certificate(k["der"])
    ring = Keyring([der])
    body = b"\x7fELF any module body"

    def with_versions(raw: bytes, version: int) -> bytes:
        ((ci, (oid, (a0, [(sd, fields)]))),) = tree(raw)  # type: ignore[misc]
        fields[0] = (0x02, bytes((version,)))
        infos = fields[-1][1]
        infos[0][1][0] = (0x02, bytes((version,)))
        return emit([(ci, [oid, (a0, [(sd, fields)])])])

    by_serial = signing.build_pkcs7(body, key, der)
    by_skid = signing.build_pkcs7(body, key, der, use_skid=True)
    for raw, want in ((by_serial, 0), (by_skid, 0),
                      (with_versions(by_skid, 1), errno.ENOKEY),
                      (with_versions(by_serial, 3), errno.ENOKEY)):
        assert verify_module(_resign_trailer(body, raw), ring).errno == want
    # the trusted key, named by its serial with a redundant sign octet: not the same id
    v = verify_module(_resign_trailer(body, variant(by_serial, "padded_serial")), ring)
    assert (v.status, v.errno) == (Status.UNKNOWN_KEY, errno.ENOKEY)
    v = verify_module(_resign_trailer(body, variant(by_serial, "early_end")), ring)
    assert (v.errno, v.reason) == (errno.EINVAL, "Inconsistently supplied authAttrs")
    v = verify_module(_resign_trailer(body, variant(by_serial, "big_unauth")), ring)
    assert v.errno == errno.EMSGSIZE
    v = verify_module(_resign_trailer(body, variant(by_serial, "long3")), ring)
    assert (v.errno, v.reason) == (errno.EBADMSG, "malformed PKCS#7 message: Unsupported length")
    for form in ("seq_signer_infos", "trailing", "two_signers"):
        assert verify_module(_resign_trailer(body, variant(by_serial, form)), ring).ok, form
    # the issuer Name encoded otherwise (its RDN SETs indefinite, its lengths long): its
    # bytes are not the certificate's, so the key is not found
    for form in ("indefinite_sets", "long2"):
        v = verify_module(_resign_trailer(body, variant(by_serial, form)), ring)
        assert v.errno == errno.ENOKEY, form


@pytest.mark.trees
def test_hostile_trailers_never_raise(real_signed: dict[str, tuple[bytes, Keyring]]) -> None:
    data, ring = real_signed["6.1"]
    body_len, sig = split(data)
    assert sig is not None
    rnd = random.Random(5)
    tail = len(data) - body_len
    t = time.monotonic()
    for i in range(600):
        bad = bytearray(data)
        for _ in range(rnd.randint(1, 4)):
            bad[body_len + rnd.randrange(tail)] = rnd.randrange(256)
        verify_module(bytes(bad), ring)
        cut = rnd.randrange(tail)
        verify_module(data[:body_len] + sig.raw[:cut] + data[-40:], ring)
        if i % 50 == 0:
            junk = bytes(rnd.randrange(256) for _ in range(rnd.randrange(200)))
            verify_module(data[:body_len] + junk + struct.pack(">I", len(junk))[-4:] + MAGIC,
                          ring)
    assert time.monotonic() - t < 60


def test_verify_file_errors(tmp_path: Path) -> None:
    """verify_file never raises for what a file holds: missing, corrupt or oversized."""
    ring = Keyring()
    assert signing.verify_file(tmp_path / "missing.ko", ring).errno == errno.ENOENT
    (tmp_path / "bad.ko.xz").write_bytes(b"\xfd7zXZ\x00 not really xz")
    big = tmp_path / "big.ko"
    with open(big, "wb") as f:  # sparse: larger than a module may be
        f.truncate((512 << 20) + 1)
    for name in ("bad.ko.xz", "big.ko"):
        v = signing.verify_file(tmp_path / name, ring)
        assert (v.status, v.errno) == (Status.ERROR, errno.EINVAL), name


# --- compressed modules, strip ----------------------------------------------------------


@pytest.mark.trees
def test_sign_strip_roundtrip_plain(unsigned: Path, keys: dict[str, dict[str, Path]],
                                    tmp_path: Path) -> None:
    k = keys["ec"]
    m = tmp_path / "m.ko"
    shutil.copy(unsigned, m)
    os.chmod(m, 0o600)
    assert lkm("sign-file", "sha384", k["key"], k["der"], m) == 0
    assert os.stat(m).st_mode & 0o777 == 0o600
    assert verify_module(m.read_bytes(), Keyring([k["der"].read_bytes()])).ok
    assert lkm("strip-sig", m) == 0
    assert m.read_bytes() == unsigned.read_bytes()
    assert lkm("strip-sig", m) == 0  # unsigned: left alone
    assert m.read_bytes() == unsigned.read_bytes()


@pytest.mark.trees
def test_compressed_module(tree612: Tree, keys: dict[str, dict[str, Path]],
                           tmp_path: Path) -> None:
    """Sign the decompressed content, write it back as xz; strip gives the original bytes."""
    from lkm.compress import decompress, detect

    src = next(p for p in tree612.modules() if p.name == "crc8.ko.xz")
    m = tmp_path / "crc8.ko.xz"
    shutil.copy(src, m)
    assert lkm("strip-sig", m) == 0
    stripped = m.read_bytes()
    assert detect(stripped) == "xz"
    original_body, _ = split(decompress(src.read_bytes()))
    assert decompress(stripped) == decompress(src.read_bytes())[:original_body]
    k = keys["rsa"]
    assert lkm("sign-file", "sha256", k["key"], k["pem"], m) == 0
    signed = m.read_bytes()
    assert detect(signed) == "xz"
    expected = signing.sign_module(decompress(stripped), signing.load_private_key(k["key"]),
                                   signing.load_certificate(k["pem"]))
    assert decompress(signed) == expected
    v = signing.verify_file(m, Keyring.from_paths([k["pem"]]))
    assert v.status is Status.VALID
    assert lkm("strip-sig", m) == 0
    assert m.read_bytes() == stripped
    # Debian's own xz settings are reproduced: stripping a Debian module and re-signing
    # it is byte-stable through the compression too
    assert lkm("strip-sig", m, "-o", tmp_path / "copy.ko.xz") == 0
    assert (tmp_path / "copy.ko.xz").read_bytes() == stripped


# --- the tools ---------------------------------------------------------------------------


@pytest.mark.trees
def test_verify_cli(tree61: Tree, unsigned: Path, keys: dict[str, dict[str, Path]],
                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = tmp_path / "mods"
    d.mkdir()
    good = next(p for p in tree61.modules() if p.name == "crc8.ko")
    shutil.copy(good, d / "good.ko")
    shutil.copy(unsigned, d / "unsigned.ko")
    k = keys["rsa"]
    assert lkm("sign-file", "sha256", k["key"], k["pem"], unsigned, d / "other.ko") == 0
    tampered = bytearray(good.read_bytes())
    tampered[100] ^= 1
    (d / "tampered.ko").write_bytes(bytes(tampered))
    (d / "notes.txt").write_text("not a module")

    assert lkm("verify", "--kernel", tree61.vmlinuz, d / "good.ko") == 0
    assert capsys.readouterr().out == "1 module: 1 valid\n"

    assert lkm("verify", "--kernel", tree61.root, d) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[-1] == "4 modules: 1 valid, 1 unsigned, 1 unknown key, 1 rejected"
    assert any(line.startswith(f"{d}/tampered.ko: rejected (EKEYREJECTED") for line in out)
    assert not any("good.ko" in line for line in out)

    assert lkm("verify", "--json", "--kernel", tree61.vmlinuz, "--cert", k["pem"], d) == 1
    doc = json.loads(capsys.readouterr().out)
    status = {Path(r["path"]).name: (r["status"], r["errno"]) for r in doc["modules"]}
    assert status == {"good.ko": ("valid", None), "other.ko": ("valid", None),
                      "tampered.ko": ("rejected", "EKEYREJECTED"),
                      "unsigned.ko": ("unsigned", "ENODATA")}
    assert doc["summary"]["valid"] == 2

    assert lkm("verify", "--cert", tmp_path / "missing.pem", d) == 2
    assert "ERROR" in capsys.readouterr().err
    assert lkm("verify", "--cert", k["pem"], tmp_path / "nothing-here.ko") == 2


@pytest.mark.trees
def test_extract_certs_cli(tree: Tree, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography import x509

    assert lkm("extract-certs", tree.vmlinuz) == 0
    pem = capsys.readouterr().out
    cert = x509.load_pem_x509_certificate(pem.encode())
    assert "Build time autogenerated kernel key" in cert.subject.rfc4514_string()
    assert lkm("extract-certs", tree.root, "-o", tmp_path / "out", "--der") == 0
    written = tmp_path / "out" / "builtin-0.der"
    assert capsys.readouterr().out == f"{written}\n"
    assert x509.load_der_x509_certificate(written.read_bytes()) == cert
    assert lkm("extract-certs", tree.vmlinuz, "--info") == 0
    info = capsys.readouterr().out
    assert f"release: {tree.release}\n" in info
    assert f"vermagic: {tree.release} SMP preempt mod_unload modversions \n" in info
    (tmp_path / "junk").write_bytes(b"junk" * 100)
    assert lkm("extract-certs", tmp_path / "junk") == 1
    assert "ERROR" in capsys.readouterr().err


@pytest.mark.trees
def test_sign_file_errors(unsigned: Path, keys: dict[str, dict[str, Path]], tmp_path: Path,
                          capsys: pytest.CaptureFixture[str]) -> None:
    k = keys["rsa"]
    assert lkm("sign-file", "sha256", k["key"]) == 2
    assert "Usage: scripts/sign-file" in capsys.readouterr().err
    assert lkm("sign-file", "-x", "sha256", k["key"], k["pem"], unsigned) == 2
    assert lkm("sign-file", "sha256", tmp_path / "nokey", k["pem"], unsigned) == 1
    assert capsys.readouterr().err.endswith("nokey: No such file or directory\n")
    assert lkm("sign-file", "md4", k["key"], k["pem"], unsigned, tmp_path / "o.ko") == 1
    assert lkm("sign-file", "sha256", k["key"], keys["ec"]["pem"], unsigned,
               tmp_path / "o.ko") == 1
    assert "does not match" in capsys.readouterr().err
    assert not (tmp_path / "o.ko").exists()


# --- the real kernel ---------------------------------------------------------------------

VM_SCRIPT = r"""
dmesg -c >/dev/null
for f in $CASES; do
  mod=${f%%-*}
  lkm_case $f
  chroot /host /sbin/insmod "$JOB/$f.ko" 2>&1
  echo "rc=$?"
  if [ -d /sys/module/$mod ]; then echo "taint=$(cat /sys/module/$mod/taint)"; rmmod $mod; fi
  dmesg -c | grep -E 'Loading of|verification failed' || true
done
"""


@pytest.mark.qemu
@pytest.mark.trees
@needs_sign_file
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="no qemu")
@pytest.mark.parametrize("enforce", [False, True], ids=["permissive", "sig_enforce"])
def test_real_kernel_agrees(enforce: bool, tree61: Tree, keys: dict[str, dict[str, Path]],
                            tmp_path: Path) -> None:
    """Debian's 6.1 kernel: lkm-signed and sign-file-signed modules behave the same (taint
    E, or "Key was rejected by service" under module.sig_enforce=1); a Debian-signed
    module loads; a tampered one is refused in both modes.  lkm verify agrees."""
    from vm import run_in_vm, split_cases, strip_timestamps

    def real(name: str) -> Path:
        return next(p for p in tree61.modules() if p.name == name)

    def stripped(name: str) -> Path:
        data = real(name).read_bytes()
        body, _ = split(data)
        out = tmp_path / f"plain-{name}"
        out.write_bytes(data[:body])
        return out

    rsa, ec = keys["rsa"], keys["ec"]
    files: dict[str, Path] = {}
    # the same module signed by lkm and by sign-file: RSA by issuer and serial, ECDSA by SKID
    for tool in ("lkm", "signfile"):
        for mod, opts in (("crc7", ["sha256", rsa["key"], rsa["pem"]]),
                          ("crc16", ["-k", "sha256", ec["key"], ec["pem"]])):
            out = files[f"{mod}-{tool}"] = tmp_path / f"{mod}-{tool}.ko"
            if tool == "lkm":
                assert lkm("sign-file", *opts, stripped(f"{mod}.ko"), out) == 0
            else:
                sign_file(*opts, stripped(f"{mod}.ko"), out)
    # sha384 needs sha512_generic, a module in Debian's 6.1 (CONFIG_CRYPTO_SHA512=m)
    files["crc64-sha384"] = tmp_path / "crc64-sha384.ko"
    assert lkm("sign-file", "sha384", rsa["key"], rsa["pem"], stripped("crc64.ko"),
               files["crc64-sha384"]) == 0
    files["crc8-debian"] = real("crc8.ko")
    tampered = bytearray(real("ts_kmp.ko").read_bytes())
    tampered[len(tampered) // 3] ^= 0x20
    files["ts_kmp-tampered"] = tmp_path / "ts_kmp-tampered.ko"
    files["ts_kmp-tampered"].write_bytes(bytes(tampered))
    files["crc_itu_t-unsigned"] = stripped("crc-itu-t.ko")

    config = next((tree61.root / "boot").glob("config-*")).read_text()
    ring = Keyring(Keyring.from_kernel(tree61.vmlinuz).ders, signing.builtin_digests(config))
    verdicts = {name: signing.verify_file(p, ring).status for name, p in files.items()}
    assert verdicts == {
        "crc7-lkm": Status.UNKNOWN_KEY, "crc7-signfile": Status.UNKNOWN_KEY,
        "crc16-lkm": Status.UNKNOWN_KEY, "crc16-signfile": Status.UNKNOWN_KEY,
        "crc64-sha384": Status.UNSUPPORTED,
        "crc8-debian": Status.VALID, "ts_kmp-tampered": Status.REJECTED,
        "crc_itu_t-unsigned": Status.UNSIGNED,
    }
    assert files["crc7-lkm"].read_bytes() == files["crc7-signfile"].read_bytes()

    order = " ".join(files)
    script = f"CASES='{order}'\n" + VM_SCRIPT
    res = run_in_vm(tree61, script, files={f"{n}.ko": p for n, p in files.items()},
                    append="module.sig_enforce=1" if enforce else "", timeout=600)
    assert res.rc == 0, res.output
    if os.environ.get("LKM_SHOW_VM"):
        print(res.output)
    cases = split_cases(res.output)
    rejected = "Key was rejected by service"
    for name, status in verdicts.items():
        out = cases[name]
        if status is Status.VALID:
            assert "rc=0" in out and "taint=\n" in out, (name, out)
        elif status is Status.REJECTED or enforce:
            assert rejected in out and "rc=1" in out, (name, out)
        else:
            assert "rc=0" in out and "taint=E\n" in out, (name, out)
    reasons = {Status.UNKNOWN_KEY: "Loading of module with unavailable key is rejected",
               Status.UNSUPPORTED: "Loading of module with unsupported crypto is rejected",
               Status.UNSIGNED: "Loading of unsigned module is rejected"}
    for name, status in verdicts.items():
        if enforce and status in reasons:
            assert reasons[status] in cases[name], (name, cases[name])
    for mod in ("crc7", "crc16"):
        lkm_out = strip_timestamps(cases[f"{mod}-lkm"].replace(f"{mod}-lkm.ko", "X"))
        sf_out = strip_timestamps(cases[f"{mod}-signfile"].replace(f"{mod}-signfile.ko", "X"))
        assert lkm_out == sf_out or "verification failed" in lkm_out, (lkm_out, sf_out)
    # the kernel says "module verification failed" once per boot, at the first E taint
    first = next(n for n, st in verdicts.items() if st is not Status.VALID)
    assert ("module verification failed: signature and/or required key missing"
            in cases[first]) is not enforce


FORMS_SCRIPT = r"""
load() {
  chroot /host "$PYTHON" -c '
import ctypes, errno, os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
rc = ctypes.CDLL(None, use_errno=True).syscall(313, fd, b"", 0)
print("errno=" + (errno.errorcode[ctypes.get_errno()] if rc else "0"))
' "$1"
}
for f in $CASES; do
  lkm_case $f
  load "$JOB/$f.ko"
  if [ -d /sys/module/crc7 ]; then rmmod crc7; fi
done
"""


@pytest.mark.qemu
@pytest.mark.trees
@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="no qemu")
def test_real_kernel_pkcs7_forms(tree61: Tree, unsigned: Path,
                                 keys: dict[str, dict[str, Path]], tmp_path: Path) -> None:
    """The message forms where the kernel's and OpenSSL's readers differ (lkm.pkcs7's
    table), signed with a key Debian's 6.1 lacks: finit_module fails with the errno of
    pkcs7_parse_message when the kernel's parser refuses the form, and loads (taint E,
    ENOKEY inside) when it reads it.  lkm verify agrees on each."""
    from test_pkcs7 import FORMS, KERNEL_ERRNO, variant
    from vm import run_in_vm, split_cases

    k = keys["rsa"]
    body = unsigned.read_bytes()
    signed = signing.sign_module(body, signing.load_private_key(k["key"]),
                                 signing.load_certificate(k["der"]))
    _n, sig = split(signed)
    assert sig is not None
    ring = Keyring.from_kernel(tree61.vmlinuz)
    files = {}
    for form in ("plain", *FORMS):
        raw = sig.raw if form == "plain" else variant(sig.raw, form)
        files[f"{form}.ko"] = _resign_trailer(body, raw)
        want = errno.ENOKEY if form == "plain" else KERNEL_ERRNO[form]
        assert verify_module(files[f"{form}.ko"], ring).errno == want, form
    script = f"CASES='plain {' '.join(FORMS)}'\n" + FORMS_SCRIPT
    res = run_in_vm(tree61, script, files=files, timeout=600)
    assert res.rc == 0, res.output
    cases = split_cases(res.output)
    got = {form: cases[form].split("errno=", 1)[1].split()[0] for form in ("plain", *FORMS)}
    assert got == {form: "0" if KERNEL_ERRNO.get(form, errno.ENOKEY) == errno.ENOKEY
                   else errno.errorcode[KERNEL_ERRNO[form]] for form in got}
