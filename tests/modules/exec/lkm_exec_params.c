// SPDX-License-Identifier: GPL-2.0
/* init prints its parameters: an int, a charp, a bool and an int array. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include <linux/moduleparam.h>

static int count = 1;
module_param(count, int, 0644);
MODULE_PARM_DESC(count, "how many greetings (0-10)");

static char *name = "world";
module_param(name, charp, 0444);
MODULE_PARM_DESC(name, "whom to greet");

static bool loud;
module_param(loud, bool, 0644);
MODULE_PARM_DESC(loud, "shout the greeting");

static int values[5] = { 10, 20 };
static int nvalues = 2;
module_param_array(values, int, &nvalues, 0444);
MODULE_PARM_DESC(values, "up to 5 numbers");

static int __init lkm_exec_params_init(void)
{
	int i, sum = 0;

	pr_info("count=%d name=%s loud=%d nvalues=%d\n", count, name, loud, nvalues);
	if (count < 0 || count > 10) {
		pr_err("count must be between 0 and 10, not %d\n", count);
		return -EINVAL;
	}
	pr_info("values:");
	for (i = 0; i < nvalues; i++) {
		pr_cont(" %d", values[i]);
		sum += values[i];
	}
	pr_cont(" (sum %d)\n", sum);
	for (i = 0; i < count; i++) {
		if (loud)
			pr_info("HELLO, %s! (%d of %d)\n", name, i + 1, count);
		else
			pr_info("hello, %s (%d of %d)\n", name, i + 1, count);
	}
	return 0;
}

static void __exit lkm_exec_params_exit(void)
{
	pr_info("goodbye, %s\n", name);
}

module_init(lkm_exec_params_init);
module_exit(lkm_exec_params_exit);
MODULE_LICENSE("GPL");
MODULE_AUTHOR("lkm tests");
MODULE_DESCRIPTION("init prints its parameters");
