"""Module code against the real kernel: the modules of tests/modules/exec/ run in Debian's 6.1
and 6.12 kernels under QEMU, and the same steps in the virtual kernel.

The cases are tests/exec_cases.py. In the guest, this file (``guest`` mode, run by the
venv's python in the chroot) runs each step with kmod's insmod/rmmod or a write/read of a
/proc or /sys file, and records after it: the exit status (a killed process: minus the
signal), stdout and stderr, the /dev/kmsg records the step produced (level, text), the
taint mask, and for the case's modules their /proc/modules line, refcnt, initstate and
taint. One guest per boot group; results are written after every step, so a guest that
hangs still leaves what it did.

The transcripts are normalised (``normalise_line``): pids, the build directory, kernel
addresses and hashed pointers (16 hex digits; small values such as a NULL+4 fault address
are kept), register dumps and ``Code:`` bytes in oopses, harness modules in ``Modules
linked in:``, and per case the values that differ between runs (timings, freed memory).
Structure stays: which lines appear, in which order, with what text and level.

Real results are cached under $LKM_TEST_CACHE/exec-fidelity/<release>/ keyed by
everything the guest sees (steps, module files, kernel, harness, guest code):
LKM_EXEC_FRESH=1 boots again anyway (once per process: the virtual comparison then
takes the results of the boot test_real made). The virtual kernel runs the modules'
code (lkm.kernel.exec) and must agree step for step; the real-kernel half is also
checked for sanity (exec_cases.Want).

  python tests/test_exec_fidelity.py record OUTDIR [6.1|6.12 ...]   # write transcripts:
      OUTDIR/<release>/<case>.txt (normalised) and <case>.raw.txt
  python tests/test_exec_fidelity.py guest PLAN OUT                 # what the guest runs
"""

from __future__ import annotations

import errno as errno_mod
import hashlib
import inspect
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from exec_cases import BOOTS, CASES, Case, Step, cases_of  # noqa: E402

Result = dict[str, Any]  # one case: {"name", "steps": [step records]}
STEP_TIMEOUT = 120


# -- in the guest ---------------------------------------------------------------------------

def _kmsg_records(fd: int) -> list[str]:
    """The /dev/kmsg records not read yet (raw "pri,seq,usec,flags;text" lines)."""
    out: list[str] = []
    while True:
        try:
            rec = os.read(fd, 16384)
        except BlockingIOError:
            return out
        except OSError as e:
            if e.errno == errno_mod.EPIPE:  # overwritten before we read it
                continue
            raise
        out.append(rec.decode("utf-8", "replace").split("\n", 1)[0])


