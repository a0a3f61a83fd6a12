"""``lkm verify``: check module signatures the way the kernel does.

    lkm verify PATH... [--cert FILE|DIR]... [--kernel VMLINUZ|TREE] [--json] [-j N] [-v]

Each module (directories are searched for *.ko, *.ko.gz, *.ko.xz, *.ko.zst) is
reported as valid, unsigned, unknown key (ENOKEY), rejected (EKEYREJECTED: modified
content or bad signature), malformed (EBADMSG), unsupported (ENOPKG), or error
(unreadable).  Only modules that are not valid are listed unless -v is given.
Exit status: 0 when every module is valid, 1 otherwise, 2 on usage errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ORDER = ("valid", "unsigned", "unknown key", "rejected", "malformed", "unsupported", "error")


def _parser(prog: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description="Verify module signatures as the "
                                "kernel does.")
    p.add_argument("paths", nargs="*", metavar="PATH", help="module files or directories")
    p.add_argument("--cert", action="append", default=[], metavar="FILE|DIR",
                   help="trusted X.509 certificate(s), PEM or DER (repeatable)")
    p.add_argument("--kernel", action="append", default=[], metavar="VMLINUZ|TREE",
                   help="trust the certificates built into this kernel image (repeatable)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("-j", "--jobs", type=int, default=None, help="worker processes")
    p.add_argument("-v", "--verbose", action="store_true", help="list valid modules too")
    return p


def main(prog: str, argv: list[str]) -> int:
    args = _parser(prog).parse_args(argv)
    from lkm.errors import LkmError
    from lkm.signing import Keyring, module_files, verify_files

    def error(msg: str) -> int:
        sys.stderr.write(f"{prog}: ERROR: {msg}\n")
        return 2

    kernels = list(args.kernel)
    paths = list(args.paths)
    if not paths:
        # `lkm verify --kernel TREE`: the tree's own modules
        trees = [k for k in kernels if Path(k, "lib", "modules").is_dir()]
        if not trees:
            return error("no module given")
        paths = [str(Path(t, "lib", "modules")) for t in trees]
    if not args.cert and not kernels:
        running = Path("/boot") / f"vmlinuz-{os.uname().release}"
        if not running.is_file():
            return error("no trusted certificates: give --cert or --kernel")
        kernels = [str(running)]
    try:
        ring = Keyring.from_paths(args.cert)
        for k in kernels:
            for der in Keyring.from_kernel(k).ders:
                ring.add(der)
    except OSError as e:
        return error(f"{e.filename}: {e.strerror}")
    except LkmError as e:
        return error(str(e))
    if len(ring) == 0:
        return error("no usable certificate found")
    for p in paths:
        if not os.path.exists(p):
            return error(f"{p}: No such file or directory")
    files = module_files(paths)
    counts = dict.fromkeys(ORDER, 0)
    out = sys.stdout
    progress = _Progress(len(files)) if sys.stderr.isatty() and len(files) >= 50 else None
    records = []
    try:
        for i, (path, v) in enumerate(verify_files(files, ring, args.jobs)):
            counts[v.status.value] += 1
            if args.json:
                records.append({"path": str(path), **v.as_dict()})
            elif args.verbose or not v.ok:
                if progress:
                    progress.clear()
                out.write(f"{path}: {_describe(v)}\n")
            if progress:
                progress.update(i + 1)
    except KeyboardInterrupt:
        if progress:
            progress.clear()
        return 130
    if progress:
        progress.clear()
    summary = ", ".join(f"{n} {k}" for k, n in counts.items() if n) or "0 valid"
    line = f"{len(files)} module{'s' if len(files) != 1 else ''}: {summary}"
    if args.json:
        json.dump({"modules": records, "summary": {k: n for k, n in counts.items()},
                   "total": len(files)}, out, indent=1)
        out.write("\n")
    else:
        out.write(line + "\n")
    return 0 if counts["valid"] == len(files) and files else 1


def _describe(v: object) -> str:
    from lkm.signing import Verdict

    assert isinstance(v, Verdict)
    parts = []
    if v.hash_algo:
        parts.append(v.hash_algo)
    if v.signer:
        parts.append(f"signer '{v.signer}'")
    if v.key_id:
        parts.append(f"key {v.key_id.hex(':').upper()}")
    if v.ok:
        return f"valid ({', '.join(parts)})" if parts else "valid"
    head = f"{v.status.value} ({v.errno_name}: {v.reason})" if v.errno_name else (
        f"{v.status.value} ({v.reason})")
    return head + (f" [{', '.join(parts)}]" if parts else "")


class _Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.shown = -1

    def update(self, done: int) -> None:
        pct = done * 100 // self.total
        if pct == self.shown:
            return
        self.shown = pct
        width = 40
        fill = done * width // self.total
        sys.stderr.write(f"\r[{'#' * fill}{'.' * (width - fill)}] {done}/{self.total}")
        sys.stderr.flush()

    def clear(self) -> None:
        if self.shown >= 0:
            sys.stderr.write("\r" + " " * 60 + "\r")
            sys.stderr.flush()
            self.shown = -1
