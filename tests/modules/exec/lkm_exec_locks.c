// SPDX-License-Identifier: GPL-2.0
/* A mutex, a spinlock (plain and irqsave) and an atomic counter, uncontended. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include <linux/atomic.h>
#include <linux/mutex.h>
#include <linux/preempt.h>
#include <linux/slab.h>
#include <linux/spinlock.h>

static DEFINE_MUTEX(config_lock);
static DEFINE_SPINLOCK(stats_lock);
static atomic_t events = ATOMIC_INIT(0);
static int counter;

struct device_ctx {
	struct mutex lock;
	spinlock_t irq_lock;
	int value;
};

static int __init lkm_exec_locks_init(void)
{
	struct device_ctx *ctx;
	unsigned long flags;
	int ret, zero;

	mutex_lock(&config_lock);
	pr_info("mutex held: is_locked %d, trylock %d\n", mutex_is_locked(&config_lock),
		mutex_trylock(&config_lock));
	counter++;
	mutex_unlock(&config_lock);
	pr_info("mutex released: is_locked %d\n", mutex_is_locked(&config_lock));
	if (mutex_trylock(&config_lock)) {
		counter++;
		mutex_unlock(&config_lock);
	}

	spin_lock(&stats_lock);
	counter++;
	pr_info("spinlock held: is_locked %d, preempt_count %d, in_atomic %d\n",
		spin_is_locked(&stats_lock), preempt_count(), in_atomic());
	spin_unlock(&stats_lock);
	spin_lock_irqsave(&stats_lock, flags);
	pr_info("irqsave: irqs_disabled %d, preempt_count %d\n", irqs_disabled(),
		preempt_count());
	counter++;
	spin_unlock_irqrestore(&stats_lock, flags);
	pr_info("released: is_locked %d, irqs_disabled %d, preempt_count %d\n",
		spin_is_locked(&stats_lock), irqs_disabled(), preempt_count());

	atomic_inc(&events);
	atomic_add(5, &events);
	ret = atomic_inc_return(&events);
	zero = atomic_dec_and_test(&events);
	pr_info("atomic: inc_return %d, dec_and_test %d, read %d\n", ret, zero,
		atomic_read(&events));

	ctx = kzalloc(sizeof(*ctx), GFP_KERNEL);
	if (!ctx)
		return -ENOMEM;
	mutex_init(&ctx->lock);
	spin_lock_init(&ctx->irq_lock);
	mutex_lock(&ctx->lock);
	spin_lock_irq(&ctx->irq_lock);
	ctx->value = counter;
	spin_unlock_irq(&ctx->irq_lock);
	mutex_unlock(&ctx->lock);
	pr_info("counter %d, ctx value %d\n", counter, ctx->value);
	mutex_destroy(&ctx->lock);
	kfree(ctx);
	return 0;
}

static void __exit lkm_exec_locks_exit(void)
{
	mutex_lock(&config_lock);
	pr_info("exit: counter %d\n", counter);
	mutex_unlock(&config_lock);
}

module_init(lkm_exec_locks_init);
module_exit(lkm_exec_locks_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("mutex and spinlock");
