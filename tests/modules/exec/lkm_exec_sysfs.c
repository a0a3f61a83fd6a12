// SPDX-License-Identifier: GPL-2.0
/* /sys/kernel/lkm_exec/{value,doubled}: a sysfs attribute pair (kobject_create_and_add,
 * sysfs_create_group): value is read-write, doubled read-only. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include <linux/kobject.h>
#include <linux/sysfs.h>
#include <linux/kernel.h>

static struct kobject *kobj;
static int value = 21;

static ssize_t value_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	return sysfs_emit(buf, "%d\n", value);
}

static ssize_t value_store(struct kobject *kobj, struct kobj_attribute *attr,
			   const char *buf, size_t count)
{
	int ret = kstrtoint(buf, 10, &value);

	if (ret)
		return ret;
	pr_info("value set to %d\n", value);
	return count;
}

static ssize_t doubled_show(struct kobject *kobj, struct kobj_attribute *attr, char *buf)
{
	return sprintf(buf, "%d\n", 2 * value);
}

static struct kobj_attribute value_attr = __ATTR(value, 0644, value_show, value_store);
static struct kobj_attribute doubled_attr = __ATTR_RO(doubled);

static struct attribute *lkm_attrs[] = {
	&value_attr.attr,
	&doubled_attr.attr,
	NULL,
};

static const struct attribute_group lkm_group = {
	.attrs = lkm_attrs,
};

static int __init lkm_exec_sysfs_init(void)
{
	int ret;

	kobj = kobject_create_and_add("lkm_exec", kernel_kobj);
	if (!kobj)
		return -ENOMEM;
	ret = sysfs_create_group(kobj, &lkm_group);
	if (ret) {
		kobject_put(kobj);
		return ret;
	}
	pr_info("created /sys/kernel/lkm_exec\n");
	return 0;
}

static void __exit lkm_exec_sysfs_exit(void)
{
	sysfs_remove_group(kobj, &lkm_group);
	kobject_put(kobj);
	pr_info("removed, value %d\n", value);
}

module_init(lkm_exec_sysfs_init);
module_exit(lkm_exec_sysfs_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("a sysfs attribute pair");
