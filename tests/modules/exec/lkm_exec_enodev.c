// SPDX-License-Identifier: GPL-2.0
/* A driver whose init finds no device: -ENODEV. */
#include <linux/module.h>

static int io_base = 0x300;
module_param(io_base, int, 0444);
MODULE_PARM_DESC(io_base, "I/O port of the card");

static int __init lkm_exec_enodev_init(void)
{
	pr_info("lkm_exec_enodev: probing for a card at 0x%x\n", io_base);
	pr_err("lkm_exec_enodev: no card found at 0x%x\n", io_base);
	return -ENODEV;
}

static void __exit lkm_exec_enodev_exit(void)
{
}

module_init(lkm_exec_enodev_init);
module_exit(lkm_exec_enodev_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("init returns -ENODEV");
