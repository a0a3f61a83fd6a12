"""``lkm taint``: what a taint value means, for a given kernel release.

  lkm [--virtual DIR] taint [VALUE] [--kernel TREE|RELEASE] [--json]

VALUE is a /proc/sys/kernel/tainted number, an oops's "Tainted: P           O      " (one
column per flag, read by position) or "Tainted: [P]=PROPRIETARY_MODULE, ...", or letters.
Without VALUE: the running (or virtual) kernel's value, and the loaded modules carrying
taints (/sys/module/*/taint).  The output follows tools/debugging/kernel-chktaint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: ERROR: {message}\n")
        raise SystemExit(2)


def _version(kernel: str) -> tuple[tuple[int, ...], str]:
    """(version, release) of --kernel: a tree, vmlinuz or profile, or a release string."""
    from lkm.kernel.taint import release_version

    if os.path.exists(kernel):
        from lkm.kernel.profile import load_cached

        prof = load_cached(kernel)
        return prof.version[:2], prof.release
    v = release_version(kernel)
    if v is None:
        raise ValueError(f"--kernel {kernel}: neither a kernel tree nor a release like 6.12")
    return v, kernel


def _module_taints() -> tuple[int, str, dict[str, str]]:
    """The running (or virtual) kernel's mask, release and per-module taint letters."""
    from lkm.kernel.target import get_backend

    kernel = get_backend()
    mask = int(kernel.read_text("/proc/sys/kernel/tainted").strip())
    try:
        names = kernel.list_dir("/sys/module")
    except OSError:
        names = []
    mods = {}
    for name in sorted(names):  # kernel-chktaint: `ls /sys/module`
        t = kernel.taint(name)
        if t:
            mods[name] = t
    try:  # and those /sys/module lacks (a module that deleted its kobject)
        listed = kernel.modules()
    except OSError:
        listed = []
    for m in sorted(listed, key=lambda m: m.name):
        if m.taint and m.name not in names:
            mods[m.name] = m.taint
    return mask, kernel.release(), mods


def main(prog: str, argv: list[str]) -> int:
    ap = _Parser(prog=f"lkm {prog}", description="Explain a kernel taint value.")
    ap.add_argument("value", nargs="*", metavar="VALUE",
                    help="a taint number, an oops's 'Tainted: ...' text, or letters "
                         "(default: the running kernel's)")
    ap.add_argument("--kernel", "-k", metavar="TREE|RELEASE",
                    help="the kernel whose flag set applies: a tree, vmlinuz or profile, or "
                         "a release such as 6.1 (default: the running kernel's, or the newest "
                         "set lkm knows for a VALUE)")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    a = ap.parse_args(argv)

    from lkm.errors import LkmError
    from lkm.kernel import taint as T

    version: tuple[int, ...] | None = None
    release = None
    try:
        if a.kernel:
            version, release = _version(a.kernel)
        modules: dict[str, str] = {}
        if a.value:
            mask = T.parse_taint(" ".join(a.value), version)
        else:
            mask, running, modules = _module_taints()
            if release is None:
                release, version = running, T.release_version(running)
    except (ValueError, LkmError) as e:
        sys.stderr.write(f"lkm {prog}: ERROR: {e}\n")
        return 2
    except OSError as e:
        sys.stderr.write(f"lkm {prog}: ERROR: {e.filename or ''}: {e.strerror or e}\n")
        return 1
    text = json.dumps(_as_json(mask, version, release, modules), indent=2) + "\n" if a.json \
        else T.chktaint_report(mask, version, modules)
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        from lkm.cli._common import die_of_sigpipe

        die_of_sigpipe()
    return 0


def _as_json(mask: int, version: tuple[int, ...] | None, release: str | None,
             modules: dict[str, str]) -> dict[str, object]:
    from lkm.kernel import taint as T

    known = {f.bit for f in T.flags_of(version)}
    by_bit = {f.bit: f for f in T.TAINT_FLAG_TABLE}
    flags = []
    for bit in range(mask.bit_length()):
        if mask >> bit & 1:
            f = by_bit.get(bit)
            flags.append({"bit": bit, "letter": f.c_true if f else None,
                          "name": f.name if f else None,
                          "description": f.description if f else None,
                          "module": f.module if f else None, "defined": bit in known})
    return {"value": mask, "release": release,
            "string": T.print_tainted_for(mask, version),
            "verbose": T.print_tainted_verbose(mask, version), "flags": flags,
            "modules": modules}
