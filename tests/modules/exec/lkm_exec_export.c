// SPDX-License-Identifier: GPL-2.0
/* Exports two functions that lkm_exec_caller calls. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include "lkm_exec.h"

static int calls;

int lkm_exec_add(int a, int b)
{
	calls++;
	pr_info("lkm_exec_add(%d, %d), call %d\n", a, b, calls);
	return a + b;
}
EXPORT_SYMBOL_GPL(lkm_exec_add);

const char *lkm_exec_greeting(void)
{
	return "greetings from lkm_exec_export";
}
EXPORT_SYMBOL(lkm_exec_greeting);

static int __init lkm_exec_export_init(void)
{
	pr_info("ready\n");
	return 0;
}

static void __exit lkm_exec_export_exit(void)
{
	pr_info("called %d times\n", calls);
}

module_init(lkm_exec_export_init);
module_exit(lkm_exec_export_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("exports functions");
