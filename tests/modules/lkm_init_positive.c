// SPDX-License-Identifier: GPL-2.0
/* init returns 1: the kernel warns ("suspiciously returned") and the load succeeds. */
#include <linux/module.h>

static int __init lkm_init_positive_init(void)
{
	return 1;
}

static void __exit lkm_init_positive_exit(void)
{
}

module_init(lkm_init_positive_init);
module_exit(lkm_init_positive_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("init returns 1");
