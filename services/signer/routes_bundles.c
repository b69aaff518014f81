/*
 * GET|HEAD /v1/bundles/{passTypeIdentifier}/{serialNumber}: the signed .pkpass of a pass.
 *
 * The handler validates the identifiers on the loop, then hands the blocking part (Redis, building,
 * signing: signer_bundle_fetch) to the libuv thread pool as a flight. Answers are written in the
 * after-work callback, back on the loop thread, through a cm_req_guard each: when a client went away
 * meanwhile its request is gone and nothing is written for it. Every flight is freed exactly there.
 *
 * Single flight: at most one job per (pass, certificate generation) runs at a time. A request joins
 * the flight of its pass while that flight is still queued (its job has not read Redis yet, so it will
 * read the version current at the request's arrival or a newer one). A request that arrives once the
 * job has started waits for the next flight, which starts when the running one ends; by then the bundle
 * is usually cached, so N concurrent requests for a new pass version cost one signing and a cache read.
 * The "started" flag is the only state a worker touches: sequentially consistent atomics order the
 * loop's check before the worker's Redis reads. The map lives on the loop thread; replicas do not
 * coordinate (with R signers a new version is signed at most R times).
 */
#include "signer.h"

#include "common/httpd.h"
#include "common/httpdate.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/path.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <openssl/crypto.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#define PKPASS_MIME    "application/vnd.apple.pkpass"
#define FLIGHT_BUCKETS 4096 /* a power of two */

struct waiter {
    struct waiter *next;
    cm_req_guard_t *guard;
    uint64_t arrived_ns;
};

struct flight {
    uv_work_t work;
    struct flight *next_in_bucket;
    struct flight *followup; /* requests that arrived after this job started; queued when it ends */
    uint32_t hash;
    char ptid[CM_ID_MAX + 1];
    char serial[CM_ID_MAX + 1];
    signer_identities_t *ids; /* the certificate generation of every waiter, referenced */
    signer_app_t app;         /* bundles_app with that generation's certificates */
    atomic_int started;
    struct waiter *waiters, **tail;
    size_t nwaiters;
    uint64_t queued_ns, started_ns, done_ns;
    signer_fetch_result_t res;
};

/* Loop-thread state: the loop and settings given at registration, the flights in the pool. */
static uv_loop_t *bundles_loop;
static const signer_app_t *bundles_app;
static size_t bundles_pending;
static struct flight *flights[FLIGHT_BUCKETS];

int signer_error_status(int rc, int *log_level)
{
    switch (rc) {
    case 0:
        *log_level = CM_LOG_INFO;
        return 200;
    case SIGNER_ERR_NOT_FOUND:
        *log_level = CM_LOG_INFO;
        return 404;
    case SIGNER_ERR_REDIS:
        *log_level = CM_LOG_WARN;
        return 503;
    default:
        *log_level = CM_LOG_ERROR;
        return 500;
    }
}

size_t signer_routes_bundles_pending(void)
{
    return bundles_pending;
}

