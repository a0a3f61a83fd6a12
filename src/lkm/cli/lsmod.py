"""``lkm lsmod``: kmod 30's lsmod (tools/lsmod.c): the loaded modules, their sizes, users
and holders, from the libkmod handles of /proc/modules."""

from __future__ import annotations

import os
import sys

from lkm.cli._common import Log, die_of_sigpipe, open_context, write_err


def main(prog: str, argv: list[str]) -> int:
    if argv:
        write_err(f"Usage: {prog}\n")
        return 1
    ctx = open_context(Log(prog))
    try:
        mods = ctx.new_from_loaded()
    except OSError as e:
        write_err(f"Error: could not get list of modules: {os.strerror(e.errno or 2)}\n")
        return 1
    out = ["Module                  Size  Used by\n"]
    for mod in mods:
        use_count = mod.refcnt()
        size = mod.size()
        users = ",".join(h.name for h in mod.holders())
        out.append(f"{mod.name:<19} {size:>8}  {use_count}" + (f" {users}" if users else "")
                   + "\n")
    data = "".join(out).encode("utf-8", "surrogateescape")
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    except BrokenPipeError:
        die_of_sigpipe()  # as kmod's lsmod, killed by SIGPIPE
    return 0
