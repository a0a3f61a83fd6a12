// SPDX-License-Identifier: GPL-2.0
/* kmalloc/kzalloc/kcalloc/krealloc/kfree/kstrdup/kasprintf, snprintf, strscpy, kstrtoint. */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include <linux/kernel.h>
#include <linux/slab.h>
#include <linux/string.h>

static void strings(void)
{
	char buf[8];
	char *copy, *msg;
	ssize_t n;
	int len;

	copy = kstrdup("hello, kernel", GFP_KERNEL);
	if (!copy)
		return;
	pr_info("kstrdup: [%s] strlen %zu\n", copy, strlen(copy));
	pr_info("strcmp: %d %d %d, strncmp: %d\n", strcmp(copy, "hello, kernel") == 0,
		strcmp("abc", "abd") < 0, strcmp("b", "a") > 0, strncmp(copy, "help", 3));
	pr_info("strchr: [%s] strrchr: [%s] strstr: [%s]\n", strchr(copy, ','),
		strrchr(copy, 'e'), strstr(copy, "ker"));
	kfree(copy);

	len = snprintf(buf, sizeof(buf), "%s-%d", "abcdef", 123);
	pr_info("snprintf: returned %d, buffer [%s]\n", len, buf);
	len = scnprintf(buf, sizeof(buf), "%s-%d", "abcdef", 123);
	pr_info("scnprintf: returned %d, buffer [%s]\n", len, buf);
	len = sprintf(buf, "%d", -12345);
	pr_info("sprintf: returned %d, buffer [%s]\n", len, buf);
	n = strscpy(buf, "short", sizeof(buf));
	pr_info("strscpy: returned %zd, buffer [%s]\n", n, buf);
	n = strscpy(buf, "much too long", sizeof(buf));
	pr_info("strscpy: returned %zd (%pe), buffer [%s]\n", n, ERR_PTR(n), buf);

	msg = kasprintf(GFP_KERNEL, "%s has %d items", "list", 3);
	if (msg) {
		pr_info("kasprintf: [%s]\n", msg);
		kfree(msg);
	}
}

static void numbers(void)
{
	static const char * const inputs[] = { "1234", "-56", "0x1f", "017", "12abc", "",
					       "99999999999", " 5", "7\n" };
	int i, v, err;
	unsigned int u;

	for (i = 0; i < ARRAY_SIZE(inputs); i++) {
		v = -1;
		err = kstrtoint(inputs[i], 0, &v);
		pr_info("kstrtoint(\"%s\", 0) = %d, value %d\n", inputs[i], err, v);
	}
	err = kstrtoint("0x1f", 10, &v);
	pr_info("kstrtoint(\"0x1f\", 10) = %d\n", err);
	err = kstrtouint("ff", 16, &u);
	pr_info("kstrtouint(\"ff\", 16) = %d, value %u\n", err, u);
	err = kstrtouint("-1", 10, &u);
	pr_info("kstrtouint(\"-1\", 10) = %d\n", err);
}

static void allocations(void)
{
	int *arr, *bigger, i, sum = 0;
	long *cal;
	void *zero;
	u8 *raw;

	arr = kzalloc(4 * sizeof(*arr), GFP_KERNEL);
	if (!arr)
		return;
	pr_info("kzalloc: %d %d %d %d\n", arr[0], arr[1], arr[2], arr[3]);
	for (i = 0; i < 4; i++)
		arr[i] = i + 1;
	bigger = krealloc(arr, 8 * sizeof(*arr), GFP_KERNEL);
	if (!bigger) {
		kfree(arr);
		return;
	}
	for (i = 4; i < 8; i++)
		bigger[i] = i + 1;
	for (i = 0; i < 8; i++)
		sum += bigger[i];
	pr_info("krealloc: kept %d %d %d %d, sum of 8 is %d\n", bigger[0], bigger[1], bigger[2],
		bigger[3], sum);
	kfree(bigger);

	cal = kcalloc(3, sizeof(*cal), GFP_KERNEL);
	pr_info("kcalloc: %s, %ld %ld %ld\n", cal ? "ok" : "failed", cal ? cal[0] : -1L,
		cal ? cal[1] : -1L, cal ? cal[2] : -1L);
	kfree(cal);

	raw = kmalloc(100, GFP_KERNEL);	/* Debian: init_on_alloc=1 zeroes it */
	if (raw) {
		pr_info("kmalloc(100): first byte %d, last byte %d, ksize %zu\n", raw[0], raw[99],
			ksize(raw));
		memset(raw, 0xab, 100);
		memcpy(raw, "abc", 3);
		pr_info("memset/memcpy: %02x %02x %02x %02x, memcmp %d\n", raw[0], raw[2], raw[3],
			raw[99], memcmp(raw, "abd", 3) < 0);
		kfree(raw);
	}

	zero = kmalloc(0, GFP_KERNEL);
	pr_info("kmalloc(0) = %px, ZERO_OR_NULL_PTR %d\n", zero, ZERO_OR_NULL_PTR(zero));
	kfree(zero);
	kfree(NULL);
	pr_info("kfree(NULL) is fine\n");
}

static int __init lkm_exec_mem_init(void)
{
	allocations();
	strings();
	numbers();
	return 0;
}

static void __exit lkm_exec_mem_exit(void)
{
}

module_init(lkm_exec_mem_init);
module_exit(lkm_exec_mem_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("memory and string helpers");