def _read_file(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            return f.read().decode("latin-1")
    except OSError:
        return None


def _module_state(name: str) -> dict[str, str | None]:
    line = next((ln for ln in (_read_file("/proc/modules") or "").splitlines()
                 if ln.split(" ", 1)[0] == name), None)
    base = f"/sys/module/{name}"
    return {"proc_modules": line, "refcnt": _read_file(f"{base}/refcnt"),
            "initstate": _read_file(f"{base}/initstate"), "taint": _read_file(f"{base}/taint")}


def _run_tool(argv: list[str]) -> dict[str, Any]:
    try:
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    except OSError as e:
        return {"rc": 127, "stdout": "", "stderr": f"{e}\n"}
    try:
        out, err = p.communicate(timeout=STEP_TIMEOUT)
    except subprocess.TimeoutExpired:
        p.kill()
        try:
            out, err = p.communicate(timeout=10)
        except subprocess.TimeoutExpired:  # stuck in the kernel
            out, err = b"", b""
        return {"rc": None, "timeout": True, "stdout": out.decode("utf-8", "replace"),
                "stderr": err.decode("utf-8", "replace")}
    return {"rc": p.returncode, "stdout": out.decode("utf-8", "replace"),
            "stderr": err.decode("utf-8", "replace")}


def _guest_step(step: dict[str, Any]) -> dict[str, Any]:
    op = step["op"]
    if op == "insmod":
        return _run_tool(["/sbin/insmod", step["file"], *step["args"]])
    if op == "rmmod":
        return _run_tool(["/sbin/rmmod", *step["args"], step["module"]])
    if op == "write":
        try:
            fd = os.open(step["path"], os.O_WRONLY)
            try:
                os.write(fd, step["value"].encode())
            finally:
                os.close(fd)
        except OSError as e:
            return {"rc": e.errno}
        return {"rc": 0}
    text = _read_file(step["path"])
    return {"rc": 0 if text is not None else 2, "text": text}


def guest_main(plan_file: str, out_file: str) -> int:
    plan = json.loads(Path(plan_file).read_text())
    kmsg = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    os.lseek(kmsg, 0, os.SEEK_END)
    results: list[Result] = []
    for case in plan["cases"]:
        res: Result = {"name": case["name"], "steps": []}
        results.append(res)
        for step in case["steps"]:
            rec = _guest_step(step)
            rec["log"] = _kmsg_records(kmsg)
            rec["tainted"] = (_read_file("/proc/sys/kernel/tainted") or "").strip()
            rec["modules"] = {m: _module_state(m) for m in case["modules"]}
            res["steps"].append(rec)
            tmp = Path(out_file + ".tmp")
            tmp.write_text(json.dumps(results))
            tmp.replace(out_file)
    return 0


GUEST_CODE = (_kmsg_records, _read_file, _module_state, _run_tool, _guest_step, guest_main)


# -- running the real kernel ------------------------------------------------------------------

GUEST_SCRIPT = """\
chroot /host "$PYTHON" "$LKM_REPO/tests/test_exec_fidelity.py" guest "$JOB/plan.json" \
  "$JOB/out.json"
echo "guest rc=$?"
"""


def plan(boot: str, kos: dict[str, Path]) -> dict[str, Any]:
    """What the guest runs for ``boot``: the cases with module files resolved."""
    def step(s: Step) -> dict[str, Any]:
        d: dict[str, Any] = {"op": s.op, "module": s.module, "args": list(s.args),
                             "path": s.path, "value": s.value}
        if s.op == "insmod":
            d["file"] = str(kos[s.module])
        return d

    return {"cases": [{"name": c.name, "modules": c.modules(), "steps": [step(s) for s in c.steps]}
                      for c in cases_of(boot)]}


def _cache_key(tree: Any, p: dict[str, Any], kos: dict[str, Path]) -> str:
    import vm

    h = hashlib.sha256(json.dumps(p, sort_keys=True).encode())
    for name in sorted({s["module"] for c in p["cases"] for s in c["steps"]
                        if s["op"] == "insmod"}):
        h.update(kos[name].read_bytes())
    st = tree.vmlinuz.stat()
    h.update(f"{tree.release} {st.st_size} {st.st_mtime_ns}".encode())
    h.update((vm.INIT + vm.BASE_CMDLINE + GUEST_SCRIPT).encode())
    for f in GUEST_CODE:
        h.update(inspect.getsource(f).encode())
    return h.hexdigest()[:16]


_BOOTED: set[Path] = set()  # results of boots made by this process (LKM_EXEC_FRESH: once)


def run_real(tree: Any, kos: dict[str, Path], boot: str, workdir: Path,
             fresh: bool = False) -> list[Result]:
    """Run ``boot``'s cases in the real kernel (or take the cached results of that run)."""
    import vm

    p = plan(boot, kos)
    cache = vm.CACHE / "exec-fidelity" / tree.release / f"{boot}-{_cache_key(tree, p, kos)}.json"
    fresh = fresh or (os.environ.get("LKM_EXEC_FRESH") == "1" and cache not in _BOOTED)
    if cache.is_file() and not fresh:
        cached: list[Result] = json.loads(cache.read_text())
        return cached
    job = workdir / f"job-{boot}"
    job.mkdir(parents=True, exist_ok=True)
    out = job / "out.json"
    out.unlink(missing_ok=True)
    (job / "plan.json").write_text(json.dumps(p))
    error: Exception | None = None
    try:
        res = vm.run_in_vm(tree, GUEST_SCRIPT, timeout=900, workdir=job)
        if "guest rc=0" not in res.output:
            error = RuntimeError(f"guest failed:\n{res.output[-3000:]}")
    except vm.VmError as e:
        error = e
    results: list[Result] = json.loads(out.read_text()) if out.is_file() else []
    done = sum(len(r["steps"]) for r in results)
    want = sum(len(c["steps"]) for c in p["cases"])
    if error is not None or done != want:
        raise RuntimeError(f"{tree.release} boot {boot}: {done}/{want} steps ran") from error
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(cache.name + f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(results))
    tmp.replace(cache)
    _BOOTED.add(cache)
    return results


# -- normalising ------------------------------------------------------------------------------

# what a slow TCG guest may print at any time, unrelated to the case (as test_fidelity.py)
NOISE = ("audit:", "random:", "clocksource:", "tsc:", "hrtimer:", "sched: RT throttling",
         "rcu:", "workqueue:", "perf:")
TAINT_LETTERS = "PFSRMBUDAWCIOELKXTN"
REGISTER_LINE = re.compile(r"^(RSP|RAX|RDX|RBP|R10|R13|FS|CS|CR2|DR0|DR3|DR6|PKRU):")
USER_RIP = re.compile(r"^RIP: 0033:.*")
STANDALONE_CR2 = re.compile(r"^CR2: [0-9a-f]{16}$")  # the fault address, after the oops
HEX16 = re.compile(r"(?<![0-9A-Za-z])(0x)?([0-9a-f]{16})(?![0-9A-Za-z])")
PIDS = ((re.compile(r"\b(PID|pid): \d+"), r"\1: <pid>"),
        (re.compile(r"\b(insmod|rmmod|python3?)([:/\[])\d+"), r"\1\2<pid>"))


def _hex16(m: re.Match[str]) -> str:
    value = int(m.group(2), 16)
    if value < 0x10000 or value >= 0xffffffffff000000:  # small, or a small negative number
        return m.group(0)
    kind = "<ptr>" if m.group(2).startswith("ffff") else (
        "<hash>" if m.group(2).startswith("00000000") else "<hex>")
    return (m.group(1) or "") + kind


def _modules_linked_in(line: str) -> str:
    """Keep the test modules only: the harness's 9p/virtio modules are not the case's."""
    head, _, rest = line.partition(":")
    tail = ""
    if "[last unloaded:" in rest:
        rest, _, t = rest.partition("[last unloaded:")
        tail = " [last unloaded:" + t
    mods = [w for w in rest.split() if w.startswith("lkm_")]
    return f"{head}: {' '.join(mods)}".rstrip() + tail


def normalise_line(line: str, build_dir: str, masks: tuple[tuple[str, str], ...] = ()) -> str:
    """One log (or stderr) line with what differs between runs replaced by placeholders."""
    if build_dir:
        line = line.replace(build_dir, "<dir>")
    for rx_s, rep in masks:
        line = re.sub(rx_s, rep, line)
    if line.startswith("Code: "):
        return "Code: <code>"
    if USER_RIP.match(line):
        return "RIP: 0033:<user>"
    if REGISTER_LINE.match(line) and not STANDALONE_CR2.match(line):
        return re.sub(r"\b[0-9a-f]{4,16}\b", "<reg>", line)
    if line.startswith("Modules linked in:"):
        line = _modules_linked_in(line)
    for rx, rep in PIDS:
        line = rx.sub(rep, line)
    line = HEX16.sub(_hex16, line)
    return line.rstrip()


def parse_kmsg(raw: str) -> tuple[int, str]:
    """(priority, text) of a /dev/kmsg record, its \\xNN escapes decoded."""
    head, _, text = raw.partition(";")
    pri = int(head.split(",", 1)[0])
    text = re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m.group(1), 16)), text)
    return pri, text


