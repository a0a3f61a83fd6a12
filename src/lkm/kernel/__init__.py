"""The kernel side: what a kernel offers (profile), its module loader, and two backends.

``backend.KernelBackend`` is the one interface the tools (insmod, rmmod, lsmod,
modprobe) are written against; ``live.LiveKernel`` implements it with real
syscalls and the real /proc and /sys, ``virtual.VirtualKernel`` with the loader
reproduced in Python over a state directory.
"""
