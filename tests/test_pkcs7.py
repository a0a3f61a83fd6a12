"""lkm.pkcs7: the one DER/BER reader and writer, in its kernel and OpenSSL dialects.

References: lib/asn1_decoder.c and crypto/asymmetric_keys/pkcs7.asn1 (the kernel),
OpenSSL 3's d2i_PKCS7 (kmod 30's modinfo; checked against the real kmod in
test_signature.py), asn1crypto and cryptography as independent readers of what
the writer produces.  The cases are those where signature.py's and signing.py's
former DER walkers disagreed (length octets, message size, high tags, several
SignerInfos, negative serials) and the BER forms neither handled.
"""

from __future__ import annotations

import datetime
import errno
from typing import Any

import pytest

from lkm import pkcs7
from lkm.pkcs7 import KERNEL, OPENSSL, Asn1Error, Pkcs7Error, der, parse_signed_data

SHA256 = pkcs7.oid("2.16.840.1.101.3.4.2.1")
RSA = pkcs7.OID_RSA_ENCRYPTION


# --- re-encoding a DER tree in other (BER) forms ------------------------------------------

Node = tuple[int, "bytes | list[Node]"]


def tree(raw: bytes) -> list[Node]:
    """The elements of ``raw`` as (tag, contents or children) — constructed ones split."""
    out: list[Node] = []
    pos = 0
    while pos < len(raw):
        tag, s, e, pos = pkcs7.read_tlv(raw, pos, len(raw), OPENSSL)
        out.append((tag, tree(raw[s:e]) if tag & 0x20 else raw[s:e]))
    return out


def emit(nodes: list[Node], style: str = "der", only: int | tuple[int, ...] = (),
         skip: int | None = None) -> bytes:
    """Encode again: "der", "long2"/"long3" (lengths in 2 or 3 octets), "indefinite"
    (constructed elements), for the elements with a tag in ``only`` or those without tag
    ``skip`` if given."""
    only = (only,) if isinstance(only, int) else only
    out = b""
    for tag, body in nodes:
        contents = emit(body, style, only, skip) if isinstance(body, list) else body
        if (only and tag not in only) or tag == skip:
            out += der(tag, contents)
        elif style in ("long2", "long3"):
            k = int(style[-1])
            out += bytes((tag, 0x80 | k)) + len(contents).to_bytes(k, "big") + contents
        elif style == "indefinite" and tag & 0x20:
            out += bytes((tag, 0x80)) + contents + b"\0\0"
        else:
            out += der(tag, contents)
    return out


FORMS = ("long2", "long2_null", "long3", "indefinite", "indefinite_sets", "seq_signer_infos",
         "big_unauth", "trailing", "two_signers", "padded_serial", "early_end")
"""Variants of a sign-file message (RSA) where the kernel's and OpenSSL's readers differ."""

# mod_verify_sig's errno for each form of a message naming a key the kernel lacks:
# ENOKEY when its parser reads it (as Debian's 6.1 does, test_real_kernel_pkcs7_forms)
KERNEL_ERRNO = {
    "long2": errno.ENOKEY,
    "long2_null": errno.ENOKEY,  # OpenSSL, not the kernel, wants a byte after the octets
    "long3": errno.EBADMSG,  # at most two length octets
    "indefinite": errno.EBADMSG,  # its AlgorithmIdentifiers: test_indefinite_algorithm
    "indefinite_sets": errno.ENOKEY,
    "seq_signer_infos": errno.ENOKEY,
    "big_unauth": errno.EMSGSIZE,  # over 65535 bytes
    "trailing": errno.ENOKEY,
    "two_signers": errno.ENOKEY,
    "padded_serial": errno.ENOKEY,
    "early_end": errno.EINVAL,  # no SignerInfo: pkcs7_check_authattrs
}