def taint_letters(mask: str) -> str:
    try:
        n = int(mask)
    except ValueError:
        return "?"
    return "".join(c for i, c in enumerate(TAINT_LETTERS) if n >> i & 1)


def normalise_step(rec: dict[str, Any], case: Case, build_dir: str) -> dict[str, Any]:
    """A step record as compared: log records (priority, normalised text); dropped: NOISE
    and the unreliable (" ? ") call-trace entries, stale return addresses left on the stack
    by earlier calls, which differ from run to run."""
    def norm(text: str) -> str:
        return "\n".join(normalise_line(t, build_dir, case.masks) for t in text.split("\n"))

    log = []
    for raw in rec.get("log", []):
        pri, text = parse_kmsg(raw) if isinstance(raw, str) else (raw[0], raw[1])
        if not text.startswith(NOISE) and not text.startswith(" ? "):
            log.append([pri, norm(text)])
    out: dict[str, Any] = {
        "rc": rec.get("rc"), "log": log, "tainted": rec.get("tainted"),
        "stdout": norm(rec.get("stdout", "")).splitlines(),
        "stderr": norm(rec.get("stderr", "")).splitlines(),
    }
    if "text" in rec:
        out["text"] = rec["text"]
    mods = {}
    for name, st in rec.get("modules", {}).items():
        mods[name] = {k: (norm(v).strip() if isinstance(v, str) else v) for k, v in st.items()}
    out["modules"] = mods
    return out


