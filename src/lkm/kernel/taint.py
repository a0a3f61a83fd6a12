"""Taint flags (kernel/panic.c taint_flags[]) and their renderings."""

from __future__ import annotations

from typing import NamedTuple

# bit: (letter when set, letter when clear, module-level)
TAINT_FLAGS: tuple[tuple[str, str, bool], ...] = (
    ("P", "G", True),   # 0 PROPRIETARY_MODULE
    ("F", " ", True),   # 1 FORCED_MODULE
    ("S", " ", False),  # 2 CPU_OUT_OF_SPEC
    ("R", " ", False),  # 3 FORCED_RMMOD
    ("M", " ", False),  # 4 MACHINE_CHECK
    ("B", " ", False),  # 5 BAD_PAGE
    ("U", " ", False),  # 6 USER
    ("D", " ", False),  # 7 DIE
    ("A", " ", False),  # 8 OVERRIDDEN_ACPI_TABLE
    ("W", " ", False),  # 9 WARN
    ("C", " ", True),   # 10 CRAP
    ("I", " ", False),  # 11 FIRMWARE_WORKAROUND
    ("O", " ", True),   # 12 OOT_MODULE
    ("E", " ", True),   # 13 UNSIGNED_MODULE
    ("L", " ", False),  # 14 SOFTLOCKUP
    ("K", " ", True),   # 15 LIVEPATCH
    ("X", " ", True),   # 16 AUX
    ("T", " ", True),   # 17 RANDSTRUCT
    ("N", " ", True),   # 18 TEST
)

TAINT_PROPRIETARY_MODULE = 0
TAINT_FORCED_MODULE = 1
TAINT_FORCED_RMMOD = 3
TAINT_USER = 6
TAINT_WARN = 9
TAINT_CRAP = 10
TAINT_OOT_MODULE = 12
TAINT_UNSIGNED_MODULE = 13
TAINT_LIVEPATCH = 15
TAINT_TEST = 18


def module_flags_taint(taints: int) -> str:
    """The letters of a module's taints, in bit order (module_flags_taint)."""
    return "".join(c for i, (c, _, mod) in enumerate(TAINT_FLAGS) if mod and taints >> i & 1)


def letters(mask: int) -> str:
    """Every set taint as its letter, in bit order."""
    return "".join(c for i, (c, _, _) in enumerate(TAINT_FLAGS) if mask >> i & 1)


def print_tainted(mask: int) -> str:
    """print_tainted(): "Not tainted" or "Tainted: P           O     " style."""
    if not mask:
        return "Not tainted"
    return "Tainted: " + "".join(t if mask >> i & 1 else f for i, (t, f, _) in
                                 enumerate(TAINT_FLAGS))


def from_letters(s: str) -> int:
    """The mask of taint letters (unknown letters ignored)."""
    mask = 0
    for i, (c, _, _) in enumerate(TAINT_FLAGS):
        if c in s:
            mask |= 1 << i
    return mask


# -- the flag set of each release (lkm taint, lkm audit) --------------------------------
#
# TAINT_FLAGS above is the 0-18 set of the 6.1 and 6.12 kernels the loader reproduces; the
# table below also says which release defined which bit and what it means, with the
# descriptions of tools/debugging/kernel-chktaint (Documentation/admin-guide/
# tainted-kernels.rst says the same at more length).  Since 6.10 taint_flags[].desc holds the
# flag's name (TAINT_FLAG(PROPRIETARY_MODULE, ...) -> "PROPRIETARY_MODULE"), which
# print_tainted_verbose() prints as "[P]=PROPRIETARY_MODULE".


class TaintFlag(NamedTuple):
    """One bit of the taint mask: its letters, whether modules carry it, its meaning."""

    bit: int
    name: str  # TAINT_<name> (include/linux/panic.h), taint_flags[].desc since 6.10
    c_true: str
    c_false: str
    module: bool  # also a per-module flag (/sys/module/<name>/taint, /proc/modules)
    since: tuple[int, int]  # first release with the bit; (0, 0): every release lkm knows
    description: str  # kernel-chktaint's line


