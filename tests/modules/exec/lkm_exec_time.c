// SPDX-License-Identifier: GPL-2.0
/* jiffies, msleep, udelay/mdelay and ktime. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include <linux/delay.h>
#include <linux/jiffies.h>
#include <linux/ktime.h>
#include <linux/timekeeping.h>

static int __init lkm_exec_time_init(void)
{
	unsigned long start = jiffies;
	u64 start64 = get_jiffies_64();
	ktime_t t0 = ktime_get();
	unsigned int ms;
	s64 us;

	pr_info("HZ=%d msecs_to_jiffies(100)=%lu jiffies_to_msecs(250)=%u usecs_to_jiffies(4000)=%lu\n",
		HZ, msecs_to_jiffies(100), jiffies_to_msecs(250), usecs_to_jiffies(4000));
	pr_info("uptime by jiffies: %lu s, by ktime_get_boottime_seconds: %lld s\n",
		(unsigned long)(start64 - INITIAL_JIFFIES) / HZ, ktime_get_boottime_seconds());
	pr_info("jiffies wrapped: %s\n", time_before(start, (unsigned long)INITIAL_JIFFIES) ?
		"no" : "yes");
	msleep(100);
	ms = jiffies_to_msecs(jiffies - start);
	us = ktime_us_delta(ktime_get(), t0);
	pr_info("msleep(100) took %u ms by jiffies, %lld us by ktime\n", ms, us);
	pr_info("at least 100 ms: jiffies %s, ktime %s\n", ms >= 100 ? "yes" : "no",
		us >= 100000 ? "yes" : "no");
	pr_info("time_after(jiffies, start) = %d\n", time_after(jiffies, start));
	t0 = ktime_get();
	udelay(50);
	mdelay(2);
	us = ktime_us_delta(ktime_get(), t0);
	pr_info("udelay(50) + mdelay(2) took %lld us\n", us);
	pr_info("wall clock after 2020: %s\n",
		ktime_get_real_seconds() > 1577836800 ? "yes" : "no");
	return 0;
}

static void __exit lkm_exec_time_exit(void)
{
}

module_init(lkm_exec_time_init);
module_exit(lkm_exec_time_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("time keeping");
