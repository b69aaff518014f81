/*
 * Redis reads and writes of the signer, on blocking hiredis connections owned by libuv worker threads.
 *
 * Each worker thread keeps one connection in a thread-local pointer, so no command ever waits for a
 * lock or another thread. The connections are also linked into a registry only so that shutdown can
 * free them once the pool is idle. An I/O error (reply NULL) drops the connection (see command() for
 * the single retry); the caller then answers 503 and the thread's next command reconnects. An error
 * reply (WRONGTYPE, ...) is a data problem and keeps the connection.
 */
#include "signer.h"

#include "common/ids.h"
#include "common/keys.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct signer_store {
    cm_redis_url_t url; /* a copy: the caller's may be a job's, freed before the thread's next job */
    redisContext *c;
    signer_store_t *next;
};

static __thread signer_store_t *thread_store;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static signer_store_t *registry;

signer_store_t *signer_store_for_thread(const cm_redis_url_t *url)
{
    if (thread_store != NULL)
        return thread_store;
    signer_store_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        abort();
    s->url = *url;
    pthread_mutex_lock(&registry_lock);
    s->next = registry;
    registry = s;
    pthread_mutex_unlock(&registry_lock);
    thread_store = s;
    return s;
}

void signer_store_free_all(void)
{
    pthread_mutex_lock(&registry_lock);
    signer_store_t *s = registry;
    registry = NULL;
    pthread_mutex_unlock(&registry_lock);
    while (s != NULL) {
        signer_store_t *next = s->next;
        if (s->c != NULL)
            redisFree(s->c);
        memset(s->url.password, 0, sizeof(s->url.password));
        free(s);
        s = next;
    }
    thread_store = NULL;
}

/* Runs one command given as argv. Returns the reply (free with freeReplyObject), or NULL after writing
 * the reason to err; NULL means SIGNER_ERR_REDIS (connection problem, now dropped). A connection kept
 * from an earlier request may have been closed by Redis meanwhile (restart, idle timeout, CLIENT KILL):
 * when the command finds it closed, it is retried once on a fresh connection. Every command here is a read or
 * an idempotent SET. */
static redisReply *command(signer_store_t *s, int argc, const char **argv, const size_t *argvlen, char *err,
                           size_t err_size)
{
    for (int attempt = 0;; attempt++) {
        int reused = s->c != NULL;
        if (s->c == NULL &&
            cm_redis_connect_sync(&s->url, SIGNER_REDIS_TIMEOUT_MS, &s->c, err, err_size) != 0) {
            s->c = NULL;
            return NULL;
        }
        redisReply *r = redisCommandArgv(s->c, argc, argv, argvlen);
        if (r != NULL)
            return r;
        int saved_errno = errno;
        int closed = s->c->err == REDIS_ERR_EOF ||
                     (s->c->err == REDIS_ERR_IO && (saved_errno == ECONNRESET || saved_errno == EPIPE));
        snprintf(err, err_size, "redis %s: %s", argv[0],
                 s->c->errstr[0] != '\0' ? s->c->errstr : "I/O error");
        redisFree(s->c);
        s->c = NULL;
        /* a timeout is not retried: Redis is slow, and a second wait would only double the delay */
        if (!reused || !closed || attempt > 0)
            return NULL;
    }
}

static char *dup_bytes(const char *p, size_t len)
{
    char *d = malloc(len + 1);
    if (d == NULL)
        abort();
    memcpy(d, p, len);
    d[len] = '\0';
    return d;
}

/* 1 when s[0..len) is 1..19 decimal digits (a pk:seq value or a Unix time fits in a long long). */
static int is_decimal(const char *s, size_t len)
{
    if (len == 0 || len > 18)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9')
            return 0;
    return 1;
}

void signer_pass_record_dispose(signer_pass_record_t *rec)
{
    free(rec->template_id);
    free(rec->doc);
    if (rec->auth_token != NULL)
        memset(rec->auth_token, 0, strlen(rec->auth_token));
    free(rec->auth_token);
    free(rec->version);
    memset(rec, 0, sizeof(*rec));
}

