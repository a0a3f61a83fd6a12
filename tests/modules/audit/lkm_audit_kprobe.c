// SPDX-License-Identifier: GPL-2.0
/*
 * The kprobe trick to find kallsyms_lookup_name (unexported since 5.7): register a
 * kprobe on it, read its address, unregister. Nothing is looked up with it.
 */
#include <linux/kprobes.h>
#include <linux/module.h>

static struct kprobe lkm_audit_kp = {
	.symbol_name = "kallsyms_lookup_name",
};

static unsigned long lkm_audit_kprobe_addr;

static int __init lkm_audit_kprobe_init(void)
{
	int ret = register_kprobe(&lkm_audit_kp);

	if (ret < 0)
		return ret;
	lkm_audit_kprobe_addr = (unsigned long)lkm_audit_kp.addr;
	unregister_kprobe(&lkm_audit_kp);
	return 0;
}

static void __exit lkm_audit_kprobe_exit(void)
{
}

module_init(lkm_audit_kprobe_init);
module_exit(lkm_audit_kprobe_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("lkm audit: a kprobe on kallsyms_lookup_name");
