"""Build the test modules of tests/modules/ with Kbuild, once per release and source hash.

The sources are copied into $LKM_TEST_CACHE/kbuild/<release>/<hash>/ (never built in the
repository) and built in two passes, see tests/modules/README:

1. tests/modules/Kbuild: modules modpost accepts;
2. tests/modules/lax/Kbuild: modules modpost refuses, built against a doctored copy of
   pass 1's Module.symvers (``SYMVERS_EDITS``); then ``RENAMES`` are applied to the .ko;
3. tests/modules/exec/Kbuild: modules whose code does things (they print, fail, oops),
   returned by ``build_modules(release, exec_modules=True)`` only;
4. tests/modules/audit/Kbuild: lkm audit's modules, some importing what vmlinux does not
   export (KBUILD_MODPOST_WARN=1), returned by ``build_modules(release, audit_modules=True)``
   only.

A file lock serialises builders (pytest-xdist workers); a stamp file marks a finished
build, so an interrupted one is redone. Builds of other sources unused for 3 days are
removed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES = HERE / "modules"
CACHE = Path(os.environ.get("LKM_TEST_CACHE", Path.home() / ".cache" / "lkm-tests"))
STAMP = ".complete"
EXEC = "exec"  # pass 3's directory
AUDIT = "audit"  # pass 4's directory
JOBS = 2

# Pass 2's view of pass 1's exports: (symbol, column, new value). Columns of Module.symvers:
# 0 crc, 1 symbol, 2 module, 3 export type, 4 namespace.
SYMVERS_EDITS: list[tuple[str, int, str]] = [
    # lkm_prop_gpl: modpost refuses a GPL-only symbol in a proprietary module.
    ("lkm_params_gpl_value", 3, "EXPORT_SYMBOL"),
    # lkm_ns_noimport: modpost refuses a namespaced symbol that is not imported.
    ("lkm_ns_value", 4, ""),
]

# Same-length byte replacements in built modules: module -> [(old, new)].
RENAMES: dict[str, list[tuple[bytes, bytes]]] = {
    # modpost refuses an external module exporting a symbol vmlinux exports.
    "lkm_dup_kernel": [(b"lkm_dup_to_msecs", b"jiffies_to_msecs")],
}


class KbuildError(RuntimeError):
    """The test modules could not be built."""


def headers_dir(release: str) -> Path | None:
    """The kernel headers (Kbuild tree) for ``release``, or None when not installed."""
    for d in (Path("/usr/src") / f"linux-headers-{release}",
              Path("/lib/modules") / release / "build"):
        if (d / "Makefile").is_file() and (d / "Module.symvers").is_file():
            return d.resolve()
    return None


def source_hash(headers: Path) -> str:
    """Hash of the module sources (not READMEs), this build recipe and the headers' exports
    and config."""
    h = hashlib.sha256()
    for p in sorted(SOURCES.rglob("*")):
        if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith("README"):
            h.update(str(p.relative_to(SOURCES)).encode() + b"\0")
            h.update(p.read_bytes() + b"\0")
    h.update(Path(__file__).read_bytes())
    for name in ("Module.symvers", ".config"):
        h.update((headers / name).read_bytes())
    return h.hexdigest()[:12]  # not 16: kernel-log address normalisers match 16 hex digits


def patch_bytes(data: bytes, replacements: list[tuple[bytes, bytes]]) -> bytes:
    """Replace every occurrence of each ``old`` by ``new`` (same length, must occur)."""
    for old, new in replacements:
        if len(old) != len(new):
            raise ValueError(f"{old!r} and {new!r} differ in length")
        if old not in data:
            raise ValueError(f"{old!r} not found")
        data = data.replace(old, new)
    return data


def patch_module(src: Path, dst: Path, replacements: list[tuple[bytes, bytes]]) -> Path:
    """Write a copy of module ``src`` to ``dst`` with ``replacements`` applied (via rename)."""
    data = patch_bytes(src.read_bytes(), replacements)
    tmp = dst.with_name(dst.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(dst)
    return dst


def _env() -> dict[str, str]:
    drop = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "ARCH", "CROSS_COMPILE", "O", "M", "W")
    env = {k: v for k, v in os.environ.items()
           if k not in drop and not k.startswith("KBUILD_")}
    env["LC_ALL"] = "C"
    return env


def _make(headers: Path, moddir: Path, *args: str) -> None:
    cmd = ["make", "-s", "-C", str(headers), f"M={moddir}", f"-j{JOBS}", *args, "modules"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env())
    if p.returncode != 0:
        raise KbuildError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout[-3000:]}"
                          f"{p.stderr[-5000:]}")


def _doctor_symvers(src: Path, dst: Path) -> None:
    edits = {sym: (col, val) for sym, col, val in SYMVERS_EDITS}
    out = []
    for line in src.read_text().splitlines():
        cols = line.split("\t")
        if len(cols) >= 2 and cols[1] in edits:
            col, val = edits[cols[1]]
            cols += [""] * (col + 1 - len(cols))
            cols[col] = val
        out.append("\t".join(cols))
    dst.write_text("\n".join(out) + "\n")


def _modules_of(kbuild_dir: Path) -> list[str]:
    """Module names listed in the obj-m lines of ``kbuild_dir``/Kbuild."""
    names: list[str] = []
    for line in (kbuild_dir / "Kbuild").read_text().splitlines():
        line = line.split("#", 1)[0]
        if line.strip().startswith("obj-m"):
            names += [w[:-2] for w in line.split("=", 1)[1].split() if w.endswith(".o")]
    return names


def _build(headers: Path, out: Path) -> dict[str, str]:
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(SOURCES, out, ignore=shutil.ignore_patterns("__pycache__", "*.o", "*.ko"))
    _make(headers, out)
    lax = out / "lax"
    _doctor_symvers(out / "Module.symvers", lax / "extra.symvers")
    _make(headers, lax, f"KBUILD_EXTRA_SYMBOLS={lax / 'extra.symvers'}")
    for name, replacements in RENAMES.items():
        ko = lax / f"{name}.ko"
        patch_module(ko, ko, replacements)
    _make(headers, out / EXEC)
    _make(headers, out / AUDIT, "KBUILD_MODPOST_WARN=1")
    built: dict[str, str] = {}
    for d in (out, lax, out / EXEC, out / AUDIT):
        for name in _modules_of(d):
            ko = d / f"{name}.ko"
            if not ko.is_file():
                raise KbuildError(f"{ko} was not built")
            built[name] = str(ko.relative_to(out))
    return built


def _prune(base: Path, keep: Path, days: float = 3) -> None:
    """Remove builds of other sources not used for ``days`` (call with the lock held)."""
    limit = time.time() - days * 86400
    for d in base.iterdir():
        if d.is_dir() and d != keep:
            stamp = d / STAMP
            if not stamp.is_file() or stamp.stat().st_mtime < limit:
                shutil.rmtree(d, ignore_errors=True)


def build_modules(release: str, exec_modules: bool = False,
                  audit_modules: bool = False) -> dict[str, Path]:
    """Build (or reuse) the test modules for ``release``: module name -> .ko path; those of
    passes 1 and 2, with ``exec_modules`` those of pass 3 (exec/), with ``audit_modules``
    those of pass 4 (audit/)."""
    headers = headers_dir(release)
    if headers is None:
        raise KbuildError(f"no kernel headers for {release} (run scripts/install-system)")
    base = CACHE / "kbuild" / release
    out = base / source_hash(headers)
    stamp = out / STAMP
    if not stamp.is_file():
        base.mkdir(parents=True, exist_ok=True)
        with open(base / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not stamp.is_file():
                built = _build(headers, out)
                tmp = out / (STAMP + ".tmp")
                tmp.write_text(json.dumps(built, indent=1, sort_keys=True))
                tmp.replace(stamp)
                _prune(base, keep=out)
    os.utime(stamp)
    return {name: out / rel for name, rel in json.loads(stamp.read_text()).items()
            if rel.startswith(EXEC + "/") == exec_modules
            and rel.startswith(AUDIT + "/") == audit_modules}


if __name__ == "__main__":  # `python tests/kbuild.py RELEASE`: build and print "name path" lines
    import sys

    for _exec, _audit in ((False, False), (True, False), (False, True)):
        for _name, _path in sorted(build_modules(sys.argv[1], _exec, _audit).items()):
            print(_name, _path)