def variant(raw: bytes, form: str) -> bytes:
    """``raw`` (a sign-file message: one SignerInfo named by issuer and serial) in ``form``."""
    if form == "long2":  # every length in two octets but the NULL parameters' (below)
        return emit(tree(raw), "long2", skip=0x05)
    if form == "long2_null":  # length octets that end their container
        return emit(tree(raw), "long2", only=0x05)
    if form == "long3":  # three length octets (before contents)
        return emit(tree(raw), "long3", only=0x04)
    if form == "indefinite":
        return emit(tree(raw), form)
    if form == "indefinite_sets":  # the SETs and the [0] EXPLICIT only
        return emit(tree(raw), "indefinite", only=(0x31, 0xA0))
    if form == "trailing":
        return raw + b"junk"
    if form == "early_end":
        return der(0x30, der(0x06, pkcs7.OID_SIGNED_DATA))
    ((_ci, (oid_node, (_a0, [(_sd, fields)]))),) = tree(raw)  # type: ignore[misc]
    assert isinstance(fields, list)
    set_tag, infos = fields[-1]
    assert set_tag == 0x31 and isinstance(infos, list) and len(infos) == 1
    _si_tag, si = infos[0]
    assert isinstance(si, list)
    if form == "seq_signer_infos":
        fields[-1] = (0x30, infos)
    elif form == "two_signers":
        fields[-1] = (0x31, [infos[0], infos[0]])
    elif form == "big_unauth":
        si.append((0xA1, [(0x30, [(0x06, pkcs7.oid("1.2.3.4")),
                                  (0x31, [(0x04, b"x" * 70000)])])]))
    elif form == "padded_serial":
        sid_tag, (issuer, (int_tag, serial)) = si[1]  # type: ignore[misc]
        assert isinstance(serial, bytes) and serial[0] < 0x80
        si[1] = (sid_tag, [issuer, (int_tag, b"\0" + serial)])
    else:
        raise AssertionError(form)
    return emit([(0x30, [oid_node, (0xA0, [(0x30, fields)])])])


def signer(sid: bytes, signature: bytes = b"\x55" * 64, version: int = 1,
           unauth: bytes = b"", digest: bytes = SHA256) -> bytes:
    return der(0x30, der(0x02, bytes((version,))), sid, pkcs7.algorithm_identifier(digest),
               pkcs7.algorithm_identifier(RSA, der(0x05)), der(0x04, signature), unauth)


def message(signers: list[bytes], version: int = 1, signer_set: int = 0x31,
            content: bytes = b"") -> bytes:
    sd = der(0x30, der(0x02, bytes((version,))),
             der(0x31, pkcs7.algorithm_identifier(SHA256)),
             der(0x30, der(0x06, pkcs7.OID_DATA), content), der(signer_set, *signers))
    return der(0x30, der(0x06, pkcs7.OID_SIGNED_DATA), der(0xA0, sd))


def name(*attrs: tuple[str, bytes, int]) -> bytes:
    return der(0x30, *(der(0x31, der(0x30, der(0x06, pkcs7.oid(o)), der(t, v)))
                       for o, v, t in attrs))


ISSUER = name(("2.5.4.10", b"Org", 0x0C), ("2.5.4.3", b"Signer CN", 0x0C))
BY_SERIAL = der(0x30, ISSUER, der(0x02, b"\x12\x34"))
BY_SKID = der(0x80, b"\xaa" * 20)
PLAIN = message([signer(BY_SERIAL)])


def fields(sd: pkcs7.SignedData) -> tuple[Any, ...]:
    """The values read (the issuer by its name: a BER issuer's bytes differ)."""
    si = sd.signer_infos[0]
    return (sd.version, sd.data_type, sd.data_attached, len(sd.signer_infos), si.version,
            si.issuer and pkcs7.common_name(si.issuer), si.serial, si.skid, si.digest_algo,
            si.authattrs, si.pkey_algo, si.signature)


def test_plain_message_both_dialects() -> None:
    a, b = parse_signed_data(PLAIN, KERNEL), parse_signed_data(PLAIN, OPENSSL)
    assert fields(a) == fields(b)
    si = a.signer_infos[0]
    assert si.issuer == ISSUER[2:] and si.serial == b"\x12\x34"
    assert si.signature == b"\x55" * 64 and si.pkey_algo == RSA
    assert pkcs7.common_name(si.issuer) == "Signer CN"