# -- transcripts ------------------------------------------------------------------------------

LEGEND = """\
# Normalised: <pid> pids; <dir> the directory the modules were built in (also in __FILE__);
# 16-digit hex values as <ptr> (ffff...: kernel addresses), <hash> (hashed %p) or <hex>,
# except those below 0x10000 (a NULL+4 fault address) or above 0xffffffffff000000 (small
# negative numbers); user-space RIP as <user>; register values in oops dumps <reg>;
# Code: bytes <code>; "Modules linked in:" keeps the test modules only (the harness loads
# 9p/virtio modules); call-trace entries marked "?" (stale stack contents, different in
# every run) and timing noise of the emulated machine (lines starting with {noise})
# dropped; case masks: {masks}.
# Log records are "<priority> text" (priority = facility * 8 + level, as dmesg -r shows);
# the lines of a multi-line record after its first are indented with "  | ".
"""


def _status(rc: int | None, op: str) -> str:
    if rc is None:
        return "exit status: none (timed out or not checked)"
    if op == "write":
        return "write: OK" if rc == 0 else f"write: {errno_mod.errorcode.get(rc, rc)} ({rc})"
    if op == "read":
        return "read: OK" if rc == 0 else "read: failed"
    if rc < 0:
        return f"exit status: killed by {signal.Signals(-rc).name} (shell: {128 - rc})"
    return f"exit status: {rc}"


def transcript(result: Result, case: Case, release: str, boot: str, before: list[str],
               build_dir: str, raw: bool = False) -> str:
    import vm

    out = [f"# case {case.name} on {release} (boot \"{boot}\"; cases before it in this boot: "
           f"{', '.join(before) or 'none'})",
           f"# kernel command line: {vm.BASE_CMDLINE}"]
    if raw:
        out.append("# raw: /dev/kmsg records as read (priority,seq,usec,flags;text)")
    else:
        masks = ", ".join(re.sub(r"\\\d", "", rep) for _, rep in case.masks) or "none"
        out += LEGEND.format(masks=masks, noise=", ".join(NOISE)).splitlines()
    for step, rec in zip(case.steps, result["steps"], strict=False):
        out.append("")
        argv = step.argv()
        if raw and step.op == "insmod":
            argv = ["/sbin/insmod", f"{build_dir}/{step.module}.ko", *step.args]
        elif raw and step.op == "rmmod":
            argv[0] = "/sbin/rmmod"
        out.append("$ " + " ".join(argv))
        n = rec if raw else normalise_step(rec, case, build_dir)
        out.append(_status(n.get("rc"), step.op))
        for stream in ("stdout", "stderr"):
            text = n.get(stream, "")
            lines = text.splitlines() if isinstance(text, str) else text
            out += [f"{stream}: {line}" for line in lines]
        if "text" in n:
            out.append(f"content: {n['text']!r}")
        out.append("log:" if n["log"] else "log: (nothing)")
        for entry in n["log"]:
            if raw:
                out.append(f"  {entry}")
                continue
            first, *more = entry[1].split("\n")
            out.append(f"  <{entry[0]}> {first}")
            out += [f"  | {m}" for m in more]
        out.append(f"tainted: {n['tainted']} ({taint_letters(n['tainted']) or '-'})")
        for name, st in n["modules"].items():
            if st["proc_modules"] is None:
                out.append(f"{name}: not loaded")
                continue
            vals = {k: (v.strip() if isinstance(v, str) else v) for k, v in st.items()}
            out.append(f"{name}: /proc/modules {vals['proc_modules']!r}; refcnt "
                       f"{vals['refcnt']}, initstate {vals['initstate']}, taint "
                       f"{vals['taint'] or '-'}")
    return "\n".join(out) + "\n"


