"""Command-line entry point: ``lkm TOOL ...`` or a link named after the tool.

Like kmod, one program serves every tool: invoked through a link named
``modinfo`` it is ``lkm modinfo``.  Each tool lives in its own module and is
imported only when used, so start-up stays fast.
"""

from __future__ import annotations

import importlib
import os
import sys

# tool name -> module under lkm.cli providing ``main(prog: str, argv: list[str]) -> int``
TOOLS: dict[str, str] = {
    "modinfo": "modinfo",
    "depmod": "depmod",
    "modprobe": "modprobe",
    "insmod": "insmod",
    "rmmod": "rmmod",
    "lsmod": "lsmod",
    "sign-file": "signfile",
    "verify": "verify",
    "extract-certs": "extractcerts",
    "strip-sig": "stripsig",
    "virtual": "virtual",
    "check": "check",
    "cat": "vfs",
    "write": "vfs",
    "dmesg": "dmesg",
    "vm": "vm",
    "audit": "audit",
    "taint": "taint",
}

# tools that may be reached through a link of their own name (kmod's multi-call set)
MULTICALL = ("modinfo", "depmod", "modprobe", "insmod", "rmmod", "lsmod")

USAGE = """\
usage: lkm [--virtual DIR] TOOL [ARGS...]

kmod-compatible tools:  modinfo depmod modprobe insmod rmmod lsmod
signing:                sign-file verify extract-certs strip-sig
virtual kernel:         virtual check cat write dmesg
security:               audit taint

Invoked through a link named modinfo, depmod, modprobe, insmod, rmmod or lsmod,
lkm behaves as that tool.
"""


def run_tool(tool: str, argv: list[str], prog: str | None = None) -> int:
    mod = importlib.import_module(f"lkm.cli.{TOOLS[tool]}")
    from lkm.errors import LkmError, ProcessKilled

    try:
        rc: int = mod.main(prog or tool, argv)
    except ProcessKilled as e:  # module code oopsed in our system call: die of it
        sys.stdout.flush()
        sys.stderr.flush()
        os.kill(os.getpid(), e.signal)
        return 128 + e.signal
    except LkmError as e:  # e.g. --virtual DIR is not a virtual kernel: no traceback
        sys.stderr.write(f"{prog or tool}: ERROR: {e}\n")
        return 1
    return rc


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv if argv is None else argv)
    prog = os.path.basename(args[0]) if args else "lkm"
    if prog in MULTICALL:
        return _exit(run_tool(prog, args[1:], prog))
    rest = args[1:]
    # global options before the tool name
    while rest and rest[0].startswith("--virtual"):
        opt = rest.pop(0)
        if opt == "--virtual":
            if not rest:
                sys.stderr.write("lkm: --virtual needs a directory\n")
                return _exit(2)
            os.environ["LKM_VIRTUAL"] = rest.pop(0)
        else:
            os.environ["LKM_VIRTUAL"] = opt.split("=", 1)[1]
    if not rest or rest[0] in ("-h", "--help", "help"):
        sys.stdout.write(USAGE)
        return _exit(0 if rest else 2)
    if rest[0] in ("-V", "--version"):
        from lkm import __version__

        sys.stdout.write(f"lkm {__version__}\n")
        return _exit(0)
    tool = rest[0]
    if tool == "list":  # kmod's `kmod list` is lsmod
        tool = "lsmod"
    if tool not in TOOLS:
        sys.stderr.write(f"lkm: unknown tool '{tool}'\n{USAGE}")
        return _exit(2)
    return _exit(run_tool(tool, rest[1:]))


def _exit(rc: int) -> int:
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        # like a C tool killed by SIGPIPE: no traceback
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
