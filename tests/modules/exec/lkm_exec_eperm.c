// SPDX-License-Identifier: GPL-2.0
/* init refuses with -EPERM unless allow=1 is given. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include <linux/capability.h>

static bool allow;
module_param(allow, bool, 0444);
MODULE_PARM_DESC(allow, "allow loading");

static int __init lkm_exec_eperm_init(void)
{
	if (!capable(CAP_SYS_ADMIN)) {
		pr_err("needs CAP_SYS_ADMIN\n");
		return -EPERM;
	}
	if (!allow) {
		pr_warn("not allowed (load with allow=1)\n");
		return -EPERM;
	}
	pr_info("allowed\n");
	return 0;
}

static void __exit lkm_exec_eperm_exit(void)
{
	pr_info("exit\n");
}

module_init(lkm_exec_eperm_init);
module_exit(lkm_exec_eperm_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("init returns -EPERM unless allowed");
