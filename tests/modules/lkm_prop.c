// SPDX-License-Identifier: GPL-2.0
/* A proprietary module using lkm_params' plain export: loads, taints P. */
#include <linux/module.h>
#include "lkm_exports.h"

static int lkm_prop_value;

static int __init lkm_prop_init(void)
{
	lkm_prop_value = lkm_params_value();
	return 0;
}

static void __exit lkm_prop_exit(void)
{
}

module_init(lkm_prop_init);
module_exit(lkm_prop_exit);
MODULE_LICENSE("Proprietary");
MODULE_DESCRIPTION("Proprietary user of a plain export");
