// SPDX-License-Identifier: GPL-2.0
/* init writes through a NULL pointer (an unchecked lookup): the page-fault oops, insmod dies. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>

struct dev_state {
	int id;
	int count;
};

static struct dev_state *devices[4];	/* nothing registered */

static int id = 1;
module_param(id, int, 0444);
MODULE_PARM_DESC(id, "device to use");

static struct dev_state *find_device(int n)
{
	return n >= 0 && n < ARRAY_SIZE(devices) ? devices[n] : NULL;
}

static int __init lkm_exec_null_write_init(void)
{
	struct dev_state *dev = find_device(id);

	pr_info("using device %d\n", id);
	dev->count = 1;
	pr_info("not reached\n");
	return 0;
}

static void __exit lkm_exec_null_write_exit(void)
{
}

module_init(lkm_exec_null_write_init);
module_exit(lkm_exec_null_write_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("NULL pointer write in init");
