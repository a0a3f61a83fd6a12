// SPDX-License-Identifier: GPL-2.0
/*
 * Imports what vmlinux does not export: kallsyms_lookup_name (to look up
 * "sys_call_table") and set_memory_rw. The kernel refuses it ("Unknown symbol"), so
 * its code never runs.
 */
#include <linux/kallsyms.h>
#include <linux/module.h>
#include <asm/set_memory.h>

static unsigned long lkm_audit_table;

static int __init lkm_audit_lookup_init(void)
{
	lkm_audit_table = kallsyms_lookup_name("sys_call_table");
	if (!lkm_audit_table)
		return -ENOENT;
	return set_memory_rw(lkm_audit_table & PAGE_MASK, 0);
}

static void __exit lkm_audit_lookup_exit(void)
{
}

module_init(lkm_audit_lookup_init);
module_exit(lkm_audit_lookup_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("lkm audit: imports kallsyms_lookup_name and set_memory_rw");
