// SPDX-License-Identifier: GPL-2.0
/* Clean: THIS_MODULE as an owner and its name, a parameter. Only taints O and E. */
#include <linux/fs.h>
#include <linux/module.h>

static int lkm_audit_clean_level = 1;
module_param_named(level, lkm_audit_clean_level, int, 0444);

static const struct file_operations lkm_audit_clean_fops = {
	.owner = THIS_MODULE,
};

const struct file_operations *lkm_audit_clean_ops(void)
{
	return &lkm_audit_clean_fops;
}
EXPORT_SYMBOL_GPL(lkm_audit_clean_ops);

const char *lkm_audit_clean_name(void)
{
	return THIS_MODULE->name;
}
EXPORT_SYMBOL_GPL(lkm_audit_clean_name);

static int __init lkm_audit_clean_init(void)
{
	return try_module_get(THIS_MODULE) ? (module_put(THIS_MODULE), 0) : -ENODEV;
}

static void __exit lkm_audit_clean_exit(void)
{
}

module_init(lkm_audit_clean_init);
module_exit(lkm_audit_clean_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("lkm audit: a clean module");
