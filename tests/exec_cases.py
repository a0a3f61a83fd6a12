"""The cases of tests/test_exec_fidelity.py: what is done with the modules of
tests/modules/exec/, in which boot, and what the real kernel must at least show.

A case is a list of steps run in order with kmod's tools (insmod, rmmod) or on /proc and
/sys files (write, read). The cases of one boot run in one guest, in table order, so
state carries over (once-only messages, taints); a case whose code oopses gets a boot of
its own, so that its oops is the first ([#1]) and its taints are its own.

``Want`` is a sanity check of the real kernel's transcript, not the whole of it: the
exit status, log lines that must appear in that order (substrings of the normalised
lines), taint letters that must be set after the step. The whole normalised transcript
is the reference the virtual kernel is compared with.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Want:
    """What a step must at least produce on the real kernel."""

    rc: int | None = 0  # exit status; -N: killed by signal N; None: not checked
    log: tuple[str, ...] = ()  # substrings of normalised log lines, in this order
    taint: str = ""  # taint letters set after the step
    text: str | None = None  # "read": the file's content
    stderr: str | None = None  # substring of stderr


@dataclass(frozen=True)
class Step:
    """insmod MODULE ARGS..., rmmod [ARGS...] MODULE, write PATH VALUE, read PATH."""

    op: str
    module: str = ""
    args: tuple[str, ...] = ()
    path: str = ""
    value: str = ""
    want: Want = field(default_factory=Want)

    def argv(self) -> list[str]:
        """The command as the transcript shows it."""
        if self.op == "insmod":
            return ["insmod", f"{self.module}.ko", *self.args]
        if self.op == "rmmod":
            return ["rmmod", *self.args, self.module]
        if self.op == "write":
            return ["write", self.path, self.value]
        return [self.op, self.path]


@dataclass(frozen=True)
class Case:
    name: str
    steps: tuple[Step, ...]
    boot: str = "main"
    watch: tuple[str, ...] = ()  # modules whose /proc/modules line and sysfs are recorded
    # (regex, replacement) for values that differ from run to run (timings, freed memory)
    masks: tuple[tuple[str, str], ...] = ()

    def modules(self) -> list[str]:
        """Every module the case loads or watches."""
        seen = [s.module for s in self.steps if s.op == "insmod"] + list(self.watch)
        return list(dict.fromkeys(seen))


KILLED = -signal.SIGKILL
SEGV = -signal.SIGSEGV
P = "/sys/module"


def ins(module: str, *args: str, rc: int | None = 0, log: tuple[str, ...] = (),
        taint: str = "", stderr: str | None = None) -> Step:
    return Step("insmod", module, args, want=Want(rc, log, taint, stderr=stderr))


def rm(module: str, *args: str, rc: int | None = 0, log: tuple[str, ...] = (),
       taint: str = "", stderr: str | None = None) -> Step:
    return Step("rmmod", module, args, want=Want(rc, log, taint, stderr=stderr))


def write(path: str, value: str, rc: int = 0, log: tuple[str, ...] = ()) -> Step:
    """rc: 0 or the errno of write(2)."""
    return Step("write", path=path, value=value, want=Want(rc, log))


def read(path: str, text: str | None = None) -> Step:
    return Step("read", path=path, want=Want(0, text=text))


M = "lkm_exec_"
OOPS_61_612 = "Oops: "  # 6.1 "Oops: 0002 [#1] PREEMPT SMP NOPTI", 6.12 "Oops: Oops: 0002 ..."

CASES: tuple[Case, ...] = (
    # -- boot "main": nothing here oopses --------------------------------------------------
    Case("params_default", (
        ins(M + "params", log=("loading out-of-tree module taints kernel.",
                               "module verification failed",
                               "count=1 name=world loud=0 nvalues=2",
                               "values: 10 20 (sum 30)", "hello, world (1 of 1)"),
            taint="OE"),
        read(f"{P}/lkm_exec_params/parameters/values", "10,20\n"),
        rm(M + "params", log=("goodbye, world",)),
    )),
    Case("params_set", (
        ins(M + "params", "count=3", 'name="Tux Penguin"', "loud=1", "values=1,2,3,4,5",
            log=("count=3 name=Tux Penguin loud=1 nvalues=5", "values: 1 2 3 4 5 (sum 15)",
                 "HELLO, Tux Penguin! (1 of 3)", "HELLO, Tux Penguin! (3 of 3)")),
        read(f"{P}/lkm_exec_params/parameters/name", "Tux Penguin\n"),
        write(f"{P}/lkm_exec_params/parameters/count", "7"),
        read(f"{P}/lkm_exec_params/parameters/count", "7\n"),
        rm(M + "params", log=("goodbye, Tux Penguin",)),
    )),
    Case("params_init_einval", (
        ins(M + "params", "count=11", rc=1, log=("count must be between 0 and 10, not 11",),
            stderr="Invalid parameters"),
    )),
    Case("params_too_many", (
        ins(M + "params", "values=1,2,3,4,5,6", rc=1,
            log=("values: can only take 5 arguments",), stderr="Invalid parameters"),
    )),
    Case("params_bad_value", (
        ins(M + "params", "count=many", rc=1,
            log=("`many' invalid for parameter `count'",), stderr="Invalid parameters"),
    )),
    Case("printk_levels", (
        ins(M + "printk", log=("emerg (0)", "alert (1)", "crit (2)", "err (3)", "warning (4)",
                               "notice (5)", "info (6)", "printk without a level",
                               "a line made of two printk calls", "counting: 1 2 3 done")),
        rm(M + "printk", log=("lkm_exec_printk: exit",)),
    )),
    Case("printk_formats", (
        ins(M + "format", log=("d: [42] [   42] [42   ] [00042] [+42] [ 42] [0042]",
                               "%pS: format_helper+0x0/", "%pe: [-ENOMEM] [-ENODEV]",
                               "ipv4: 192.168.1.1", "mac: 00:11:22:aa:bb:cc")),
        rm(M + "format"),
    )),
    Case("init_enomem", (
        ins(M + "enomem", rc=1, log=("buffer 0 allocated", "buffer 1 allocated",
                                     "cannot allocate buffer 2"),
            stderr="Cannot allocate memory"),
    ), watch=(M + "enomem",)),
    Case("init_eperm", (
        ins(M + "eperm", rc=1, log=("not allowed (load with allow=1)",),
            stderr="Operation not permitted"),
        ins(M + "eperm", "allow=1", log=("allowed",)),
        rm(M + "eperm", log=("exit",)),
    )),
    Case("init_enodev", (
        ins(M + "enodev", rc=1, log=("probing for a card at 0x300", "no card found at 0x300"),
            stderr="No such device"),
    ), watch=(M + "enodev",)),
    Case("init_positive", (
        ins(M + "positive", log=("registered 3 handlers", "suspiciously returned 3",
                                 "loading module anyway")),
        rm(M + "positive", log=("unregistered 3 handlers",)),
    )),
    Case("memory", (
        ins(M + "mem", log=("kzalloc: 0 0 0 0", "krealloc: kept 1 2 3 4, sum of 8 is 36",
                            "snprintf: returned 10, buffer [abcdef-]",
                            "strscpy: returned -7 (-E2BIG), buffer [much to]",
                            'kstrtoint("1234", 0) = 0, value 1234')),
        rm(M + "mem"),
    )),
    Case("export_call", (
        ins(M + "caller", rc=1, log=("Unknown symbol lkm_exec_add",),
            stderr="Unknown symbol in module"),
        ins(M + "export", log=("ready",)),
        ins(M + "caller", log=("lkm_exec_add(2, 3), call 1", "lkm_exec_add(2, 3) = 5",
                               "lkm_exec_add(sum, 10) = 15",
                               "greetings from lkm_exec_export")),
        read(f"{P}/lkm_exec_export/refcnt", "1\n"),
        rm(M + "export", rc=1, stderr="is in use by: lkm_exec_caller"),
        rm(M + "caller", log=("lkm_exec_add(-1, 1) = 0",)),
        rm(M + "export", log=("called 3 times",)),
    ), watch=(M + "export", M + "caller")),
    Case("refcount", (
        # init runs with the reference the loader holds during init: module_refcount 1
        ins(M + "refcnt", log=("init: module_refcount 1",
                               "holding 1 references, module_refcount 2")),
        read(f"{P}/lkm_exec_refcnt/refcnt", "1\n"),
        rm(M + "refcnt", rc=1, stderr="is in use"),
        write(f"{P}/lkm_exec_refcnt/parameters/hold", "3",
              log=("holding 3 references, module_refcount 3",)),
        read(f"{P}/lkm_exec_refcnt/parameters/hold", "3\n"),
        write(f"{P}/lkm_exec_refcnt/parameters/hold", "lots", rc=22),
        write(f"{P}/lkm_exec_refcnt/parameters/hold", "0",
              log=("holding 0 references, module_refcount 0",)),
        # exit runs after delete_module dropped the base reference: module_refcount -1
        rm(M + "refcnt", log=("exit: module_refcount -1",)),
        ins(M + "refcnt", "hold=2", log=("holding 2 references, module_refcount 3",)),
        write(f"{P}/lkm_exec_refcnt/parameters/hold", "0"),
        rm(M + "refcnt"),
    ), watch=(M + "refcnt",)),
    Case("loglevel", (
        ins(M + "loglevel", log=("error: something went wrong (loglevel 1)",)),
        rm(M + "loglevel"),
        ins(M + "loglevel", "loglevel=0"),
        rm(M + "loglevel"),
        ins(M + "loglevel", "loglevel=2", log=("info: loglevel is 2", "error: something")),
        write(f"{P}/lkm_exec_loglevel/parameters/loglevel", "3"),
        rm(M + "loglevel", log=("info: unloading (loglevel 3)",)),
        ins(M + "loglevel", "loglevel=3", "dyndbg=+p",
            log=("debug: init starts", "info: loglevel is 3", "error: something",
                 "debug: init ends")),
        rm(M + "loglevel", log=("info: unloading (loglevel 3)", "debug: unloaded")),
    ), watch=(M + "loglevel",)),
    Case("time", (
        ins(M + "time", log=("HZ=250 msecs_to_jiffies(100)=25 jiffies_to_msecs(250)=1000",
                             "jiffies wrapped: yes",
                             "at least 100 ms: jiffies yes, ktime yes",
                             "time_after(jiffies, start) = 1",
                             "udelay(50) + mdelay(2) took <n> us",
                             "wall clock after 2020: yes")),
        rm(M + "time"),
    ), masks=((r"uptime by jiffies: \d+ s, by ktime_get_boottime_seconds: \d+ s",
               "uptime by jiffies: <n> s, by ktime_get_boottime_seconds: <n> s"),
              (r"took \d+ ms by jiffies, \d+ us by ktime",
               "took <n> ms by jiffies, <n> us by ktime"),
              (r"mdelay\(2\) took \d+ us", "mdelay(2) took <n> us"))),
    Case("locks", (
        ins(M + "locks", log=("mutex held: is_locked 1, trylock 0", "mutex released: is_locked 0",
                              "spinlock held: is_locked 1, preempt_count 1, in_atomic 1",
                              "irqsave: irqs_disabled 1, preempt_count 1",
                              "released: is_locked 0, irqs_disabled 0, preempt_count 0",
                              "atomic: inc_return 7, dec_and_test 0, read 6",
                              "counter 4, ctx value 4")),
        rm(M + "locks", log=("exit: counter 4",)),
    )),
    Case("use_after_free", (
        ins(M + "uaf", log=("before kfree: id=7 name=seven counter=1000 flags=5",
                            "after kfree: id=7 name=seven counter=")),
        rm(M + "uaf"),
    ), masks=((r"(after kfree: .*counter=)-?\d+", r"\1<freed>"),)),
    Case("warn_on", (
        ins(M + "warn", log=("before WARN_ON", "------------[ cut here ]------------",
                             "WARNING: CPU: 0 PID: <pid> at <dir>/lkm_exec_warn.c:",
                             "---[ end trace", "after WARN_ON: init goes on"), taint="W"),
        rm(M + "warn", log=("exit",)),
    )),
    Case("warn_on_once", (
        ins(M + "warn_once", log=("cut here", "WARNING: CPU: 0 PID: <pid> at",
                                  "3 of 3 checks failed")),
        rm(M + "warn_once"),
        ins(M + "warn_once", log=("cut here", "3 of 3 checks failed")),
        rm(M + "warn_once"),
    )),
    Case("warn_fmt", (
        ins(M + "warn_fmt", log=("cut here", "lkm_exec_warn_fmt: unexpected state 3",
                                 "WARNING: CPU: 0 PID: <pid> at", "lkm_exec_warn_fmt: loaded")),
        rm(M + "warn_fmt"),
    )),
    Case("sleep_in_atomic", (
        ins(M + "sleep_atomic", rc=None,
            log=("waiting for the hardware with the lock held", "scheduling while atomic")),
        rm(M + "sleep_atomic", rc=None),
    ), watch=(M + "sleep_atomic",)),
    # -- boots of their own: the module's code oopses or the watchdog fires ---------------
    Case("null_write_init", (
        ins(M + "null_write", rc=KILLED,
            log=("using device 1", "BUG: kernel NULL pointer dereference, address: "
                 "0000000000000004", "#PF: supervisor write access in kernel mode",
                 OOPS_61_612, "RIP: 0010:lkm_exec_null_write_init+"), taint="D"),
        rm(M + "null_write", rc=None),
    ), boot="null_write", watch=(M + "null_write",)),
    Case("null_read_exit", (
        ins(M + "null_read", log=("loaded",)),
        rm(M + "null_read", rc=KILLED,
           log=("BUG: kernel NULL pointer dereference, address: 0000000000000008",
                "#PF: supervisor read access in kernel mode", OOPS_61_612,
                "RIP: 0010:lkm_exec_null_read_exit+"), taint="D"),
        rm(M + "null_read", rc=None),
    ), boot="null_read", watch=(M + "null_read",)),
    Case("bug_on_init", (
        ins(M + "bug", rc=SEGV, log=("checking the table", "kernel BUG at <dir>/lkm_exec_bug.c:",
                                     "invalid opcode: 0000", "RIP: 0010:lkm_exec_bug_init+"),
            taint="D"),
    ), boot="bug", watch=(M + "bug",)),
    Case("double_kfree_exit", (
        ins(M + "double_free", log=("allocated 64 bytes: data",)),
        rm(M + "double_free", rc=None, log=("freed once", "kernel BUG at mm/slub.c:"),
           taint="D"),
    ), boot="double_free", watch=(M + "double_free",)),
    Case("soft_lockup", (
        write("/proc/sys/kernel/watchdog_thresh", "1"),
        write("/proc/sys/kernel/watchdog", "1"),
        ins(M + "lockup", log=("spinning for up to 30 s",
                               "watchdog: BUG: soft lockup - CPU#0 stuck for",
                               "done spinning: the watchdog reported it"), taint="L"),
        rm(M + "lockup"),
    ), boot="lockup", masks=((r"stuck for \d+s!", "stuck for <n>s!"),)),
)

BOOTS: tuple[str, ...] = tuple(dict.fromkeys(c.boot for c in CASES))


def cases_of(boot: str) -> list[Case]:
    return [c for c in CASES if c.boot == boot]


def case(name: str) -> Case:
    return next(c for c in CASES if c.name == name)
