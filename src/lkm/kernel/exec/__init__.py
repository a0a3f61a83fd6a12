"""Running a module's own code: the machine, its address space, calls, faults.

``memory`` is the kernel-like virtual address space (pure Python: the kernel API reads and
writes it without the CPU emulator); ``machine`` runs x86-64 code over it with unicorn
(imported only when code runs); ``abi_x86_64`` is the calling convention and the address
layout of x86-64; ``faults`` the typed faults a call can end with, ``oops`` their rendering
as the kernel prints them; ``runtime`` ties a machine to the kernel API (``lkm.kernel.api``)
and to the loader's hooks, ``snapshot`` keeps the memory across processes.
"""
