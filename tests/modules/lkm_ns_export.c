// SPDX-License-Identifier: GPL-2.0
/* Exports a GPL-only symbol in the namespace LKM_NS. */
#include <linux/module.h>
#include "lkm_exports.h"

int lkm_ns_value(void)
{
	return 42;
}
EXPORT_SYMBOL_NS_GPL(lkm_ns_value, LKM_NS);

static int __init lkm_ns_export_init(void)
{
	return 0;
}

static void __exit lkm_ns_export_exit(void)
{
}

module_init(lkm_ns_export_init);
module_exit(lkm_ns_export_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Exports lkm_ns_value in namespace LKM_NS");
