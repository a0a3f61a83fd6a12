"""Values of the module syscalls' user-space ABI (and the page size), defined once.

finit_module() flags from include/uapi/linux/module.h; delete_module() flags are
open(2)'s O_NONBLOCK and O_TRUNC as include/uapi/asm-generic/fcntl.h defines them
(the values of x86, arm64, riscv and the other asm-generic architectures).
"""

from __future__ import annotations

# finit_module(2) flags (include/uapi/linux/module.h)
MODULE_INIT_IGNORE_MODVERSIONS = 1
MODULE_INIT_IGNORE_VERMAGIC = 2
MODULE_INIT_COMPRESSED_FILE = 4  # since 5.17 (in-kernel module decompression)
MODULE_INIT_FLAGS = (MODULE_INIT_IGNORE_MODVERSIONS | MODULE_INIT_IGNORE_VERMAGIC
                     | MODULE_INIT_COMPRESSED_FILE)

# delete_module(2) flags (include/uapi/asm-generic/fcntl.h)
O_TRUNC = 0o1000
O_NONBLOCK = 0o4000

# x86-64's page (arch/x86/include/asm/page_types.h): what sysfs reads return at most and
# the unit module memory is allocated in
PAGE_SIZE = 4096
