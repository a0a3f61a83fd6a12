// SPDX-License-Identifier: GPL-2.0
/*
 * try_module_get/module_put of THIS_MODULE: init takes `hold` references (default 1), so
 * rmmod refuses; writing N to /sys/module/lkm_exec_refcnt/parameters/hold gets or puts
 * references until N are held (module_param_cb).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include <linux/moduleparam.h>

static int wanted = 1;
static int held;
static bool live;

static int adjust(int n)
{
	while (held < n) {
		if (!try_module_get(THIS_MODULE))
			return -ENODEV;
		held++;
	}
	while (held > n) {
		module_put(THIS_MODULE);
		held--;
	}
	pr_info("holding %d references, module_refcount %d\n", held,
		module_refcount(THIS_MODULE));
	return 0;
}

static int hold_set(const char *val, const struct kernel_param *kp)
{
	int n, err = kstrtoint(val, 0, &n);

	if (err)
		return err;
	if (n < 0 || n > 16)
		return -EINVAL;
	wanted = n;
	return live ? adjust(n) : 0;
}

static int hold_get(char *buffer, const struct kernel_param *kp)
{
	return scnprintf(buffer, PAGE_SIZE, "%d\n", held);
}

static const struct kernel_param_ops hold_ops = {
	.set = hold_set,
	.get = hold_get,
};
module_param_cb(hold, &hold_ops, NULL, 0644);
MODULE_PARM_DESC(hold, "references to hold (0-16)");

static int __init lkm_exec_refcnt_init(void)
{
	pr_info("init: module_refcount %d\n", module_refcount(THIS_MODULE));
	live = true;
	return adjust(wanted);
}

static void __exit lkm_exec_refcnt_exit(void)
{
	pr_info("exit: module_refcount %d\n", module_refcount(THIS_MODULE));
}

module_init(lkm_exec_refcnt_init);
module_exit(lkm_exec_refcnt_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("holds references to itself");
