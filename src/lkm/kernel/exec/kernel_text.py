"""Where the real kernel's own code is, as its oopses name it (x86-64, per Debian release).

An oops or a stack dump names the vmlinux functions on the way from the system call to
module code (``do_one_initcall+0x59/0x220``) and the function the kernel itself trapped
in (``__kmem_cache_free+0x284/0x2a0`` for SLUB's double-free BUG).  They are facts of one
kernel binary: recorded from Debian's 6.1.0-57 and 6.12.117 kernels under QEMU
(tests/test_exec_fidelity.py), and looked up by release, else by the nearest version of
the same series.  ``line`` entries are the source lines of the kernel's own BUG/WARN
sites in that build.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class KernelText:
    """The frames of one kernel build."""

    init: tuple[str, ...]  # finit_module(2) -> do_one_initcall calling mod->init
    exit: tuple[str, ...]  # delete_module(2) calling mod->exit
    sites: dict[str, str] = field(default_factory=dict)  # where the kernel traps / warns
    lines: dict[str, int] = field(default_factory=dict)  # their source lines
    stacks: dict[str, tuple[str, ...]] = field(default_factory=dict)  # dump_stack() paths
    syscall_nr: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # kallsyms sizes of functions
    oops_prefix: str = ""  # 6.12 prefixes die()'s string with "Oops: "
    uid_in_cpu_line: bool = False  # 6.12: "CPU: 0 UID: 0 PID: ..."
    verbose_taint: bool = False  # 6.12: "Tainted: [O]=OOT_MODULE, ..."


_SYSCALLS = {"finit_module": 0x139, "delete_module": 0xB0, "init_module": 0xAF}

DEBIAN_6_1 = KernelText(
    init=("do_one_initcall+0x59/0x220", "do_init_module+0x4a/0x1f0",
          "__do_sys_finit_module+0xac/0x120", "do_syscall_64+0x5d/0xb0",
          "entry_SYSCALL_64_after_hwframe+0x6e/0xd8"),
    exit=("__do_sys_delete_module+0x1b9/0x330", "do_syscall_64+0x5d/0xb0",
          "entry_SYSCALL_64_after_hwframe+0x6e/0xd8"),
    sites={"slab_double_free": "__kmem_cache_free+0x284/0x2a0",
           "initcall_imbalance": "do_one_initcall+0x1d7/0x220"},
    lines={"slab_double_free": 419, "initcall_imbalance": 1284},
    stacks={"msleep": ("dump_stack_lvl+0x44/0x5c", "__schedule_bug.cold+0x42/0x4e",
                       "__schedule+0x804/0xa00", "schedule+0x5a/0xd0",
                       "schedule_timeout+0x94/0x150", "msleep+0x29/0x40"),
            "init_positive": ("dump_stack_lvl+0x44/0x5c", "do_init_module.cold+0x21/0x26")},
    syscall_nr=_SYSCALLS,
    sizes={"kfree": 0x110},
)

DEBIAN_6_12 = KernelText(
    init=("do_one_initcall+0x5b/0x320", "do_init_module+0x60/0x270",
          "init_module_from_file+0x89/0xe0", "idempotent_init_module+0x11d/0x310",
          "__x64_sys_finit_module+0x5e/0xb0", "do_syscall_64+0x87/0x1b0",
          "entry_SYSCALL_64_after_hwframe+0x76/0x7e"),
    exit=("__do_sys_delete_module+0x1b8/0x350", "do_syscall_64+0x87/0x1b0",
          "entry_SYSCALL_64_after_hwframe+0x76/0x7e"),
    sites={"slab_double_free": "kfree+0x254/0x370",
           "initcall_imbalance": "do_one_initcall+0x283/0x320"},
    lines={"slab_double_free": 550, "initcall_imbalance": 1253},
    stacks={"msleep": ("dump_stack_lvl+0x64/0x80", "__schedule_bug+0x56/0x70",
                       "__schedule+0x9fa/0xbf0", "schedule+0x27/0xc0",
                       "schedule_timeout+0x9e/0x170", "msleep+0x2b/0x40"),
            "init_positive": ("dump_stack_lvl+0x64/0x80", "do_init_module+0x8e/0x270")},
    syscall_nr=_SYSCALLS,
    sizes={"kfree": 0x370},
    oops_prefix="Oops: ",
    uid_in_cpu_line=True,
    verbose_taint=True,
)

BUILDS = {"6.1.0-57-amd64": DEBIAN_6_1, "6.12.117+deb12-amd64": DEBIAN_6_12}


def kernel_text(release: str, version: tuple[int, int, int]) -> KernelText:
    """The frames of ``release``'s build, else of the recorded build of its series."""
    got = BUILDS.get(release)
    if got is not None:
        return got
    return DEBIAN_6_12 if version[:2] >= (6, 4) else DEBIAN_6_1
