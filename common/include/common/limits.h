/*
 * Size limits shared by the api (which refuses what exceeds them at upload) and the signer (which
 * checks them again before building), so that nothing the api stores is refused later.
 */
#ifndef COMMON_LIMITS_H
#define COMMON_LIMITS_H

#define CM_TEMPLATE_MAX_FILES   100          /* files of a pass model, pass.json included */
#define CM_TEMPLATE_MAX_BYTES   (16u << 20)  /* a pass model's files together, decompressed */
#define CM_PASS_DOC_MAX_BYTES   (256u << 10) /* a pass's merged pass.json */
#define CM_PASS_MAX_FILES       20           /* a pass's own files (pk:passfile), on top of its template's */
#define CM_PASS_FILES_MAX_BYTES (4u << 20)   /* a pass's own files together */

#endif
