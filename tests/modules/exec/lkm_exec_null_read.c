// SPDX-License-Identifier: GPL-2.0
/* exit reads through a NULL pointer: the oops happens in rmmod, which dies. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>

struct stats {
	long opened;
	long closed;
};

static struct stats *stats;	/* the allocation was forgotten */

static int __init lkm_exec_null_read_init(void)
{
	pr_info("loaded\n");
	return 0;
}

static void __exit lkm_exec_null_read_exit(void)
{
	pr_info("closed %ld times\n", stats->closed);
	pr_info("not reached\n");
}

module_init(lkm_exec_null_read_init);
module_exit(lkm_exec_null_read_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("NULL pointer read in exit");
