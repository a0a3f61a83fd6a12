"""``lkm dmesg``: the virtual kernel's log, printed as util-linux dmesg prints it.

  lkm --virtual DIR dmesg [-t] [-r] [-x] [-l LEVELS] [-c|-C] [--json]
"""

from __future__ import annotations

import json
import os
import sys

from lkm.cli._getopt import NO_ARGUMENT, REQUIRED_ARGUMENT, LongOpt, getopt_long
from lkm.kernel.printk import LEVEL_NAMES

USAGE = """\
usage: lkm --virtual DIR dmesg [options]
  -t, --notime        do not print timestamps
  -r, --raw           print the raw records (<level>[time] text)
  -x, --decode        decode facility and level ("kern  :err   : ")
  -l, --level LIST    only these levels (emerg,alert,crit,err,warn,notice,info,debug)
  -c, --read-clear    print, then clear the log
  -C, --clear         clear the log
      --json          records as JSON
"""


SHORTOPTS = "trxl:cCh"
LONGOPTS = (
    LongOpt("notime", NO_ARGUMENT, "t"),
    LongOpt("raw", NO_ARGUMENT, "r"),
    LongOpt("decode", NO_ARGUMENT, "x"),
    LongOpt("level", REQUIRED_ARGUMENT, "l"),
    LongOpt("read-clear", NO_ARGUMENT, "c"),
    LongOpt("clear", NO_ARGUMENT, "C"),
    LongOpt("json", NO_ARGUMENT, "json"),
    LongOpt("help", NO_ARGUMENT, "h"),
)


def main(prog: str, argv: list[str]) -> int:
    notime = raw = decode = clear_after = clear_only = as_json = False
    levels: set[int] | None = None
    opts, args = getopt_long("dmesg", argv, SHORTOPTS, LONGOPTS)  # util-linux's getopt_long
    for key, val in opts:
        if key == "h":
            sys.stdout.write(USAGE)
            return 0
        if key == "?":
            sys.stderr.write(f"{val}\n{USAGE}")
            return 1
        notime |= key == "t"
        raw |= key == "r"
        decode |= key == "x"
        clear_after |= key == "c"
        clear_only |= key == "C"
        as_json |= key == "json"
        if key == "l":
            spec = val or ""
            try:
                levels = {LEVEL_NAMES.index(x.strip()) for x in spec.split(",") if x.strip()}
            except ValueError:
                sys.stderr.write(f"dmesg: unknown level '{spec}'\n")
                return 1
    if args:
        sys.stderr.write(f"dmesg: bad usage: {args[0]}\n{USAGE}")
        return 1
    vdir = os.environ.get("LKM_VIRTUAL")
    if not vdir:
        sys.stderr.write("lkm dmesg: reads a virtual kernel's log: give --virtual DIR\n")
        return 1
    from lkm.errors import LkmError
    from lkm.kernel.printk import format_dmesg
    from lkm.kernel.virtual import VirtualKernel

    try:
        vk = VirtualKernel.open(vdir)
        if clear_only:
            vk.clear_log()
            return 0
        records = vk.log_records()
    except LkmError as e:
        sys.stderr.write(f"lkm dmesg: {e}\n")
        return 1
    if levels is not None:
        records = [r for r in records if r.level in levels]
    out = []
    if as_json:
        out.append(json.dumps([{"pri": r.level, "time": r.usec / 1e6, "msg": r.text}
                               for r in records], indent=1) + "\n")
    else:
        for r in records:
            if raw:
                line = f"<{r.level}>" + (format_dmesg(r) if not notime else r.text)
            else:
                line = r.text if notime else format_dmesg(r)
                if decode:
                    line = f"kern  :{LEVEL_NAMES[r.level]:<6}: " + line
            out.append(line + "\n")
    sys.stdout.write("".join(out))
    if clear_after:
        try:
            vk.clear_log()
        except LkmError as e:
            sys.stderr.write(f"lkm dmesg: {e}\n")
            return 1
    return 0