int signer_store_read_pass(signer_store_t *s, const char *ptid, const char *serial, signer_pass_record_t *out,
                           char *err, size_t err_size)
{
    static const char *const fields[] = {"templateId", "doc", "authToken", "version", "lastModified"};
    enum { NFIELDS = sizeof(fields) / sizeof(fields[0]) };
    char key[CM_KEY_MAX];
    snprintf(key, sizeof(key), CM_KEY_PASS_FMT, ptid, serial);
    const char *argv[2 + NFIELDS] = {"HMGET", key};
    for (size_t i = 0; i < NFIELDS; i++)
        argv[2 + i] = fields[i];
    int rc = SIGNER_ERR_DATA;
    signer_pass_record_t rec;
    memset(&rec, 0, sizeof(rec));
    redisReply *r = command(s, 2 + NFIELDS, argv, NULL, err, err_size);
    if (r == NULL)
        return SIGNER_ERR_REDIS;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != NFIELDS) {
        snprintf(err, err_size, "redis HMGET %s: %s", key,
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        rc = SIGNER_ERR_INTERNAL;
        goto out;
    }
    size_t present = 0;
    for (size_t i = 0; i < NFIELDS; i++)
        present += r->element[i]->type == REDIS_REPLY_STRING;
    if (present == 0) {
        snprintf(err, err_size, "pass %s %s not found", ptid, serial);
        rc = SIGNER_ERR_NOT_FOUND;
        goto out;
    }
    for (size_t i = 0; i < NFIELDS; i++) {
        if (r->element[i]->type != REDIS_REPLY_STRING) {
            snprintf(err, err_size, "%s has no field %s", key, fields[i]);
            goto out;
        }
    }
    redisReply **e = r->element;
    if (!cm_id_is_plain(e[0]->str, e[0]->len)) {
        snprintf(err, err_size, "%s: templateId is not a valid identifier", key);
        goto out;
    }
    if (e[1]->len > SIGNER_DOC_MAX_BYTES) {
        snprintf(err, err_size, "%s: doc is larger than %u bytes", key, SIGNER_DOC_MAX_BYTES);
        goto out;
    }
    if (e[2]->len == 0 || memchr(e[2]->str, '\0', e[2]->len) != NULL) {
        snprintf(err, err_size, "%s: authToken is empty or not text", key);
        goto out;
    }
    if (!is_decimal(e[3]->str, e[3]->len) || !is_decimal(e[4]->str, e[4]->len)) {
        snprintf(err, err_size, "%s: version or lastModified is not a decimal number", key);
        goto out;
    }
    rec.template_id = dup_bytes(e[0]->str, e[0]->len);
    rec.doc = dup_bytes(e[1]->str, e[1]->len);
    rec.doc_len = e[1]->len;
    rec.auth_token = dup_bytes(e[2]->str, e[2]->len);
    rec.version = dup_bytes(e[3]->str, e[3]->len);
    rec.last_modified = strtoll(e[4]->str, NULL, 10);
    *out = rec;
    rc = 0;
out:
    freeReplyObject(r);
    return rc;
}

int signer_store_template_rev(signer_store_t *s, const char *template_id, char *rev, size_t rev_size,
                              char *err, size_t err_size)
{
    char key[CM_KEY_MAX];
    snprintf(key, sizeof(key), CM_KEY_TEMPLATE_FMT, template_id);
    const char *argv[] = {"HGET", key, "@rev"};
    redisReply *r = command(s, 3, argv, NULL, err, err_size);
    if (r == NULL)
        return SIGNER_ERR_REDIS;
    int rc = SIGNER_ERR_DATA;
    if (r->type == REDIS_REPLY_NIL) {
        snprintf(err, err_size, "template %s not found", template_id);
        rc = SIGNER_ERR_NOT_FOUND;
    } else if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, err_size, "redis HGET %s: %s", key, r->str);
        rc = SIGNER_ERR_INTERNAL;
    } else if (r->type != REDIS_REPLY_STRING || !is_decimal(r->str, r->len) || r->len >= rev_size) {
        snprintf(err, err_size, "%s: @rev is not a decimal number", key);
    } else {
        memcpy(rev, r->str, r->len);
        rev[r->len] = '\0';
        rc = 0;
    }
    freeReplyObject(r);
    return rc;
}

static int by_file_name(const void *a, const void *b)
{
    return strcmp(((const cm_file_t *)a)->name, ((const cm_file_t *)b)->name);
}

void signer_template_dispose(signer_template_t *tpl)
{
    free(tpl->files);
    if (tpl->reply != NULL)
        freeReplyObject(tpl->reply);
    memset(tpl, 0, sizeof(*tpl));
}