def write_transcripts(results: list[Result], release: str, boot: str, build_dir: str,
                      outdir: Path) -> list[Path]:
    d = outdir / release
    d.mkdir(parents=True, exist_ok=True)
    written = []
    before: list[str] = []
    by_name = {c.name: c for c in CASES}
    for res in results:
        case = by_name[res["name"]]
        for raw, suffix in ((False, ".txt"), (True, ".raw.txt")):
            p = d / f"{case.name}{suffix}"
            p.write_text(transcript(res, case, release, boot, before, build_dir, raw))
            written.append(p)
        before.append(case.name)
    return written


# -- sanity of the real kernel's transcript ---------------------------------------------------

def check_real(results: list[Result], build_dir: str) -> list[str]:
    """Where the real transcript misses what exec_cases.Want asks (empty: all there)."""
    problems: list[str] = []
    by_name = {c.name: c for c in CASES}
    for res in results:
        case = by_name[res["name"]]
        for i, (step, rec) in enumerate(zip(case.steps, res["steps"], strict=True)):
            where = f"{case.name} step {i} ({' '.join(step.argv())})"
            n = normalise_step(rec, case, build_dir)
            w = step.want
            if w.rc is not None and n["rc"] != w.rc:
                problems.append(f"{where}: rc {n['rc']}, want {w.rc}; stderr {n['stderr']}")
            lines = [line for _, text in n["log"] for line in text.split("\n")]
            at = 0
            for sub in w.log:
                hit = next((j for j in range(at, len(lines)) if sub in lines[j]), None)
                if hit is None:
                    problems.append(f"{where}: no log line with {sub!r} (in order) in {lines}")
                    break
                at = hit + 1
            missing = set(w.taint) - set(taint_letters(n["tainted"]))
            if missing:
                problems.append(f"{where}: taint {n['tainted']} lacks {''.join(missing)}")
            if w.text is not None and n.get("text") != w.text:
                problems.append(f"{where}: read {n.get('text')!r}, want {w.text!r}")
            if w.stderr is not None and not any(w.stderr in line for line in n["stderr"]):
                problems.append(f"{where}: stderr {n['stderr']} lacks {w.stderr!r}")
    return problems


# -- the virtual kernel -----------------------------------------------------------------------

