/*
 * pass.strings decoding and parsing; see common/pkpass_strings.h.
 *
 * The bytes are first turned into UTF-8 (so UTF-16 and UTF-8 files share one parser and line numbers),
 * then scanned once. Every string is collected in a growing buffer; values go into jansson with
 * json_stringn, which checks the UTF-8 again.
 */
#include "common/pkpass_strings.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct buf {
    char *b;
    size_t len, cap;
} buf_t;

static void buf_add(buf_t *b, const void *p, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap != 0 ? b->cap : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->b = realloc(b->b, cap);
        if (b->b == NULL)
            abort();
        b->cap = cap;
    }
    if (n > 0)
        memcpy(b->b + b->len, p, n);
    b->len += n;
    b->b[b->len] = '\0';
}

static void buf_add_code_point(buf_t *b, uint32_t c)
{
    unsigned char u[4];
    size_t n;
    if (c < 0x80) {
        u[0] = (unsigned char)c;
        n = 1;
    } else if (c < 0x800) {
        u[0] = (unsigned char)(0xc0 | (c >> 6));
        u[1] = (unsigned char)(0x80 | (c & 0x3f));
        n = 2;
    } else if (c < 0x10000) {
        u[0] = (unsigned char)(0xe0 | (c >> 12));
        u[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
        u[2] = (unsigned char)(0x80 | (c & 0x3f));
        n = 3;
    } else {
        u[0] = (unsigned char)(0xf0 | (c >> 18));
        u[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3f));
        u[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
        u[3] = (unsigned char)(0x80 | (c & 0x3f));
        n = 4;
    }
    buf_add(b, u, n);
}

/* The length of the valid UTF-8 sequence at s (at most n bytes), or 0 (overlong forms, surrogates and
 * code points above U+10FFFF are invalid). */
static size_t utf8_sequence(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return 1;
    size_t len;
    uint32_t c;
    if ((s[0] & 0xe0) == 0xc0)
        len = 2, c = s[0] & 0x1f;
    else if ((s[0] & 0xf0) == 0xe0)
        len = 3, c = s[0] & 0x0f;
    else if ((s[0] & 0xf8) == 0xf0)
        len = 4, c = s[0] & 0x07;
    else
        return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min[len] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    return len;
}

__attribute__((format(printf, 3, 4))) static void fail(char *err, size_t err_size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
}

static int line_at(const char *t, size_t upto)
{
    int line = 1;
    for (size_t i = 0; i < upto; i++)
        line += t[i] == '\n';
    return line;
}

/* data -> UTF-8 in out (NUL-terminated). */
static int decode(const unsigned char *d, size_t n, buf_t *out, const char **encoding, char *err,
                  size_t err_size)
{
    int big = 0;
    if (n >= 2 && ((d[0] == 0xfe && d[1] == 0xff) || (d[0] == 0xff && d[1] == 0xfe))) {
        big = d[0] == 0xfe;
        *encoding = big ? "utf-16be" : "utf-16le";
        if (n % 2 != 0) {
            fail(err, err_size, "UTF-16 text with an odd number of bytes (%zu)", n);
            return -1;
        }
        for (size_t i = 2; i < n; i += 2) {
            uint32_t u = big ? (uint32_t)(d[i] << 8 | d[i + 1]) : (uint32_t)(d[i + 1] << 8 | d[i]);
            if (u >= 0xd800 && u <= 0xdbff && i + 3 < n) {
                uint32_t lo =
                    big ? (uint32_t)(d[i + 2] << 8 | d[i + 3]) : (uint32_t)(d[i + 3] << 8 | d[i + 2]);
                if (lo >= 0xdc00 && lo <= 0xdfff) {
                    buf_add_code_point(out, 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00));
                    i += 2;
                    continue;
                }
            }
            if ((u >= 0xd800 && u <= 0xdfff) || u == 0) {
                fail(err, err_size, "invalid UTF-16 (%s U+%04X) at line %d",
                     u == 0 ? "NUL" : "lone surrogate", (unsigned)u,
                     line_at(out->b != NULL ? out->b : "", out->len));
                return -1;
            }
            buf_add_code_point(out, u);
        }
        if (out->b == NULL)
            buf_add(out, "", 0);
        return 0;
    }
    *encoding = "utf-8";
    size_t i = n >= 3 && d[0] == 0xef && d[1] == 0xbb && d[2] == 0xbf ? 3 : 0;
    size_t start = i;
    while (i < n) {
        size_t k = d[i] != 0 ? utf8_sequence(d + i, n - i) : 0;
        if (k == 0 && d[i] == 0) {
            /* most likely UTF-16 saved without its byte order mark */
            fail(err, err_size, "a NUL byte at line %d: UTF-16 text needs a byte order mark (FF FE or FE FF)",
                 line_at((const char *)d + start, i - start));
            return -1;
        }
        if (k == 0) {
            fail(err, err_size,
                 "neither UTF-8 nor UTF-16 with a byte order mark (FF FE or FE FF): byte 0x%02x at line %d",
                 d[i], line_at((const char *)d + start, i - start));
            return -1;
        }
        i += k;
    }
    buf_add(out, d + start, n - start);
    return 0;
}

