// SPDX-License-Identifier: GPL-2.0
/* Claims to be in-tree (modinfo intree=Y): no O taint. */
#include <linux/module.h>

static int __init lkm_intree_init(void)
{
	return 0;
}

static void __exit lkm_intree_exit(void)
{
}

module_init(lkm_intree_init);
module_exit(lkm_intree_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(intree, "Y");
MODULE_DESCRIPTION("modinfo intree=Y");
