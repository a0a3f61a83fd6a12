// SPDX-License-Identifier: GPL-2.0
/* init fails with -ENOMEM after printing why: the load fails, nothing stays loaded. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include <linux/slab.h>

static char *buffers[4];

static int __init lkm_exec_enomem_init(void)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(buffers); i++) {
		/* pretend the third allocation fails */
		buffers[i] = i == 2 ? NULL : kmalloc(128, GFP_KERNEL);
		if (!buffers[i])
			goto fail;
		pr_info("buffer %d allocated\n", i);
	}
	return 0;
fail:
	pr_err("cannot allocate buffer %d\n", i);
	while (--i >= 0)
		kfree(buffers[i]);
	return -ENOMEM;
}

static void __exit lkm_exec_enomem_exit(void)
{
	int i;

	for (i = 0; i < ARRAY_SIZE(buffers); i++)
		kfree(buffers[i]);
}

module_init(lkm_exec_enomem_init);
module_exit(lkm_exec_enomem_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("init returns -ENOMEM");
