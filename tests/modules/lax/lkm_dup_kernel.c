// SPDX-License-Identifier: GPL-2.0
/*
 * Exports jiffies_to_msecs, which vmlinux exports: the kernel refuses it.
 * modpost refuses that too, so the source exports lkm_dup_to_msecs (same length)
 * and tests/kbuild.py renames it in the built .ko; see ../README.
 */
#include <linux/module.h>

unsigned int lkm_dup_to_msecs(const unsigned long j);

unsigned int lkm_dup_to_msecs(const unsigned long j)
{
	return 0;
}
EXPORT_SYMBOL(lkm_dup_to_msecs);

static int __init lkm_dup_kernel_init(void)
{
	return 0;
}

static void __exit lkm_dup_kernel_exit(void)
{
}

module_init(lkm_dup_kernel_init);
module_exit(lkm_dup_kernel_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("exports a symbol vmlinux exports");
