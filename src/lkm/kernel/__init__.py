"""The kernel side: what a kernel offers (profile), its module loader, and two backends.

``backend.KernelBackend`` is the one interface the tools (insmod, rmmod, lsmod,
modprobe) are written against and ``target.get_backend()`` picks one: ``live.LiveKernel``
implements it with real syscalls and the real /proc and /sys, ``virtual.VirtualKernel``
with the loader reproduced in Python (``module/``) over a state directory (``store``),
its files rendered by ``views``.
"""
