"""``lkm extract-certs``: the X.509 certificates built into a kernel image.

    lkm extract-certs VMLINUZ|TREE [-o DIR] [--der] [--info]

Without -o the certificates are printed as PEM.  With -o each is written to
DIR/builtin-N.pem (or .der).  --info prints the image's compression, release,
vermagic and a line per certificate instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(prog: str, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog=prog, description="Extract the built-in certificates "
                                "of a kernel image.")
    p.add_argument("image", metavar="VMLINUZ|TREE")
    p.add_argument("-o", "--output", metavar="DIR", help="write one file per certificate")
    p.add_argument("--der", action="store_true", help="write DER instead of PEM")
    p.add_argument("--info", action="store_true",
                   help="describe the image and its certificates")
    args = p.parse_args(argv)

    from lkm.errors import LkmError
    from lkm.kimage import KernelImage, locate_vmlinuz

    try:
        img = KernelImage.load(locate_vmlinuz(args.image))
        certs = img.certificates
    except OSError as e:
        sys.stderr.write(f"{prog}: ERROR: {e.filename or args.image}: {e.strerror}\n")
        return 1
    except LkmError as e:
        sys.stderr.write(f"{prog}: ERROR: {args.image}: {e}\n")
        return 1

    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    if args.info:
        out = [f"compression: {img.compression or 'none'}",
               f"release: {img.release or ''}",
               f"vermagic: {img.vermagic or ''}"]
        for der in certs:
            c = x509.load_der_x509_certificate(der)
            key = c.public_key()
            size = getattr(key, "key_size", None)
            kind = type(key).__name__.replace("PublicKey", "").lstrip("_")
            out.append(f"certificate: {c.subject.rfc4514_string()}; serial "
                       f"{c.serial_number:x}; {kind}{size or ''}")
        sys.stdout.write("\n".join(out) + "\n")
        return 0 if certs else 1
    if not certs:
        sys.stderr.write(f"{prog}: ERROR: {args.image}: no built-in certificate found\n")
        return 1
    if args.output is None:
        for der in certs:
            pem = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
            sys.stdout.write(pem.decode("ascii"))
        return 0
    from lkm.fsutil import write_atomic

    outdir = Path(args.output)
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        for i, der in enumerate(certs):
            data = der if args.der else x509.load_der_x509_certificate(der).public_bytes(
                Encoding.PEM)
            dest = outdir / f"builtin-{i}.{'der' if args.der else 'pem'}"
            write_atomic(dest, data)
            sys.stdout.write(f"{dest}\n")
    except OSError as e:
        sys.stderr.write(f"{prog}: ERROR: {e.filename or args.output}: {e.strerror}\n")
        return 1
    return 0
