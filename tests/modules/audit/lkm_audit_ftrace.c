// SPDX-License-Identifier: GPL-2.0
/* An ftrace hook on a kernel function (a callback that does nothing). */
#include <linux/ftrace.h>
#include <linux/module.h>
#include <linux/string.h>

static void notrace lkm_audit_ftrace_cb(unsigned long ip, unsigned long parent_ip,
					struct ftrace_ops *op, struct ftrace_regs *regs)
{
}

static struct ftrace_ops lkm_audit_ftrace_ops = {
	.func = lkm_audit_ftrace_cb,
};

static int __init lkm_audit_ftrace_init(void)
{
	static char name[] = "kfree_sensitive";
	int ret = ftrace_set_filter(&lkm_audit_ftrace_ops, name, strlen(name), 0);

	return ret ? ret : register_ftrace_function(&lkm_audit_ftrace_ops);
}

static void __exit lkm_audit_ftrace_exit(void)
{
	unregister_ftrace_function(&lkm_audit_ftrace_ops);
}

module_init(lkm_audit_ftrace_init);
module_exit(lkm_audit_ftrace_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("lkm audit: an ftrace hook");
