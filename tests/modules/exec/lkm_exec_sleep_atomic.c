// SPDX-License-Identifier: GPL-2.0
/* msleep while holding a spinlock: "BUG: scheduling while atomic"; init still returns 0. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include <linux/delay.h>
#include <linux/spinlock.h>

static DEFINE_SPINLOCK(hw_lock);

static int __init lkm_exec_sleep_atomic_init(void)
{
	spin_lock(&hw_lock);
	pr_info("waiting for the hardware with the lock held\n");
	msleep(10);
	spin_unlock(&hw_lock);
	pr_info("done\n");
	return 0;
}

static void __exit lkm_exec_sleep_atomic_exit(void)
{
}

module_init(lkm_exec_sleep_atomic_init);
module_exit(lkm_exec_sleep_atomic_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("sleeping in atomic context");