@pytest.mark.parametrize("style", ["long3", "indefinite"])
def test_ber_forms(style: str) -> None:
    """Three-octet lengths: only OpenSSL (the kernel reads at most two); indefinite
    lengths of constructed elements: both, but for an AlgorithmIdentifier without
    parameters in the kernel (see test_indefinite_algorithm)."""
    ber = emit(tree(PLAIN), style, skip=0x05)  # the NULL: test_length_octets_end_container
    assert ber != PLAIN
    assert fields(parse_signed_data(ber, OPENSSL)) == fields(parse_signed_data(PLAIN, OPENSSL))
    with pytest.raises(Asn1Error, match="Unsupported length" if style == "long3"
                       else "Missing EOC") as e:
        parse_signed_data(ber, KERNEL)
    assert e.value.errno == errno.EBADMSG
    sets = emit(tree(PLAIN), style, only=0x31)
    assert sets != PLAIN
    if style == "indefinite":
        assert fields(parse_signed_data(sets, KERNEL)) == fields(parse_signed_data(PLAIN,
                                                                                   KERNEL))


def test_indefinite_algorithm() -> None:
    """asn1_ber_decoder takes the end-of-contents octets of an indefinite-length
    AlgorithmIdentifier for its ANY OPTIONAL parameters, then misses them; with
    parameters (rsaEncryption's NULL) it reads it."""
    def signer_with(digest: bytes, pkey: bytes) -> bytes:
        return der(0x30, der(0x02, b"\x01"), BY_SERIAL, digest, pkey, der(0x04, b"\x55" * 64))

    digest, rsa = pkcs7.algorithm_identifier(SHA256), pkcs7.algorithm_identifier(RSA, der(5))
    raw = message([signer_with(b"\x30\x80" + digest[2:] + b"\0\0", rsa)])
    with pytest.raises(Asn1Error, match="Missing EOC"):
        parse_signed_data(raw, KERNEL)
    assert parse_signed_data(raw, OPENSSL).signer_infos
    raw = message([signer_with(digest, b"\x30\x80" + rsa[2:] + b"\0\0")])
    assert parse_signed_data(raw, KERNEL).signer_infos[0].pkey_algo == RSA


def test_length_octets_end_container() -> None:
    """OpenSSL refuses long-form length octets with nothing after them in their
    container (asn1_get_length's ``max < i + 1``), so ``05 82 00 00`` as an
    AlgorithmIdentifier's last element is an error there; the kernel reads it."""
    raw = emit(tree(PLAIN), "long2", only=0x05)
    assert b"\x05\x82\x00\x00" in raw
    with pytest.raises(Asn1Error, match="Data overrun"):
        parse_signed_data(raw, OPENSSL)
    assert fields(parse_signed_data(raw, KERNEL)) == fields(parse_signed_data(PLAIN, KERNEL))
    assert pkcs7.read_tlv(b"\x05\x81\x00\x01", 0, 4, OPENSSL) == (5, 3, 3, 3)


@pytest.mark.parametrize("raw, why", [
    (b"\x1f\x81\x00\x00", "Long tag not supported"),
    (b"\x04\x80abc\x00\x00", "Indefinite len primitive not permitted"),
    (b"\x30\x80\x04\x01a", "Missing EOC"),
    (b"\x30\x80\x00\x01", "Invalid length EOC"),
    (b"\x04\x05abc", "Data overrun error"),
    (b"\x04", "Data overrun error"),
])
def test_read_tlv_errors(raw: bytes, why: str) -> None:
    for dialect in (KERNEL, OPENSSL):
        with pytest.raises(Asn1Error, match=why):
            pkcs7.read_tlv(raw, 0, len(raw), dialect)


