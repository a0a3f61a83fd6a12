// SPDX-License-Identifier: GPL-2.0
/* Deletes its own module kobject: gone from /sys/module, still in /proc/modules. */
#include <linux/kobject.h>
#include <linux/module.h>

static int __init lkm_audit_unsysfs_init(void)
{
	kobject_del(&THIS_MODULE->mkobj.kobj);
	return 0;
}

module_init(lkm_audit_unsysfs_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("lkm audit: hides from /sys/module");
