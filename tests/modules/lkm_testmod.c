// SPDX-License-Identifier: GPL-2.0
/* A test module (modinfo test=Y): taint N. */
#include <linux/module.h>

static int __init lkm_testmod_init(void)
{
	return 0;
}

static void __exit lkm_testmod_exit(void)
{
}

module_init(lkm_testmod_init);
module_exit(lkm_testmod_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(test, "Y");
MODULE_DESCRIPTION("modinfo test=Y");