def test_message_size() -> None:
    """asn1_ber_decoder refuses more than 65535 bytes (EMSGSIZE); OpenSSL does not."""
    big_attr = der(0xA1, der(0x30, der(0x06, pkcs7.oid("1.2.3.4")),
                             der(0x31, der(0x04, b"x" * 70000))))
    big = message([signer(BY_SERIAL, unauth=big_attr)])
    assert len(big) > 65535
    assert parse_signed_data(big, OPENSSL).signer_infos[0].signature == b"\x55" * 64
    with pytest.raises(Pkcs7Error) as e:
        parse_signed_data(big, KERNEL)
    assert e.value.errno == errno.EMSGSIZE


def test_cms_forms_are_the_kernels_only() -> None:
    """pkcs7.asn1's CMS alternatives; OpenSSL's PKCS7 templates have none of them."""
    cases = {
        "skid": message([signer(BY_SKID, version=3)], version=3),
        "signerInfos as SEQUENCE OF": message([signer(BY_SERIAL)], signer_set=0x30),
        "unauthenticatedAttributes [3]": message([signer(BY_SERIAL, unauth=der(0xA3))]),
    }
    for what, raw in cases.items():
        assert len(parse_signed_data(raw, KERNEL).signer_infos) == 1, what
        with pytest.raises(Asn1Error):
            parse_signed_data(raw, OPENSSL)
    si = parse_signed_data(cases["skid"], KERNEL).signer_infos[0]
    assert (si.skid, si.issuer, si.serial) == (b"\xaa" * 20, None, None)


def test_several_signer_infos() -> None:
    """Every SignerInfo is read (signing.py's walker gave up on a second one)."""
    two = message([signer(BY_SKID, b"\x01" * 8, 3), signer(BY_SERIAL, b"\x02" * 8, 3)], 3)
    infos = parse_signed_data(two, KERNEL).signer_infos
    assert [si.signature for si in infos] == [b"\x01" * 8, b"\x02" * 8]
    broken = message([signer(BY_SERIAL), b"\x30\x03\x02\x01\x01"])
    for dialect in (KERNEL, OPENSSL):
        with pytest.raises(Asn1Error):
            parse_signed_data(broken, dialect)


def test_integers_and_oids() -> None:
    """OpenSSL 3 refuses padded or empty INTEGERs and malformed OIDs; the kernel takes the
    octets as they are.  A negative serial's magnitude is what kmod prints."""
    padded = message([signer(der(0x30, ISSUER, der(0x02, b"\x00\x12\x34")))])
    assert parse_signed_data(padded, KERNEL).signer_infos[0].serial == b"\x00\x12\x34"
    with pytest.raises(Asn1Error, match="padded"):
        parse_signed_data(padded, OPENSSL)
    negative = message([signer(der(0x30, ISSUER, der(0x02, b"\xfe\xdc")))])
    si = parse_signed_data(negative, OPENSSL).signer_infos[0]
    assert si.serial_magnitude == (0x10000 - 0xFEDC).to_bytes(2, "big").lstrip(b"\0")
    high = message([signer(der(0x30, ISSUER, der(0x02, b"\x00\x80\x11")))])
    assert parse_signed_data(high, OPENSSL).signer_infos[0].serial_magnitude == b"\x80\x11"
    bad_oid = message([signer(BY_SERIAL, digest=b"\x60\x86\x48\x80")])
    assert parse_signed_data(bad_oid, KERNEL).signer_infos[0].digest_algo == b"\x60\x86\x48\x80"
    with pytest.raises(Asn1Error, match="OBJECT IDENTIFIER"):
        parse_signed_data(bad_oid, OPENSSL)


def test_trailing_bytes() -> None:
    """After the ContentInfo: ignored by both (asn1_ber_decoder stops at its end).  Inside
    a constructed element: "Cons length error"."""
    assert fields(parse_signed_data(PLAIN + b"junk", KERNEL)) == fields(
        parse_signed_data(PLAIN, KERNEL))
    assert parse_signed_data(PLAIN + b"junk", OPENSSL).signer_infos
    inside = message([signer(BY_SERIAL, unauth=der(0xA1) + der(0x05))])
    for dialect in (KERNEL, OPENSSL):
        with pytest.raises(Asn1Error, match="Cons length error"):
            parse_signed_data(inside, dialect)


