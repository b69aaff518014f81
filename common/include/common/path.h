/*
 * Request paths: split into percent-decoded segments, and query parameters.
 *
 * cm_path_split ignores the query, collapses empty segments ("//v1/x" is "/v1/x": a webServiceURL with
 * a trailing slash makes Wallet send a double slash) and percent-decodes each segment on its own, so
 * an encoded "%2F" stays inside its segment. It refuses (returns -1) a path with more than
 * CM_PATH_MAX_SEGMENTS segments, longer than CM_PATH_MAX bytes, with a malformed escape, or whose
 * decoded segment holds a NUL or '/'. Segments point into the cm_path_t itself.
 */
#ifndef COMMON_PATH_H
#define COMMON_PATH_H

#include <stddef.h>

#define CM_PATH_MAX_SEGMENTS 12
#define CM_PATH_MAX          1024

typedef struct cm_path {
    size_t count;
    const char *seg[CM_PATH_MAX_SEGMENTS];
    size_t len[CM_PATH_MAX_SEGMENTS];
    char buf[CM_PATH_MAX + CM_PATH_MAX_SEGMENTS];
} cm_path_t;

int cm_path_split(const char *path, size_t len, cm_path_t *out);

/* 1 when segment i exists and equals lit. */
int cm_path_is(const cm_path_t *p, size_t i, const char *lit);

/* Finds name in the query of path (after '?'), percent-decodes its value (with '+' as space) into
 * out (NUL-terminated). Returns 0, 1 when absent, -1 when malformed or longer than out_size - 1. */
int cm_path_query_param(const char *path, size_t len, const char *name, char *out, size_t out_size);
/* The same for the index-th occurrence of name (0 is the first), for repeated parameters
 * ("?pass=a&pass=b"). Returns 1 when there are not that many. */
int cm_path_query_param_at(const char *path, size_t len, const char *name, size_t index, char *out,
                           size_t out_size);

#endif
