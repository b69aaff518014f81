/*
 * Redis reads and writes of the signer, on blocking hiredis connections owned by libuv worker threads.
 *
 * Each worker thread keeps one connection in a thread-local pointer, so no command ever waits for a
 * lock or another thread. The connections are also linked into a registry only so that shutdown can
 * free them once the pool is idle. An I/O error (reply NULL) drops the connection (see command() for
 * the single retry); the caller then answers 503 and the thread's next command reconnects. An error
 * reply (WRONGTYPE, ...) is a data problem and keeps the connection.
 *
 * Round trips and bytes, measured as what held the signer back (bench/signer_bench.py):
 * - signer_store_read_pass runs one script that also reads the template's @rev and the id of the
 *   cached bundle. The thread's store keeps that answer: the next signer_store_template_rev for the same
 *   template needs no round trip, and signer_store_get_bundle reads the bytes only when the id is the
 *   one asked for (a miss costs nothing more, a stale bundle is never transferred). A cache hit is two
 *   round trips instead of three, a signing two (the read and the write) instead of five.
 * - Templates are cached in the process per (template id, @rev, data-set epoch): a signing no longer
 *   reads the template's images from Redis (hundreds of KB each time). @rev comes from pk:seq, which
 *   starts again after a FLUSHALL or a restart without persistence, so the script also returns
 *   pk:signer:epoch (set to a random value when missing): a new epoch empties the cache. A certificate
 *   reload (SIGHUP) empties it too (signer_store_forget_templates).
 * - A cached template also keeps each file's SHA-1, computed once when the revision is cached: a signing
 *   hashes only pass.json and the pass's own files for the manifest (hashing Apple's 300 KB Event
 *   sample took 0.2 ms per signing, 12 % of the signer's CPU in a profile of the bench's cold round).
 * - A bundle is cached with MULTI/HSET/EXPIRE/EXEC sent at once (no Lua copy of the bytes).
 */
#include "signer.h"

#include "common/ids.h"
#include "common/keys.h"

#include <errno.h>
#include <hiredis/hiredis.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EPOCH_KEY           "pk:signer:epoch"
#define EPOCH_MAX           40
#define TEMPLATE_CACHE_MAX  (64u << 20) /* bytes of template files kept in the process */
#define TEMPLATE_CACHE_KEEP 64          /* templates kept at most */

/* What the last signer_store_read_pass learnt besides the pass (see the file comment). */
struct prefetch {
    int valid;
    char template_id[CM_ID_MAX + 1];
    int has_rev;
    char rev[24];
    int has_bundle; /* bundle_key/bundle_id not consumed yet */
    char bundle_key[CM_KEY_MAX];
    char bundle_id[128]; /* "" when no bundle is cached (or its id is no id of ours) */
    char epoch[EPOCH_MAX + 1];
};

struct signer_store {
    cm_redis_url_t url; /* a copy: the caller's may be a job's, freed before the thread's next job */
    redisContext *c;
    signer_store_t *next;
    char new_epoch[33]; /* what this thread sets pk:signer:epoch to when it is missing */
    struct prefetch pre;
};

/* ---- the process's template cache ---- */

struct tpl_entry {
    struct tpl_entry *next;
    char id[CM_ID_MAX + 1], rev[24];
    cm_file_t *files;
    size_t count, bytes;
    unsigned char *blob; /* names and bytes of the files */
    char (*sha1)[41];    /* files[i].sha1_hex points to sha1[i] */
    unsigned refs;       /* templates handed out, plus one while listed */
    int listed;
    uint64_t used;
};

static struct {
    pthread_mutex_t lock;
    struct tpl_entry *head;
    size_t bytes, count;
    uint64_t tick;
    char epoch[EPOCH_MAX + 1];
} tplcache = {PTHREAD_MUTEX_INITIALIZER, NULL, 0, 0, 0, ""};

