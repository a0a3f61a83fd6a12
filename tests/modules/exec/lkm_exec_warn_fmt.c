// SPDX-License-Identifier: GPL-2.0
/* WARN(cond, fmt, ...): the warning with a message of the module's own. */
#include <linux/module.h>
#include <linux/bug.h>

static int state = 3;

static int __init lkm_exec_warn_fmt_init(void)
{
	WARN(state != 0, "lkm_exec_warn_fmt: unexpected state %d\n", state);
	pr_info("lkm_exec_warn_fmt: loaded\n");
	return 0;
}

static void __exit lkm_exec_warn_fmt_exit(void)
{
}

module_init(lkm_exec_warn_fmt_init);
module_exit(lkm_exec_warn_fmt_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("WARN with a message");