def test_early_end() -> None:
    """The kernel's decoder skips every match at the end of a container: a ContentInfo
    without content, or a SignedData that stops, parse with no SignerInfo."""
    cases = [der(0x30, der(0x06, pkcs7.OID_SIGNED_DATA)),
             der(0x30, der(0x06, pkcs7.OID_SIGNED_DATA), der(0xA0, der(0x30))),
             der(0x30, der(0x06, pkcs7.OID_SIGNED_DATA),
                 der(0xA0, der(0x30, der(0x02, b"\x01"))))]
    for raw in cases:
        assert parse_signed_data(raw, KERNEL).signer_infos == ()
        with pytest.raises(Asn1Error):
            parse_signed_data(raw, OPENSSL)
    other = der(0x30, der(0x06, pkcs7.OID_DATA), der(0xA0, der(0x04, b"x")))
    with pytest.raises(Pkcs7Error, match="Only support pkcs7_signedData") as e:
        parse_signed_data(other, KERNEL)
    assert e.value.errno == errno.EINVAL


def test_attached_content() -> None:
    attached = message([signer(BY_SERIAL)], content=der(0xA0, der(0x04, b"the data")))
    assert parse_signed_data(attached, KERNEL).data_attached
    empty = message([signer(BY_SERIAL)], content=der(0xA0))
    assert not parse_signed_data(empty, KERNEL).data_attached


def test_actions_run_in_document_order() -> None:
    seen: list[str] = []

    class Record(pkcs7.Actions):
        def signeddata_version(self, version: bytes) -> None:
            seen.append("version")

        def data_type(self, oid: bytes) -> None:
            seen.append("data")

        def signerinfo_version(self, version: bytes) -> None:
            seen.append("si")

        def digest_algo(self, oid: bytes) -> None:
            seen.append("digest")
            raise Pkcs7Error("no", errno.ENOPKG)

    # a grammar error after the first SignerInfo: the digest's refusal comes first
    with pytest.raises(Pkcs7Error) as e:
        parse_signed_data(message([signer(BY_SERIAL) + b"\x05\x00"]), KERNEL, Record())
    assert seen == ["version", "data", "si", "digest"]
    assert e.value.errno == errno.ENOPKG


def test_remembered_messages() -> None:
    """Messages that differ only inside the signature share one parse; any other
    difference is read afresh."""
    a = message([signer(BY_SERIAL, b"\x01" * 64)])
    b = message([signer(BY_SERIAL, b"\x02" * 64)])
    assert parse_signed_data(a, KERNEL).signer_infos[0].signature == b"\x01" * 64
    assert parse_signed_data(b, KERNEL).signer_infos[0].signature == b"\x02" * 64
    other_digest = message([signer(BY_SERIAL, b"\x01" * 64,
                                   digest=pkcs7.oid("2.16.840.1.101.3.4.2.3"))])
    assert len(other_digest) == len(a)
    assert parse_signed_data(other_digest, KERNEL).signer_infos[0].digest_algo != SHA256
    broken = bytearray(a)
    broken[a.index(b"\x04\x40")] = 0x03  # encryptedDigest as a BIT STRING
    with pytest.raises(Asn1Error):
        parse_signed_data(bytes(broken), KERNEL)


def test_common_name() -> None:
    """kmod's x509_name_to_str: the first commonName, else the last attribute."""
    def cn(n: bytes) -> str | None:
        return pkcs7.common_name(n[2:])

    assert cn(name(("2.5.4.3", b"first", 0x13), ("2.5.4.3", b"second", 0x0C))) == "first"
    assert cn(name(("2.5.4.6", b"DE", 0x13), ("2.5.4.11", b"Unit", 0x0C))) == "Unit"
    assert cn(name(("2.5.4.3", b"nul\0cut", 0x0C))) == "nul"
    assert cn(der(0x30)) is None


