// SPDX-License-Identifier: GPL-2.0
/* Uses lkm_ns_value without importing LKM_NS: the kernel refuses it. */
#include <linux/module.h>
#include "../lkm_exports.h"

static int lkm_ns_noimport_value;

static int __init lkm_ns_noimport_init(void)
{
	lkm_ns_noimport_value = lkm_ns_value();
	return 0;
}

static void __exit lkm_ns_noimport_exit(void)
{
}

module_init(lkm_ns_noimport_init);
module_exit(lkm_ns_noimport_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("uses a namespaced symbol without MODULE_IMPORT_NS");