static void entry_free(struct tpl_entry *e)
{
    free(e->files);
    free(e->blob);
    free(e->sha1);
    free(e);
}

static void entry_unref_locked(struct tpl_entry *e)
{
    if (--e->refs > 0)
        return;
    entry_free(e);
}

static void entry_unlist_locked(struct tpl_entry *e)
{
    for (struct tpl_entry **p = &tplcache.head; *p != NULL; p = &(*p)->next)
        if (*p == e) {
            *p = e->next;
            break;
        }
    e->listed = 0;
    tplcache.bytes -= e->bytes;
    tplcache.count--;
    entry_unref_locked(e);
}

static void clear_locked(void)
{
    while (tplcache.head != NULL)
        entry_unlist_locked(tplcache.head);
}

void signer_store_forget_templates(void)
{
    pthread_mutex_lock(&tplcache.lock);
    clear_locked();
    pthread_mutex_unlock(&tplcache.lock);
}

/* A new data set (see the file comment) empties the cache. */
static void see_epoch(const char *epoch)
{
    pthread_mutex_lock(&tplcache.lock);
    if (strcmp(tplcache.epoch, epoch) != 0) {
        clear_locked();
        snprintf(tplcache.epoch, sizeof(tplcache.epoch), "%s", epoch);
    }
    pthread_mutex_unlock(&tplcache.lock);
}

/* The cached template id at rev in epoch, referenced, or NULL. */
static struct tpl_entry *cache_get(const char *epoch, const char *id, const char *rev)
{
    struct tpl_entry *found = NULL;
    pthread_mutex_lock(&tplcache.lock);
    if (strcmp(tplcache.epoch, epoch) == 0)
        for (struct tpl_entry *e = tplcache.head; e != NULL; e = e->next)
            if (strcmp(e->id, id) == 0 && strcmp(e->rev, rev) == 0) {
                e->refs++;
                e->used = ++tplcache.tick;
                found = e;
                break;
            }
    pthread_mutex_unlock(&tplcache.lock);
    return found;
}

/* Copies tpl (read from Redis in epoch) into the cache with each file's SHA-1 (computed here, outside
 * the lock), replacing older revisions of id. Returns the entry, referenced for the caller, or NULL when
 * the epoch moved on meanwhile or hashing failed. */
static struct tpl_entry *cache_put(const char *epoch, const char *id, const signer_template_t *tpl)
{
    struct tpl_entry *e = calloc(1, sizeof(*e));
    if (e == NULL)
        abort();
    snprintf(e->id, sizeof(e->id), "%s", id);
    snprintf(e->rev, sizeof(e->rev), "%s", tpl->rev);
    size_t total = 0;
    for (size_t i = 0; i < tpl->count; i++)
        total += strlen(tpl->files[i].name) + 1 + tpl->files[i].len;
    e->files = calloc(tpl->count > 0 ? tpl->count : 1, sizeof(*e->files));
    e->sha1 = calloc(tpl->count > 0 ? tpl->count : 1, sizeof(*e->sha1));
    e->blob = malloc(total > 0 ? total : 1);
    if (e->files == NULL || e->sha1 == NULL || e->blob == NULL)
        abort();
    unsigned char *p = e->blob;
    for (size_t i = 0; i < tpl->count; i++) {
        size_t nl = strlen(tpl->files[i].name) + 1;
        memcpy(p, tpl->files[i].name, nl);
        e->files[i].name = (const char *)p;
        p += nl;
        memcpy(p, tpl->files[i].data, tpl->files[i].len);
        e->files[i].data = p;
        e->files[i].len = tpl->files[i].len;
        p += tpl->files[i].len;
        if (cm_manifest_sha1_hex(e->files[i].data, e->files[i].len, e->sha1[i]) != 0) {
            entry_free(e);
            return NULL;
        }
        e->files[i].sha1_hex = e->sha1[i];
    }
    e->count = tpl->count;
    e->bytes = total;
    e->refs = 2; /* listed + the caller */
    pthread_mutex_lock(&tplcache.lock);
    if (strcmp(tplcache.epoch, epoch) != 0) {
        pthread_mutex_unlock(&tplcache.lock);
        entry_free(e);
        return NULL;
    }
    for (struct tpl_entry *o = tplcache.head, *next; o != NULL; o = next) {
        next = o->next;
        if (strcmp(o->id, id) == 0)
            entry_unlist_locked(o);
    }
    e->next = tplcache.head;
    e->listed = 1;
    e->used = ++tplcache.tick;
    tplcache.head = e;
    tplcache.bytes += e->bytes;
    tplcache.count++;
    /* least recently used out, the new one stays even when alone over the limit */
    while (tplcache.count > 1 &&
           (tplcache.bytes > TEMPLATE_CACHE_MAX || tplcache.count > TEMPLATE_CACHE_KEEP)) {
        struct tpl_entry *lru = NULL;
        for (struct tpl_entry *o = tplcache.head; o != NULL; o = o->next)
            if (o != e && (lru == NULL || o->used < lru->used))
                lru = o;
        entry_unlist_locked(lru);
    }
    pthread_mutex_unlock(&tplcache.lock);
    return e;
}

