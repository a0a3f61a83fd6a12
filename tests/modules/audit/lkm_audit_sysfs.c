// SPDX-License-Identifier: GPL-2.0
/*
 * Clean: an attribute group under its own /sys/module/<name>/ (THIS_MODULE->mkobj.kobj
 * referenced, never deleted). Only taints O and E.
 */
#include <linux/kobject.h>
#include <linux/module.h>
#include <linux/sysfs.h>

static ssize_t answer_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "42\n");
}

static struct kobj_attribute lkm_audit_sysfs_answer = __ATTR_RO(answer);
static struct attribute *lkm_audit_sysfs_attrs[] = { &lkm_audit_sysfs_answer.attr, NULL };
static const struct attribute_group lkm_audit_sysfs_group = {
	.name = "lkm",
	.attrs = lkm_audit_sysfs_attrs,
};

static int __init lkm_audit_sysfs_init(void)
{
	return sysfs_create_group(&THIS_MODULE->mkobj.kobj, &lkm_audit_sysfs_group);
}

static void __exit lkm_audit_sysfs_exit(void)
{
	sysfs_remove_group(&THIS_MODULE->mkobj.kobj, &lkm_audit_sysfs_group);
}

module_init(lkm_audit_sysfs_init);
module_exit(lkm_audit_sysfs_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("lkm audit: sysfs attributes under its own module kobject");
