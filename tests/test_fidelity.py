"""Fidelity: the virtual kernel against Debian's real 6.1 and 6.12 kernels under QEMU.

One list of steps per boot (insmod with arguments and flags, init_module, rmmod,
sysfs writes), run in order on the real kernel in a guest and on a virtual
kernel made from the same tree with the same command line. State carries over
between steps (once-only messages, taints, holders). After each step both sides
record: the errno, the kernel log lines the step produced (normalised: addresses,
hashed pointers and the dump_stack body), the taint mask, the /proc/modules lines
and the sysfs files of the test modules (values of parameters included). The
records must be equal, step by step.

The modules are tests/modules built with Kbuild, and copies mutated by variants.py
(vermagic, CRCs, section flags, ELF header fields, signatures, modinfo). The
virtual kernel does not run module code: it is told what the two modules whose
init does not return 0 return (``--init``).

Boots per kernel: "normal" (ends by turning on lockdown, then sig_enforce, at run
time) and "enforce" (module.sig_enforce=1 module_blacklist=crc_itu_t,lkm_alias).
Run ``python tests/test_fidelity.py guest STEPS OUT`` is what the guest executes.
"""

from __future__ import annotations

import errno
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from variants import make_variants

HERE = Path(__file__).resolve().parent

WATCH_PREFIX = ("lkm_", "crc7", "crc_itu_t", "crc8", "keyboard")
INIT_RESULTS = {"lkm_init_fail": -errno.ENOMEM, "lkm_init_positive": 1}
ENFORCE_CMDLINE = "module.sig_enforce=1 module_blacklist=crc_itu_t,lkm_alias"
O_TRUNC = os.O_TRUNC
O_NONBLOCK = os.O_NONBLOCK


# -- observing a kernel (runs in the guest on the real kernel, on the host on the virtual) --

def _ename(e: int) -> str:
    return errno.errorcode.get(e, str(e))


class Side:
    """How to act on and look at one kernel."""

    def finit(self, path: str, args: str, flags: int) -> None: ...
    def init(self, image: bytes, args: str) -> None: ...
    def delete(self, name: str, flags: int) -> None: ...
    def read(self, path: str) -> str: ...
    def listdir(self, path: str) -> list[str]: ...
    def write(self, path: str, value: str) -> None: ...
    def new_log(self) -> list[str]: ...


class LiveSide(Side):
    def __init__(self) -> None:
        from lkm.kernel.live import LiveKernel

        self.k = LiveKernel()
        self.kmsg = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
        self.new_log()

    def finit(self, path: str, args: str, flags: int) -> None:
        self.k.finit_module(path, args, flags)

    def init(self, image: bytes, args: str) -> None:
        self.k.init_module(image, args)

    def delete(self, name: str, flags: int) -> None:
        self.k.delete_module(name, flags)

    def read(self, path: str) -> str:
        with open(path, "rb") as f:
            return f.read().decode("latin-1")

    def listdir(self, path: str) -> list[str]:
        return os.listdir(path)

    def write(self, path: str, value: str) -> None:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, value.encode("latin-1"))
        finally:
            os.close(fd)

    def new_log(self) -> list[str]:
        out = []
        while True:
            try:
                rec = os.read(self.kmsg, 8192)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.EPIPE:
                    continue
                raise
            _head, _, text = rec.decode("utf-8", "replace").partition(";")
            out.append(text.split("\n", 1)[0])
        return out


class VirtualSide(Side):
    def __init__(self, vk: Any) -> None:
        self.vk = vk
        self.vk.comm = "python"  # the guest runs $PYTHON, the venv's "python"
        self.seq = max((r.seq for r in vk.log_records()), default=0)

    def finit(self, path: str, args: str, flags: int) -> None:
        self.vk.finit_module(path, args, flags)

    def init(self, image: bytes, args: str) -> None:
        self.vk.init_module(image, args)

    def delete(self, name: str, flags: int) -> None:
        self.vk.delete_module(name, flags)

    def read(self, path: str) -> str:
        return str(self.vk.read_text(path))

    def listdir(self, path: str) -> list[str]:
        return list(self.vk.list_dir(path))

    def write(self, path: str, value: str) -> None:
        self.vk.write_text(path, value)

    def new_log(self) -> list[str]:
        recs = [r for r in self.vk.log_records() if r.seq > self.seq]
        if recs:
            self.seq = recs[-1].seq
        return [r.text for r in recs]


