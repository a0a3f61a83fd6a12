"""``lkm check --boot``: the real kernel's verdict on the loads the virtual kernel judged.

The loads ``lkm check`` made in a fresh virtual kernel (each module after its
dependencies, with its parameters and flags) are made again, in the same order, in
one boot of the tree's real kernel (lkm.vm): each image decompressed on the host side
of the chroot, written to a memfd and given to finit_module(2) with the same
arguments and flags.  Per load the guest reports the errno, the /dev/kmsg records
that appeared (kernel/printk/printk.c devkmsg_read) and the taints: the module's
(/sys/module/<name>/taint) and those the load set.  :func:`compare` puts the two
verdicts side by side.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import Any

from lkm.kernel.check import CheckResult
from lkm.vm import BootKernel, VmError, run

# Run in the guest by the host's python (lkm importable): one JSON line per load.
GUEST = r"""
import ctypes, json, os, re, sys
from lkm.compress import read_module

SYS_FINIT_MODULE = 313  # x86_64
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long


def records(fd):
    out = []
    while True:
        try:
            rec = os.read(fd, 16384)
        except BlockingIOError:
            return out
        except BrokenPipeError:  # overwritten while we read: go on with the next
            continue
        head, _, text = rec.partition(b";")
        text = re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]),
                      text.split(b"\n", 1)[0]).decode("utf-8", "replace")
        out += [[int(head.split(b",")[0]) & 7, line] for line in text.split("\n")]


def tainted():
    with open("/proc/sys/kernel/tainted") as f:
        return int(f.read())


for job in json.loads(sys.argv[1]):
    kmsg = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    os.lseek(kmsg, 0, os.SEEK_END)
    before = tainted()
    try:
        data, _ = read_module(job["path"])
        image = bytes(data)
    except Exception as e:
        print(json.dumps({"errno": getattr(e, "errno", None) or 22, "log": [[3, str(e)]],
                          "before": before, "after": before, "taint": ""}), flush=True)
        continue
    fd = os.memfd_create(job["name"])
    view = memoryview(image)
    while view:
        view = view[os.write(fd, view):]
    ret = libc.syscall(ctypes.c_long(SYS_FINIT_MODULE), ctypes.c_int(fd),
                       ctypes.c_char_p(job["args"].encode()), ctypes.c_int(job["flags"]))
    err = ctypes.get_errno() if ret != 0 else 0
    os.close(fd)
    try:
        with open(f"/sys/module/{job['name']}/taint") as f:
            taint = f.read().strip()
    except OSError:
        taint = ""
    print(json.dumps({"errno": err, "log": records(kmsg), "before": before,
                      "after": tainted(), "taint": taint if not err else ""}), flush=True)
    os.close(kmsg)
"""

# kernel log lines that come from the emulated machine's timing, not from a load
NOISE = ("clocksource:", "tsc:", "hrtimer: interrupt took", "perf: interrupt took too long",
         "sched: RT throttling activated", "random:", "audit:")
STACK_DUMP = "<stack dump>"


@dataclass
class RealResult:
    """The real kernel's verdict on one load (the fields of CheckResult that compare)."""

    loaded: bool
    errno: int | None
    messages: list[str]
    taint: str
    tainted: int

    def to_json(self) -> dict[str, Any]:
        import errno as _errno

        return {"loaded": self.loaded, "errno": _errno.errorcode.get(self.errno, str(self.errno))
                if self.errno is not None else None, "messages": self.messages,
                "taint": self.taint, "tainted": self.tainted}


@dataclass
class Comparison:
    """One load: the virtual verdict, the real one (None: not attempted) and what differs."""

    virtual: CheckResult
    real: RealResult | None
    differences: list[str] = field(default_factory=list)  # result errno taint messages

    def to_json(self) -> dict[str, Any]:
        virtual = self.virtual.to_json()
        return {"module": virtual.pop("module"), "dependency_of": self.virtual.dependency_of,
                "virtual": virtual, "real": self.real.to_json() if self.real else None,
                "agree": not self.differences, "differences": self.differences}


def collapse_stack_dumps(lines: list[str]) -> list[str]:
    """Each dump_stack() block ("CPU: ... Comm: ..." to "</TASK>") as one STACK_DUMP line
    (lib/dump_stack.c: the addresses and the machine differ from run to run)."""
    out: list[str] = []
    inside = False
    for line in lines:
        if not inside and line.startswith("CPU: ") and " Comm: " in line:
            inside = True
            out.append(STACK_DUMP)
        elif inside:
            inside = line.strip() != "</TASK>"
        else:
            out.append(line)
    return out


def jobs(results: list[CheckResult], args_for: Any, flags: int) -> list[dict[str, Any]]:
    """The loads to repeat: those of ``results`` that had a file."""
    return [{"name": r.module, "path": r.path, "flags": flags,
             "args": args_for(r.module, r.dependency_of is None)}
            for r in results if r.path is not None]


def real_loads(kernel: BootKernel, loads: list[dict[str, Any]], cmdline: str = "",
               timeout: float = 120, accel: str = "auto") -> list[RealResult]:
    """Make ``loads`` in one boot of ``kernel``; the real verdict on each."""
    from lkm.kernel.taint import from_letters, letters

    if not loads:
        return []
    res = run(kernel, [sys.executable, "-c", GUEST, json.dumps(loads)], cmdline=cmdline,
              timeout=timeout, accel=accel)
    lines = res.stdout.decode("utf-8", "replace").splitlines()
    if res.status != 0 or len(lines) != len(loads):
        why = res.stderr.decode("utf-8", "replace").strip().splitlines()
        raise VmError(f"the loads in the guest failed (exit status {res.status})"
                      f"{': ' + why[-1] if why else ''}", res.console, res.stdout, res.stderr)
    out = []
    for line in lines:
        d = json.loads(line)
        texts = [text for _level, text in d["log"] if not text.startswith(NOISE)]
        added = d["after"] & ~d["before"]
        taint = letters(from_letters(d["taint"]) | added)
        out.append(RealResult(d["errno"] == 0, d["errno"] or None,
                              collapse_stack_dumps(texts), taint, d["after"]))
    return out


def compare(virtual: list[CheckResult], real: list[RealResult]) -> list[Comparison]:
    """Pair the verdicts (the real ones follow the virtual results that had a file)."""
    it = iter(real)
    out = []
    for v in virtual:
        r = next(it, None) if v.path is not None else None
        cmp = Comparison(v, r)
        if r is not None:
            vlines = [ln for m in v.messages for ln in m.split("\n")]
            rlines = [ln for ln in r.messages if ln != STACK_DUMP]
            for what, same in (("result", v.loaded == r.loaded), ("errno", v.errno == r.errno),
                               ("taint", v.taint == r.taint), ("messages", vlines == rlines)):
                if not same:
                    cmp.differences.append(what)
        out.append(cmp)
    return out
