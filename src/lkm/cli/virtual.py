"""``lkm virtual``: create and inspect virtual kernels.

  lkm virtual create DIR --from TREE|VMLINUZ|HEADERS [--cmdline "..."] [--init MOD=RET]...
  lkm virtual show [DIR]
"""

from __future__ import annotations

import argparse
import os
import sys

from lkm.cli._common import parse_init_results

USAGE = """\
usage: {p} create DIR --from TREE|VMLINUZ|HEADERS [--cmdline CMDLINE] [--init MODULE=RET]...
                     [--no-depmod]
       {p} show [DIR]

create   make DIR a fresh virtual kernel of the given kernel ("booted" with CMDLINE,
         e.g. "module.sig_enforce=1 module_blacklist=a,b lockdown=integrity").
         --init MODULE=RET: what MODULE's init function returns (the virtual kernel
         does not run module code; default 0).
show     release, taint and loaded modules of DIR (default: --virtual/LKM_VIRTUAL).
"""


def _err(prog: str, msg: str) -> int:
    sys.stderr.write(f"{prog}: ERROR: {msg}\n")
    return 1


def main(prog: str, argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        sys.stdout.write(USAGE.format(p=f"lkm {prog}"))
        return 0 if argv else 1
    cmd, rest = argv[0], argv[1:]
    if cmd == "create":
        return _create(prog, rest)
    if cmd == "show":
        return _show(prog, rest)
    return _err(prog, f"unknown command '{cmd}'. See --help.")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: ERROR: {message}\n")
        raise SystemExit(1)


def _create(prog: str, argv: list[str]) -> int:
    ap = _Parser(prog=f"lkm {prog} create", add_help=True)
    ap.add_argument("dir")
    ap.add_argument("--from", dest="source", required=True)
    ap.add_argument("--cmdline", default="")
    ap.add_argument("--init", action="append", default=[], metavar="MODULE=RET")
    ap.add_argument("--no-depmod", action="store_true")
    a = ap.parse_args(argv)
    try:
        init_results = parse_init_results(a.init)
    except ValueError as e:
        return _err(prog, str(e))
    from lkm.errors import LkmError
    from lkm.kernel.virtual import VirtualKernel

    try:
        vk = VirtualKernel.create(a.dir, a.source, a.cmdline, init_results=init_results,
                                  depmod=not a.no_depmod)
    except LkmError as e:
        return _err(prog, str(e))
    p = vk.profile
    sys.stdout.write(f"{a.dir}: virtual kernel {p.release} ({p.kind} {p.source})\n")
    return 0


def _show(prog: str, argv: list[str]) -> int:
    d = argv[0] if argv else os.environ.get("LKM_VIRTUAL")
    if not d:
        return _err(prog, "no directory given (and no --virtual)")
    from lkm.errors import LkmError
    from lkm.kernel import taint as T
    from lkm.kernel.module.procfs import proc_modules_line
    from lkm.kernel.virtual import VirtualKernel

    try:
        vk = VirtualKernel.open(d)
        k = vk.state()
    except LkmError as e:
        return _err(prog, str(e))
    p = vk.profile
    out = [f"release:     {p.release} (version {'.'.join(map(str, p.version))})",
           f"built from:  {p.kind} {p.source}",
           f"vermagic:    {p.vermagic}",
           f"module dir:  {vk.module_dir() or '-'}",
           f"cmdline:     {k.cmdline}",
           f"sig_enforce: {'Y' if k.sig_enforce else 'N'}",
           f"tainted:     {k.tainted} ({T.print_tainted(k.tainted)})",
           f"modules:     {len(k.modules)}"]
    sys.stdout.write("\n".join(out) + "\n")
    for m in k.modules:
        sys.stdout.write("  " + proc_modules_line(m))
    return 0
