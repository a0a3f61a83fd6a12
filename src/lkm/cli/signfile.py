"""``lkm sign-file``: the kernel's scripts/sign-file.

    sign-file [-dpk] <hash algo> <key> <x509> <module> [<dest>]
    sign-file -s <raw sig> <hash algo> <x509> <module> [<dest>]

-d writes only ``<module>.p7s``; -p also keeps it; -k names the signer by
subjectKeyIdentifier; -s appends an existing detached signature.  Compressed
modules (.ko.gz/.xz/.zst) are signed decompressed and written back compressed.
"""

from __future__ import annotations

import sys

USAGE = ("Usage: scripts/sign-file [-dp] <hash algo> <key> <x509> <module> [<dest>]\n"
         "       scripts/sign-file -s <raw sig> <hash algo> <x509> <module> [<dest>]\n")


def _getopt(argv: list[str]) -> tuple[set[str], list[str]] | None:
    """glibc getopt(argv, "sdpk") with argument permutation; None on a bad option."""
    flags: set[str] = set()
    rest: list[str] = []
    for i, a in enumerate(argv):
        if a == "--":
            rest.extend(argv[i + 1:])
            break
        if a.startswith("-") and a != "-":
            for c in a[1:]:
                if c not in "sdpk":
                    sys.stderr.write(f"sign-file: invalid option -- '{c}'\n")
                    return None
                flags.add(c)
        else:
            rest.append(a)
    return flags, rest


def main(prog: str, argv: list[str]) -> int:
    parsed = _getopt(argv)
    if parsed is None or not 4 <= len(parsed[1]) <= 5:
        sys.stderr.write(USAGE)
        return 2
    flags, args = parsed
    raw_sig = "s" in flags
    sign_only = "d" in flags
    save_sig = sign_only or "p" in flags
    use_skid = "k" in flags
    hash_name, key_name, x509_name, module_name = args[:4]
    if raw_sig:  # -s <raw sig> <hash algo> ...
        key_name, hash_name = args[0], args[1]
    dest_name = args[4] if len(args) == 5 else module_name

    from lkm.errors import LkmError
    from lkm.fsutil import write_atomic
    from lkm.signing import (
        append_signature,
        build_pkcs7,
        load_certificate,
        load_private_key,
        read_module_bytes,
        write_module_bytes,
    )

    def fail(name: str, e: Exception) -> int:
        why = (e.strerror or str(e)) if isinstance(e, OSError) else str(e)
        sys.stderr.write(f"{prog}: {name}: {why}\n")
        return 1

    try:
        content, kind = read_module_bytes(module_name)
    except (OSError, LkmError) as e:
        return fail(module_name, e)
    if raw_sig:
        try:
            with open(key_name, "rb") as f:
                pkcs7 = f.read()
        except OSError as e:
            return fail(key_name, e)
    else:
        try:
            key = load_private_key(key_name)
        except (OSError, LkmError) as e:
            return fail(key_name, e)
        try:
            cert = load_certificate(x509_name)
        except (OSError, LkmError) as e:
            return fail(x509_name, e)
        try:
            pkcs7 = build_pkcs7(content, key, cert, hash_name, use_skid)
        except LkmError as e:
            return fail("PKCS7 signing", e)
        if save_sig:
            try:
                write_atomic(module_name + ".p7s", pkcs7)
            except OSError as e:
                return fail(module_name + ".p7s", e)
        if sign_only:
            return 0
    try:
        write_module_bytes(dest_name, append_signature(content, pkcs7), kind)
    except (OSError, LkmError) as e:
        return fail(dest_name, e)
    return 0

