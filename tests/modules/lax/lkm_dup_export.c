// SPDX-License-Identifier: GPL-2.0
/* Exports lkm_params_value, which lkm_params exports too: it cannot load beside it. */
#include <linux/module.h>
#include "../lkm_exports.h"

int lkm_params_value(void)
{
	return 0;
}
EXPORT_SYMBOL(lkm_params_value);

static int __init lkm_dup_export_init(void)
{
	return 0;
}

static void __exit lkm_dup_export_exit(void)
{
}

module_init(lkm_dup_export_init);
module_exit(lkm_dup_export_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("exports a symbol lkm_params exports");