def run_virtual(tree: Any, kos: dict[str, Path], boot: str, workdir: Path) -> list[Result]:
    """The same steps on a virtual kernel of ``tree``: kmod-compatible tools through
    ``lkm --virtual DIR``, files and the log through the library."""
    import vm
    from conftest import LKM
    from lkm.errors import LkmError
    from lkm.kernel.profile import load_cached
    from lkm.kernel.virtual import VirtualKernel

    vdir = workdir / f"virtual-{boot}"
    vk = VirtualKernel.create(vdir, profile=load_cached(tree.root), cmdline=vm.BASE_CMDLINE,
                              depmod=False)
    seq = max((r.seq for r in vk.log_records()), default=0)

    def read(path: str) -> str | None:
        try:
            return str(VirtualKernel.open(vdir).read_text(path))
        except (OSError, LkmError):
            return None

    results: list[Result] = []
    for case in cases_of(boot):
        res: Result = {"name": case.name, "steps": []}
        results.append(res)
        for step in case.steps:
            rec: dict[str, Any]
            if step.op in ("insmod", "rmmod"):
                argv = ([step.op, str(kos[step.module]), *step.args] if step.op == "insmod"
                        else [step.op, *step.args, step.module])
                p = subprocess.run([LKM, "--virtual", str(vdir), *argv], capture_output=True,
                                   text=True, timeout=STEP_TIMEOUT)
                rec = {"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr}
            elif step.op == "write":
                try:
                    VirtualKernel.open(vdir).write_text(step.path, step.value)
                    rec = {"rc": 0}
                except OSError as e:
                    rec = {"rc": e.errno}
                except LkmError as e:  # not a file the virtual kernel has
                    rec = {"rc": None, "stderr": f"{e}\n"}
            else:
                text = read(step.path)
                rec = {"rc": 0 if text is not None else 2, "text": text}
            recs = [r for r in VirtualKernel.open(vdir).log_records() if r.seq > seq]
            if recs:
                seq = recs[-1].seq
            rec["log"] = [list(parse_kmsg(f"{r.level};{r.text}")) for r in recs]
            rec["tainted"] = (read("/proc/sys/kernel/tainted") or "").strip()
            mods: dict[str, Any] = {}
            for m in case.modules():
                line = next((ln for ln in (read("/proc/modules") or "").splitlines()
                             if ln.split(" ", 1)[0] == m), None)
                mods[m] = {"proc_modules": line, "refcnt": read(f"/sys/module/{m}/refcnt"),
                           "initstate": read(f"/sys/module/{m}/initstate"),
                           "taint": read(f"/sys/module/{m}/taint")}
            rec["modules"] = mods
            res["steps"].append(rec)
    return results


def compare(real: list[Result], virt: list[Result], build_dir: str
            ) -> tuple[int, int, list[str]]:
    """(steps agreeing, steps, differences) between normalised real and virtual records."""
    by_name = {c.name: c for c in CASES}
    agree = total = 0
    diffs: list[str] = []
    for r, v in zip(real, virt, strict=True):
        case = by_name[r["name"]]
        for i, (rs, vs) in enumerate(zip(r["steps"], v["steps"], strict=True)):
            total += 1
            nr, nv = normalise_step(rs, case, build_dir), normalise_step(vs, case, build_dir)
            fields = [k for k in sorted(set(nr) | set(nv)) if nr.get(k) != nv.get(k)]
            if not fields:
                agree += 1
                continue
            argv = " ".join(case.steps[i].argv())
            for k in fields:
                diffs.append(f"{case.name} step {i} ({argv}) {k}:\n  real: {nr.get(k)!r}\n"
                             f"  virt: {nv.get(k)!r}")
    return agree, total, diffs


# -- pytest -----------------------------------------------------------------------------------

def exec_modules_for(release: str) -> dict[str, Path]:
    from kbuild import build_modules

    return build_modules(release, exec_modules=True)


def _build_dir(kos: dict[str, Path]) -> str:
    return str(next(iter(kos.values())).parent)


if "pytest" in sys.modules:
    import shutil

    import pytest

    needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                                    reason="qemu-system-x86 not installed")

    @pytest.fixture(scope="session")
    def exec_modules(tree: Any) -> dict[str, Path]:
        from kbuild import headers_dir

        if headers_dir(tree.release) is None:
            pytest.skip(f"no linux-headers for {tree.release}")
        return exec_modules_for(tree.release)

    def test_cases_table(tree: Any, exec_modules: dict[str, Path]) -> None:
        """Every case names built modules; every module is used by a case."""
        used = {m for c in CASES for m in c.modules()}
        assert used == set(exec_modules)
        assert len({c.name for c in CASES}) == len(CASES)

    def test_normalise() -> None:
        d = "/b/exec"
        assert normalise_line("WARNING: CPU: 0 PID: 312 at /b/exec/x.c:9 f+0x1/0x10 [x]", d) \
            == "WARNING: CPU: 0 PID: <pid> at <dir>/x.c:9 f+0x1/0x10 [x]"
        assert normalise_line("RSP: 0018:ffffa1b2c3d4e5f6 EFLAGS: 00010246", d) == \
            "RSP: <reg>:<reg> EFLAGS: <reg>"
        assert normalise_line("BUG: kernel NULL pointer dereference, address: "
                              "0000000000000004", d).endswith("0000000000000004")
        assert normalise_line("p: 00000000d0c0ffee x 0xffffffffc0a01000", d) == \
            "p: <hash> x 0x<ptr>"
        assert normalise_line("Modules linked in: lkm_exec_warn(OE+) 9p netfs [last unloaded:"
                              " lkm_exec_uaf(OE)]", d) == \
            "Modules linked in: lkm_exec_warn(OE+) [last unloaded: lkm_exec_uaf(OE)]"
        assert normalise_line("soft lockup - CPU#0 stuck for 3s! [insmod:77]", d) == \
            "soft lockup - CPU#0 stuck for 3s! [insmod:<pid>]"
        assert parse_kmsg("4,12,345,-;a\\x0ab\\x5c") == (4, "a\nb\\")
        assert taint_letters("12800") == "WOE"

    @needs_qemu
    @pytest.mark.qemu
    @pytest.mark.trees
    @pytest.mark.parametrize("boot", BOOTS)
    def test_real(boot: str, tree: Any, exec_modules: dict[str, Path], tmp_path: Path) -> None:
        """The real kernel's transcripts show what each case is about (exec_cases.Want)."""
        results = run_real(tree, exec_modules, boot, tmp_path)
        build_dir = _build_dir(exec_modules)
        outdir = os.environ.get("LKM_EXEC_TRANSCRIPTS")
        if outdir:
            write_transcripts(results, tree.release, boot, build_dir, Path(outdir))
        problems = check_real(results, build_dir)
        assert not problems, "\n".join(problems)

    @needs_qemu
    @pytest.mark.qemu
    @pytest.mark.trees
    @pytest.mark.parametrize("boot", BOOTS)
    def test_virtual_matches_real(boot: str, tree: Any, exec_modules: dict[str, Path],
                                  tmp_path: Path) -> None:
        real = run_real(tree, exec_modules, boot, tmp_path)
        virt = run_virtual(tree, exec_modules, boot, tmp_path)
        agree, total, diffs = compare(real, virt, _build_dir(exec_modules))
        print(f"{tree.flavour} {boot}: {agree}/{total} steps agree")
        assert not diffs, f"{agree}/{total} steps agree\n" + "\n".join(diffs[:40])


