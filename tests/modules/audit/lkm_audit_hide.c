// SPDX-License-Identifier: GPL-2.0
/*
 * Unlinks itself from the modules list: gone from /proc/modules, lsmod and
 * /proc/kallsyms, still in /sys/module. It cannot be unloaded afterwards.
 */
#include <linux/list.h>
#include <linux/module.h>

static int __init lkm_audit_hide_init(void)
{
	list_del_init(&THIS_MODULE->list);
	return 0;
}

module_init(lkm_audit_hide_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("lkm audit: hides from /proc/modules");