# what a slow TCG guest may print at any time, unrelated to modules
NOISE = ("audit:", "random:", "clocksource:", "tsc:", "hrtimer:", "sched: RT throttling",
         "rcu:", "watchdog:", "workqueue:", "perf:")
_ADDR = re.compile(r"\b(0x)?[0-9a-f]{16}\b")


def normalise_log(lines: list[str]) -> list[str]:
    """Drop dump_stack's body and what the guest's own activity prints; hide addresses."""
    out: list[str] = []
    in_stack = False
    for line in lines:
        if in_stack:
            if line.strip() == "</TASK>":
                in_stack = False
            continue
        if line.startswith("CPU: ") and " PID: " in line:
            in_stack = True
            continue
        if line.startswith(NOISE):
            continue
        out.append(_ADDR.sub("ADDR", line))
    return out


def _watched(name: str) -> bool:
    return name.startswith(WATCH_PREFIX)


def observe(side: Side) -> dict[str, Any]:
    """The state after a step: taint, /proc/modules lines and sysfs of watched modules."""
    obs: dict[str, Any] = {"tainted": side.read("/proc/sys/kernel/tainted").strip()}
    lines = [line for line in side.read("/proc/modules").splitlines()
             if _watched(line.split(" ", 1)[0])]
    obs["proc_modules"] = [_ADDR.sub("ADDR", line) for line in lines]
    sysfs: dict[str, Any] = {}
    for line in lines:
        name = line.split(" ", 1)[0]
        base = f"/sys/module/{name}"
        d: dict[str, Any] = {"entries": side.listdir(base)}  # readdir order (kernfs hash)
        for f in ("coresize", "initsize", "initstate", "refcnt", "taint", "version",
                  "srcversion"):
            try:
                d[f] = side.read(f"{base}/{f}")
            except OSError as e:
                d[f] = _ename(e.errno or 0)
        d["holders"] = side.listdir(f"{base}/holders")
        params: dict[str, str] = {}
        d["parameter_order"] = []
        try:
            pnames = side.listdir(f"{base}/parameters")
        except OSError:
            pnames = []
        d["parameter_order"] = pnames
        for p in pnames:
            try:
                params[p] = side.read(f"{base}/parameters/{p}")
            except OSError as e:
                params[p] = _ename(e.errno or 0)
        d["parameters"] = params
        try:
            d["sections"] = side.listdir(f"{base}/sections")
        except OSError as e:
            d["sections"] = _ename(e.errno or 0)
        sysfs[name] = d
    obs["sysfs"] = sysfs
    # /sys/module in readdir order: the test modules and a few built-ins
    obs["sys_module"] = [n for n in side.listdir("/sys/module")
                         if _watched(n) or n in ("kernel", "module", "printk", "block", "vt")]
    try:
        obs["sig_enforce"] = side.read("/sys/module/module/parameters/sig_enforce").strip()
    except OSError as e:
        obs["sig_enforce"] = _ename(e.errno or 0)
    return obs


def run_step(side: Side, step: dict[str, Any]) -> dict[str, Any]:
    """Do one step; its errno, log lines and the state afterwards."""
    op = step["op"]
    err = 0
    extra: dict[str, Any] = {}
    from lkm.errors import KernelError

    try:
        if op == "insmod":
            side.finit(step["file"], step.get("args", ""), step.get("flags", 0))
        elif op == "init_module":
            data = Path(step["file"]).read_bytes()
            if "truncate" in step:
                data = data[:step["truncate"]]
            side.init(data, step.get("args", ""))
        elif op == "rmmod":
            side.delete(step["name"], step.get("flags", O_NONBLOCK))
        elif op == "write":
            side.write(step["path"], step["value"])
        elif op == "read":
            extra["text"] = side.read(step["path"])
        else:
            raise ValueError(op)
    except KernelError as e:
        err = e.errno
    except OSError as e:
        err = e.errno or 0
    obs = {"step": step["tag"], "errno": _ename(err) if err else "0",
           "log": normalise_log(side.new_log())}
    obs.update(extra)
    obs.update(observe(side))
    return obs


