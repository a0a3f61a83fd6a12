// SPDX-License-Identifier: GPL-2.0
/* WARN_ON(1) in init: the warning is printed (taint W) and init goes on to return 0. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include <linux/bug.h>

static int __init lkm_exec_warn_init(void)
{
	pr_info("before WARN_ON\n");
	WARN_ON(1);
	pr_info("after WARN_ON: init goes on\n");
	return 0;
}

static void __exit lkm_exec_warn_exit(void)
{
	pr_info("exit\n");
}

module_init(lkm_exec_warn_init);
module_exit(lkm_exec_warn_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("WARN_ON(1) in init");
