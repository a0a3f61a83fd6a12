// SPDX-License-Identifier: GPL-2.0
/*
 * Writes CR0 and CR4 with the values just read (no bit changes). The WP-clearing
 * sequence reviewers look for is in lkm_audit_cr_pattern(), which nothing calls.
 */
#include <linux/module.h>

static __always_inline unsigned long lkm_read_cr0(void)
{
	unsigned long v;

	asm volatile("mov %%cr0, %0" : "=r"(v));
	return v;
}

static __always_inline void lkm_write_cr0(unsigned long v)
{
	asm volatile("mov %0, %%cr0" : : "r"(v) : "memory");
}

static int __init lkm_audit_cr_init(void)
{
	unsigned long cr4;

	lkm_write_cr0(lkm_read_cr0());
	asm volatile("mov %%cr4, %0" : "=r"(cr4));
	asm volatile("mov %0, %%cr4" : : "r"(cr4) : "memory");
	return 0;
}

/* Never called: the pattern itself, for the audit to recognise. */
noinline void lkm_audit_cr_pattern(void)
{
	lkm_write_cr0(lkm_read_cr0() & ~0x10000UL);
}
EXPORT_SYMBOL_GPL(lkm_audit_cr_pattern);

static void __exit lkm_audit_cr_exit(void)
{
}

module_init(lkm_audit_cr_init);
module_exit(lkm_audit_cr_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("lkm audit: CR0/CR4 written back unchanged");
