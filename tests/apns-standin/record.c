/*
 * The stand-in's two outputs: the request record (one JSON object per line) and the logfmt log
 * on stderr.
 *
 * Records are formatted by hand into one bounded buffer and written as whole lines with one
 * write(2) per flush: at STANDIN_RECORD_FLUSH_BYTES, when main.c's loop goes idle, at least
 * every STANDIN_RECORD_FLUSH_MS, and at exit. The output is byte for byte what jansson's
 * json_dumps(JSON_COMPACT | JSON_PRESERVE_ORDER) made of the same object before (same key
 * order, same escapes: \" \\ \b \f \n \r \t, other control characters as \u00XX with upper-case
 * hex, everything else verbatim); building a jansson tree per request cost more than the rest of
 * the request.
 *
 * Request bytes are untrusted: header values and bodies that are not valid UTF-8 cannot be JSON
 * strings, so such header values are recorded with every non-ASCII byte replaced by '?' and
 * such bodies as "body": null plus "body_hex".
 */
#include "standin.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A record is at most about 6 x (16 KiB of header list + 4 KiB of body) plus a few hundred
 * bytes, so the buffer always has room for one after a flush at STANDIN_RECORD_FLUSH_BYTES. */
#define RECORD_BUF_SIZE (1024 * 1024)

static int record_fd = -1;
static char *record_buf;
static size_t record_len;
static uint64_t record_count;

/* The stand-in logs through the project's logfmt writer (common/log.h) under svc=apns-standin. */
void standin_log(enum standin_log_level level, const char *fmt, ...)
{
    static const enum cm_log_level levels[] = {CM_LOG_INFO, CM_LOG_WARN, CM_LOG_ERROR};
    va_list ap;
    va_start(ap, fmt);
    cm_log_vwrite(levels[level], fmt, ap);
    va_end(ap);
}

int64_t standin_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t standin_mono_ms(void)
{
    return standin_mono_us() / 1000;
}

int64_t standin_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static const char hex_digits[] = "0123456789abcdef";

/* Random bytes are taken from OpenSSL 4 KiB at a time: RAND_bytes() per UUID was a visible
 * share of the per-request cost. */
void standin_uuid_new(char out[37])
{
    static unsigned char pool[4096];
    static size_t pool_pos = sizeof(pool);
    if (pool_pos + 16 > sizeof(pool)) {
        if (RAND_bytes(pool, sizeof(pool)) != 1)
            abort();
        pool_pos = 0;
    }
    unsigned char b[16];
    memcpy(b, pool + pool_pos, 16);
    pool_pos += 16;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    char *p = out;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            *p++ = '-';
        *p++ = hex_digits[b[i] >> 4];
        *p++ = hex_digits[b[i] & 0x0f];
    }
    *p = '\0';
}

int standin_record_open(const char *path)
{
    record_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0666);
    if (record_fd < 0)
        return -1;
    record_buf = standin_xcalloc(RECORD_BUF_SIZE, 1);
    record_len = 0;
    return 0;
}

void standin_record_flush(void)
{
    size_t off = 0;
    while (off < record_len && record_fd >= 0) {
        ssize_t n = write(record_fd, record_buf + off, record_len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            standin_log(STANDIN_LOG_ERROR, "event=record_failed call=write bytes=%zu err=\"%s\"",
                        record_len - off, n < 0 ? strerror(errno) : "short write");
            break;
        }
        off += (size_t)n;
    }
    record_len = 0;
}

size_t standin_record_pending(void)
{
    return record_len;
}

uint64_t standin_record_count(void)
{
    return record_count;
}

void standin_record_close(void)
{
    standin_record_flush();
    if (record_fd >= 0)
        close(record_fd);
    record_fd = -1;
    free(record_buf);
    record_buf = NULL;
}

/* ---- JSON by hand ------------------------------------------------------------------------ */

/* Appending never checks for room: standin_record_write() reserved the worst case first. */
struct out {
    char *p;
};

static void put(struct out *o, const char *s, size_t n)
{
    memcpy(o->p, s, n);
    o->p += n;
}

#define PUT_LIT(o, lit) put((o), (lit), sizeof(lit) - 1)

static void put_int(struct out *o, long long v)
{
    char tmp[24];
    size_t n = 0;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u != 0);
    if (v < 0)
        *o->p++ = '-';
    while (n > 0)
        *o->p++ = tmp[--n];
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), 0 if it is not one. Same rules as
 * jansson: no overlong forms, no surrogates, nothing above U+10FFFF. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    uint32_t v;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        v = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        v = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        v = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff) || (len == 3 && v < 0x800) || (len == 4 && v < 0x10000))
        return 0;
    return len;
}

