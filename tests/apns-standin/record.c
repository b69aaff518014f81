/*
 * The stand-in's two outputs: the request record (one JSON object per line, flushed at once so
 * a test can read it while the stand-in runs) and the logfmt log on stderr.
 *
 * Request bytes are untrusted: header values and bodies that are not valid UTF-8 cannot be JSON
 * strings, so such header values are recorded with every non-ASCII byte replaced by '?' and
 * such bodies as "body": null plus "body_hex".
 */
#include "standin.h"
#include "common/log.h"

#include <jansson.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static FILE *record_file;

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
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void standin_uuid_new(char out[37])
{
    unsigned char b[16];
    if (RAND_bytes(b, sizeof(b)) != 1)
        abort();
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

int standin_record_open(const char *path)
{
    record_file = fopen(path, "a");
    return record_file != NULL ? 0 : -1;
}

void standin_record_close(void)
{
    if (record_file != NULL)
        fclose(record_file);
    record_file = NULL;
}

/* A JSON string for untrusted bytes, or JSON null for NULL. */
static json_t *text_or_null(const char *p, size_t len)
{
    if (p == NULL)
        return json_null();
    json_t *s = json_stringn(p, len);
    if (s != NULL)
        return s;
    char *copy = standin_xcalloc(len + 1, 1);
    for (size_t i = 0; i < len; i++)
        copy[i] = (unsigned char)p[i] < 0x80 ? p[i] : '?';
    s = json_stringn(copy, len);
    free(copy);
    return s != NULL ? s : json_null();
}

/* Header names that repeat become an array of their values (in arrival order). */
static json_t *headers_object(const standin_request_t *req)
{
    json_t *obj = json_object();
    for (size_t i = 0; i < req->n_headers; i++) {
        const standin_header_t *h = &req->headers[i];
        char *name = standin_xcalloc(h->name_len + 1, 1);
        memcpy(name, h->name, h->name_len);
        json_t *value = text_or_null(h->value, h->value_len);
        json_t *prev = json_object_get(obj, name);
        if (prev == NULL) {
            json_object_set_new(obj, name, value);
        } else if (json_is_array(prev)) {
            json_array_append_new(prev, value);
        } else {
            json_t *arr = json_array();
            json_array_append(arr, prev);
            json_array_append_new(arr, value);
            json_object_set_new(obj, name, arr);
        }
        free(name);
    }
    return obj;
}

static void set_body(json_t *rec, const standin_request_t *req)
{
    if (req->body_len > STANDIN_MAX_PAYLOAD) {
        json_object_set_new(rec, "body", json_null()); /* only a prefix was kept */
        return;
    }
    json_t *s = json_stringn(req->body != NULL ? req->body : "", req->body_len);
    if (s != NULL) {
        json_object_set_new(rec, "body", s);
        return;
    }
    static const char digits[] = "0123456789abcdef";
    char *hex = standin_xcalloc(req->body_len * 2 + 1, 1);
    for (size_t i = 0; i < req->body_len; i++) {
        hex[2 * i] = digits[(unsigned char)req->body[i] >> 4];
        hex[2 * i + 1] = digits[(unsigned char)req->body[i] & 0x0f];
    }
    json_object_set_new(rec, "body", json_null());
    json_object_set_new(rec, "body_hex", json_string(hex));
    free(hex);
}

void standin_record_write(const standin_record_entry_t *e)
{
    const standin_request_t *req = e->req;
    const char *token = NULL, *topic = NULL;
    size_t token_len = 0, topic_len = 0;
    json_t *rec = NULL;
    char *line = NULL;

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

    rec = json_object();
    json_object_set_new(rec, "time_ms", json_integer(standin_now_ms()));
    json_object_set_new(rec, "conn", json_integer(e->conn_id));
    json_object_set_new(rec, "stream", json_integer(e->stream_id));
    json_object_set_new(rec, "method", text_or_null(req->method, req->method_len));
    json_object_set_new(rec, "path", text_or_null(req->path, req->path_len));
    json_object_set_new(rec, "token", text_or_null(token, token_len));
    json_object_set_new(rec, "topic", text_or_null(topic, topic_len));
    json_object_set_new(rec, "client_uid",
                        req->client_uid != NULL ? json_string(req->client_uid) : json_null());
    json_object_set_new(rec, "headers", headers_object(req));
    set_body(rec, req);
    json_object_set_new(rec, "body_len", json_integer((json_int_t)req->body_len));
    json_object_set_new(rec, "status", e->status != 0 ? json_integer(e->status) : json_null());
    json_object_set_new(rec, "reason",
                        e->reason != NULL && e->reason[0] != '\0' ? json_string(e->reason) : json_null());
    json_object_set_new(rec, "apns_id", e->apns_id != NULL ? json_string(e->apns_id) : json_null());
    json_object_set_new(rec, "error", e->error != NULL ? json_string(e->error) : json_null());

    line = json_dumps(rec, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (line == NULL) {
        standin_log(STANDIN_LOG_ERROR, "event=record_failed call=json_dumps conn=%u stream=%d", e->conn_id,
                    (int)e->stream_id);
        goto out;
    }
    if (record_file == NULL || fputs(line, record_file) == EOF || fputc('\n', record_file) == EOF ||
        fflush(record_file) != 0)
        standin_log(STANDIN_LOG_ERROR, "event=record_failed call=fputs conn=%u stream=%d", e->conn_id,
                    (int)e->stream_id);
out:
    free(line);
    json_decref(rec);
}