_EVERY = (0, 0)
TAINT_FLAG_TABLE: tuple[TaintFlag, ...] = (
    TaintFlag(0, "PROPRIETARY_MODULE", "P", "G", True, _EVERY,
              "proprietary module was loaded"),
    TaintFlag(1, "FORCED_MODULE", "F", " ", True, _EVERY, "module was force loaded"),
    TaintFlag(2, "CPU_OUT_OF_SPEC", "S", " ", False, _EVERY,
              "kernel running on an out of specification system"),
    TaintFlag(3, "FORCED_RMMOD", "R", " ", False, _EVERY, "module was force unloaded"),
    TaintFlag(4, "MACHINE_CHECK", "M", " ", False, _EVERY,
              "processor reported a Machine Check Exception (MCE)"),
    TaintFlag(5, "BAD_PAGE", "B", " ", False, _EVERY,
              "bad page referenced or some unexpected page flags"),
    TaintFlag(6, "USER", "U", " ", False, _EVERY, "taint requested by userspace application"),
    TaintFlag(7, "DIE", "D", " ", False, _EVERY,
              "kernel died recently, i.e. there was an OOPS or BUG"),
    TaintFlag(8, "OVERRIDDEN_ACPI_TABLE", "A", " ", False, _EVERY,
              "an ACPI table was overridden by user"),
    TaintFlag(9, "WARN", "W", " ", False, _EVERY, "kernel issued warning"),
    TaintFlag(10, "CRAP", "C", " ", True, _EVERY, "staging driver was loaded"),
    TaintFlag(11, "FIRMWARE_WORKAROUND", "I", " ", False, _EVERY,
              "workaround for bug in platform firmware applied"),
    TaintFlag(12, "OOT_MODULE", "O", " ", True, _EVERY,
              "externally-built ('out-of-tree') module was loaded"),
    TaintFlag(13, "UNSIGNED_MODULE", "E", " ", True, _EVERY, "unsigned module was loaded"),
    TaintFlag(14, "SOFTLOCKUP", "L", " ", False, _EVERY, "soft lockup occurred"),
    TaintFlag(15, "LIVEPATCH", "K", " ", True, _EVERY, "kernel has been live patched"),
    TaintFlag(16, "AUX", "X", " ", True, _EVERY,
              "auxiliary taint, defined for and used by distros"),
    TaintFlag(17, "RANDSTRUCT", "T", " ", True, _EVERY,
              "kernel was built with the struct randomization plugin"),
    # commit 2852ca7fba9f "panic: Taint kernel if tests are run"
    TaintFlag(18, "TEST", "N", " ", True, (6, 0),
              "an in-kernel test (such as a KUnit test) has been run"),
    # commit 8eea4e744758 "taint: Add TAINT_FWCTL" (the fwctl subsystem, 6.15)
    TaintFlag(19, "FWCTL", "J", " ", True, (6, 15), "fwctl's mutating debug interface was used"),
)

TAINT_FWCTL = 19


def flags_of(version: tuple[int, ...] | None = None) -> tuple[TaintFlag, ...]:
    """The taint flags (TAINT_FLAGS_COUNT of them) of the release ``version``, e.g.
    (6, 1) or (6, 12, 117); None: every flag lkm knows (the newest kernel's set)."""
    if version is None:
        return TAINT_FLAG_TABLE
    return tuple(f for f in TAINT_FLAG_TABLE if tuple(version[:2]) >= f.since)


def print_tainted_for(mask: int, version: tuple[int, ...] | None = None) -> str:
    """print_tainted() of that release: "Not tainted" or "Tainted: " and one column per
    flag the release defines (bits it does not define are not shown)."""
    if not mask:
        return "Not tainted"
    return "Tainted: " + "".join(f.c_true if mask >> f.bit & 1 else f.c_false
                                 for f in flags_of(version))


def print_tainted_verbose(mask: int, version: tuple[int, ...] | None = None) -> str:
    """print_tainted_verbose() (6.10+): "Tainted: [P]=PROPRIETARY_MODULE, [O]=OOT_MODULE"."""
    if not mask:
        return "Not tainted"
    return "Tainted: " + ", ".join(f"[{f.c_true}]={f.name}" for f in flags_of(version)
                                   if mask >> f.bit & 1)