static void cache_release(struct tpl_entry *e)
{
    pthread_mutex_lock(&tplcache.lock);
    entry_unref_locked(e);
    pthread_mutex_unlock(&tplcache.lock);
}

static void prefetch_clear(struct prefetch *pre)
{
    memset(pre, 0, sizeof(*pre));
}

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
    unsigned char rnd[16];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        abort();
    for (int i = 0; i < 16; i++)
        snprintf(s->new_epoch + 2 * i, 3, "%02x", rnd[i]);
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
        prefetch_clear(&s->pre);
        memset(s->url.password, 0, sizeof(s->url.password));
        free(s);
        s = next;
    }
    thread_store = NULL;
    signer_store_forget_templates();
}

/* Sends n commands at once (argc[i], argv[i], argvlen[i]: NULL lengths mean C strings) and reads their
 * n replies into replies[] (free each with freeReplyObject). Returns 0, or -1 after writing the reason to
 * err, with no reply left: SIGNER_ERR_REDIS (connection problem, now dropped). A connection kept from an
 * earlier request may have been closed by Redis meanwhile (restart, idle timeout, CLIENT KILL): when
 * the commands find it closed, they are sent again once on a fresh connection. Every command here is
 * a read, an idempotent write, or a MULTI/EXEC of those. */
static int pipeline(signer_store_t *s, size_t n, const int *argc, const char **const *argv,
                    const size_t *const *argvlen, redisReply **replies, char *err, size_t err_size)
{
    for (int attempt = 0;; attempt++) {
        int reused = s->c != NULL;
        if (s->c == NULL &&
            cm_redis_connect_sync(&s->url, SIGNER_REDIS_TIMEOUT_MS, &s->c, err, err_size) != 0) {
            s->c = NULL;
            return -1;
        }
        size_t got = 0;
        for (size_t i = 0; i < n; i++)
            if (redisAppendCommandArgv(s->c, argc[i], argv[i], argvlen[i]) != REDIS_OK)
                abort(); /* out of memory */
        for (; got < n; got++) {
            void *r = NULL;
            if (redisGetReply(s->c, &r) != REDIS_OK || r == NULL)
                break;
            replies[got] = r;
        }
        if (got == n)
            return 0;
        int saved_errno = errno;
        for (size_t i = 0; i < got; i++)
            freeReplyObject(replies[i]);
        int closed = s->c->err == REDIS_ERR_EOF ||
                     (s->c->err == REDIS_ERR_IO && (saved_errno == ECONNRESET || saved_errno == EPIPE));
        snprintf(err, err_size, "redis %s: %s", argv[got < n ? got : 0][0],
                 s->c->errstr[0] != '\0' ? s->c->errstr : "I/O error");
        redisFree(s->c);
        s->c = NULL;
        /* a timeout is not retried: Redis is slow, and a second wait would only double the delay */
        if (!reused || !closed || attempt > 0)
            return -1;
    }
}