def run_steps(side: Side, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [run_step(side, s) for s in steps]


def guest_main(argv: list[str]) -> int:
    steps = json.loads(Path(argv[0]).read_text())
    side = LiveSide()
    out = run_steps(side, steps)
    tmp = Path(argv[1] + ".tmp")
    tmp.write_text(json.dumps(out))
    tmp.replace(argv[1])
    return 0


# -- the scenarios ------------------------------------------------------------------------

def normal_steps(f: dict[str, Path]) -> list[dict[str, Any]]:
    def ins(tag: str, name: str, args: str = "", flags: int = 0) -> dict[str, Any]:
        return {"tag": tag, "op": "insmod", "file": str(f[name]), "args": args,
                "flags": flags}

    def rm(tag: str, name: str, flags: int = O_NONBLOCK) -> dict[str, Any]:
        return {"tag": tag, "op": "rmmod", "name": name, "flags": flags}

    def wr(tag: str, path: str, value: str) -> dict[str, Any]:
        return {"tag": tag, "op": "write", "path": path, "value": value}

    P = "/sys/module/lkm_params/parameters/"
    return [
        ins("signed module loads, no taint", "crc7"),
        ins("tampered signed module: rejected", "crc_itu_t_tampered"),
        ins("signature info with non-zero params", "crc_itu_t_sigparams"),
        ins("signature of unsupported id_type: loads unsigned", "crc_itu_t_idtype"),
        ins("unsigned in-tree module: taint E once", "lkm_intree"),
        ins("duplicate name carrying new taints (6.1 taints, 6.12 not)", "lkm_intree_staging"),
        ins("parameters of every type", "lkm_params",
            'p_int=-12 p_charp="a b" p_bool p_invbool=y p_array=5,6,7 p_string=hello '
            "p_hexint=0x1f p-short=-7 p_byte=0377 p_ullong=18446744073709551615 junk=1 "
            "p_unsafe=3 dyndbg=+p -- p_int=1"),
        rm("unload", "lkm_params"),
        ins("bad parameter values: the last error wins", "lkm_params",
            "p_int=abc p_byte=300 p_string=12345678901234567 p_array=1,2,3,4,5"),
        ins("parameter overflow", "lkm_params", "p_long=99999999999999999999"),
        ins("parameter without value", "lkm_params", "p_int"),
        ins("charp too long", "lkm_params", "p_charp=" + "x" * 1025),
        ins("plain load", "lkm_params"),
        wr("sysfs write int", P + "p_int", "42\n"),
        wr("sysfs write invalid", P + "p_int", "x"),
        wr("sysfs write read-only", P + "p_ushort", "1"),
        wr("sysfs write bool", P + "p_bool", "n"),
        wr("sysfs write array", P + "p_array", "9,8,7,6\n"),
        wr("sysfs write string too long", P + "p_string", "0123456789abcdef"),
        wr("sysfs write charp", P + "p_charp", "new value\n"),
        ins("same module again: EEXIST", "lkm_params"),
        ins("user of both exports", "lkm_user"),
        rm("used module: EWOULDBLOCK", "lkm_params"),
        ins("duplicate export (module)", "lkm_dup_export"),
        ins("duplicate export (kernel)", "lkm_dup_kernel"),
        ins("proprietary module: taint P", "lkm_prop"),
        ins("GPL-only symbol from a proprietary module", "lkm_prop_gpl"),
        rm("unload user", "lkm_user"),
        rm("unload prop", "lkm_prop"),
        rm("unload params", "lkm_params"),
        ins("proprietary exporter", "lkm_params_bsd"),
        ins("GPL user of a proprietary exporter", "lkm_user"),
        ins("inherits P from a proprietary exporter", "lkm_prop_gpl_license"),
        rm("unload inheritor", "lkm_prop"),
        rm("unload proprietary exporter", "lkm_params"),
        ins("namespace exporter", "lkm_ns_export"),
        ins("namespace importer", "lkm_ns_user"),
        ins("namespace not imported", "lkm_ns_noimport"),
        ins("staging: taint C", "lkm_staging"),
        ins("test module: taint N", "lkm_testmod"),
        ins("weak undefined symbol", "lkm_weak"),
        ins("common symbol", "lkm_common"),
        ins("init fails", "lkm_init_fail"),
        ins("init returns > 0", "lkm_init_positive"),
        ins("no exit function", "lkm_noexit"),
        rm("no exit: EBUSY", "lkm_noexit"),
        rm("no exit, forced: taint R", "lkm_noexit", O_NONBLOCK | O_TRUNC),
        rm("not loaded: ENOENT", "lkm_nonexistent"),
        ins("vermagic of another release, modversions", "lkm_alias_otherrel"),
        ins("bad vermagic forced on a loaded name: F then EEXIST", "lkm_alias_badmagic", "",
            2),
        rm("unload alias", "lkm_alias"),
        ins("bad vermagic", "lkm_alias_badmagic"),
        ins("bad vermagic, forced", "lkm_alias_badmagic", "", 2),
        rm("unload alias again", "lkm_alias"),
        rm("unload intree", "lkm_intree"),
        ins("modversions ignored", "lkm_intree", "", 1),
        ins("module_layout CRC mismatch", "lkm_alias_layoutcrc"),
        ins("exporter for CRC cases", "lkm_params"),
        ins("CRC mismatch", "lkm_user_badcrc"),
        ins("no symbol version", "lkm_user_nover"),
        ins("WRITE|EXEC section", "lkm_alias_wx"),
        ins("wrong machine", "lkm_alias_machine"),
        ins("not ET_REL", "lkm_alias_type"),
        ins("too short", "lkm_alias_short"),
        ins("bad magic", "lkm_alias_magic"),
        ins("bad section header size", "lkm_alias_shentsize"),
        ins("section past the end", "lkm_alias_secoff"),
        ins("no symbol table", "lkm_alias_nosym"),
        ins("no .gnu.linkonce.this_module", "lkm_alias_nothis"),
        ins("unknown relocation", "lkm_alias_badrela"),
        ins("invalid section index", "lkm_alias_badshndx"),
        ins("not compiled with retpoline", "lkm_alias_noretpoline"),
        rm("unload", "lkm_alias"),
        ins("livepatch module", "lkm_alias_livepatch"),
        rm("unload livepatch", "lkm_alias"),
        ins("two .modinfo sections (6.12 refuses)", "lkm_alias_twomodinfo"),
        rm("unload", "lkm_alias"),
        ins("struct module of another size (6.12 refuses)", "lkm_alias_bigthis"),
        rm("unload", "lkm_alias"),
        ins("name of a built-in with sysfs", "keyboard"),
        rm("unload test module", "lkm_testmod"),
        ins("signed with an unknown key", "lkm_testmod_signed"),
        {"tag": "init_module with 10 bytes", "op": "init_module", "file": str(f["lkm_alias"]),
         "truncate": 10},
        {"tag": "init_module of a module", "op": "init_module", "file": str(f["lkm_alias"])},
        ins("bad finit flags", "lkm_alias", "", 8),
        ins("in-kernel decompression", "crc8_xz", "", 4),
        ins("in-kernel decompression of an uncompressed file", "lkm_intree", "", 4),
        wr("lockdown integrity", "/sys/kernel/security/lockdown", "integrity\n"),
        ins("unsigned under lockdown", "lkm_common"),
        rm("unload a signed module", "crc7"),
        ins("signed under lockdown", "crc7"),
        wr("lockdown none again", "/sys/kernel/security/lockdown", "none"),
        wr("sig_enforce on", "/sys/module/module/parameters/sig_enforce", "1"),
        wr("sig_enforce off refused", "/sys/module/module/parameters/sig_enforce", "0"),
        ins("unsigned under sig_enforce", "lkm_staging"),
        rm("unload user last", "lkm_ns_user"),
    ]


def enforce_steps(f: dict[str, Path]) -> list[dict[str, Any]]:
    def ins(tag: str, name: str, args: str = "", flags: int = 0) -> dict[str, Any]:
        return {"tag": tag, "op": "insmod", "file": str(f[name]), "args": args,
                "flags": flags}

    return [
        ins("unsigned: rejected", "lkm_params"),
        ins("signed: loads", "crc7"),
        ins("unknown key: rejected", "lkm_testmod_signed"),
        ins("unsupported id_type: rejected", "crc_itu_t_idtype"),
        ins("tampered: rejected", "crc_itu_t_tampered"),
        ins("blacklisted, validly signed", "crc_itu_t"),
        ins("blacklisted but unsigned: the signature check comes first", "lkm_alias"),
        ins("forced vermagic makes it unsigned", "crc8_xz", "", 2),
        {"tag": "init_module, unsigned", "op": "init_module", "file": str(f["lkm_weak"])},
        {"tag": "sig_enforce cannot be cleared", "op": "write",
         "path": "/sys/module/module/parameters/sig_enforce", "value": "0\n"},
        {"tag": "read sig_enforce", "op": "read",
         "path": "/sys/module/module/parameters/sig_enforce"},
        {"tag": "modules_disabled cannot be 0", "op": "write",
         "path": "/proc/sys/kernel/modules_disabled", "value": "0\n"},
        {"tag": "modules_disabled", "op": "write", "path": "/proc/sys/kernel/modules_disabled",
         "value": "1\n"},
        ins("no loading once modules are disabled", "crc8_xz", "", 4),
        {"tag": "no unloading once modules are disabled", "op": "rmmod", "name": "crc7",
         "flags": O_NONBLOCK},
        {"tag": "read modules_disabled", "op": "read",
         "path": "/proc/sys/kernel/modules_disabled"},
    ]


# -- running both sides -------------------------------------------------------------------

GUEST_SCRIPT = """\
mount -t securityfs securityfs /host/sys/kernel/security
chroot /host "$PYTHON" "$LKM_REPO/tests/test_fidelity.py" guest "$JOB/steps.json" "$JOB/out.json"
echo "guest rc=$?"
"""


def run_real(tree: Any, steps: list[dict[str, Any]], cmdline: str, workdir: Path
             ) -> list[dict[str, Any]]:
    sys.path.insert(0, str(HERE))
    from vm import run_in_vm

    workdir.mkdir(parents=True, exist_ok=True)
    out = workdir / "out.json"
    if out.exists():
        out.unlink()
    (workdir / "steps.json").write_text(json.dumps(steps))
    res = run_in_vm(tree, GUEST_SCRIPT, append=cmdline, timeout=900, workdir=workdir)
    if not out.is_file():
        raise RuntimeError(f"guest produced no result (rc {res.rc}):\n{res.output[-3000:]}\n"
                           f"{res.console[-3000:]}")
    result: list[dict[str, Any]] = json.loads(out.read_text())
    return result


def run_virtual(tree: Any, steps: list[dict[str, Any]], cmdline: str, workdir: Path
                ) -> list[dict[str, Any]]:
    from lkm.kernel.profile import load_cached
    from lkm.kernel.virtual import VirtualKernel

    profile = load_cached(tree.root)
    vk = VirtualKernel.create(workdir / "virtual", profile=profile, cmdline=cmdline,
                              init_results=INIT_RESULTS, depmod=False)
    side = VirtualSide(vk)
    return run_steps(side, steps)


def compare(real: list[dict[str, Any]], virt: list[dict[str, Any]]
            ) -> tuple[int, list[tuple[str, dict[str, tuple[Any, Any]]]]]:
    """(steps agreeing, [(step, {field: (real, virtual)})] for the others)."""
    agree = 0
    diffs: list[tuple[str, dict[str, tuple[Any, Any]]]] = []
    for r, v in zip(real, virt, strict=True):
        d = {k: (r.get(k), v.get(k)) for k in sorted(set(r) | set(v)) if r.get(k) != v.get(k)}
        if d:
            diffs.append((r["step"], d))
        else:
            agree += 1
    return agree, diffs


def fidelity(tree: Any, kos: dict[str, Path], boot: str, workdir: Path
             ) -> tuple[int, int, list[tuple[str, dict[str, tuple[Any, Any]]]]]:
    files = make_variants(kos, tree, workdir / "modules")
    if boot == "normal":
        steps, cmdline = normal_steps(files), ""
    else:
        steps, cmdline = enforce_steps(files), ENFORCE_CMDLINE
    virt = run_virtual(tree, steps, cmdline, workdir)
    real = run_real(tree, steps, cmdline, workdir / "job")
    agree, diffs = compare(real, virt)
    (workdir / "report.json").write_text(json.dumps(
        {"agree": agree, "total": len(steps), "diffs": diffs, "real": real, "virtual": virt},
        indent=1))
    return agree, len(steps), diffs


# -- sizes of the tree's own modules -------------------------------------------------------

SIZES_SCRIPT = """\
chroot /host /sbin/modprobe -a $(cat "$JOB/list") >/dev/null 2>&1
cat /proc/modules > "$JOB/modules.txt"
echo done
"""


def size_candidates(tree: Any, limit: int = 400) -> list[str]:
    """Modules of the tree that load without hardware: crypto, lib, fs, a few of net."""
    names: list[str] = []
    for sub in ("crypto", "lib", "fs", "net/ipv4", "net/ipv6", "net/netfilter", "net/sched"):
        for p in sorted((tree.moddir / "kernel" / sub).rglob("*.ko*")):
            n = p.name.split(".", 1)[0].replace("-", "_")
            if n.startswith(("test_", "kunit")) or "test" in n:
                continue
            names.append(n)
    return names[:limit]


def sizes_fidelity(tree: Any, workdir: Path) -> tuple[int, int, list[str]]:
    """Load many of the tree's modules in the guest (kmod modprobe), then the same modules
    in the same order into a virtual kernel; compare the /proc/modules lines."""
    sys.path.insert(0, str(HERE))
    from lkm.compress import read_module
    from lkm.errors import KernelError
    from lkm.kernel.module.main import load_module
    from lkm.kernel.module.procfs import proc_modules_line
    from lkm.kernel.module.state import KernelState
    from lkm.kernel.profile import load_cached
    from lkm.kmod.moddir import ModuleDir
    from vm import run_in_vm

    job = workdir / "job"
    job.mkdir(parents=True, exist_ok=True)
    # 6.12's modules are .ko.xz, which kmod decompresses slowly under TCG: fewer of them
    limit = 400 if tree.moddir.joinpath("kernel/lib/crc7.ko").is_file() else 120
    (job / "list").write_text("\n".join(size_candidates(tree, limit)) + "\n")
    res = run_in_vm(tree, SIZES_SCRIPT, timeout=900, workdir=job)
    text = (job / "modules.txt").read_text() if (job / "modules.txt").is_file() else ""
    if not text:
        raise RuntimeError(f"no /proc/modules from the guest: {res.output[-2000:]}")
    real = [line.split() for line in text.splitlines()]
    k = KernelState(load_cached(tree.root))
    md = ModuleDir(str(tree.kmod_moddir))
    bad: list[str] = []
    for f in reversed(real):
        entry = md.lookup_name(f[0])
        if entry is None or entry.path is None:
            bad.append(f"{f[0]}: not in modules.dep")
            continue
        data, _ = read_module(entry.path)
        try:
            load_module(k, bytes(data), "")
        except KernelError as e:
            bad.append(f"{f[0]}: virtual load failed: {e.errno_name} {e.messages}")
    virt = {line.split()[0]: line.split() for line in
            "".join(proc_modules_line(m) for m in k.modules).splitlines()}
    agree = 0
    for f in real:
        v = virt.get(f[0])
        if v is None:
            continue
        # name, size, users column and taint flags (refcounts may include references the
        # modules' own code takes at init, which the virtual kernel does not run)
        rv = (f[1], sorted(f[3].split(",")), f[6:])
        vv = (v[1], sorted(v[3].split(",")), v[6:])
        if rv == vv:
            agree += 1
        else:
            bad.append(f"{f[0]}: real {' '.join(f)} / virtual {' '.join(v)}")
    (workdir / "sizes.txt").write_text(f"{agree}/{len(real)}\n" + "\n".join(bad) + "\n")
    return agree, len(real), bad


# -- pytest --------------------------------------------------------------------------------

if "pytest" in sys.modules:
    import pytest

    @pytest.mark.qemu
    @pytest.mark.parametrize("boot", ["normal", "enforce"])
    def test_fidelity(boot: str, tree: Any, test_modules: dict[str, Path],
                      tmp_path: Path) -> None:
        kos = test_modules
        agree, total, diffs = fidelity(tree, kos, boot, tmp_path)
        lines = [f"{tree.flavour} {boot}: {agree}/{total} steps agree"]
        for step, d in diffs:
            lines.append(f"  {step}:")
            for k, (r, v) in d.items():
                lines.append(f"    {k}: real={r!r}\n    {' ' * len(k)}  virt={v!r}")
        print("\n".join(lines))
        assert not diffs, "\n".join(lines)


    @pytest.mark.qemu
    def test_sizes(tree: Any, tmp_path: Path) -> None:
        agree, total, bad = sizes_fidelity(tree, tmp_path)
        print(f"{tree.flavour}: {agree}/{total} /proc/modules lines agree")
        assert not bad, "\n".join(bad)


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "guest":
        sys.exit(guest_main(sys.argv[2:]))
    sys.stderr.write("usage: test_fidelity.py guest STEPS OUT\n")
    sys.exit(2)
