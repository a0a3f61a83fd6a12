// SPDX-License-Identifier: GPL-2.0
/* Proprietary, uses lkm_params' GPL-only export: fails with "Unknown symbol". */
#include <linux/module.h>
#include "../lkm_exports.h"

static int lkm_prop_gpl_value;

static int __init lkm_prop_gpl_init(void)
{
	lkm_prop_gpl_value = lkm_params_gpl_value();
	return 0;
}

static void __exit lkm_prop_gpl_exit(void)
{
}

module_init(lkm_prop_gpl_init);
module_exit(lkm_prop_gpl_exit);
MODULE_LICENSE("Proprietary");
MODULE_DESCRIPTION("Proprietary user of a GPL-only export");
