// SPDX-License-Identifier: GPL-2.0
/*
 * init busy-waits without ever scheduling: the soft-lockup watchdog reports it (taint L).
 * Bounded so that the machine survives: it spins until the report has been made (the
 * kernel is tainted L) or `seconds` pass, by jiffies. With watchdog_thresh=1 the report
 * comes after 2-3 s.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include <linux/jiffies.h>
#include <linux/panic.h>
#include <linux/processor.h>

static int seconds = 30;
module_param(seconds, int, 0444);
MODULE_PARM_DESC(seconds, "how long to spin at most");

static int __init lkm_exec_lockup_init(void)
{
	unsigned long end = jiffies + seconds * HZ;

	pr_info("spinning for up to %d s\n", seconds);
	while (!test_taint(TAINT_SOFTLOCKUP) && time_before(jiffies, end))
		cpu_relax();
	pr_info("done spinning: %s\n", test_taint(TAINT_SOFTLOCKUP) ? "the watchdog reported it" :
		"time is up");
	return 0;
}

static void __exit lkm_exec_lockup_exit(void)
{
}

module_init(lkm_exec_lockup_init);
module_exit(lkm_exec_lockup_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("busy loop in init (soft lockup)");
