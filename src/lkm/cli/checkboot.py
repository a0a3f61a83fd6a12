"""``lkm check --boot``: the virtual kernel's verdicts and the real kernel's, side by side.

Per module one line, marked ``!`` when the kernels disagree::

    ! lkm_init_fail: virtual: loads; real: fails: ENOMEM (Cannot allocate memory)
        differ: result, errno

then its log lines: ``=`` in both, ``-`` only from the virtual kernel, ``+`` only from
the real one.  Exit status 0 when the kernels agree and every module loads, 1 when
they disagree or one fails, 2 when the real kernel could not be asked.
"""

from __future__ import annotations

import difflib
import errno as _errno
import json
import os
import sys
from typing import Any

from lkm.kernel.check import CheckResult


def _verdict(loaded: bool, err: int | None, taint: str) -> str:
    if loaded:
        return f"loads, taints {taint}" if taint else "loads"
    code = err or 0
    return f"fails: {_errno.errorcode.get(code, str(code))} ({os.strerror(code)})"


def _log_diff(virtual: list[str], real: list[str]) -> list[str]:
    out = []
    sm = difflib.SequenceMatcher(a=virtual, b=real, autojunk=False)
    for tag, i1, i2, j1, j2 in sm.get_opcodes():
        if tag == "equal":
            out += [f"    = {line}" for line in virtual[i1:i2]]
            continue
        out += [f"    - {line}" for line in virtual[i1:i2]]
        out += [f"    + {line}" for line in real[j1:j2]]
    return out


def report(prog: str, kernel_spec: str, results: list[CheckResult], args_for: Any, flags: int,
           cmdline: str, as_json: bool) -> int:
    """Load into the real kernel what ``results`` loaded into the virtual one; print both."""
    from lkm.errors import LkmError
    from lkm.kernel.taint import print_tainted
    from lkm.vm import VmError, find_kernel
    from lkm.vmcheck import STACK_DUMP, compare, jobs, real_loads

    try:
        kernel = find_kernel(kernel_spec)
        real = real_loads(kernel, jobs(results, args_for, flags), cmdline)
    except LkmError as e:
        tail = e.console_tail() if isinstance(e, VmError) else []
        sys.stderr.write("".join(f"    {line}\n" for line in tail))
        sys.stderr.write(f"lkm {prog}: ERROR: the real kernel: {e}\n")
        return 2
    pairs = compare(results, real)
    if as_json:
        sys.stdout.write(json.dumps([p.to_json() for p in pairs], indent=2) + "\n")
    else:
        out = []
        for p in pairs:
            v = p.virtual
            dep = f" (dependency of {v.dependency_of})" if v.dependency_of else ""
            mark = "!" if p.differences else " "
            vtext = _verdict(v.loaded, v.errno, v.taint)
            if p.real is None:
                out.append(f"{mark} {v.module}{dep}: {vtext} (not loaded in the real kernel)\n")
                out += [f"    - {line}\n" for line in v.messages]
                continue
            rtext = _verdict(p.real.loaded, p.real.errno, p.real.taint)
            out.append(f"{mark} {v.module}{dep}: virtual: {vtext}; real: {rtext}\n")
            if p.differences:
                out.append(f"    differ: {', '.join(p.differences)}\n")
            vlines = [ln for m in v.messages for ln in m.split("\n")]
            out += [f"{line}\n" for line in _log_diff(
                vlines, [ln for ln in p.real.messages if ln != STACK_DUMP])]
            if STACK_DUMP in p.real.messages:
                out.append("    (the real kernel also dumped a stack)\n")
        if pairs and real:
            last_real = real[-1].tainted
            out.append(f"kernel: virtual: {print_tainted(pairs[-1].virtual.tainted)} "
                       f"({pairs[-1].virtual.tainted}); real: {print_tainted(last_real)} "
                       f"({last_real})\n")
        disagree = sum(1 for p in pairs if p.differences)
        out.append(f"{len(pairs)} loads, the kernels disagree on {disagree}\n")
        sys.stdout.write("".join(out))
    ok = all(not p.differences and p.virtual.loaded and (p.real is None or p.real.loaded)
             for p in pairs)
    return 0 if ok else 1