static bool is_utf8(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (i + 8 <= n) { /* ASCII, 8 bytes at a time */
            uint64_t w;
            memcpy(&w, u + i, 8);
            if ((w & UINT64_C(0x8080808080808080)) == 0) {
                i += 8;
                continue;
            }
        }
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t len = utf8_seq(u + i, n - i);
        if (len == 0)
            return false;
        i += len;
    }
    return true;
}

/* Bytes that cannot appear in a JSON string as they are. */
static bool needs_escape(unsigned char c)
{
    return c < 0x20 || c == '"' || c == '\\';
}

/* 1 if any of the 8 bytes in w needs an escape: below 0x20, '"' or '\\' (bit tricks from
 * "Bit Twiddling Hacks": a byte of v is zero / below n). */
static int word_needs_escape(uint64_t w)
{
    const uint64_t ones = UINT64_C(0x0101010101010101), highs = UINT64_C(0x8080808080808080);
    uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
    uint64_t below = (w - ones * 0x20) & ~w;
    uint64_t zero_q = (quote - ones) & ~quote, zero_b = (backslash - ones) & ~backslash;
    return ((below | zero_q | zero_b) & highs) != 0;
}

/* A JSON string of s; with replace_non_ascii, bytes >= 0x80 become '?' (for invalid UTF-8). */
static void put_str_bytes(struct out *o, const char *s, size_t n, bool replace_non_ascii)
{
    *o->p++ = '"';
    for (size_t i = 0; i < n; i++) {
        if (!replace_non_ascii) { /* runs of plain bytes, 8 at a time */
            uint64_t w;
            while (i + 8 <= n && (memcpy(&w, s + i, 8), !word_needs_escape(w))) {
                memcpy(o->p, &w, 8);
                o->p += 8;
                i += 8;
            }
            if (i >= n)
                break;
        }
        unsigned char c = (unsigned char)s[i];
        if (!needs_escape(c)) {
            *o->p++ = replace_non_ascii && c >= 0x80 ? '?' : (char)c;
            continue;
        }
        *o->p++ = '\\';
        switch (c) {
        case '"':
        case '\\':
            *o->p++ = (char)c;
            break;
        case '\b':
            *o->p++ = 'b';
            break;
        case '\f':
            *o->p++ = 'f';
            break;
        case '\n':
            *o->p++ = 'n';
            break;
        case '\r':
            *o->p++ = 'r';
            break;
        case '\t':
            *o->p++ = 't';
            break;
        default:
            PUT_LIT(o, "u00");
            *o->p++ = "0123456789ABCDEF"[c >> 4];
            *o->p++ = "0123456789ABCDEF"[c & 0x0f];
            break;
        }
    }
    *o->p++ = '"';
}

/* A JSON string for untrusted bytes (non-ASCII bytes of invalid UTF-8 become '?'), or null. */
static void put_text(struct out *o, const char *s, size_t n)
{
    if (s == NULL)
        PUT_LIT(o, "null");
    else
        put_str_bytes(o, s, n, !is_utf8(s, n));
}

static void put_cstr_or_null(struct out *o, const char *s)
{
    put_text(o, s, s != NULL ? strlen(s) : 0);
}

static bool name_eq(const standin_header_t *a, const standin_header_t *b)
{
    return a->name_len == b->name_len && memcmp(a->name, b->name, a->name_len) == 0;
}

/* Header names that repeat become an array of their values (in arrival order), at the place of
 * the name's first appearance. */
static void put_headers(struct out *o, const standin_request_t *req)
{
    *o->p++ = '{';
    bool first = true;
    for (size_t i = 0; i < req->n_headers; i++) {
        const standin_header_t *h = &req->headers[i];
        size_t j, more = 0;
        for (j = 0; j < i && !name_eq(&req->headers[j], h); j++)
            ;
        if (j < i)
            continue; /* written with its first appearance */
        for (j = i + 1; j < req->n_headers; j++)
            more += name_eq(&req->headers[j], h);
        if (!first)
            *o->p++ = ',';
        first = false;
        put_str_bytes(o, h->name, h->name_len, !is_utf8(h->name, h->name_len));
        *o->p++ = ':';
        if (more == 0) {
            put_text(o, h->value, h->value_len);
            continue;
        }
        *o->p++ = '[';
        put_text(o, h->value, h->value_len);
        for (j = i + 1; j < req->n_headers; j++) {
            if (name_eq(&req->headers[j], h)) {
                *o->p++ = ',';
                put_text(o, req->headers[j].value, req->headers[j].value_len);
            }
        }
        *o->p++ = ']';
    }
    *o->p++ = '}';
}

