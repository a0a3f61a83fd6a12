// SPDX-License-Identifier: GPL-2.0
/* A loglevel parameter gating pr_debug, pr_info and pr_err (0 quiet ... 3 debug). */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>

static int loglevel = 1;
module_param(loglevel, int, 0644);
MODULE_PARM_DESC(loglevel, "0 quiet, 1 errors, 2 info, 3 debug");

#define log_err(fmt, ...) do { if (loglevel >= 1) pr_err(fmt, ##__VA_ARGS__); } while (0)
#define log_info(fmt, ...) do { if (loglevel >= 2) pr_info(fmt, ##__VA_ARGS__); } while (0)
#define log_dbg(fmt, ...) do { if (loglevel >= 3) pr_debug(fmt, ##__VA_ARGS__); } while (0)

static int __init lkm_exec_loglevel_init(void)
{
	log_dbg("debug: init starts\n");
	log_info("info: loglevel is %d\n", loglevel);
	log_err("error: something went wrong (loglevel %d)\n", loglevel);
	log_dbg("debug: init ends\n");
	return 0;
}

static void __exit lkm_exec_loglevel_exit(void)
{
	log_info("info: unloading (loglevel %d)\n", loglevel);
	log_dbg("debug: unloaded\n");
}

module_init(lkm_exec_loglevel_init);
module_exit(lkm_exec_loglevel_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("log level parameter");
