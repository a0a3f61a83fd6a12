// SPDX-License-Identifier: GPL-2.0
/* References a weak symbol nobody defines: it resolves to 0 and the module loads. */
#include <linux/module.h>

extern int lkm_weak_missing(void) __attribute__((weak));

static int lkm_weak_seen;

static int __init lkm_weak_init(void)
{
	lkm_weak_seen = lkm_weak_missing ? lkm_weak_missing() : -1;
	return 0;
}

static void __exit lkm_weak_exit(void)
{
}

module_init(lkm_weak_init);
module_exit(lkm_weak_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("a weak undefined symbol");
