"""``lkm lsmod``: kmod 30's lsmod (the loaded modules, their sizes, users and holders)."""

from __future__ import annotations

import os
import sys

from lkm.cli._common import Log, die_of_sigpipe, running_context, write_err


def main(prog: str, argv: list[str]) -> int:
    if argv:
        write_err(f"Usage: {prog}\n")
        return 1
    log = Log(prog)

    kernel, ctx = running_context(log)
    try:
        text = kernel.read_text("/proc/modules")
    except OSError as e:
        reason = os.strerror(e.errno or 2)
        log.lib(3, "../libkmod/libkmod-module.c:1725", "kmod_module_new_from_loaded",
                f"could not open /proc/modules: {reason}\n")
        write_err(f"Error: could not get list of modules: {reason}\n")
        return 1
    out = ["Module                  Size  Used by\n"]
    for line in text.splitlines():
        fields = line.split(None, 2)
        if not fields:
            continue
        mod = ctx.from_name(fields[0])
        size = _size(kernel, mod.name, fields)
        holders = ctx.holders(mod)
        users = ",".join(h.name for h in holders)
        out.append(f"{mod.name:<19} {size:>8}  {ctx.refcnt(mod)}"
                   + (f" {users}" if users else "") + "\n")
    data = "".join(out).encode("utf-8", "surrogateescape")
    try:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    except BrokenPipeError:
        die_of_sigpipe()  # as kmod's lsmod, killed by SIGPIPE
    return 0


def _size(kernel: object, name: str, fields: list[str]) -> int:
    """/sys/module/<name>/coresize, else the size column of /proc/modules, else -ENOENT."""
    from lkm.kernel.backend import KernelBackend

    assert isinstance(kernel, KernelBackend)
    try:
        kernel.list_dir(f"/sys/module/{name}")
    except OSError as e:
        return -(e.errno or 2)
    try:
        return int(kernel.read_text(f"/sys/module/{name}/coresize").strip() or "0")
    except OSError:
        pass
    except ValueError:
        return -2
    try:
        return int(fields[1]) if len(fields) > 1 else -2
    except ValueError:
        return -2
