"""``lkm check``: would these modules load into that kernel, and why not.

  lkm check MODULE... --kernel TREE|VMLINUZ|HEADERS [--param NAME=VALUE]...
            [--cmdline CMDLINE] [--init MODULE=RET]... [--force-vermagic]
            [--force-modversion] [--json] [--boot]

MODULE is a module file or the name of a module of the kernel's tree.  Exit status
0 when every module (and dependency) would load, 1 when one would fail, 2 on a
usage or input error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from lkm.cli._common import parse_init_results


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: ERROR: {message}\n")
        raise SystemExit(2)


def main(prog: str, argv: list[str]) -> int:
    ap = _Parser(prog=f"lkm {prog}", description="Would these modules load, and why not.")
    ap.add_argument("modules", nargs="+", metavar="MODULE")
    ap.add_argument("--kernel", "-k", required=True,
                    help="a Debian linux-image tree, a vmlinuz, a linux-headers tree, "
                         "a saved profile (.json) or 'running'")
    ap.add_argument("--param", "-p", action="append", default=[], metavar="NAME=VALUE",
                    help="module parameter (MODULE.NAME=VALUE for one module)")
    ap.add_argument("--cmdline", default="", help="the kernel command line")
    ap.add_argument("--init", action="append", default=[], metavar="MODULE=RET",
                    help="what MODULE's init returns (module code is not run; default 0)")
    ap.add_argument("--force-vermagic", action="store_true",
                    help="load as with MODULE_INIT_IGNORE_VERMAGIC (modprobe --force)")
    ap.add_argument("--force-modversion", action="store_true",
                    help="load as with MODULE_INIT_IGNORE_MODVERSIONS")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    ap.add_argument("--boot", action="store_true",
                    help="also load them into the real kernel (lkm vm) and compare")
    a = ap.parse_args(argv)

    from lkm.errors import LkmError
    from lkm.kernel.check import Checker, module_dir_for
    from lkm.kernel.profile import load_cached
    from lkm.kernel.uapi import MODULE_INIT_IGNORE_MODVERSIONS, MODULE_INIT_IGNORE_VERMAGIC

    try:
        init_results = parse_init_results(a.init)
    except ValueError as e:
        sys.stderr.write(f"lkm {prog}: ERROR: {e}\n")
        return 2
    for p in a.param:
        if "=" not in p and not p.strip():
            sys.stderr.write(f"lkm {prog}: ERROR: bad --param '{p}'\n")
            return 2
    try:
        profile = load_cached(a.kernel)
    except LkmError as e:
        sys.stderr.write(f"lkm {prog}: ERROR: {e}\n")
        return 2
    flags = (MODULE_INIT_IGNORE_VERMAGIC if a.force_vermagic else 0) | \
        (MODULE_INIT_IGNORE_MODVERSIONS if a.force_modversion else 0)
    def moddir() -> str | None:
        try:
            return module_dir_for(profile)
        except LkmError as e:
            sys.stderr.write(f"lkm {prog}: WARNING: {e}\n")
            return None

    checker = Checker(profile, a.cmdline, a.param, moddir, init_results, flags)
    try:
        results = checker.run(a.modules)
    except LkmError as e:
        sys.stderr.write(f"lkm {prog}: ERROR: {e}\n")
        return 2
    if a.boot:
        from lkm.cli.checkboot import report

        return report(prog, a.kernel, results, checker.args_for, flags, a.cmdline, a.json)
    if a.json:
        sys.stdout.write(json.dumps([r.to_json() for r in results], indent=2) + "\n")
    else:
        out = []
        for r in results:
            dep = f" (dependency of {r.dependency_of})" if r.dependency_of else ""
            if r.loaded:
                t = f", taints {r.taint}" if r.taint else ""
                out.append(f"{r.module}{dep}: loads{t}\n")
            else:
                import errno as _e

                code = r.errno or 0
                out.append(f"{r.module}{dep}: fails: {_e.errorcode.get(code, str(code))} "
                           f"({os.strerror(code)})\n")
            out.extend(f"    {line}\n" for line in r.messages)
        if not profile.certificates and profile.enabled("MODULE_SIG"):
            out.append("note: this kernel's built-in certificates are not known (a headers "
                       "tree): signed modules count as signed with an unknown key\n")
        if results:
            from lkm.kernel.taint import print_tainted

            out.append(f"kernel: {print_tainted(results[-1].tainted)} "
                       f"({results[-1].tainted})\n")
        sys.stdout.write("".join(out))
    return 0 if all(r.loaded for r in results) else 1
