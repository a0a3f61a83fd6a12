"""``lkm vm``: run a command as root in a real boot of a kernel tree's own kernel.

  lkm vm --kernel TREE|VMLINUZ|PROFILE|running [--fetch PACKAGE] [--cmdline ARGS]
         [--memory MB] [--timeout S] [--accel auto|kvm|tcg] [--dmesg] [--json]
         [--script FILE] -- COMMAND [ARG...]

The host's file system is seen read-only at the same paths (so ./foo.ko works as on
the host), the tree's modules as /lib/modules/<release>.  Prints the command's
output, then with --dmesg the kernel log lines that appeared while it ran; --json
prints one object (result, status, stdout, stderr, log with levels, taint,
/proc/modules afterwards, accel).  Exit status: the command's; 124 when the guest was
stopped at the timeout; 125 when it could not run the command (no kernel, a missing
package, a panic); 2 on a usage error.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

EXIT_TIMEOUT = 124
EXIT_FAILED = 125


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: ERROR: {message}\n")
        raise SystemExit(2)


def _parser(prog: str) -> _Parser:
    ap = _Parser(prog=f"lkm {prog}", description="Run a command in a real boot of a "
                 "kernel tree's kernel (QEMU).")
    ap.add_argument("--kernel", "-k", metavar="TREE",
                    help="a Debian linux-image tree, a vmlinuz, a saved profile or 'running'")
    ap.add_argument("--fetch", metavar="PACKAGE",
                    help="download and unpack a linux-image package with apt (e.g. "
                         "linux-image-amd64) and boot it")
    ap.add_argument("--cmdline", default="", metavar="ARGS",
                    help="appended to the kernel command line")
    ap.add_argument("--memory", "-m", type=int, default=1024, metavar="MB",
                    help="guest memory (default 1024)")
    ap.add_argument("--timeout", "-t", type=float, default=120, metavar="S",
                    help="seconds the command may run (default 120; the boot has its own "
                         "limit)")
    ap.add_argument("--accel", choices=("auto", "kvm", "tcg"), default="auto",
                    help="KVM, TCG (emulation), or KVM when /dev/kvm is usable (default)")
    ap.add_argument("--dmesg", action="store_true",
                    help="print the kernel log lines that appeared while COMMAND ran")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    ap.add_argument("--script", metavar="FILE",
                    help="run FILE with sh (one boot for many steps); COMMAND's words are "
                         "its arguments")
    ap.add_argument("command", nargs=argparse.REMAINDER, metavar="COMMAND")
    return ap


def main(prog: str, argv: list[str]) -> int:
    ap = _parser(prog)
    a = ap.parse_args(argv)
    command: list[str] = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command and a.script is None:
        ap.error("give a COMMAND (after --) or --script FILE")
    if (a.kernel is None) == (a.fetch is None):
        ap.error("give one of --kernel TREE or --fetch PACKAGE")
    if a.memory < 128:
        ap.error("--memory: at least 128 MB")
    if a.timeout <= 0:
        ap.error("--timeout: a positive number of seconds")

    import signal
    from pathlib import Path

    from lkm import vm
    from lkm.errors import LkmError
    from lkm.fetch import fetch

    def fail(e: LkmError, kernel: str | None = None) -> int:
        err = e if isinstance(e, vm.VmError) else vm.VmError(str(e))
        if a.json:
            doc: dict[str, Any] = {**err.to_json(), "kernel": kernel}
            sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        else:  # what the command printed, the console's last lines, then the error
            sys.stdout.buffer.write(err.stdout)
            sys.stdout.flush()
            sys.stderr.buffer.write(err.stderr)
            sys.stderr.flush()
            tail = err.console_tail() if isinstance(e, vm.VmTimeout | vm.VmPanic) else []
            if tail:
                sys.stderr.write("".join(f"    {line}\n" for line in
                                         ["(the console's last lines)", *tail]))
            sys.stderr.write(f"lkm {prog}: ERROR: {e}\n")
        return EXIT_TIMEOUT if isinstance(e, vm.VmTimeout) else EXIT_FAILED

    # a TERM ends lkm through its clean-ups: the guest stopped, its files removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        spec = str(fetch(a.fetch)) if a.fetch is not None else a.kernel
        kernel = vm.find_kernel(spec)
    except LkmError as e:
        return fail(e)
    try:
        res = vm.run(kernel, command, script=Path(a.script) if a.script else None,
                     cmdline=a.cmdline, memory=a.memory, timeout=a.timeout, accel=a.accel)
    except LkmError as e:
        return fail(e, kernel.release)
    from lkm.cli._common import die_of_sigpipe
    from lkm.kernel.printk import format_dmesg

    try:
        if a.json:
            sys.stdout.write(json.dumps(res.to_json(), indent=2) + "\n")
            return res.status
        sys.stdout.buffer.write(res.stdout)
        sys.stdout.flush()
        sys.stderr.buffer.write(res.stderr)
        sys.stderr.flush()
        if a.dmesg:
            sys.stdout.write("".join(f"{format_dmesg(r)}\n" for r in res.log))
        sys.stdout.flush()
    except BrokenPipeError:
        die_of_sigpipe()
    return res.status
