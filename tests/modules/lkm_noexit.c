// SPDX-License-Identifier: GPL-2.0
/* Has an init but no exit function: it cannot be unloaded (EBUSY) unless forced. */
#include <linux/module.h>

static int __init lkm_noexit_init(void)
{
	return 0;
}

module_init(lkm_noexit_init);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("no module_exit");
