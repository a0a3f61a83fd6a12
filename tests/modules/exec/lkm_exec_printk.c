// SPDX-License-Identifier: GPL-2.0
/* Every printk level, printk without a level, KERN_CONT continuations, multi-line text. */
#include <linux/module.h>
#include <linux/printk.h>

static int __init lkm_exec_printk_init(void)
{
	int i;

	pr_emerg("lkm_exec_printk: emerg (0)\n");
	pr_alert("lkm_exec_printk: alert (1)\n");
	pr_crit("lkm_exec_printk: crit (2)\n");
	pr_err("lkm_exec_printk: err (3)\n");
	pr_warn("lkm_exec_printk: warning (4)\n");
	pr_notice("lkm_exec_printk: notice (5)\n");
	pr_info("lkm_exec_printk: info (6)\n");
	pr_debug("lkm_exec_printk: debug (7), shown only with dynamic debug\n");
	printk("lkm_exec_printk: printk without a level\n");
	printk(KERN_DEFAULT "lkm_exec_printk: KERN_DEFAULT\n");
	printk(KERN_INFO "lkm_exec_printk: a line made of ");
	printk(KERN_CONT "two printk calls\n");
	pr_info("lkm_exec_printk: counting:");
	for (i = 1; i <= 3; i++)
		pr_cont(" %d", i);
	pr_cont(" done\n");
	pr_info("lkm_exec_printk: first line\nsecond line\nthird line\n");
	pr_info("lkm_exec_printk: a line without a newline");
	pr_info("lkm_exec_printk: the next line\n");
	pr_warn("lkm_exec_printk: a tab\there, a backslash \\ and 100%%\n");
	pr_err("lkm_exec_printk: %s\n", "a string argument");
	pr_info("\n");
	pr_info("lkm_exec_printk: after an empty line\n");
	return 0;
}

static void __exit lkm_exec_printk_exit(void)
{
	pr_info("lkm_exec_printk: exit\n");
}

module_init(lkm_exec_printk_init);
module_exit(lkm_exec_printk_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("every printk level");