int signer_store_read_template(signer_store_t *s, const char *template_id, signer_template_t *out, char *err,
                               size_t err_size)
{
    static const size_t prefix_len = sizeof(CM_TEMPLATE_FILE_PREFIX) - 1;
    char key[CM_KEY_MAX];
    snprintf(key, sizeof(key), CM_KEY_TEMPLATE_FMT, template_id);
    const char *argv[] = {"HGETALL", key};
    int rc = SIGNER_ERR_DATA;
    signer_template_t tpl;
    memset(&tpl, 0, sizeof(tpl));
    redisReply *r = command(s, 2, argv, NULL, err, err_size);
    if (r == NULL)
        return SIGNER_ERR_REDIS;
    tpl.reply = r;
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
        snprintf(err, err_size, "redis HGETALL %s: %s", key,
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        rc = SIGNER_ERR_INTERNAL;
        goto out;
    }
    if (r->elements == 0) {
        snprintf(err, err_size, "template %s not found", template_id);
        rc = SIGNER_ERR_NOT_FOUND;
        goto out;
    }
    tpl.files = calloc(r->elements / 2, sizeof(*tpl.files));
    if (tpl.files == NULL)
        abort();
    size_t total = 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        redisReply *f = r->element[i], *v = r->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        if (strcmp(f->str, "@rev") == 0) {
            if (!is_decimal(v->str, v->len) || v->len >= sizeof(tpl.rev)) {
                snprintf(err, err_size, "%s: @rev is not a decimal number", key);
                goto out;
            }
            memcpy(tpl.rev, v->str, v->len + 1);
            continue;
        }
        if (f->len <= prefix_len || memcmp(f->str, CM_TEMPLATE_FILE_PREFIX, prefix_len) != 0)
            continue;
        if (tpl.count == SIGNER_TEMPLATE_MAX_FILES || (total += v->len) > SIGNER_TEMPLATE_MAX_BYTES) {
            snprintf(err, err_size, "%s: more than %d files or %u bytes", key, SIGNER_TEMPLATE_MAX_FILES,
                     SIGNER_TEMPLATE_MAX_BYTES);
            goto out;
        }
        /* hiredis NUL-terminates every string, so the name can be used as a C string once it holds no NUL */
        if (strlen(f->str) != f->len) {
            snprintf(err, err_size, "%s: a file name holds a NUL byte", key);
            goto out;
        }
        tpl.files[tpl.count].name = f->str + prefix_len;
        tpl.files[tpl.count].data = (const unsigned char *)v->str;
        tpl.files[tpl.count].len = v->len;
        tpl.count++;
    }
    if (tpl.rev[0] == '\0') {
        snprintf(err, err_size, "%s has no @rev", key);
        goto out;
    }
    qsort(tpl.files, tpl.count, sizeof(*tpl.files), by_file_name);
    *out = tpl;
    return 0;
out:
    signer_template_dispose(&tpl);
    return rc;
}

int signer_store_get_bundle(signer_store_t *s, const char *key, const char *id, unsigned char **out,
                            size_t *out_len, char *err, size_t err_size)
{
    const char *argv[] = {"HMGET", key, "id", "data"};
    redisReply *r = command(s, 4, argv, NULL, err, err_size);
    if (r == NULL)
        return SIGNER_ERR_REDIS;
    int rc = SIGNER_ERR_NOT_FOUND;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 && r->element[0]->type == REDIS_REPLY_STRING &&
        strcmp(r->element[0]->str, id) == 0 && r->element[1]->type == REDIS_REPLY_STRING &&
        r->element[1]->len > 0) {
        redisReply *data = r->element[1];
        unsigned char *copy = malloc(data->len);
        if (copy == NULL)
            abort();
        memcpy(copy, data->str, data->len);
        *out = copy;
        *out_len = data->len;
        rc = 0;
    } else if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, err_size, "redis HMGET %s: %s", key, r->str);
        rc = SIGNER_ERR_INTERNAL;
    }
    freeReplyObject(r);
    return rc;
}

/* Replaces the pass's cached bundle and sets its TTL in one step. */
#define PUT_BUNDLE_SCRIPT                                                                                    \
    "redis.call('HSET', KEYS[1], 'id', ARGV[1], 'data', ARGV[2])\n"                                          \
    "redis.call('EXPIRE', KEYS[1], ARGV[3])\n"                                                               \
    "return 1\n"

int signer_store_put_bundle(signer_store_t *s, const char *key, const char *id, const unsigned char *data,
                            size_t len, long ttl, char *err, size_t err_size)
{
    char ttl_text[24];
    snprintf(ttl_text, sizeof(ttl_text), "%ld", ttl);
    const char *argv[] = {"EVAL", PUT_BUNDLE_SCRIPT, "1", key, id, (const char *)data, ttl_text};
    const size_t argvlen[] = {4,   strlen(PUT_BUNDLE_SCRIPT), 1, strlen(key), strlen(id),
                              len, strlen(ttl_text)};
    redisReply *r = command(s, 7, argv, argvlen, err, err_size);
    if (r == NULL)
        return SIGNER_ERR_REDIS;
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, err_size, "redis EVAL (put bundle) %s: %s", key, r->str);
        rc = SIGNER_ERR_INTERNAL;
    }
    freeReplyObject(r);
    return rc;
}

int signer_store_ping(signer_store_t *s, char *err, size_t err_size)
{
    const char *argv[] = {"PING"};
    redisReply *r = command(s, 1, argv, NULL, err, err_size);
    if (r == NULL)
        return SIGNER_ERR_REDIS;
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR) { /* LOADING, MASTERDOWN, NOAUTH...: not usable yet */
        snprintf(err, err_size, "redis PING: %s", r->str);
        rc = SIGNER_ERR_REDIS;
    }
    freeReplyObject(r);
    return rc;
}
