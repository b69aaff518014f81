/*
 * Validation of the identifiers that travel in URLs and end up in Redis keys and APNs paths.
 * Each returns 1 when the string (not NUL-terminated; len bytes) is acceptable, else 0.
 */
#ifndef COMMON_IDS_H
#define COMMON_IDS_H

#include <stddef.h>

#define CM_ID_MAX         128
#define CM_PUSH_TOKEN_MAX 200
#define CM_AUTH_TOKEN_MIN 16
#define CM_AUTH_TOKEN_MAX 256

/* "pass." followed by reverse-DNS characters [A-Za-z0-9.-], at most CM_ID_MAX bytes. */
int cm_id_is_pass_type(const char *s, size_t len);
/* 1 when c is one of [A-Za-z0-9._-], the characters of plain identifiers. */
int cm_id_char_is_plain(char c);
/* Serial numbers, template ids and device library ids: [A-Za-z0-9._-], 1..CM_ID_MAX bytes, not "." or "..".
 */
int cm_id_is_plain(const char *s, size_t len);
/* APNs device tokens: hexadecimal with an even number of digits, 2..CM_PUSH_TOKEN_MAX bytes. */
int cm_id_is_push_token(const char *s, size_t len);
/* authenticationToken: printable ASCII without spaces, CM_AUTH_TOKEN_MIN..CM_AUTH_TOKEN_MAX bytes. */
int cm_id_is_auth_token(const char *s, size_t len);

#endif