static void put_body(struct out *o, const standin_request_t *req)
{
    PUT_LIT(o, ",\"body\":");
    if (req->body_len > STANDIN_MAX_PAYLOAD) {
        PUT_LIT(o, "null"); /* only a prefix was kept */
        return;
    }
    const char *body = req->body != NULL ? req->body : "";
    if (is_utf8(body, req->body_len)) {
        put_str_bytes(o, body, req->body_len, false);
        return;
    }
    PUT_LIT(o, "null,\"body_hex\":\"");
    for (size_t i = 0; i < req->body_len; i++) {
        *o->p++ = hex_digits[(unsigned char)body[i] >> 4];
        *o->p++ = hex_digits[(unsigned char)body[i] & 0x0f];
    }
    *o->p++ = '"';
}

/* The most bytes standin_record_write() can produce for req: every string byte may take six. */
static size_t worst_case(const standin_request_t *req)
{
    size_t n = 512 + 6 * (req->method_len + 2 * req->path_len);
    n += 6 * (req->client_uid != NULL ? strlen(req->client_uid) : 0);
    for (size_t i = 0; i < req->n_headers; i++)
        n += 8 + 6 * (req->headers[i].name_len + 2 * req->headers[i].value_len); /* topic twice */
    if (req->body_len <= STANDIN_MAX_PAYLOAD)
        n += 6 * req->body_len + 16;
    return n;
}

void standin_record_write(const standin_record_entry_t *e)
{
    const standin_request_t *req = e->req;
    const char *token = NULL, *topic = NULL;
    size_t token_len = 0, topic_len = 0;

    if (record_buf == NULL)
        return;
    size_t need = worst_case(req);
    if (need > RECORD_BUF_SIZE) {
        standin_log(STANDIN_LOG_ERROR, "event=record_failed conn=%u stream=%d err=\"record too large\"",
                    e->conn_id, (int)e->stream_id);
        return;
    }
    if (record_len + need > RECORD_BUF_SIZE)
        standin_record_flush();

    if (!standin_path_token(req->path, req->path_len, &token, &token_len))
        token = NULL;
    for (size_t i = 0; i < req->n_headers; i++) {
        const standin_header_t *h = &req->headers[i];
        if (h->name_len == 10 && memcmp(h->name, "apns-topic", 10) == 0) {
            topic = h->value;
            topic_len = h->value_len;
            break;
        }
    }

    struct out o = {record_buf + record_len};
    PUT_LIT(&o, "{\"time_ms\":");
    put_int(&o, standin_now_ms());
    PUT_LIT(&o, ",\"conn\":");
    put_int(&o, e->conn_id);
    PUT_LIT(&o, ",\"stream\":");
    put_int(&o, e->stream_id);
    PUT_LIT(&o, ",\"method\":");
    put_text(&o, req->method, req->method_len);
    PUT_LIT(&o, ",\"path\":");
    put_text(&o, req->path, req->path_len);
    PUT_LIT(&o, ",\"token\":");
    put_text(&o, token, token_len);
    PUT_LIT(&o, ",\"topic\":");
    put_text(&o, topic, topic_len);
    PUT_LIT(&o, ",\"client_uid\":");
    put_cstr_or_null(&o, req->client_uid);
    PUT_LIT(&o, ",\"headers\":");
    put_headers(&o, req);
    put_body(&o, req);
    PUT_LIT(&o, ",\"body_len\":");
    put_int(&o, (long long)req->body_len);
    PUT_LIT(&o, ",\"status\":");
    if (e->status != 0)
        put_int(&o, e->status);
    else
        PUT_LIT(&o, "null");
    PUT_LIT(&o, ",\"reason\":");
    put_cstr_or_null(&o, e->reason != NULL && e->reason[0] != '\0' ? e->reason : NULL);
    PUT_LIT(&o, ",\"apns_id\":");
    put_cstr_or_null(&o, e->apns_id);
    PUT_LIT(&o, ",\"error\":");
    put_cstr_or_null(&o, e->error);
    PUT_LIT(&o, "}\n");
    record_len = (size_t)(o.p - record_buf);
    record_count++;
    if (record_len >= STANDIN_RECORD_FLUSH_BYTES)
        standin_record_flush();
}
