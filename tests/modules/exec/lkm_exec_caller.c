// SPDX-License-Identifier: GPL-2.0
/* Calls the functions lkm_exec_export exports and prints the results. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include "lkm_exec.h"

static int __init lkm_exec_caller_init(void)
{
	int sum = lkm_exec_add(2, 3);

	pr_info("lkm_exec_add(2, 3) = %d\n", sum);
	pr_info("lkm_exec_add(sum, 10) = %d\n", lkm_exec_add(sum, 10));
	pr_info("%s\n", lkm_exec_greeting());
	return 0;
}

static void __exit lkm_exec_caller_exit(void)
{
	pr_info("lkm_exec_add(-1, 1) = %d\n", lkm_exec_add(-1, 1));
}

module_init(lkm_exec_caller_init);
module_exit(lkm_exec_caller_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("calls another module's exports");
