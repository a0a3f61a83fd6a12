"""Taint flags (kernel/panic.c taint_flags[]) and their renderings."""

from __future__ import annotations

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
