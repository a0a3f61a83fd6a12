// SPDX-License-Identifier: GPL-2.0
/* exit frees its buffer twice: SLUB's hardened freelist check BUGs, rmmod dies. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include <linux/slab.h>

static char *buf;

static void release(void)
{
	kfree(buf);	/* forgot buf = NULL */
}

static int __init lkm_exec_double_free_init(void)
{
	buf = kmalloc(64, GFP_KERNEL);
	if (!buf)
		return -ENOMEM;
	strscpy(buf, "data", 64);
	pr_info("allocated 64 bytes: %s\n", buf);
	return 0;
}

static void __exit lkm_exec_double_free_exit(void)
{
	release();
	pr_info("freed once\n");
	kfree(buf);
	pr_info("freed twice\n");
}

module_init(lkm_exec_double_free_init);
module_exit(lkm_exec_double_free_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("double kfree in exit");