def parse_taint(text: str, version: tuple[int, ...] | None = None) -> int:
    """The mask a taint value stands for: a number (/proc/sys/kernel/tainted, decimal or
    0x hex), an oops's "Not tainted" / "Tainted: P           O      " (one column per flag,
    read by position; a release after it is ignored) or "Tainted: [P]=PROPRIETARY_MODULE, ..."
    (print_tainted_verbose), or bare letters ("POE").  ValueError if it is none of these."""
    s = text.strip()
    try:
        value = int(s, 0)
    except ValueError:
        pass
    else:
        if value < 0:
            raise ValueError(f"'{text}': a taint value is not negative")
        return value
    if s.startswith("Not tainted"):
        return 0
    flags = flags_of(version)
    if s.startswith("Tainted:"):
        body = s[len("Tainted:"):]
        body = body[1:] if body.startswith(" ") else body
        if body.lstrip().startswith("["):
            return _parse_verbose(body, text)
        columns = body[:len(flags)]
        if all(c in (f.c_true, f.c_false) for c, f in zip(columns, flags, strict=False)):
            return sum(1 << f.bit for c, f in zip(columns, flags, strict=False)
                       if c == f.c_true and c != f.c_false)
        s = "".join(_leading_letter_words(body.split(), flags))  # columns of another release
    letters = {f.c_true: f.bit for f in flags}
    if s and all(c in letters or c == "G" for c in s):
        return sum(1 << letters[c] for c in set(s) if c in letters)
    raise ValueError(f"'{text}' is not a taint value (a number, \"Tainted: ...\" or letters)")


def _leading_letter_words(words: list[str], flags: tuple[TaintFlag, ...]) -> list[str]:
    known = {f.c_true for f in flags} | {"G"}
    out = []
    for w in words:
        if not set(w) <= known:
            break
        out.append(w)
    return out


def _parse_verbose(body: str, text: str) -> int:
    by_name = {f.name: f.bit for f in TAINT_FLAG_TABLE}
    mask = 0
    for item in body.split(","):
        _, eq, name = item.strip().partition("=")
        if not eq or name.split()[0] not in by_name:
            raise ValueError(f"'{text}': unknown taint flag '{item.strip()}'")
        mask |= 1 << by_name[name.split()[0]]
    return mask


def chktaint_report(mask: int, version: tuple[int, ...] | None = None,
                    modules: dict[str, str] | None = None) -> str:
    """The taint value explained as tools/debugging/kernel-chktaint explains it (one line per
    set bit, the raw value, then the modules carrying taints as /sys/module/*/taint says),
    with each flag's letter and with the bits ``version`` does not define marked."""
    if not mask:
        return "Kernel not Tainted\n"
    known = {f.bit: f for f in flags_of(version)}
    every = {f.bit: f for f in TAINT_FLAG_TABLE}
    lines = ['Kernel is "tainted" for the following reasons:']
    for bit in range(mask.bit_length()):
        if not mask >> bit & 1:
            continue
        f = known.get(bit)
        if f is not None:
            lines.append(f" * [{f.c_true}] {f.description} (#{bit})")
        elif bit in every:
            g = every[bit]
            lines.append(f" * [{g.c_true}] {g.description} (#{bit}; not defined before "
                         f"{g.since[0]}.{g.since[1]})")
        else:
            lines.append(f" * unknown taint flag (#{bit})")
    text = print_tainted_for(mask, version).removeprefix("Tainted: ")
    lines.append(f"Raw taint value as int/string: {mask}/'{text}'")
    tainted = {name: t for name, t in (modules or {}).items() if t}
    if tainted:
        lines += ["", f"Modules tainted: count={len(tainted)}"]
        lines += [f"{name}: taint={t}" for name, t in tainted.items()]
    lines += ["", "For a more detailed explanation of the various taint flags see",
              " Documentation/admin-guide/tainted-kernels.rst in the Linux kernel sources",
              " or https://kernel.org/doc/html/latest/admin-guide/tainted-kernels.html"]
    return "\n".join(lines) + "\n"


def release_version(release: str) -> tuple[int, int] | None:
    """(major, minor) of a release string ("6.12.117+deb12-amd64" -> (6, 12)), or None."""
    import re

    m = re.match(r"\s*(\d+)\.(\d+)", release)
    return (int(m.group(1)), int(m.group(2))) if m else None
