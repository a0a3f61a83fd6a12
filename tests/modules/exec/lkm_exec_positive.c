// SPDX-License-Identifier: GPL-2.0
/* init returns the number of things it registered (a positive value) instead of 0. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>

static int registered;

static int __init lkm_exec_positive_init(void)
{
	int i;

	for (i = 0; i < 3; i++)
		registered++;
	pr_info("registered %d handlers\n", registered);
	return registered;
}

static void __exit lkm_exec_positive_exit(void)
{
	pr_info("unregistered %d handlers\n", registered);
}

module_init(lkm_exec_positive_init);
module_exit(lkm_exec_positive_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("init returns a positive value");
