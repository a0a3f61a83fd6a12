// SPDX-License-Identifier: GPL-2.0
/* Aliases without a device table: plain names and wildcard patterns. */
#include <linux/module.h>

static int __init lkm_alias_init(void)
{
	return 0;
}

static void __exit lkm_alias_exit(void)
{
}

module_init(lkm_alias_init);
module_exit(lkm_alias_exit);
MODULE_LICENSE("GPL");
MODULE_ALIAS("lkm-alias-plain");
MODULE_ALIAS("lkm_alias_underscore");
MODULE_ALIAS("lkm-alias-wild-*");
MODULE_ALIAS("lkm:v00001234d*sv*");
MODULE_ALIAS("pci:v0000FEEDd0000BEEFsv*sd*bc*sc*i*");
MODULE_DESCRIPTION("aliases, some with wildcards");
