// SPDX-License-Identifier: GPL-2.0
/* Has a common (SHN_COMMON) symbol despite -fno-common: the kernel refuses it. */
#include <linux/module.h>

int lkm_common_var __attribute__((common));

static int __init lkm_common_init(void)
{
	lkm_common_var = 1;
	return 0;
}

static void __exit lkm_common_exit(void)
{
}

module_init(lkm_common_init);
module_exit(lkm_common_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("a SHN_COMMON symbol");
