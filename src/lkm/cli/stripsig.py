"""``lkm strip-sig``: remove the appended signature of modules.

    lkm strip-sig MODULE... [-o DEST]

Each module is rewritten in place (atomically), in its own compression; -o writes
the single module given to DEST instead.  An unsigned module is left as it is.
"""

from __future__ import annotations

import argparse
import shutil
import sys


def main(prog: str, argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog=prog, description="Remove module signatures.")
    p.add_argument("modules", nargs="+", metavar="MODULE")
    p.add_argument("-o", "--output", metavar="DEST", help="write the result here (one module)")
    args = p.parse_args(argv)
    if args.output and len(args.modules) != 1:
        sys.stderr.write(f"{prog}: ERROR: -o needs exactly one module\n")
        return 2

    from lkm.errors import LkmError
    from lkm.signing import read_module_bytes, strip_signature, write_module_bytes

    rc = 0
    for m in args.modules:
        try:
            content, kind = read_module_bytes(m)
            body = strip_signature(content)
            if body is None:
                sys.stderr.write(f"{prog}: {m}: not signed\n")
                if args.output:
                    shutil.copyfile(m, args.output)
                continue
            write_module_bytes(args.output or m, body, kind)
        except OSError as e:
            sys.stderr.write(f"{prog}: ERROR: {e.filename or m}: {e.strerror}\n")
            rc = 1
        except LkmError as e:
            sys.stderr.write(f"{prog}: ERROR: {m}: {e}\n")
            rc = 1
    return rc
