"""Running a module's own code: the machine, its address space, calls, faults.

- ``memory``: the kernel-like virtual address space (pure Python: the kernel API reads and
  writes it without the CPU emulator);
- ``machine``: x86-64 code run over it with unicorn in virtual-TLB mode (imported only
  when code runs), stubs for kernel functions, nested calls, the timer tick;
- ``abi_x86_64``: the calling convention, va_list and the address layout of x86-64;
- ``faults``: the typed ends of a call (page fault, BUG/WARN via ``__bug_table``, budget);
- ``runtime``: one virtual kernel's running part: symbols, modules in memory, kallsyms,
  dispatch to the kernel API (:mod:`lkm.kernel.api`);
- ``calls``: the kernel calling module code (init, exit, parameter ops);
- ``oops`` and ``kernel_text``: faults and warnings printed as the real kernel prints
  them, with the real kernel's own frames;
- ``state``: the loader's hooks (:class:`~lkm.kernel.exec.state.ExecKernelState`);
  ``snapshot``: the memory kept between processes; ``structs``: struct layouts from the
  kernel's BTF, cached per profile.
"""