/* One command: its reply, or NULL (SIGNER_ERR_REDIS) with err, as pipeline(). */
static redisReply *command(signer_store_t *s, int argc, const char **argv, const size_t *argvlen, char *err,
                           size_t err_size)
{
    redisReply *r = NULL;
    const char **const argvs[] = {argv};
    const size_t *const lens[] = {argvlen};
    return pipeline(s, 1, &argc, argvs, lens, &r, err, err_size) == 0 ? r : NULL;
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

/* KEYS: the pass, its cached bundle. ARGV: a new epoch. Returns {templateId, doc, authToken, version,
 * lastModified, the template's @rev, the cached bundle's id, the epoch}; false (nil) for what is absent.
 * 'pk:tpl:' is CM_KEY_TEMPLATE_FMT's prefix. The bundle's bytes are not read here: moving them through
 * Lua copies them twice more, which made a cache hit cost Redis three times what HMGET does. */
#define READ_PASS_SCRIPT                                                                                     \
    "local p = redis.call('HMGET', KEYS[1], 'templateId', 'doc', 'authToken', 'version', 'lastModified')\n"  \
    "local epoch = redis.call('GET', '" EPOCH_KEY "')\n"                                                     \
    "if not epoch then epoch = ARGV[1]; redis.call('SET', '" EPOCH_KEY "', epoch) end\n"                     \
    "local rev, bid = false, false\n"                                                                        \
    "if p[1] then rev = redis.call('HGET', 'pk:tpl:' .. p[1], '@rev') end\n"                                 \
    "bid = redis.call('HGET', KEYS[2], 'id')\n"                                                              \
    "return {p[1], p[2], p[3], p[4], p[5], rev, bid, epoch}\n"

int signer_store_read_pass(signer_store_t *s, const char *ptid, const char *serial, signer_pass_record_t *out,
                           char *err, size_t err_size)
{
    static const char *const fields[] = {"templateId", "doc", "authToken", "version", "lastModified"};
    enum { NFIELDS = sizeof(fields) / sizeof(fields[0]), NREPLY = NFIELDS + 3 };
    char key[CM_KEY_MAX], bundle_key[CM_KEY_MAX];
    snprintf(key, sizeof(key), CM_KEY_PASS_FMT, ptid, serial);
    snprintf(bundle_key, sizeof(bundle_key), CM_KEY_BUNDLE_FMT, ptid, serial);
    const char *argv[] = {"EVAL", READ_PASS_SCRIPT, "2", key, bundle_key, s->new_epoch};
    int rc = SIGNER_ERR_DATA;
    signer_pass_record_t rec;
    memset(&rec, 0, sizeof(rec));
    prefetch_clear(&s->pre);
    redisReply *r = command(s, 6, argv, NULL, err, err_size);
    if (r == NULL)
        return SIGNER_ERR_REDIS;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != NREPLY) {
        snprintf(err, err_size, "redis EVAL (read pass) %s: %s", key,
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        rc = SIGNER_ERR_INTERNAL;
        goto out;
    }
    redisReply **e = r->element;
    size_t present = 0;
    for (size_t i = 0; i < NFIELDS; i++)
        present += e[i]->type == REDIS_REPLY_STRING;
    if (present == 0) {
        snprintf(err, err_size, "pass %s %s not found", ptid, serial);
        rc = SIGNER_ERR_NOT_FOUND;
        goto out;
    }
    for (size_t i = 0; i < NFIELDS; i++) {
        if (e[i]->type != REDIS_REPLY_STRING) {
            snprintf(err, err_size, "%s has no field %s", key, fields[i]);
            goto out;
        }
    }
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

    /* what the next calls of this request may take from here */
    struct prefetch *pre = &s->pre;
    if (e[7]->type == REDIS_REPLY_STRING && e[7]->len <= EPOCH_MAX) {
        memcpy(pre->epoch, e[7]->str, e[7]->len + 1);
        see_epoch(pre->epoch);
    }
    memcpy(pre->template_id, e[0]->str, e[0]->len + 1); /* cm_id_is_plain: at most CM_ID_MAX bytes */
    if (e[5]->type == REDIS_REPLY_STRING) {
        if (!is_decimal(e[5]->str, e[5]->len) || e[5]->len >= sizeof(pre->rev))
            goto out; /* signer_store_template_rev asks again and reports it */
        memcpy(pre->rev, e[5]->str, e[5]->len + 1);
        pre->has_rev = 1;
    }
    snprintf(pre->bundle_key, sizeof(pre->bundle_key), "%s", bundle_key);
    pre->has_bundle = 1;
    if (e[6]->type == REDIS_REPLY_STRING && e[6]->len < sizeof(pre->bundle_id))
        memcpy(pre->bundle_id, e[6]->str, e[6]->len + 1);
    pre->valid = 1;
out:
    freeReplyObject(r);
    return rc;
}

int signer_store_template_rev(signer_store_t *s, const char *template_id, char *rev, size_t rev_size,
                              char *err, size_t err_size)
{
    char key[CM_KEY_MAX];
    const struct prefetch *pre = &s->pre;
    if (pre->valid && strcmp(pre->template_id, template_id) == 0) {
        if (!pre->has_rev) {
            snprintf(err, err_size, "template %s not found", template_id);
            return SIGNER_ERR_NOT_FOUND;
        }
        if (strlen(pre->rev) >= rev_size) {
            snprintf(err, err_size, "@rev of template %s is too long", template_id);
            return SIGNER_ERR_DATA;
        }
        memcpy(rev, pre->rev, strlen(pre->rev) + 1);
        return 0;
    }
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
    if (tpl->shared != NULL) {
        cache_release(tpl->shared); /* files point into the cache entry */
    } else {
        free(tpl->files);
        if (tpl->reply != NULL)
            freeReplyObject(tpl->reply);
    }
    memset(tpl, 0, sizeof(*tpl));
}

static void from_cache(signer_template_t *out, struct tpl_entry *e)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->rev, sizeof(out->rev), "%s", e->rev);
    out->files = e->files;
    out->count = e->count;
    out->shared = e;
}

