// SPDX-License-Identifier: GPL-2.0
/* Imports the namespace LKM_NS and uses its symbol. */
#include <linux/module.h>
#include "lkm_exports.h"

static int lkm_ns_user_value;

static int __init lkm_ns_user_init(void)
{
	lkm_ns_user_value = lkm_ns_value();
	return 0;
}

static void __exit lkm_ns_user_exit(void)
{
}

module_init(lkm_ns_user_init);
module_exit(lkm_ns_user_exit);
MODULE_LICENSE("GPL");
MODULE_IMPORT_NS(LKM_NS);
MODULE_DESCRIPTION("Uses lkm_ns_value, importing LKM_NS");
