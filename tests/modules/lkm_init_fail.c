// SPDX-License-Identifier: GPL-2.0
/* init fails with -ENOMEM: the load fails with that errno. */
#include <linux/module.h>

static int __init lkm_init_fail_init(void)
{
	return -ENOMEM;
}

static void __exit lkm_init_fail_exit(void)
{
}

module_init(lkm_init_fail_init);
module_exit(lkm_init_fail_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("init returns -ENOMEM");
