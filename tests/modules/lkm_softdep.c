// SPDX-License-Identifier: GPL-2.0
/* Declares soft dependencies: lkm_params before it, lkm_user after it. */
#include <linux/module.h>

static int __init lkm_softdep_init(void)
{
	return 0;
}

static void __exit lkm_softdep_exit(void)
{
}

module_init(lkm_softdep_init);
module_exit(lkm_softdep_exit);
MODULE_LICENSE("GPL");
MODULE_SOFTDEP("pre: lkm_params post: lkm_user");
MODULE_DESCRIPTION("soft dependencies");
