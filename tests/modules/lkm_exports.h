/* SPDX-License-Identifier: GPL-2.0 */
/* Symbols the test modules export to each other. */
#ifndef LKM_EXPORTS_H
#define LKM_EXPORTS_H

int lkm_params_value(void);		/* lkm_params, EXPORT_SYMBOL */
int lkm_params_gpl_value(void);		/* lkm_params, EXPORT_SYMBOL_GPL */
int lkm_ns_value(void);			/* lkm_ns_export, EXPORT_SYMBOL_NS_GPL(LKM_NS) */

#endif
