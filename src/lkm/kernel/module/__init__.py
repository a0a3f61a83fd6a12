"""The module loader, split as the kernel's kernel/module/ is (since 5.19).

``main`` holds load_module() / do_init_module() / delete_module(); ``state`` holds
struct module and the kernel state the loader changes.
"""
