// SPDX-License-Identifier: GPL-2.0
/* WARN_ON_ONCE hit three times: one warning per load, the condition returned each time. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include <linux/bug.h>

static noinline int check_index(int i)
{
	if (WARN_ON_ONCE(i >= 0))
		return -EINVAL;
	return 0;
}

static int __init lkm_exec_warn_once_init(void)
{
	int i, failed = 0;

	for (i = 0; i < 3; i++)
		if (check_index(i))
			failed++;
	pr_info("%d of 3 checks failed\n", failed);
	return 0;
}

static void __exit lkm_exec_warn_once_exit(void)
{
}

module_init(lkm_exec_warn_once_init);
module_exit(lkm_exec_warn_once_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("WARN_ON_ONCE in a loop");