static int read_template_from_redis(signer_store_t *s, const char *template_id, signer_template_t *out,
                                    char *err, size_t err_size);

int signer_store_read_template(signer_store_t *s, const char *template_id, signer_template_t *out, char *err,
                               size_t err_size)
{
    const struct prefetch *pre = &s->pre;
    int known = pre->valid && pre->epoch[0] != '\0' && strcmp(pre->template_id, template_id) == 0;
    if (known && pre->has_rev) {
        struct tpl_entry *e = cache_get(pre->epoch, template_id, pre->rev);
        if (e != NULL) {
            from_cache(out, e);
            return 0;
        }
    }
    signer_template_t tpl;
    int rc = read_template_from_redis(s, template_id, &tpl, err, err_size);
    if (rc != 0 || !known)
        goto out;
    struct tpl_entry *e = cache_put(pre->epoch, template_id, &tpl);
    if (e != NULL) {
        signer_template_dispose(&tpl);
        from_cache(&tpl, e);
    }
out:
    if (rc == 0)
        *out = tpl;
    return rc;
}

static int read_template_from_redis(signer_store_t *s, const char *template_id, signer_template_t *out,
                                    char *err, size_t err_size)
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
    struct prefetch *pre = &s->pre;
    if (pre->valid && pre->has_bundle && strcmp(pre->bundle_key, key) == 0) {
        pre->has_bundle = 0;
        if (strcmp(pre->bundle_id, id) != 0)
            return SIGNER_ERR_NOT_FOUND; /* no entry, or one of another version: not worth reading */
    }
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

