// SPDX-License-Identifier: GPL-2.0
/* Uses both exports of lkm_params, so it depends on it. */
#include <linux/module.h>
#include "lkm_exports.h"

static int lkm_user_sum;

static int __init lkm_user_init(void)
{
	lkm_user_sum = lkm_params_value() + lkm_params_gpl_value();
	return 0;
}

static void __exit lkm_user_exit(void)
{
}

module_init(lkm_user_init);
module_exit(lkm_user_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("Uses the plain and the GPL-only export of lkm_params");