typedef struct parser {
    const char *t;
    size_t n, i;
    char *err;
    size_t err_size;
} parser_t;

static int skip_blank(parser_t *p)
{
    while (p->i < p->n) {
        char c = p->t[p->i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v') {
            p->i++;
        } else if (c == '/' && p->i + 1 < p->n && p->t[p->i + 1] == '/') {
            while (p->i < p->n && p->t[p->i] != '\n')
                p->i++;
        } else if (c == '/' && p->i + 1 < p->n && p->t[p->i + 1] == '*') {
            const char *end = NULL;
            for (size_t j = p->i + 2; j + 1 < p->n; j++)
                if (p->t[j] == '*' && p->t[j + 1] == '/') {
                    end = p->t + j;
                    break;
                }
            if (end == NULL) {
                fail(p->err, p->err_size, "unterminated comment at line %d", line_at(p->t, p->i));
                return -1;
            }
            p->i = (size_t)(end - p->t) + 2;
        } else {
            break;
        }
    }
    return 0;
}

static int is_word_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '$' || c == ':' || c == '/' || c == '-';
}

static int hex4(const char *s, uint32_t *out)
{
    uint32_t v = 0;
    for (int k = 0; k < 4; k++) {
        char c = s[k];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v << 4 | (uint32_t)d;
    }
    *out = v;
    return 0;
}

/* A \U or \u escape at p->i (the backslash); appends the character and moves past it. */
static int unicode_escape(parser_t *p, buf_t *out)
{
    uint32_t u, lo;
    size_t at = p->i;
    if (p->i + 6 > p->n || hex4(p->t + p->i + 2, &u) != 0)
        goto bad;
    p->i += 6;
    if (u >= 0xd800 && u <= 0xdbff) {
        if (p->i + 6 > p->n || p->t[p->i] != '\\' || (p->t[p->i + 1] != 'U' && p->t[p->i + 1] != 'u') ||
            hex4(p->t + p->i + 2, &lo) != 0 || lo < 0xdc00 || lo > 0xdfff)
            goto bad;
        p->i += 6;
        u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
    } else if ((u >= 0xdc00 && u <= 0xdfff) || u == 0) {
        goto bad;
    }
    buf_add_code_point(out, u);
    return 0;
bad:
    fail(p->err, p->err_size, "bad \\U escape (4 hex digits, surrogates in pairs, not U+0000) at line %d",
         line_at(p->t, at));
    return -1;
}

