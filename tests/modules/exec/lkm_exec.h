/* SPDX-License-Identifier: GPL-2.0 */
/* What lkm_exec_export exports to lkm_exec_caller. */
#ifndef LKM_EXEC_H
#define LKM_EXEC_H

int lkm_exec_add(int a, int b);			/* EXPORT_SYMBOL_GPL */
const char *lkm_exec_greeting(void);		/* EXPORT_SYMBOL */

#endif
