// SPDX-License-Identifier: GPL-2.0
/* /proc/lkm_exec/items: a seq_operations iterator over a list (seq_list_*), and
 * /proc/lkm_exec/big: one record larger than a page (the buffer grows and the show
 * is retried), both in a directory of their own (proc_mkdir). */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/list.h>

struct item {
	struct list_head list;
	int id;
	char name[16];
};

static LIST_HEAD(items);
static struct proc_dir_entry *dir;
static int big_lines = 300;
module_param(big_lines, int, 0644);
static int starts, stops;

static void *items_start(struct seq_file *m, loff_t *pos)
{
	starts++;
	return seq_list_start_head(&items, *pos);
}

static void *items_next(struct seq_file *m, void *v, loff_t *pos)
{
	return seq_list_next(v, &items, pos);
}

static void items_stop(struct seq_file *m, void *v)
{
	stops++;
}

static int items_show(struct seq_file *m, void *v)
{
	struct item *it;

	if (v == &items) {
		seq_puts(m, "id name\n");
		return 0;
	}
	it = list_entry(v, struct item, list);
	if (it->id == 3)
		return SEQ_SKIP;
	seq_printf(m, "%2d %s\n", it->id, it->name);
	return 0;
}

static const struct seq_operations items_ops = {
	.start = items_start,
	.next = items_next,
	.stop = items_stop,
	.show = items_show,
};

static int big_show(struct seq_file *m, void *v)
{
	int i;

	for (i = 0; i < big_lines; i++)
		seq_printf(m, "line %4d of %4d .......\n", i + 1, big_lines);
	return 0;
}

static int __init lkm_exec_proc_seq_init(void)
{
	static const char *const names[] = { "alpha", "beta", "gamma", "delta", "epsilon" };
	int i;

	for (i = 0; i < ARRAY_SIZE(names); i++) {
		struct item *it = kzalloc(sizeof(*it), GFP_KERNEL);

		if (!it)
			return -ENOMEM;
		it->id = i + 1;
		strscpy(it->name, names[i], sizeof(it->name));
		list_add_tail(&it->list, &items);
	}
	dir = proc_mkdir("lkm_exec", NULL);
	if (!dir)
		return -ENOMEM;
	if (!proc_create_seq("items", 0444, dir, &items_ops) ||
	    !proc_create_single("big", 0444, dir, big_show)) {
		proc_remove(dir);
		return -ENOMEM;
	}
	pr_info("created /proc/lkm_exec/items and big\n");
	return 0;
}

static void __exit lkm_exec_proc_seq_exit(void)
{
	struct item *it, *tmp;

	remove_proc_entry("big", dir);
	remove_proc_subtree("lkm_exec", NULL);
	list_for_each_entry_safe(it, tmp, &items, list) {
		list_del(&it->list);
		kfree(it);
	}
	pr_info("removed: %d starts, %d stops\n", starts, stops);
}

module_init(lkm_exec_proc_seq_init);
module_exit(lkm_exec_proc_seq_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("a seq_file iterator over a list");