/* A quoted string or an unquoted word at p->i, into out. */
static int read_string(parser_t *p, buf_t *out, const char *what)
{
    out->len = 0;
    buf_add(out, "", 0);
    if (p->i < p->n && is_word_char(p->t[p->i])) {
        size_t start = p->i;
        while (p->i < p->n && is_word_char(p->t[p->i]))
            p->i++;
        buf_add(out, p->t + start, p->i - start);
        return 0;
    }
    if (p->i >= p->n || p->t[p->i] != '"') {
        if (p->i >= p->n)
            fail(p->err, p->err_size, "expected a %s at the end of the text (line %d)", what,
                 line_at(p->t, p->i));
        else
            fail(p->err, p->err_size, "expected a %s (a quoted string) at line %d, found '%c'", what,
                 line_at(p->t, p->i), p->t[p->i] > ' ' && p->t[p->i] < 0x7f ? p->t[p->i] : '?');
        return -1;
    }
    size_t open = p->i++;
    while (p->i < p->n && p->t[p->i] != '"') {
        char c = p->t[p->i];
        if (c != '\\') {
            size_t start = p->i;
            while (p->i < p->n && p->t[p->i] != '"' && p->t[p->i] != '\\')
                p->i++;
            buf_add(out, p->t + start, p->i - start);
            continue;
        }
        if (p->i + 1 >= p->n)
            break;
        char e = p->t[p->i + 1], r;
        switch (e) {
        case 'n':
            r = '\n';
            break;
        case 't':
            r = '\t';
            break;
        case 'r':
            r = '\r';
            break;
        case 'a':
            r = '\a';
            break;
        case 'b':
            r = '\b';
            break;
        case 'f':
            r = '\f';
            break;
        case 'v':
            r = '\v';
            break;
        case '"':
        case '\\':
        case '\'':
        case '?':
            r = e;
            break;
        case 'U':
        case 'u':
            if (unicode_escape(p, out) != 0)
                return -1;
            continue;
        default:
            fail(p->err, p->err_size, "unknown escape \\%c at line %d", e > ' ' && e < 0x7f ? e : '?',
                 line_at(p->t, p->i));
            return -1;
        }
        buf_add(out, &r, 1);
        p->i += 2;
    }
    if (p->i >= p->n) {
        fail(p->err, p->err_size, "unterminated string starting at line %d", line_at(p->t, open));
        return -1;
    }
    p->i++;
    return 0;
}

static int parse(parser_t *p, json_t *obj)
{
    buf_t key = {0}, value = {0};
    int rc = -1;
    for (;;) {
        if (skip_blank(p) != 0)
            goto out;
        if (p->i >= p->n)
            break;
        size_t key_at = p->i;
        if (read_string(p, &key, "key") != 0 || skip_blank(p) != 0)
            goto out;
        if (p->i < p->n && p->t[p->i] == '=') {
            p->i++;
            if (skip_blank(p) != 0 || read_string(p, &value, "value") != 0 || skip_blank(p) != 0)
                goto out;
        } else if (p->i < p->n && p->t[p->i] == ';') {
            value.len = 0; /* the short form "key"; */
            buf_add(&value, key.b, key.len);
        } else {
            fail(p->err, p->err_size, "expected '=' or ';' after the key \"%.60s\" at line %d", key.b,
                 line_at(p->t, p->i));
            goto out;
        }
        if (p->i >= p->n || p->t[p->i] != ';') {
            fail(p->err, p->err_size, "expected ';' after the entry \"%.60s\" at line %d", key.b,
                 line_at(p->t, p->i));
            goto out;
        }
        p->i++;
        if (json_object_getn(obj, key.b, key.len) != NULL) {
            fail(p->err, p->err_size, "the key \"%.60s\" appears twice (again at line %d)", key.b,
                 line_at(p->t, key_at));
            goto out;
        }
        json_t *v = json_stringn(value.b, value.len);
        if (v == NULL || json_object_setn_new(obj, key.b, key.len, v) != 0) {
            fail(p->err, p->err_size, "the entry at line %d holds a NUL character", line_at(p->t, key_at));
            goto out;
        }
    }
    rc = 0;
out:
    free(key.b);
    free(value.b);
    return rc;
}

int cm_pkpass_strings_parse(const void *data, size_t len, json_t **out, const char **encoding, char *err,
                            size_t err_size)
{
    buf_t text = {0};
    const char *enc = "utf-8";
    int rc = -1;
    json_t *obj = json_object();
    if (obj == NULL)
        abort();
    if (decode(data, len, &text, &enc, err, err_size) != 0)
        goto out;
    parser_t p = {text.b, text.len, 0, err, err_size};
    if (parse(&p, obj) != 0)
        goto out;
    *out = obj;
    *encoding = enc;
    obj = NULL;
    rc = 0;
out:
    json_decref(obj);
    free(text.b);
    return rc;
}
