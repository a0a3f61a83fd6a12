"""Loader behaviour that changed between kernel releases: one predicate per change.

Each predicate takes the kernel's upstream version (``KernelProfile.version``) and
names the release and the commits that changed the behaviour.  The loader is checked
against Debian's 6.1 and 6.12 kernels; a release in between gets the behaviour the
predicates give it, not verified.
"""

from __future__ import annotations

Version = tuple[int, int, int]


def module_memory(v: Version) -> bool:
    """6.4, "module: replace module_layout with module_memory" (Song Liu): struct
    module_memory, one allocation per memory type (MOD_TEXT, MOD_DATA, MOD_RODATA,
    MOD_RO_AFTER_INIT, MOD_INIT_TEXT, MOD_INIT_DATA, MOD_INIT_RODATA) instead of the
    core and init layouts, whose text/ro/ro_after_init boundaries were page-aligned
    inside one allocation (strict_align())."""
    return v[:2] >= (6, 4)


def early_mod_check(v: Version) -> bool:
    """6.4, "module: move early sanity checks into a helper", "module: move
    check_modinfo() early to early_mod_check()" and "module: avoid allocation if
    module is already present and ready" (Luis Chamberlain): the blacklist,
    module_layout CRC, vermagic and livepatch checks and the already-loaded check
    run before layout_and_allocate(); in 6.1 check_modinfo() runs inside it."""
    return v[:2] >= (6, 4)


def taints_after_list(v: Version) -> bool:
    """6.4, "module: move tainting until after a module hits our linked list",
    "module: move signature taint to module_augment_kernel_taints()" and "module:
    converge taint work together": the modinfo taints are applied by
    module_augment_kernel_taints() once add_unformed_module() succeeded, so a
    rejected duplicate taints nothing; 6.1 taints in check_modinfo() first."""
    return v[:2] >= (6, 4)


def elf_validity_cache_copy(v: Version) -> bool:
    """6.4, "module: add sanity check for ELF module section", "module: move more elf
    validity checks to elf_validity_check()" and "module: merge remnants of
    setup_load_info() to elf validation": elf_validity_cache_copy() finds the
    indexes while validating, requires exactly one .modinfo and one
    .gnu.linkonce.this_module (SHF_ALLOC, not NOBITS, sizeof(struct module)) and one
    symbol table, and checks every section's offset before the name table.  The
    checks and their order reproduced are 6.12's."""
    return v[:2] >= (6, 4)


def relocation_overflow_first(v: Version) -> bool:
    """6.3, commit 0c05e7bd2d01 "livepatch,x86: Clear relocation targets on a module
    removal": x86's __write_relocate_add() checks R_X86_64_32/32S overflow before the
    "existing value is nonzero" check and says "Invalid relocation target" (6.1:
    "Skipping invalid relocation target", checked first)."""
    return v[:2] >= (6, 3)
