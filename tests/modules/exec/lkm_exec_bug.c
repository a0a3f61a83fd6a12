// SPDX-License-Identifier: GPL-2.0
/* BUG_ON in init: "kernel BUG at", the invalid-opcode oops, insmod dies. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include <linux/bug.h>

static int *table;	/* never set up */

static int __init lkm_exec_bug_init(void)
{
	pr_info("checking the table\n");
	BUG_ON(!table);
	pr_info("not reached\n");
	return 0;
}

static void __exit lkm_exec_bug_exit(void)
{
}

module_init(lkm_exec_bug_init);
module_exit(lkm_exec_bug_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("BUG_ON in init");
