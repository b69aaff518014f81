/*
 * Path splitting and query parameters; see common/path.h. Percent-decoding is libcurl's; this file
 * only finds the boundaries and enforces the limits.
 */
#include "common/path.h"

#include <curl/curl.h>
#include <string.h>

static int is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Decodes src[0..len) into dst (room for len + 1). Returns the decoded length, or -1. */
static long decode(const char *src, size_t len, char *dst, int plus_is_space)
{
    /* curl_easy_unescape passes a malformed escape through unchanged; refuse it instead. */
    for (size_t i = 0; i < len; i++)
        if (src[i] == '%' && (i + 2 >= len || !is_hex(src[i + 1]) || !is_hex(src[i + 2])))
            return -1;
    if (len == 0) { /* curl_easy_unescape would take 0 as "use strlen", reading past the segment */
        dst[0] = '\0';
        return 0;
    }
    int olen = 0;
    char *d = curl_easy_unescape(NULL, src, (int)len, &olen);
    if (d == NULL)
        return -1;
    if (memchr(d, '\0', (size_t)olen) != NULL) {
        curl_free(d);
        return -1;
    }
    memcpy(dst, d, (size_t)olen);
    dst[olen] = '\0';
    if (plus_is_space)
        for (int i = 0; i < olen; i++)
            if (dst[i] == '+')
                dst[i] = ' ';
    curl_free(d);
    return olen;
}

int cm_path_split(const char *path, size_t len, cm_path_t *out)
{
    const char *q = memchr(path, '?', len);
    if (q != NULL)
        len = (size_t)(q - path);
    if (len > CM_PATH_MAX)
        return -1;
    size_t used = 0;
    out->count = 0;
    size_t i = 0;
    while (i < len) {
        while (i < len && path[i] == '/')
            i++;
        if (i == len)
            break;
        size_t start = i;
        while (i < len && path[i] != '/')
            i++;
        if (out->count == CM_PATH_MAX_SEGMENTS)
            return -1;
        char *dst = out->buf + used;
        long n = decode(path + start, i - start, dst, 0);
        if (n < 0 || memchr(dst, '/', (size_t)n) != NULL)
            return -1;
        out->seg[out->count] = dst;
        out->len[out->count] = (size_t)n;
        out->count++;
        used += (size_t)n + 1;
    }
    return 0;
}

int cm_path_is(const cm_path_t *p, size_t i, const char *lit)
{
    return i < p->count && p->len[i] == strlen(lit) && memcmp(p->seg[i], lit, p->len[i]) == 0;
}

int cm_path_query_param_at(const char *path, size_t len, const char *name, size_t index, char *out,
                           size_t out_size)
{
    const char *q = memchr(path, '?', len);
    if (q == NULL)
        return 1;
    const char *end = path + len, *p = q + 1;
    size_t nlen = strlen(name);
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp != NULL ? amp : end;
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *kend = eq != NULL ? eq : stop;
        if ((size_t)(kend - p) == nlen && memcmp(p, name, nlen) == 0 && index-- == 0) {
            const char *v = eq != NULL ? eq + 1 : stop;
            size_t vlen = (size_t)(stop - v);
            char tmp[CM_PATH_MAX + 1];
            if (vlen > CM_PATH_MAX)
                return -1;
            long n = decode(v, vlen, tmp, 1);
            if (n < 0 || (size_t)n >= out_size)
                return -1;
            memcpy(out, tmp, (size_t)n + 1);
            return 0;
        }
        p = stop + 1;
    }
    return 1;
}

int cm_path_query_param(const char *path, size_t len, const char *name, char *out, size_t out_size)
{
    return cm_path_query_param_at(path, len, name, 0, out, out_size);
}
