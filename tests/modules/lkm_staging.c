// SPDX-License-Identifier: GPL-2.0
/* Claims to be from drivers/staging: modinfo staging=Y gives taint C. */
#include <linux/module.h>

static int __init lkm_staging_init(void)
{
	return 0;
}

static void __exit lkm_staging_exit(void)
{
}

module_init(lkm_staging_init);
module_exit(lkm_staging_exit);
MODULE_LICENSE("GPL");
MODULE_INFO(staging, "Y");
MODULE_DESCRIPTION("modinfo staging=Y");
