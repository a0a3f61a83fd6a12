"""lkm: the Linux loadable-kernel-module system in Python.

kmod-compatible tools (modinfo, depmod, modprobe, insmod, rmmod, lsmod), module
signing and verification, and a virtual kernel reproducing ``kernel/module/``.
The command-line tools are thin layers over this library.
"""

__version__ = "0.1.0"