int signer_store_put_bundle(signer_store_t *s, const char *key, const char *id, const unsigned char *data,
                            size_t len, long ttl, char *err, size_t err_size)
{
    char ttl_text[24];
    snprintf(ttl_text, sizeof(ttl_text), "%ld", ttl);
    /* replaces the pass's cached bundle and sets its TTL in one transaction, sent in one write */
    const char *multi[] = {"MULTI"}, *exec[] = {"EXEC"};
    const char *hset[] = {"HSET", key, "id", id, "data", (const char *)data};
    const size_t hset_len[] = {4, strlen(key), 2, strlen(id), 4, len};
    const char *expire[] = {"EXPIRE", key, ttl_text};
    const int argc[] = {1, 6, 3, 1};
    const char **const argv[] = {multi, hset, expire, exec};
    const size_t *const lens[] = {NULL, hset_len, NULL, NULL};
    redisReply *r[4];
    if (pipeline(s, 4, argc, argv, lens, r, err, err_size) != 0)
        return SIGNER_ERR_REDIS;
    int rc = 0;
    const redisReply *bad = NULL;
    for (int i = 0; i < 4 && bad == NULL; i++)
        if (r[i]->type == REDIS_REPLY_ERROR)
            bad = r[i];
    for (size_t i = 0; bad == NULL && r[3]->type == REDIS_REPLY_ARRAY && i < r[3]->elements; i++)
        if (r[3]->element[i]->type == REDIS_REPLY_ERROR)
            bad = r[3]->element[i];
    if (bad != NULL || r[3]->type != REDIS_REPLY_ARRAY || r[3]->elements != 2) {
        snprintf(err, err_size, "redis MULTI/HSET/EXPIRE (put bundle) %s: %s", key,
                 bad != NULL ? bad->str : "unexpected reply");
        rc = SIGNER_ERR_INTERNAL;
    }
    for (int i = 0; i < 4; i++)
        freeReplyObject(r[i]);
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

int signer_store_read_pass_files(signer_store_t *s, const char *ptid, const char *serial,
                                 signer_template_t *out, char *err, size_t err_size)
{
    char key[CM_KEY_MAX];
    snprintf(key, sizeof(key), CM_KEY_PASSFILE_FMT, ptid, serial);
    const char *argv[] = {"HGETALL", key};
    signer_template_t own;
    memset(&own, 0, sizeof(own));
    redisReply *r = command(s, 2, argv, NULL, err, err_size);
    if (r == NULL)
        return SIGNER_ERR_REDIS;
    own.reply = r;
    int rc = SIGNER_ERR_DATA;
    if (r->type != REDIS_REPLY_ARRAY || r->elements % 2 != 0) {
        snprintf(err, err_size, "redis HGETALL %s: %s", key,
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
        rc = SIGNER_ERR_INTERNAL;
        goto out;
    }
    if (r->elements / 2 > CM_PASS_MAX_FILES) {
        snprintf(err, err_size, "%s: more than %d files", key, CM_PASS_MAX_FILES);
        goto out;
    }
    own.files = calloc(r->elements / 2 + 1, sizeof(*own.files));
    if (own.files == NULL)
        abort();
    size_t total = 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        redisReply *f = r->element[i], *v = r->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING || strlen(f->str) != f->len ||
            (total += v->len) > CM_PASS_FILES_MAX_BYTES) {
            snprintf(err, err_size, "%s: a name holding a NUL, or more than %u bytes", key,
                     CM_PASS_FILES_MAX_BYTES);
            goto out;
        }
        own.files[own.count].name = f->str;
        own.files[own.count].data = (const unsigned char *)v->str;
        own.files[own.count].len = v->len;
        own.count++;
    }
    qsort(own.files, own.count, sizeof(*own.files), by_file_name);
    *out = own;
    return 0;
out:
    signer_template_dispose(&own);
    return rc;
}
