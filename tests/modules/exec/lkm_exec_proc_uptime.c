// SPDX-License-Identifier: GPL-2.0
/* The course's exercise 1: /proc/lkm_uptime prints the uptime (single_open), and a
 * write to it sets the label it prints (copy_from_user). */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/jiffies.h>
#include <linux/uaccess.h>

static struct proc_dir_entry *entry;
static char label[32] = "uptime";
static int opens, shows;

static int lkm_uptime_show(struct seq_file *m, void *v)
{
	u64 j = get_jiffies_64() - INITIAL_JIFFIES;

	shows++;
	seq_printf(m, "%s: %llu.%02llu s\n", label, j / HZ, (j % HZ) * 100 / HZ);
	seq_puts(m, "opened ");
	seq_put_decimal_ull(m, "", opens);
	seq_putc(m, '\n');
	seq_write(m, "end\n", 4);
	return 0;
}

static int lkm_uptime_open(struct inode *inode, struct file *file)
{
	opens++;
	return single_open(file, lkm_uptime_show, NULL);
}

static ssize_t lkm_uptime_write(struct file *file, const char __user *buf, size_t count,
				loff_t *ppos)
{
	char tmp[sizeof(label)];
	size_t n = min(count, sizeof(tmp) - 1);

	if (copy_from_user(tmp, buf, n))
		return -EFAULT;
	tmp[n] = '\0';
	if (n && tmp[n - 1] == '\n')
		tmp[n - 1] = '\0';
	if (!tmp[0])
		return -EINVAL;
	strscpy(label, tmp, sizeof(label));
	pr_info("label set to \"%s\" (%zu bytes written)\n", label, count);
	return count;
}

static const struct proc_ops lkm_uptime_ops = {
	.proc_open = lkm_uptime_open,
	.proc_read = seq_read,
	.proc_write = lkm_uptime_write,
	.proc_lseek = seq_lseek,
	.proc_release = single_release,
};

static int __init lkm_exec_proc_uptime_init(void)
{
	entry = proc_create("lkm_uptime", 0644, NULL, &lkm_uptime_ops);
	if (!entry)
		return -ENOMEM;
	pr_info("created /proc/lkm_uptime\n");
	return 0;
}

static void __exit lkm_exec_proc_uptime_exit(void)
{
	proc_remove(entry);
	pr_info("removed /proc/lkm_uptime after %d opens, %d shows\n", opens, shows);
}

module_init(lkm_exec_proc_uptime_init);
module_exit(lkm_exec_proc_uptime_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("a /proc file printing the uptime");
