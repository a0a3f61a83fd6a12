"""``lkm audit``: what loading modules would do to a kernel, and what their code does.

  lkm audit MODULE.ko|DIR... [--kernel TREE] [--json] [--all] [--jobs N] [--no-load]
  lkm [--virtual DIR] audit --live [--kernel TREE] [--json]

Per module: the taints loading it would set and why, whether it would load (lkm check),
its signature against the kernel's keys, and indicators of kernel tampering (unexported
symbol lookups, the system call table, CR0/CR4 writes, lidt/sidt, kprobe/ftrace hooks,
text patching, unlinking its own struct module).  Without --kernel, a single kernel tree
given as DIR is audited against itself, else the running kernel is used when lkm can
profile it.  --live: the running (or virtual) kernel's posture and a cross-view of its
modules.  Exit status: 0 without high-severity findings, 1 with some, 2 on errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lkm.audit.findings import Finding
    from lkm.kernel.profile import KernelProfile


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: ERROR: {message}\n")
        raise SystemExit(2)


def _profile(kernel: str | None, paths: list[str], prog: str
             ) -> tuple[KernelProfile | None, str | None]:
    """The kernel to audit against, and a note when there is none."""
    from lkm.errors import LkmError
    from lkm.kernel.profile import load_cached

    if kernel:
        return load_cached(kernel), None
    if len(paths) == 1 and os.path.isdir(paths[0]) and \
            (os.path.isdir(os.path.join(paths[0], "boot")) or
             os.path.isdir(os.path.join(paths[0], "lib", "modules"))):
        try:
            return load_cached(paths[0]), None
        except LkmError:
            pass
    try:
        return load_cached("running"), None
    except LkmError as e:
        return None, (f"no kernel to check loading against ({e}); give --kernel: only "
                      "code and symbol indicators are reported")


def _progress(prog: str) -> Any:
    if not sys.stderr.isatty():
        return None

    def show(done: int, total: int) -> None:
        if total < 16:
            return
        width = 40
        bar = "=" * (width * done // total)
        sys.stderr.write(f"\r{prog}: [{bar:<{width}}] {done}/{total}")
        if done == total:
            sys.stderr.write("\r" + " " * (width + len(prog) + 24) + "\r")
        sys.stderr.flush()

    return show


def main(prog: str, argv: list[str]) -> int:
    ap = _Parser(prog=f"lkm {prog}", description="Audit module files or the running kernel.")
    ap.add_argument("paths", nargs="*", metavar="MODULE|DIR")
    ap.add_argument("--kernel", "-k", metavar="TREE",
                    help="the kernel to audit against: a Debian linux-image tree, a vmlinuz, "
                         "a headers tree, a saved profile or 'running'")
    ap.add_argument("--live", action="store_true",
                    help="audit the running kernel (or, with lkm --virtual DIR, that one)")
    ap.add_argument("--json", action="store_true", help="print the reports as JSON")
    ap.add_argument("--all", action="store_true",
                    help="print every module, not only those with findings")
    ap.add_argument("--jobs", "-j", type=int, default=None, metavar="N",
                    help="processes (default: the CPUs, for many modules)")
    ap.add_argument("--no-load", action="store_true",
                    help="skip the load verdicts and taints (indicators only)")
    a = ap.parse_args(argv)
    if a.live == bool(a.paths):
        ap.error("give MODULE/DIR arguments or --live (not both)")

    from lkm.errors import LkmError

    try:
        if a.live:
            return _live(prog, a)
        return _files(prog, a)
    except LkmError as e:
        sys.stderr.write(f"lkm {prog}: ERROR: {e}\n")
        return 2
    except BrokenPipeError:
        from lkm.cli._common import die_of_sigpipe

        die_of_sigpipe()
        return 141


def _files(prog: str, a: argparse.Namespace) -> int:
    from lkm.audit import audit_files
    from lkm.errors import LkmError
    from lkm.signing import module_files

    missing = [p for p in a.paths if not os.path.exists(p)]
    if missing:
        sys.stderr.write(f"lkm {prog}: ERROR: {missing[0]}: No such file or directory\n")
        return 2
    files = module_files(a.paths)
    profile, note = (None, None) if a.no_load and not a.kernel else \
        _profile(a.kernel, a.paths, prog)
    if note and not a.no_load:
        sys.stderr.write(f"lkm {prog}: WARNING: {note}\n")

    def moddir() -> str | None:
        from lkm.kernel.check import module_dir_for

        assert profile is not None
        try:
            return module_dir_for(profile)
        except LkmError as e:
            sys.stderr.write(f"lkm {prog}: WARNING: {e}\n")
            return None

    reports = []
    counts: Counter[str] = Counter()
    worst = 0
    errors = 0
    for r in audit_files(files, profile, moddir if profile is not None else None,
                         verdicts=not a.no_load, jobs=a.jobs, progress=_progress(f"lkm {prog}")):
        errors += r.error is not None
        counts.update(f.id for f in r.findings)
        worst = max(worst, int(r.worst or 0))
        if a.json:
            reports.append(r.to_json())
        elif a.all or r.findings or r.error:
            sys.stdout.write(r.render())
    if a.json:
        out = {"kernel": profile.release if profile else None, "modules": reports,
               "counts": dict(sorted(counts.items()))}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        against = f" against {profile.release}" if profile else ""
        summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "no findings"
        sys.stdout.write(f"{len(files)} modules audited{against}: {summary}\n")
    if errors:
        return 2
    return 1 if worst >= 3 else 0


def _live(prog: str, a: argparse.Namespace) -> int:
    from lkm.audit.live import posture
    from lkm.kernel.target import get_backend
    from lkm.signing import Keyring

    kernel = get_backend()
    profile = getattr(kernel, "profile", None)
    if a.kernel:
        from lkm.kernel.profile import load_cached

        profile = load_cached(a.kernel)
    elif profile is None:
        from lkm.errors import LkmError
        from lkm.kernel.profile import load_cached

        try:
            profile = load_cached("running")
        except LkmError:
            profile = None
    keyring = Keyring(profile.certificates) if profile is not None and \
        profile.certificates else None
    p = posture(kernel, keyring)
    if a.json:
        sys.stdout.write(json.dumps(p.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(_render_posture(p, keyring is not None))
    return 1 if any(f.severity >= 3 for f in p.findings) else 0


def _render_posture(p: Any, keys: bool) -> str:
    out = [f"kernel {p.release}\n"]
    for k, v in p.settings.items():
        out.append(f"  {k}: {'unknown' if v is None else v}\n")
    if p.tainted is not None:
        from lkm.kernel import taint as T

        s = T.print_tainted_for(p.tainted, T.release_version(p.release))
        out.append(f"  tainted: {p.tainted} ({s})\n")
    signed = Counter(m.signature or "no file" for m in p.modules if m.in_proc or m.in_sysfs)
    out.append("  module files: " + (", ".join(f"{v} {k}" for k, v in sorted(signed.items()))
                                     or "none loaded")
               + ("" if keys else " (the kernel's keys are unknown: give --kernel)") + "\n")
    out.extend(_render_finding(f) for f in sorted(p.findings, key=lambda f: -f.severity))
    return "".join(out)


def _render_finding(f: Finding) -> str:
    detail = f": {f.detail}" if f.detail else ""
    lines = [f"  [{f.severity}] {f.id}: {f.summary}{detail}\n"]
    lines += [f"      {e.render()}\n" for e in f.evidence]
    return "".join(lines)
