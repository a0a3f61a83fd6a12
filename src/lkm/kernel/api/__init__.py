"""The kernel functions module code calls, in Python, one file per kernel source file or subsystem,
named as the kernel names them (vsprintf: lib/vsprintf.c; printk_fmt: kernel/printk/printk.c's
record rules)."""
