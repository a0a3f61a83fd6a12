// SPDX-License-Identifier: GPL-2.0
/* /dev/lkm_echo, a misc device: what is written is read back (until the next write). */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include <linux/miscdevice.h>
#include <linux/fs.h>
#include <linux/uaccess.h>

#define ECHO_SIZE 64

static char echo[ECHO_SIZE] = "nothing written yet\n";
static size_t echo_len = 20;
static int opens;

static int echo_open(struct inode *inode, struct file *file)
{
	struct miscdevice *misc = file->private_data;

	opens++;
	pr_info("open #%d of %s\n", opens, misc->name);
	return 0;
}

static ssize_t echo_read(struct file *file, char __user *buf, size_t count, loff_t *ppos)
{
	return simple_read_from_buffer(buf, count, ppos, echo, echo_len);
}

static ssize_t echo_write(struct file *file, const char __user *buf, size_t count,
			  loff_t *ppos)
{
	if (count > ECHO_SIZE)
		return -ENOSPC;
	if (copy_from_user(echo, buf, count))
		return -EFAULT;
	echo_len = count;
	pr_info("%zu bytes written\n", count);
	return count;
}

static int echo_release(struct inode *inode, struct file *file)
{
	pr_info("release\n");
	return 0;
}

static const struct file_operations echo_fops = {
	.owner = THIS_MODULE,
	.open = echo_open,
	.read = echo_read,
	.write = echo_write,
	.release = echo_release,
	.llseek = default_llseek,
};

static struct miscdevice echo_dev = {
	.minor = MISC_DYNAMIC_MINOR,
	.name = "lkm_echo",
	.fops = &echo_fops,
	.mode = 0666,
};

static int __init lkm_exec_misc_init(void)
{
	int ret = misc_register(&echo_dev);

	if (ret)
		return ret;
	pr_info("registered /dev/%s\n", echo_dev.name);
	return 0;
}

static void __exit lkm_exec_misc_exit(void)
{
	misc_deregister(&echo_dev);
	pr_info("deregistered after %d opens\n", opens);
}

module_init(lkm_exec_misc_init);
module_exit(lkm_exec_misc_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("a misc device echoing writes");
