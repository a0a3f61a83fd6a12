// SPDX-License-Identifier: GPL-2.0
/*
 * The printk format families: integers with flags, width and precision; strings with
 * precision and NULL; pointers (%p %px %pK %pS %ps %pB of its own functions and data);
 * %pe; addresses and buffers (%pI4 %pI6 %pM %pU %ph); print_hex_dump.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt
#include <linux/module.h>
#include <linux/err.h>
#include <linux/in6.h>
#include <linux/kernel.h>
#include <linux/printk.h>
#include <linux/slab.h>
#include <linux/uuid.h>

static int counter = 42;
static const char *nothing;	/* stays NULL */
static int offset = 4;
module_param(offset, int, 0444);
MODULE_PARM_DESC(offset, "offset into format_helper for %pS");

static noinline int format_helper(int x)
{
	return x * 2 + counter;
}

static void show_integers(void)
{
	int n = 42, neg = -42;
	unsigned int u = 3000000000U;
	long long ll = -1234567890123LL;
	unsigned long long ull = 18446744073709551615ULL;
	size_t sz = sizeof(struct in6_addr);
	ssize_t ssz = -1;
	short sh = -1234;
	unsigned char uc = 200;

	pr_info("d: [%d] [%5d] [%-5d] [%05d] [%+d] [% d] [%.4d] [%8.4d]\n",
		n, n, n, n, n, n, n, n);
	pr_info("neg: [%d] [%6d] [%-6d] [%06d] [%+d] [%.4d]\n", neg, neg, neg, neg, neg, neg);
	pr_info("u: [%u] [%x] [%X] [%#x] [%#X] [%o] [%#o] [%08x] [%#010x] [%-8x]\n",
		u, u, u, u, u, u, u, u, u, u);
	pr_info("ll: [%lld] [%llu] [%llx] [%#llx] [%20lld]\n", ll, ull, ull, ull, ll);
	pr_info("sizes: [%zu] [%zd] [%hd] [%hu] [%hhu] [%hhx]\n", sz, ssz, sh, (unsigned short)sh,
		uc, uc);
	pr_info("star: [%*d] [%-*d] [%.*d] [%*.*d]\n", 6, n, 6, n, 5, n, 8, 3, n);
	pr_info("zero: [%d] [%x] [%#x] [%#o] [%.0d] [%5.0d]\n", 0, 0, 0, 0, 0, 0);
	pr_info("chars: [%c] [%3c] [%-3c] [%%]\n", 'a', 'b', 'c');
	pr_info("limits: [%d] [%d] [%u] [%ld] [%lu]\n", INT_MAX, INT_MIN, UINT_MAX, LONG_MIN,
		ULONG_MAX);
}

static void show_strings(void)
{
	const char *s = "kernel";

	pr_info("s: [%s] [%10s] [%-10s] [%.3s] [%10.3s] [%-10.3s] [%.0s]\n",
		s, s, s, s, s, s, s);
	pr_info("null: [%s] [%10s] [%.2s]\n", nothing, nothing, nothing);
	pr_info("error pointer as string: [%s]\n", (const char *)ERR_PTR(-EINVAL));
	pr_info("star: [%*s] [%.*s]\n", 8, s, 2, s);
}

static noinline void show_caller(void)
{
	pr_info("%%pB of the return address: %pB\n", __builtin_return_address(0));
	pr_info("%%pS of the return address: %pS\n", __builtin_return_address(0));
}

static void show_pointers(void)
{
	void *p = &counter;

	pr_info("%%p: %p %%px: %px %%pK: %pK\n", p, p, p);
	pr_info("NULL: %%p [%p] %%px [%px] %%pK [%pK]\n", NULL, NULL, NULL);
	pr_info("%%pS: %pS\n", format_helper);
	pr_info("%%ps: %ps\n", format_helper);
	pr_info("%%pS+%d: %pS\n", offset, (char *)format_helper + offset);
	pr_info("%%pB+%d: %pB\n", offset, (char *)format_helper + offset);
	pr_info("%%pS of data: %pS\n", &counter);
	pr_info("%%pS of a kernel function: %pS %ps\n", kfree, kfree);
	pr_info("helper(1) = %d\n", format_helper(1));
	show_caller();
}

static void show_errors(void)
{
	pr_info("%%pe: [%pe] [%pe] [%pe] [%pe]\n", ERR_PTR(-ENOMEM), ERR_PTR(-ENODEV),
		ERR_PTR(-EPERM), ERR_PTR(-EPROBE_DEFER));
	pr_info("%%pe of an unknown error: [%pe]\n", ERR_PTR(-4000));
	pr_info("%%pe of NULL: [%pe]\n", NULL);
}

static void show_buffers(void)
{
	__be32 ip = htonl(0xc0a80101);	/* 192.168.1.1 */
	struct in6_addr ip6 = { .s6_addr = { 0x20, 0x01, 0x0d, 0xb8, [15] = 0x01 } };
	u8 mac[6] = { 0x00, 0x11, 0x22, 0xaa, 0xbb, 0xcc };
	uuid_t uuid = UUID_INIT(0x12345678, 0x9abc, 0xdef0, 0x01, 0x23, 0x45, 0x67,
				0x89, 0xab, 0xcd, 0xef);
	u8 bytes[20];
	int i;

	for (i = 0; i < sizeof(bytes); i++)
		bytes[i] = i * 13;
	pr_info("ipv4: %pI4 %pi4\n", &ip, &ip);
	pr_info("ipv6: %pI6 %pI6c %pi6\n", &ip6, &ip6, &ip6);
	pr_info("mac: %pM %pMR %pm %pMF\n", mac, mac, mac, mac);
	pr_info("uuid: %pU %pUb %pUB %pUl %pUL\n", &uuid, &uuid, &uuid, &uuid, &uuid);
	pr_info("hex: [%*ph] [%*phC] [%*phD] [%*phN]\n", 6, bytes, 6, bytes, 6, bytes, 6, bytes);
	pr_info("hex default length: [%ph]\n", bytes);
	print_hex_dump(KERN_INFO, "dump: ", DUMP_PREFIX_OFFSET, 16, 1, bytes, sizeof(bytes), true);
	print_hex_dump(KERN_INFO, "words: ", DUMP_PREFIX_NONE, 16, 4, bytes, 16, false);
}

static int __init lkm_exec_format_init(void)
{
	show_integers();
	show_strings();
	show_pointers();
	show_errors();
	show_buffers();
	return 0;
}

static void __exit lkm_exec_format_exit(void)
{
}

module_init(lkm_exec_format_init);
module_exit(lkm_exec_format_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("printk format families");