def record_main(argv: list[str]) -> int:
    """``record OUTDIR [FLAVOUR...]``: run every boot (cached results reused) and write the
    transcripts."""
    import shutil
    import tempfile

    from conftest import _load_trees

    outdir = Path(argv[0])
    trees = _load_trees()
    flavours = argv[1:] or sorted(trees)
    only = os.environ.get("LKM_EXEC_BOOTS")  # e.g. "main,bug"
    boots = [b for b in BOOTS if not only or b in only.split(",")]
    status = 0
    for flavour in flavours:
        tree = trees[flavour]
        kos = exec_modules_for(tree.release)
        work = Path(tempfile.mkdtemp(prefix="lkm-exec-"))
        for boot in boots:
            try:
                results = run_real(tree, kos, boot, work)
            except RuntimeError as e:
                sys.stderr.write(f"{flavour} {boot}: {e}\n")
                status = 1
                continue
            for p in write_transcripts(results, tree.release, boot, _build_dir(kos), outdir):
                print(p)
            for problem in check_real(results, _build_dir(kos)):
                sys.stderr.write(f"{flavour} {boot}: {problem}\n")
                status = 1
        shutil.rmtree(work, ignore_errors=True)
    return status


if __name__ == "__main__":
    if len(sys.argv) >= 4 and sys.argv[1] == "guest":
        sys.exit(guest_main(sys.argv[2], sys.argv[3]))
    if len(sys.argv) >= 3 and sys.argv[1] == "record":
        sys.exit(record_main(sys.argv[2:]))
    sys.stderr.write(__doc__.split("\n\n")[-1] if __doc__ else "")
    sys.exit(2)