/* FNV-1a of ptid, serial and the generation. */
static uint32_t flight_hash(const char *ptid, const char *serial, unsigned long generation)
{
    uint32_t h = 2166136261u;
    for (const char *p = ptid; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    h = (h ^ '/') * 16777619u;
    for (const char *p = serial; *p != '\0'; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    for (int i = 0; i < 8; i++)
        h = (h ^ ((generation >> (8 * i)) & 0xff)) * 16777619u;
    return h;
}

static struct flight *flight_find(const char *ptid, const char *serial, unsigned long generation,
                                  uint32_t hash)
{
    for (struct flight *f = flights[hash & (FLIGHT_BUCKETS - 1)]; f != NULL; f = f->next_in_bucket)
        if (f->hash == hash && signer_identities_generation(f->ids) == generation &&
            strcmp(f->ptid, ptid) == 0 && strcmp(f->serial, serial) == 0)
            return f;
    return NULL;
}

static void flight_insert(struct flight *f)
{
    struct flight **head = &flights[f->hash & (FLIGHT_BUCKETS - 1)];
    f->next_in_bucket = *head;
    *head = f;
}

static void flight_remove(struct flight *f)
{
    for (struct flight **p = &flights[f->hash & (FLIGHT_BUCKETS - 1)]; *p != NULL; p = &(*p)->next_in_bucket)
        if (*p == f) {
            *p = f->next_in_bucket;
            return;
        }
}

/* A flight for ptid/serial on ids (takes the reference), not yet in the map or the pool. */
static struct flight *flight_new(const char *ptid, const char *serial, signer_identities_t *ids,
                                 uint32_t hash)
{
    struct flight *f = calloc(1, sizeof(*f));
    if (f == NULL)
        abort();
    snprintf(f->ptid, sizeof(f->ptid), "%s", ptid);
    snprintf(f->serial, sizeof(f->serial), "%s", serial);
    f->hash = hash;
    f->ids = ids;
    f->app = *bundles_app;
    f->app.certs = signer_identities_certs(ids);
    f->work.data = f;
    f->tail = &f->waiters;
    atomic_init(&f->started, 0);
    return f;
}

static void flight_add_waiter(struct flight *f, h2o_req_t *req)
{
    struct waiter *w = calloc(1, sizeof(*w));
    if (w == NULL)
        abort();
    w->guard = cm_req_guard_new(req);
    w->arrived_ns = uv_hrtime();
    *f->tail = w;
    f->tail = &w->next;
    f->nwaiters++;
}

static void flight_free(struct flight *f)
{
    struct waiter *w = f->waiters;
    while (w != NULL) {
        struct waiter *next = w->next;
        cm_req_guard_release(w->guard);
        free(w);
        w = next;
    }
    signer_fetch_result_dispose(&f->res);
    signer_identities_release(f->ids);
    OPENSSL_cleanse(f->app.redis.password, sizeof(f->app.redis.password));
    free(f);
}

static void on_work(uv_work_t *work)
{
    struct flight *f = work->data;
    atomic_store(&f->started, 1);
    f->started_ns = uv_hrtime();
    signer_bundle_fetch(&f->app, f->ptid, f->serial, &f->res);
    f->done_ns = uv_hrtime();
}

static void on_after_work(uv_work_t *work, int status);

/* Hands f (already in the map) to the pool; on failure answers its waiters 500 and frees it. */
static void flight_queue(struct flight *f)
{
    f->queued_ns = uv_hrtime();
    int r = uv_queue_work(bundles_loop, &f->work, on_work, on_after_work);
    if (r == 0) {
        bundles_pending++;
        return;
    }
    CM_LOG(CM_LOG_ERROR, "event=bundle_failed ptid=%s serial=%s reason=\"uv_queue_work: %s\"", f->ptid,
           f->serial, uv_strerror(r));
    bundles_pending++; /* on_after_work takes it back */
    on_after_work(&f->work, r);
}

static void reply(h2o_req_t *req, const struct flight *f, int status)
{
    const signer_fetch_result_t *res = &f->res;
    if (status != 200) {
        if (status == 503)
            cm_httpd_add_header(req, "Retry-After", "1");
        cm_httpd_send_error(req, status, "%s", res->err);
        return;
    }
    char date[CM_HTTPDATE_SIZE];
    cm_httpdate_format(res->last_modified, date);
    cm_httpd_add_header(req, "X-Pass-Version", res->version);
    cm_httpd_add_header(req, "Last-Modified", date);
    cm_httpd_send_bytes(req, 200, PKPASS_MIME, res->bundle, res->bundle_len);
}

/* Metrics of the job itself (once per flight, however many requests it answers). */
static void count_job(const struct flight *f)
{
    const signer_metrics_t *m = bundles_app->metrics;
    if (f->res.rc == 0 && f->res.cache_hit) {
        cm_metric_add(m->cache_hits, 1, NULL);
    } else if (f->res.rc == 0) {
        cm_metric_add(m->cache_misses, 1, NULL);
        cm_metric_add(m->signings, 1, (const char *const[]){"ok"});
        cm_metric_observe(m->signing_seconds, (double)(f->done_ns - f->started_ns) / 1e9, NULL);
    } else if (f->res.rc == SIGNER_ERR_INTERNAL) {
        cm_metric_add(m->signings, 1, (const char *const[]){"failed"});
    }
    if (f->nwaiters > 1)
        cm_metric_add(m->waiters, (double)(f->nwaiters - 1), NULL);
}

static void on_after_work(uv_work_t *work, int status)
{
    struct flight *f = work->data;
    bundles_pending--;
    flight_remove(f);
    if (status != 0) { /* cancelled or never queued: never ran */
        f->res.rc = SIGNER_ERR_INTERNAL;
        snprintf(f->res.err, sizeof(f->res.err), "bundle job cancelled");
        f->started_ns = f->done_ns = uv_hrtime();
    }
    count_job(f);
    if (f->res.rc == SIGNER_ERR_REDIS)
        cm_metric_add(bundles_app->metrics->redis_errors, 1, (const char *const[]){"bundle"});
    int level;
    int http_status = signer_error_status(f->res.rc, &level);
    /* the reason is logged inside reason="...": keep it one logfmt value */
    for (char *c = f->res.err; *c != '\0'; c++)
        if (*c == '"' || *c == '\n')
            *c = '\'';
    double work_ms = (double)(f->done_ns - f->started_ns) / 1e6;
    double queue_ms = (double)(f->started_ns - f->queued_ns) / 1e6;
    char status_label[8];
    snprintf(status_label, sizeof(status_label), "%d", http_status);
    uint64_t now = uv_hrtime();
    size_t i = 0;
    for (struct waiter *w = f->waiters; w != NULL; w = w->next, i++) {
        h2o_req_t *req = cm_req_guard_get(w->guard);
        const char *client = req != NULL ? "" : " client=gone";
        double total_ms = (double)(now - w->arrived_ns) / 1e6;
        /* the first request started the job; the others shared it */
        int shared = i > 0;
        if (f->res.rc == 0)
            CM_LOG(
                CM_LOG_INFO,
                "event=bundle ptid=%s serial=%s version=%s cache=%s shared=%d bytes=%zu ms=%.1f work_ms=%.1f "
                "queue_ms=%.1f status=200%s",
                f->ptid, f->serial, f->res.version, f->res.cache_hit ? "hit" : "miss", shared,
                f->res.bundle_len, total_ms, work_ms, queue_ms, client);
        else
            CM_LOG(level, "event=bundle_failed ptid=%s serial=%s status=%d shared=%d ms=%.1f reason=\"%s\"%s",
                   f->ptid, f->serial, http_status, shared, total_ms, f->res.err, client);
        cm_metric_add(bundles_app->metrics->requests, 1, (const char *const[]){status_label});
        cm_metric_observe(bundles_app->metrics->request_seconds, total_ms / 1e3, NULL);
        if (req != NULL)
            reply(req, f, http_status);
    }
    struct flight *next = f->followup;
    f->followup = NULL;
    flight_free(f);
    if (next != NULL) {
        flight_insert(next);
        flight_queue(next);
    }
}

/* 1 when no SIGNER_TOKEN is configured, or the request carries it as a bearer token. */
static int is_authorized(h2o_req_t *req)
{
    const char *token = bundles_app->token;
    if (token == NULL || token[0] == '\0')
        return 1;
    h2o_iovec_t v = cm_httpd_header(req, "authorization");
    size_t tl = strlen(token);
    if (v.base == NULL || v.len != tl + 7 || strncasecmp(v.base, "Bearer ", 7) != 0)
        return 0;
    return CRYPTO_memcmp(v.base + 7, token, tl) == 0;
}

static int on_bundles(void *data, h2o_req_t *req)
{
    (void)data;
    if (!is_authorized(req)) {
        cm_httpd_add_header(req, "WWW-Authenticate", "Bearer");
        cm_httpd_send_error(req, 401, "missing or wrong Authorization: Bearer <SIGNER_TOKEN>");
        return 0;
    }
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD"))) {
        cm_httpd_add_header(req, "Allow", "GET, HEAD");
        cm_httpd_send_error(req, 405, "method not allowed");
        return 0;
    }
    cm_path_t path;
    if (cm_path_split(req->path.base, req->path.len, &path) != 0 || path.count != 4 ||
        !cm_path_is(&path, 0, "v1") || !cm_path_is(&path, 1, "bundles")) {
        cm_httpd_send_error(req, 404, "not found");
        return 0;
    }
    if (!cm_id_is_pass_type(path.seg[2], path.len[2])) {
        cm_httpd_send_error(req, 400, "invalid passTypeIdentifier");
        return 0;
    }
    if (!cm_id_is_plain(path.seg[3], path.len[3])) {
        cm_httpd_send_error(req, 400, "invalid serialNumber");
        return 0;
    }
    char ptid[CM_ID_MAX + 1], serial[CM_ID_MAX + 1];
    memcpy(ptid, path.seg[2], path.len[2]);
    ptid[path.len[2]] = '\0';
    memcpy(serial, path.seg[3], path.len[3]);
    serial[path.len[3]] = '\0';
    signer_identities_t *ids = signer_registry_acquire();
    unsigned long generation = signer_identities_generation(ids);
    uint32_t hash = flight_hash(ptid, serial, generation);
    struct flight *f = flight_find(ptid, serial, generation, hash);
    if (f == NULL) {
        f = flight_new(ptid, serial, ids, hash);
        flight_add_waiter(f, req);
        flight_insert(f);
        flight_queue(f);
        return 0;
    }
    signer_identities_release(ids); /* the flight holds the same generation */
    if (atomic_load(&f->started)) {
        if (f->followup == NULL)
            f->followup = flight_new(ptid, serial, signer_registry_acquire(), hash);
        f = f->followup;
    }
    flight_add_waiter(f, req);
    return 0;
}

void signer_routes_bundles_register(cm_httpd_t *httpd, uv_loop_t *loop, const signer_app_t *app)
{
    bundles_loop = loop;
    bundles_app = app;
    cm_httpd_route(httpd, "/v1/bundles", on_bundles, NULL);
}