def test_oids() -> None:
    assert pkcs7.oid("1.2.840.113549.1.7.2") == bytes.fromhex("2a864886f70d010702")
    for dotted in ("1.2.840.113549.1.7.2", "2.5.4.3", "2.16.840.1.101.3.4.2.10", "2.999.1"):
        assert pkcs7.oid_dotted(pkcs7.oid(dotted)) == dotted
    assert {pkcs7.DIGEST_OIDS[pkcs7.oid(o)] for o in ("2.16.840.1.101.3.4.2.1",
                                                      "1.3.14.3.2.26")} == {"sha256", "sha1"}


# --- the writer ---------------------------------------------------------------------------


@pytest.mark.parametrize("n", [0, 127, 128, 255, 256, 65535, 65536])
def test_der_lengths(n: int) -> None:
    raw = der(0x04, b"x" * n)
    assert pkcs7.read_tlv(raw, 0, len(raw), OPENSSL)[1:] == (len(raw) - n, len(raw),
                                                              len(raw))
    assert len(raw) - n == (2 if n < 128 else 3 if n < 256 else 4 if n < 65536 else 5)


@pytest.fixture(scope="module")
def cert() -> bytes:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "subject")])
    issuer = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "The Org"),
                        x509.NameAttribute(NameOID.COMMON_NAME, "The Issuer")])
    now = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
    c = (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
         .public_key(key.public_key()).serial_number(0x8000000000000001)
         .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                        critical=False)
         .sign(key, hashes.SHA256()))
    return c.public_bytes(serialization.Encoding.DER)


def test_certificate_ids(cert: bytes) -> None:
    from asn1crypto import x509 as ax509
    from cryptography import x509

    ids = pkcs7.certificate_ids(cert)
    c = x509.load_der_x509_certificate(cert)
    ref = ax509.Certificate.load(cert)["tbs_certificate"]
    assert ids.issuer == ref["issuer"].dump() and ids.serial == ref["serial_number"].dump()
    assert ids.skid == c.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier).value.digest
    assert ids.issuer_serial_id == b"\x00\x80" + b"\0" * 6 + b"\x01" + ids.issuer[2:]
    with pytest.raises(Pkcs7Error):
        pkcs7.certificate_ids(cert[:40])


@pytest.mark.parametrize("use_skid", [False, True])
def test_signed_data_roundtrip(cert: bytes, use_skid: bool) -> None:
    """What the writer makes, asn1crypto reads the same way, and both dialects accept
    (the kernel's for the SKID form only)."""
    from asn1crypto import cms

    ids = pkcs7.certificate_ids(cert)
    raw = pkcs7.signed_data(SHA256, pkcs7.algorithm_identifier(RSA, der(0x05)), b"S" * 300,
                            ids, use_skid)
    native = cms.ContentInfo.load(raw).native
    assert native["content_type"] == "signed_data"
    sdn = native["content"]
    assert sdn["version"] == ("v3" if use_skid else "v1")
    assert sdn["encap_content_info"] == {"content_type": "data", "content": None}
    sin = sdn["signer_infos"][0]
    assert sin["signature"] == b"S" * 300
    assert sin["digest_algorithm"] == {"algorithm": "sha256", "parameters": None}
    si = parse_signed_data(raw, KERNEL).signer_infos[0]
    if use_skid:
        assert si.skid == ids.skid and si.version == b"\x03"
        with pytest.raises(Asn1Error):
            parse_signed_data(raw, OPENSSL)
    else:
        assert si.serial + si.issuer == ids.issuer_serial_id  # type: ignore[operator]
        assert fields(parse_signed_data(raw, OPENSSL)) == fields(parse_signed_data(raw, KERNEL))


@pytest.mark.parametrize("form", FORMS)
def test_forms_kernel_dialect(form: str) -> None:
    """What the kernel's parser makes of each form (the QEMU test in test_signing.py
    checks these against the real kernel)."""
    from lkm.signing.verify import parse_kernel_pkcs7

    raw = variant(PLAIN, form)
    want = KERNEL_ERRNO[form]
    if want == errno.ENOKEY:
        assert parse_kernel_pkcs7(raw).signer_infos
    else:
        with pytest.raises(Pkcs7Error) as e:
            parse_kernel_pkcs7(raw)
        assert e.value.errno == want
