"""lkm audit: findings on the test modules of tests/modules/audit/ (each shows one indicator,
the clean ones none), on Debian's own modules (their taints and nothing else, but for the
few that legitimately do such things), the live posture and cross-view (a fake backend, a
virtual kernel, and the real 6.1 kernel under QEMU with modules that hide themselves).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import LKM, Tree
from lkm.audit import CATALOG, Auditor, Severity, audit_files
from lkm.audit.findings import ModuleReport
from lkm.audit.live import modprobe_check, posture
from lkm.audit.symbols import _STEMS, NAMED
from lkm.kernel.backend import KernelBackend

needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None,
                                reason="qemu-system-x86 not installed")

TAINTS = {"taint.oot_module", "taint.unsigned_module"}  # every test module: O and E
EXPECTED = {
    "lkm_audit_clean": set(),
    "lkm_audit_sysfs": set(),
    "lkm_audit_kprobe": {"symbol.kallsyms_lookup_name", "symbol.kprobe"},
    "lkm_audit_lookup": {"symbol.kallsyms_lookup_name", "symbol.sys_call_table",
                         "symbol.text_poke", "load.refused"},
    "lkm_audit_ftrace": {"symbol.ftrace"},
    "lkm_audit_cr": {"code.cr0_write", "code.cr4_write"},
    "lkm_audit_idt": {"code.lidt", "code.sidt", "code.msr_lstar"},
    "lkm_audit_hide": {"module.list"},
    "lkm_audit_unsysfs": {"module.kobject"},
}
# Debian's modules that do such things, legitimately: KVM saves the host's IDT base and
# MSR_LSTAR around guest entry (arch/x86/kvm/vmx/vmx.c)
DEBIAN_EXPECTED = {("kvm_intel", "code.sidt"), ("kvm_intel", "code.msr_lstar")}


def _lkm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([LKM, *args], capture_output=True, text=True)


@pytest.fixture(scope="session")
def audit_modules(tree: Tree) -> dict[str, Path]:
    from kbuild import build_modules, headers_dir

    if headers_dir(tree.release) is None:
        pytest.skip(f"no linux-headers for {tree.release} (run scripts/install-system)")
    return build_modules(tree.release, audit_modules=True)


@pytest.fixture(scope="session")
def auditor(tree: Tree) -> Auditor:
    from lkm.kernel.check import module_dir_for
    from lkm.kernel.profile import load_cached

    profile = load_cached(tree.root)
    return Auditor(profile, lambda: module_dir_for(profile))


def _ids(r: ModuleReport) -> set[str]:
    return {f.id for f in r.findings}


def _find(r: ModuleReport, id_: str) -> tuple[str, list[str]]:
    f = next(f for f in r.findings if f.id == id_)
    return f.detail, [e.render() for e in f.evidence]


# --- the catalog ------------------------------------------------------------------------

def test_catalog() -> None:
    for id_, (severity, summary) in CATALOG.items():
        area, _, name = id_.partition(".")
        assert area in ("load", "signature", "symbol", "code", "module", "live", "taint")
        assert name and name == name.lower() and summary
        assert isinstance(severity, Severity)
    assert CATALOG["taint.oot_module"][0] == Severity.LOW
    assert all(any(s in n.encode() for s in _STEMS) for n in NAMED)


# --- the test modules -------------------------------------------------------------------

@pytest.mark.trees
def test_test_modules(tree: Tree, audit_modules: dict[str, Path], auditor: Auditor) -> None:
    assert set(audit_modules) == set(EXPECTED)
    for name, ko in sorted(audit_modules.items()):
        r = auditor.audit(ko)
        assert r.error is None and r.name == name
        assert _ids(r) == EXPECTED[name] | TAINTS, (name, r.render())
        assert r.verdict is not None and r.verdict.taint == "OE"
        assert r.verdict.loaded is (name != "lkm_audit_lookup")
        assert r.signature is not None and r.signature.status == "unsigned"
    r = auditor.audit(audit_modules["lkm_audit_cr"])
    detail, ev = _find(r, "code.cr0_write")
    assert detail == "clears CR0.WP before writing CR0"
    assert [e.split(": ", 1)[0].split(" <")[1] for e in ev] == \
        ["lkm_audit_cr_pattern>", "lkm_audit_cr_init>"]
    assert all(e.endswith("%cr0") for e in ev)
    detail, ev = _find(auditor.audit(audit_modules["lkm_audit_kprobe"]), "symbol.kprobe")
    assert ev == ["imports register_kprobe", ".data+0x30 <lkm_audit_kp>: kprobe on "
                  "kallsyms_lookup_name"]
    detail, _ = _find(auditor.audit(audit_modules["lkm_audit_kprobe"]),
                      "symbol.kallsyms_lookup_name")
    assert "kprobe" in detail
    r = auditor.audit(audit_modules["lkm_audit_lookup"])
    assert r.verdict is not None and r.verdict.errno == "ENOENT"
    _, ev = _find(r, "load.refused")
    assert "lkm_audit_lookup: Unknown symbol kallsyms_lookup_name (err -2)" in ev
    _, ev = _find(auditor.audit(audit_modules["lkm_audit_hide"]), "module.list")
    assert all("refers to THIS_MODULE->list" in e and "__this_module+0x" in e for e in ev)
    _, ev = _find(auditor.audit(audit_modules["lkm_audit_unsysfs"]), "module.kobject")
    assert len(ev) == 1 and "calls kobject_del" in ev[0]
    _, ev = _find(auditor.audit(audit_modules["lkm_audit_idt"]), "code.msr_lstar")
    assert ev[0].endswith("movl $0xc0000082, %edi")


@pytest.mark.trees
def test_without_a_kernel(audit_modules: dict[str, Path]) -> None:
    """No profile: no verdict and no taints, the indicators alone (module.list from the
    layout every kernel shares)."""
    a = Auditor(None)
    for name, ko in audit_modules.items():
        r = a.audit(ko)
        assert r.verdict is None and r.signature is None
        expected = EXPECTED[name] - {"load.refused", "module.kobject"}
        assert _ids(r) == expected, name


@pytest.mark.trees
def test_hostile_copies(audit_modules: dict[str, Path], tmp_path: Path) -> None:
    """Truncated and scrambled copies of the test modules: a report each (an error or
    findings), never an exception, in bounded time."""
    import random

    rng = random.Random(16)
    a = Auditor(None)
    t0 = time.monotonic()
    for name in ("lkm_audit_hide", "lkm_audit_cr", "lkm_audit_kprobe", "lkm_audit_unsysfs"):
        data = audit_modules[name].read_bytes()
        for i in range(12):
            bad = bytearray(data[:rng.randrange(64, len(data))] if i % 3 == 0 else data)
            for _ in range(rng.randrange(1, 64)):
                bad[rng.randrange(len(bad))] = rng.randrange(256)
            f = tmp_path / f"{name}-{i}.ko"
            f.write_bytes(bytes(bad))
            r = a.audit(f)
            assert r.error is not None or isinstance(r.findings, list)
    assert time.monotonic() - t0 < 60


@pytest.mark.trees
def test_signature_states(tree61: Tree, tmp_path: Path) -> None:
    """A Debian module changed after signing: signature.invalid, and the kernel refuses it
    (EKEYREJECTED is not one of module_sig_check's soft errors); with the signature
    stripped: unsigned, loads with taint E; the original: nothing."""
    from lkm.kernel.check import module_dir_for
    from lkm.kernel.profile import load_cached
    from lkm.module import ModuleFile
    from lkm.signing import strip_signature

    src = next(p for p in tree61.modules() if p.name == "dummy.ko")
    data = bytearray(src.read_bytes())
    with ModuleFile.open(src) as m:
        text = m.elf.section(".text")
        assert text is not None
        at = text.offset + text.size - 1
    changed = tmp_path / "dummy.ko"
    data[at] ^= 0xFF  # the last byte of .text
    changed.write_bytes(bytes(data))
    stripped = tmp_path / "stripped" / "dummy.ko"
    stripped.parent.mkdir()
    bare = strip_signature(src.read_bytes())
    assert bare is not None
    stripped.write_bytes(bare)
    profile = load_cached(tree61.root)
    a = Auditor(profile, lambda: module_dir_for(profile))
    assert _ids(a.audit(src)) == set()
    r = a.audit(changed)
    assert r.signature is not None and r.signature.status == "rejected"
    assert _ids(r) == {"signature.invalid", "load.refused"}
    assert r.verdict is not None and r.verdict.errno == "EKEYREJECTED"
    r = a.audit(stripped)
    assert r.signature is not None and r.signature.status == "unsigned"
    assert _ids(r) == {"taint.unsigned_module"}


@pytest.mark.trees
def test_debian_sample(tree: Tree) -> None:
    """A plain module reports its taints and nothing else: every 7th module of the tree
    (and KVM's) audited against its own kernel."""
    from lkm.kernel.check import module_dir_for
    from lkm.kernel.profile import load_cached

    profile = load_cached(tree.root)
    mods = tree.modules()
    sample = sorted(set(mods[::7]) | {p for p in mods if p.name.startswith("kvm-intel")})
    seen = set()
    for r in audit_files(sample, profile, lambda: module_dir_for(profile), jobs=2):
        assert r.error is None, r.path
        assert r.verdict is not None and r.verdict.loaded, r.render()
        assert r.signature is not None and r.signature.status == "valid", r.render()
        staging = "/drivers/staging/" in r.path
        for f in r.findings:
            if f.id == "taint.crap" and staging:
                continue
            assert (r.name, f.id) in DEBIAN_EXPECTED, r.render()
            seen.add((r.name, f.id))
    assert seen == DEBIAN_EXPECTED


@pytest.mark.trees
def test_whole_61_tree(tree61: Tree) -> None:
    """lkm audit TREE: all 4023 modules of Debian's 6.1 against their own kernel, in under
    30 s on this machine's 2 cores (checked when the machine is otherwise idle)."""
    load = os.getloadavg()[0]
    t0 = time.monotonic()
    p = _lkm("audit", str(tree61.root), "--json", "-j", "2")
    seconds = time.monotonic() - t0
    print(f"whole 6.1 tree: {seconds:.1f} s, load average {load:.1f} before")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["kernel"] == tree61.release and len(out["modules"]) == 4023
    assert out["counts"] == {"code.msr_lstar": 1, "code.sidt": 1, "taint.crap": 12}
    if load < 1.0:
        assert seconds < 30


# --- the CLI ------------------------------------------------------------------------------

@pytest.mark.trees
def test_cli(tree61: Tree, tmp_path: Path) -> None:
    from kbuild import build_modules, headers_dir

    if headers_dir(tree61.release) is None:
        pytest.skip("no linux-headers for 6.1")
    kos = build_modules(tree61.release, audit_modules=True)
    d = kos["lkm_audit_clean"].parent
    p = _lkm("audit", str(d), "--kernel", str(tree61.root))
    assert p.returncode == 1  # high-severity findings
    lines = p.stdout.splitlines()
    assert f"{kos['lkm_audit_cr']}: loads, taints OE, signature unsigned" in lines
    assert f"{kos['lkm_audit_lookup']}: refused (ENOENT), taints OE, signature unsigned" \
        in lines
    assert lines[-1].startswith(f"9 modules audited against {tree61.release}: code.cr0_write 1,")
    p = _lkm("audit", str(kos["lkm_audit_clean"]), "-k", str(tree61.root), "--json")
    assert p.returncode == 0
    (m,) = json.loads(p.stdout)["modules"]
    assert m["verdict"]["taint"] == "OE" and m["signature"]["status"] == "unsigned"
    assert [f["id"] for f in m["findings"]] == ["taint.oot_module", "taint.unsigned_module"]
    p = _lkm("audit", "--no-load", str(kos["lkm_audit_clean"]))
    assert p.returncode == 0 and p.stdout == "1 modules audited: no findings\n"
    junk = tmp_path / "junk.ko"
    junk.write_bytes(b"not an ELF file")
    p = _lkm("audit", "--no-load", str(junk))
    assert p.returncode == 2 and p.stdout.startswith(f"{junk}: ERROR: not an ELF file")
    assert _lkm("audit", str(tmp_path / "missing.ko")).returncode == 2
    assert _lkm("audit").returncode == 2
    assert _lkm("audit", "--live", str(junk)).returncode == 2


# --- the live posture ---------------------------------------------------------------------

class FakeKernel(KernelBackend):
    """Views from dicts: files (path -> text) and directories (path -> entries)."""

    def __init__(self, files: dict[str, str], dirs: dict[str, list[str]]) -> None:
        self.files, self.dirs = files, dirs

    def finit_module(self, path: str, params: str, flags: int = 0) -> None:
        raise NotImplementedError

    def init_module(self, image: bytes, params: str) -> None:
        raise NotImplementedError

    def delete_module(self, name: str, flags: int = 0) -> None:
        raise NotImplementedError

    def read_text(self, path: str) -> str:
        if path not in self.files:
            raise FileNotFoundError(path)
        return self.files[path]

    def list_dir(self, path: str) -> list[str]:
        if path not in self.dirs:
            raise FileNotFoundError(path)
        return self.dirs[path]

    def release(self) -> str:
        return "6.1.0-57-amd64"


def test_cross_view(tmp_path: Path) -> None:
    mods = {"ok": True, "hidden": True, "ghost": False}
    files = {
        "/proc/modules": "ok 16384 0 - Live 0xffffffffc0000000 (OE)\n"
                         "nosysfs 16384 0 - Live 0xffffffffc0010000\n",
        "/proc/kallsyms": "ffffffff81000000 T _stext\n"
                          "ffffffffc0000000 t ok_init\t[ok]\n"
                          "ffffffffc0010000 t x\t[nosysfs]\n"
                          "ffffffffc0020000 t y\t[kallsymsonly]\n"
                          "ffffffffc0030000 t z\t[bpf]\n",
        "/sys/module/module/parameters/sig_enforce": "Y\n",
        "/sys/kernel/security/lockdown": "none [integrity] confidentiality\n",
        "/proc/sys/kernel/modules_disabled": "0\n",
        "/proc/sys/kernel/kptr_restrict": "1\n",
        "/proc/sys/kernel/tainted": "12288\n",
    }
    for name, loadable in mods.items():
        if loadable:
            files[f"/sys/module/{name}/initstate"] = "live\n"
            files[f"/sys/module/{name}/taint"] = "OE\n"
    kernel = FakeKernel(files, {"/sys/module": [*mods, "module"], "/sys/module/module": []})
    p = posture(kernel, moddir=str(tmp_path))
    by_id = {f.id: [e.text for e in f.evidence] for f in p.findings}
    assert by_id["live.hidden_proc_modules"] == [
        "hidden: in /sys/module; missing from /proc/modules, /proc/kallsyms "
        "(/sys/module/hidden/initstate: live)"]
    assert by_id["live.hidden_sysfs"] == [
        "nosysfs: in /proc/modules, /proc/kallsyms; missing from /sys/module"]
    assert by_id["live.kallsyms_only"] == [
        "kallsymsonly: in /proc/kallsyms; missing from /proc/modules, /sys/module"]
    assert "live.sig_enforce" not in by_id and "live.lockdown" not in by_id
    assert p.settings["lockdown"] == "integrity" and p.settings["sig_enforce"] == "Y"
    assert len(by_id["live.no_file"]) == 3  # ok, hidden, nosysfs
    assert {m.name for m in p.modules} == {"ok", "hidden", "nosysfs", "kallsymsonly"}
    assert p.to_json()["tainted_string"] == "Tainted: G           OE     "


def test_modprobe_check(tmp_path: Path) -> None:
    root_only = tmp_path / "safe"
    root_only.mkdir(mode=0o755)
    os.chmod(tmp_path, 0o755)
    helper = root_only / "modprobe"
    helper.write_text("#!/bin/sh\n")
    status, found = modprobe_check(str(helper))
    if os.getuid() != 0:
        pytest.skip("ownership checks need root's files")
    assert found == [] and status.endswith("root's alone")
    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o777)
    (open_dir / "modprobe").write_text("")
    _, found = modprobe_check(str(open_dir / "modprobe"))
    assert [f.id for f in found] == ["live.modprobe_path"]
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    os.chmod(sticky, 0o1777)
    _, found = modprobe_check(str(sticky / "modprobe"))  # missing: anyone may create it
    assert [f.id for f in found] == ["live.modprobe_path"]
    (sticky / "modprobe").write_text("")
    _, found = modprobe_check(str(sticky / "modprobe"))
    assert found == []
    other = root_only / "helper"
    other.write_text("")
    _, found = modprobe_check(str(other))
    assert [f.id for f in found] == ["live.modprobe_unusual"]


@pytest.mark.trees
def test_live_virtual(tree61: Tree, tmp_path: Path) -> None:
    """lkm --virtual DIR audit --live: a virtual kernel's posture through the backend."""
    from kbuild import build_modules, headers_dir

    if headers_dir(tree61.release) is None:
        pytest.skip("no linux-headers for 6.1")
    ko = build_modules(tree61.release, audit_modules=True)
    vk = tmp_path / "vk"
    assert _lkm("virtual", "create", str(vk), "--from", str(tree61.root)).returncode == 0
    base = ["--virtual", str(vk)]
    assert _lkm(*base, "insmod", str(ko["lkm_audit_clean"])).returncode == 0
    assert _lkm(*base, "modprobe", "dummy").returncode == 0
    p = _lkm(*base, "audit", "--live", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["release"] == tree61.release and d["keys_known"] is True
    assert {k: d["settings"][k] for k in ("sig_enforce", "lockdown", "modules_disabled")} == \
        {"sig_enforce": "N", "lockdown": "none", "modules_disabled": "0"}
    mods = {m["name"]: m for m in d["modules"]}
    assert mods["dummy"]["signature"] == "valid" and mods["dummy"]["taint"] == ""
    assert mods["lkm_audit_clean"]["file"] is None and mods["lkm_audit_clean"]["taint"] == "OE"
    ids = [f["id"] for f in d["findings"]]
    assert sorted(ids) == ["live.lockdown", "live.no_file", "live.sig_enforce",
                           "live.signature", "live.tainted"]


@needs_qemu
@pytest.mark.qemu
@pytest.mark.trees
def test_live_qemu(tree61: Tree) -> None:
    """The real 6.1 kernel: a module unlinked from the modules list and one without its
    kobject are caught by the cross-view; lkm taint agrees with the kernel."""
    from kbuild import build_modules, headers_dir
    from vm import run_in_vm, split_cases

    if headers_dir(tree61.release) is None:
        pytest.skip("no linux-headers for 6.1")
    ko = build_modules(tree61.release, audit_modules=True)
    names = ("lkm_audit_clean", "lkm_audit_hide", "lkm_audit_unsysfs")
    script = f"""
lkm_case insmod
for m in {' '.join(names)}; do insmod /job/$m.ko; echo "$m rc=$?"; done
lkm_case proc
cut -d' ' -f1 /proc/modules | grep lkm_ | sort; ls -d /sys/module/lkm_* | sort
lkm_case tainted
cat /proc/sys/kernel/tainted
lkm_case audit
chroot /host "$LKM" audit --live --kernel "$TREE" --json > /job/live.json; echo "rc=$?"
lkm_case taint
chroot /host "$LKM" taint; echo "rc=$?"
"""
    with_json = Path(os.environ.get("TMPDIR", "/tmp")) / f"lkm-audit-vm-{os.getpid()}"
    r = run_in_vm(tree61, script, {f"{n}.ko": ko[n] for n in names}, timeout=400,
                  workdir=with_json)
    try:
        c = split_cases(r.output)
        assert c["insmod"].splitlines() == [f"{n} rc=0" for n in names], r.output
        assert c["proc"].split() == ["lkm_audit_clean", "lkm_audit_unsysfs",
                                     "/sys/module/lkm_audit_clean", "/sys/module/lkm_audit_hide"]
        assert c["audit"].strip() == "rc=1", r.output  # high-severity findings
        d = json.loads((with_json / "live.json").read_text())
    finally:
        shutil.rmtree(with_json, ignore_errors=True)
    f = {x["id"]: [e["text"] for e in x["evidence"]] for x in d["findings"]}
    assert f["live.hidden_proc_modules"] == [
        "lkm_audit_hide: in /sys/module; missing from /proc/modules, /proc/kallsyms "
        "(/sys/module/lkm_audit_hide/initstate: live)"]
    assert f["live.hidden_sysfs"] == [
        "lkm_audit_unsysfs: in /proc/modules, /proc/kallsyms; missing from /sys/module"]
    assert "live.kallsyms_only" not in f and "live.no_kallsyms" not in f
    mods = {m["name"]: m for m in d["modules"]}
    booted = [m for m in mods.values() if not m["name"].startswith("lkm_audit")]
    assert booted and all(m["signature"] == "valid" for m in booted)  # the 9p/virtio modules
    assert d["tainted"] == int(c["tainted"]) == 12288
    assert d["settings"]["modprobe"] == "/sbin/modprobe"
    taint = c["taint"].splitlines()
    assert "Raw taint value as int/string: 12288/'G           OE     '" in taint
    assert taint[taint.index("Modules tainted: count=3") + 1:][:3] == [
        "lkm_audit_clean: taint=OE", "lkm_audit_hide: taint=OE", "lkm_audit_unsysfs: taint=OE"]
