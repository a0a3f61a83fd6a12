// SPDX-License-Identifier: GPL-2.0
/*
 * Reads an object after kfree and prints what it reads: without KASAN nothing notices;
 * SLUB's (hardened) freelist pointer sits in the middle of the freed object.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>

struct record {
	int id;
	char name[12];
	long counter;
	long flags;
};	/* 32 bytes: kmalloc-32 */

static int __init lkm_exec_uaf_init(void)
{
	struct record *rec = kmalloc(sizeof(*rec), GFP_KERNEL);

	if (!rec)
		return -ENOMEM;
	rec->id = 7;
	strscpy(rec->name, "seven", sizeof(rec->name));
	rec->counter = 1000;
	rec->flags = 0x5;
	pr_info("before kfree: id=%d name=%s counter=%ld flags=%lx\n",
		rec->id, rec->name, rec->counter, rec->flags);
	kfree(rec);
	pr_info("after kfree: id=%d name=%s counter=%ld flags=%lx\n",
		rec->id, rec->name, rec->counter, rec->flags);
	pr_info("counter changed: %s\n", rec->counter != 1000 ? "yes" : "no");
	return 0;
}

static void __exit lkm_exec_uaf_exit(void)
{
}

module_init(lkm_exec_uaf_init);
module_exit(lkm_exec_uaf_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("use after free");
