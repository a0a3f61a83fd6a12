"""The module loader, split as the kernel's kernel/module/ is (since 5.19).

- ``main``: load_module() / do_init_module() / delete_module(), as the kernel's steps
- ``internal``: struct load_info and the ELF types read (named section-header fields)
- ``elf_validity``: the ELF checks (6.1 elf_validity_check, 6.4+ elf_validity_cache_copy)
- ``signing``: module_sig_check() (the signature check at load)
- ``version``: check_version(), same_magic() and the vermagic check, try_to_force_load()
- ``layout``: layout_sections(), layout_symtab(), allocation, move_module()
- ``symbols``: find_symbol() (GPL-only), resolve_symbol() (namespaces, CRCs),
  simplify_symbols(), duplicate exports
- ``reloc_x86_64``: apply_relocate_add() of x86-64
- ``params``: the module's __param array and its arguments
- ``taint``: every taint the loader applies
- ``procfs``: /proc/modules; ``sysfs``: /sys/module views and writes
- ``state``: struct module, the kernel state (JSON), the relocated image, the exec hooks
- ``history``: what changed between kernel releases, one predicate per change
"""
