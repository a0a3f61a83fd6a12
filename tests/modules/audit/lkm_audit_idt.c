// SPDX-License-Identifier: GPL-2.0
/* Reads the IDT register and loads the same value back; reads MSR_LSTAR. */
#include <linux/module.h>
#include <asm/desc.h>
#include <asm/msr.h>

static unsigned long lkm_audit_idt_base, lkm_audit_lstar;

static int __init lkm_audit_idt_init(void)
{
	struct desc_ptr idt;

	asm volatile("sidt %0" : "=m"(idt));
	asm volatile("lidt %0" : : "m"(idt));
	lkm_audit_idt_base = idt.address;
	rdmsrl(MSR_LSTAR, lkm_audit_lstar);
	return 0;
}

static void __exit lkm_audit_idt_exit(void)
{
}

module_init(lkm_audit_idt_init);
module_exit(lkm_audit_idt_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("lkm audit: sidt, lidt of the same value, MSR_LSTAR read");
