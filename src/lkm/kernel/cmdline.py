"""The kernel command line settings the module loader depends on (applied at "boot").

module.sig_enforce= (kernel/module/signing.c), module_blacklist= (main.c), lockdown=
(security/lockdown), nomodule (modules_disabled), and the spectre_v2 mitigation
switches the retpoline check reads (arch/x86/kernel/cpu/bugs.c).  Parsed by
kernel/params.c's next_arg(), as the kernel parses its command line.
"""

from __future__ import annotations

from lkm.kernel.module.state import KernelState
from lkm.kernel.params import kstrtobool, next_arg, skip_spaces
from lkm.kernel.printk import KERN_NOTICE


def apply_cmdline(k: KernelState, cmdline: str) -> list[tuple[int, str]]:
    """Apply ``cmdline`` to ``k``; returns the boot log lines its settings print."""
    k.cmdline = cmdline.strip()
    lines: list[tuple[int, str]] = []
    args = skip_spaces(cmdline)
    while args:
        param, val, args = next_arg(args)
        p = param.replace("-", "_")
        if p == "module.sig_enforce":
            rv, b = kstrtobool("1" if val is None else val)
            if rv == 0 and b:
                k.sig_enforce = True
        elif p == "module_blacklist":
            k.module_blacklist = val
        elif p == "lockdown" and val in ("integrity", "confidentiality"):
            k.lockdown = 1 if val == "integrity" else 2
            lines.append((KERN_NOTICE, "Kernel is locked down from command line; see man "
                                       "kernel_lockdown.7"))
        elif p == "nomodule":
            k.modules_disabled = True
        elif (p == "mitigations" and val == "off") or (p in ("spectre_v2", "nospectre_v2")
                                                       and val in (None, "off")):
            k.spectre_v2_mitigated = False
    return lines
