// SPDX-License-Identifier: GPL-2.0
/* Parameters of every standard type, and two exports: one plain, one GPL-only. */
#include <linux/module.h>
#include <linux/moduleparam.h>
#include "lkm_exports.h"

static unsigned char p_byte = 1;
module_param(p_byte, byte, 0644);
MODULE_PARM_DESC(p_byte, "a byte");

static short p_short = -2;
module_param(p_short, short, 0644);
MODULE_PARM_DESC(p_short, "a short");

static unsigned short p_ushort = 3;
module_param(p_ushort, ushort, 0444);
MODULE_PARM_DESC(p_ushort, "an unsigned short");

static int p_int = -4;
module_param(p_int, int, 0644);
MODULE_PARM_DESC(p_int, "an int");

static unsigned int p_uint = 5;
module_param(p_uint, uint, 0600);
MODULE_PARM_DESC(p_uint, "an unsigned int (root only)");

static long p_long = -6;
module_param(p_long, long, 0644);
MODULE_PARM_DESC(p_long, "a long");

static unsigned long p_ulong = 7;
module_param(p_ulong, ulong, 0644);
MODULE_PARM_DESC(p_ulong, "an unsigned long");

static unsigned long long p_ullong = 8;
module_param(p_ullong, ullong, 0644);
MODULE_PARM_DESC(p_ullong, "an unsigned long long");

static unsigned int p_hexint = 0x9;
module_param(p_hexint, hexint, 0644);
MODULE_PARM_DESC(p_hexint, "an unsigned int shown in hex");

static bool p_bool = true;
module_param(p_bool, bool, 0644);
MODULE_PARM_DESC(p_bool, "a bool");

static bool p_invbool;
module_param(p_invbool, invbool, 0644);
MODULE_PARM_DESC(p_invbool, "an inverted bool");

static char *p_charp = "default";
module_param(p_charp, charp, 0644);
MODULE_PARM_DESC(p_charp, "a string pointer");

static char p_string[16] = "fixed";
module_param_string(p_string, p_string, sizeof(p_string), 0644);
MODULE_PARM_DESC(p_string, "a string copied into a 16-byte buffer");

static int p_array[4] = { 1, 2 };
static unsigned int p_array_count = 2;
module_param_array(p_array, int, &p_array_count, 0644);
MODULE_PARM_DESC(p_array, "up to 4 ints");

static int p_hidden = 10;
module_param(p_hidden, int, 0);
MODULE_PARM_DESC(p_hidden, "an int with no sysfs file (perm 0)");

static int p_named_var = 11;
module_param_named(p_named, p_named_var, int, 0444);
MODULE_PARM_DESC(p_named, "an int whose variable has another name");

static int p_unsafe;
module_param_unsafe(p_unsafe, int, 0644);
MODULE_PARM_DESC(p_unsafe, "setting it taints the kernel");

int lkm_params_value(void)
{
	return p_int;
}
EXPORT_SYMBOL(lkm_params_value);

int lkm_params_gpl_value(void)
{
	return p_long;
}
EXPORT_SYMBOL_GPL(lkm_params_gpl_value);

static int __init lkm_params_init(void)
{
	return 0;
}

static void __exit lkm_params_exit(void)
{
}

module_init(lkm_params_init);
module_exit(lkm_params_exit);
MODULE_LICENSE("GPL");
MODULE_AUTHOR("lkm tests");
MODULE_DESCRIPTION("Parameters of every type and two exports");
MODULE_VERSION("1.0");
