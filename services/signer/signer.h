/*
 * passkit-signer: serves signed .pkpass bundles built from the Redis data model (common/keys.h).
 *
 * Files: main.c (config, loop, signals, shutdown), registry.c (the certificates: loaded at start,
 * reloaded on SIGHUP, reference-counted generations), passtypes.c (the pk:passtype publication),
 * routes_bundles.c (GET /v1/bundles/{ptid}/{serial}: one job per pass at a time, the hop to the libuv
 * thread pool), routes_status.c (/healthz, /readyz, /metrics), metrics.c (the Prometheus families),
 * bundle_fetch.c (what one request does on a worker thread: Redis reads, cache, build, store),
 * bundle_build.c (pass.json + manifest + signature + zip), cms_sign.c (the detached CMS signature),
 * store.c (Redis commands on the worker thread's connection).
 */
#ifndef SIGNER_SIGNER_H
#define SIGNER_SIGNER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "common/certs.h"
#include "common/limits.h"
#include "common/manifest.h"
#include "common/redis_url.h"

/* Error codes of the signer's functions (0 is success). signer_error_status() maps them to HTTP. */
enum {
    SIGNER_ERR_NOT_FOUND = -2, /* no such pass: 404 */
    SIGNER_ERR_REDIS = -3,     /* Redis unreachable or the connection broke: 503 */
    SIGNER_ERR_DATA = -4,      /* stored data unusable: template gone, doc not an object, ...: 500 */
    SIGNER_ERR_NO_CERT = -5,   /* no certificate loaded for the pass type: 500 */
    SIGNER_ERR_INTERNAL = -6,  /* signing or archiving failed, Redis refused a command: 500 */
};

/* HTTP status for an error code, and the level its log line gets (a common/log.h level). */
int signer_error_status(int rc, int *log_level);

/* The Prometheus families of the signer (metrics.c). Updating them is thread-safe. */
typedef struct cm_metrics cm_metrics_t;
typedef struct cm_metric cm_metric_t;
typedef struct signer_metrics {
    cm_metrics_t *registry;
    cm_metric_t *requests;        /* signer_requests_total{status}: bundle requests answered */
    cm_metric_t *request_seconds; /* signer_request_seconds: arrival to answer, waiters included */
    cm_metric_t *signings;        /* signer_signings_total{result}: bundles built and signed (ok|failed) */
    cm_metric_t *signing_seconds; /* signer_signing_seconds: worker time of a job that signed */
    cm_metric_t *cache_hits;      /* signer_cache_hits_total */
    cm_metric_t *cache_misses;    /* signer_cache_misses_total */
    cm_metric_t *waiters;         /* signer_singleflight_waiters_total: requests answered by another's job */
    cm_metric_t *cert_expiry;     /* signer_certificate_expiry_days{pass_type} */
    cm_metric_t *cert_loaded;     /* signer_certificates_loaded */
    cm_metric_t *cert_reloads;    /* signer_certificate_reloads_total{result}: ok|partial|failed */
    cm_metric_t *workers;         /* signer_workers: size of the signing pool */
    cm_metric_t *redis_errors;    /* signer_redis_errors_total{call}: bundle jobs and readiness pings
                                   * that failed on Redis (connection lost, timeout, error reply) */
} signer_metrics_t;

/* Creates the registry and the families. Never fails (misuse aborts). Lives until the process exits. */
signer_metrics_t *signer_metrics_new(void);

/* Process-wide settings, written by main.c before the loop starts and read-only afterwards (worker
 * threads read them without locks). Each bundle job works on a copy whose certs is the certificate
 * generation the request started with (registry.c). */
typedef struct signer_app {
    const cm_certs_t *certs;
    signer_metrics_t *metrics;
    cm_redis_url_t redis;
    const char *public_url; /* becomes webServiceURL */
    long cache_ttl;         /* seconds a bundle stays in pk:bundle:*; 0 disables the cache */
    const char *token;      /* SIGNER_TOKEN: required as a bearer token when not empty */
} signer_app_t;

/* Maximums for what a template may hold, checked before building. */
#define SIGNER_TEMPLATE_MAX_FILES CM_TEMPLATE_MAX_FILES
#define SIGNER_TEMPLATE_MAX_BYTES CM_TEMPLATE_MAX_BYTES
#define SIGNER_DOC_MAX_BYTES      CM_PASS_DOC_MAX_BYTES
#define SIGNER_REDIS_TIMEOUT_MS   5000

/* ---- registry.c ---- */

struct uv_loop_s;

/* One generation of the certificates: immutable, reference-counted. Every function on it, and every
 * signer_registry_* function, runs on the loop thread (worker threads only read the cm_certs_t of a
 * generation whose reference their job holds). */
typedef struct signer_identities signer_identities_t;

const cm_certs_t *signer_identities_certs(const signer_identities_t *ids);
unsigned long signer_identities_generation(const signer_identities_t *ids);
/* Drops a reference taken with signer_registry_acquire. Accepts NULL. */
void signer_identities_release(signer_identities_t *ids);

/* Loads CERTS_DIR with the WWDR of wwdr_path (see cm_certs_options_t) before the loop runs. Every
 * refused pass type is logged (event=cert_refused, naming the file and the problem); returns -1 when
 * anything was refused or nothing usable was found (the signer must not start), else 0. dir and
 * wwdr_path must outlive the registry. */
int signer_registry_load(const char *dir, const char *wwdr_path, signer_metrics_t *metrics);
/* A new reference to the current generation (never NULL after a successful load). */
signer_identities_t *signer_registry_acquire(void);
/* Pass types in the current generation. */
size_t signer_registry_count(void);
/* SIGHUP: reads CERTS_DIR again on the thread pool, then swaps generations on the loop thread.
 * Requests already handed to the pool keep the generation they started with. A pass type whose new
 * files are refused keeps its previous certificate while that one still passes the checks; a reload
 * whose WWDR or folder cannot be read, or that would leave no pass type, keeps the whole previous
 * generation. Each outcome is logged and counted. on_swapped (may be NULL) runs after a new
 * generation became current. A reload asked for while one runs is done once that one ends. */
void signer_registry_reload(struct uv_loop_s *loop, void (*on_swapped)(void));
/* 1 while a reload is running on the pool (wait for 0 before disposing the loop). */
int signer_registry_busy(void);
/* Sets signer_certificate_expiry_days for every pass type of the current generation at now. */
void signer_registry_observe(time_t now);
/* Drops the current generation (at exit, once no job holds a reference). */
void signer_registry_dispose(void);

/* ---- routes_bundles.c, routes_status.c ---- */

typedef struct cm_httpd cm_httpd_t;

/* Registers GET/HEAD /v1/bundles/{passTypeIdentifier}/{serialNumber}. app must outlive the loop. */
void signer_routes_bundles_register(cm_httpd_t *httpd, struct uv_loop_s *loop, const signer_app_t *app);
/* Bundle jobs handed to the thread pool whose after-work callback has not run yet (loop thread). */
size_t signer_routes_bundles_pending(void);

#define SIGNER_READY_PING_MS 1000

/* Registers /healthz, /readyz (Redis answered the last PING, sent every SIGNER_READY_PING_MS from the
 * pool, and at least one certificate is loaded) and /metrics, and starts the PING timer. */
void signer_routes_status_register(cm_httpd_t *httpd, struct uv_loop_s *loop, const signer_app_t *app);
/* Stops the PING timer (idempotent). Returns 1 while a PING is still running in the pool. */
int signer_routes_status_stop(void);

/* ---- passtypes.c ---- */

/* HSET pk:passtype:{ptid} teamIdentifier <OU> notAfter <unix seconds> for every pass type, with a
 * blocking connection (before the loop runs). While Redis is unreachable it logs and retries every
 * second until it succeeds (returns 0) or *stop becomes non-zero (returns -1). */
int signer_passtypes_publish(const cm_certs_t *certs, const cm_redis_url_t *url, volatile sig_atomic_t *stop);

#define SIGNER_PASSTYPE_REFRESH_MS 60000

/* Starts a loop timer that republishes the entries of the registry's current generation every
 * SIGNER_PASSTYPE_REFRESH_MS from the thread pool (one refresh at a time; failures are logged and
 * retried at the next tick) and updates the certificate expiry gauges. */
void signer_passtypes_refresh_start(struct uv_loop_s *loop, const cm_redis_url_t *url);
/* Republishes now (after a reload), or right after the refresh that is running. Loop thread. */
void signer_passtypes_refresh_now(void);
/* Stops the timer (idempotent). Returns 1 while a refresh is still running in the pool: call again until
 * it returns 0 before disposing the loop. Loop thread only. */
int signer_passtypes_refresh_stop(void);

/* ---- bundle_fetch.c ---- */

typedef struct signer_fetch_result {
    int rc;                /* 0 or a SIGNER_ERR_* code */
    char err[256];         /* the problem, for the reply and the log, when rc != 0 */
    unsigned char *bundle; /* malloc'd .pkpass when rc == 0 */
    size_t bundle_len;
    char version[24];     /* the pass version (X-Pass-Version) */
    time_t last_modified; /* the pass's lastModified (Last-Modified) */
    int cache_hit;
} signer_fetch_result_t;

/* Produces the signed bundle of pass {ptid, serial} into *res (which it fully initialises; release
 * with signer_fetch_result_dispose). Blocking: runs on a libuv worker thread, with that thread's
 * Redis connection. Identifiers must already be validated. */
void signer_bundle_fetch(const signer_app_t *app, const char *ptid, const char *serial,
                         signer_fetch_result_t *res);
void signer_fetch_result_dispose(signer_fetch_result_t *res);

/* ---- bundle_build.c ---- */

typedef struct signer_bundle_input {
    const char *pass_type_id;
    const char *serial;
    const char *doc; /* the stored pass.json without the server's keys (JSON object text) */
    size_t doc_len;
    const char *auth_token;
    const char *public_url;
    time_t last_modified;   /* also the archive entries' mtime, so rebuilds are identical */
    const cm_file_t *files; /* the template's files; pass.json, manifest.json, signature skipped */
    size_t file_count;
    const cm_file_t *own_files; /* the pass's own files, each replacing the template's file of its name */
    size_t own_file_count;
    const cm_pass_identity_t *identity;
    struct x509_st *wwdr;
} signer_bundle_input_t;

/* Builds pass.json, manifest.json and the signature and zips them with the template files. Returns 0
 * with *out (malloc'd) and *out_len, or SIGNER_ERR_DATA / SIGNER_ERR_INTERNAL with a reason in err.
 * Thread-safe. */
int signer_bundle_build(const signer_bundle_input_t *in, unsigned char **out, size_t *out_len, char *err,
                        size_t err_size);

/* ---- cms_sign.c ---- */

/* Detached CMS (PKCS #7) signature of data[0..len), DER-encoded, signed by identity's certificate and
 * key, carrying the certificate and wwdr (when not NULL), with the contentType, messageDigest and
 * signingTime signed attributes. Returns 0 with *out (malloc'd) and *out_len, or SIGNER_ERR_INTERNAL
 * with OpenSSL's reason in err. Thread-safe (the certificate and key are only read). */
int signer_cms_sign(const cm_pass_identity_t *identity, struct x509_st *wwdr, const void *data, size_t len,
                    unsigned char **out, size_t *out_len, char *err, size_t err_size);

/* ---- store.c ---- */

/* One blocking Redis connection, owned by one worker thread (connected lazily, dropped after an I/O
 * error and made again on the next call). */
typedef struct signer_store signer_store_t;

/* The calling thread's store, created on first use (with a copy of url). Never NULL. */
signer_store_t *signer_store_for_thread(const cm_redis_url_t *url);
/* Closes and frees every thread's store. Only once no worker runs (at shutdown). */
void signer_store_free_all(void);

/* Empties the process's template cache (after a certificate reload, and at exit). Any thread. */
void signer_store_forget_templates(void);

/* PING. 0 or SIGNER_ERR_REDIS with the reason in err. */
int signer_store_ping(signer_store_t *s, char *err, size_t err_size);

typedef struct signer_pass_record {
    char *template_id, *doc, *auth_token, *version;
    size_t doc_len;
    long long last_modified;
} signer_pass_record_t;

/* Reads pk:pass:{ptid}:{serial}. 0, SIGNER_ERR_NOT_FOUND, SIGNER_ERR_REDIS, or SIGNER_ERR_DATA when a
 * field is missing or malformed (err says which). Release with signer_pass_record_dispose. In the same
 * round trip it reads the template's @rev and the pass's cached bundle when that is of this version:
 * the store's next signer_store_template_rev and signer_store_get_bundle calls for them are answered
 * from that without asking Redis again. */
int signer_store_read_pass(signer_store_t *s, const char *ptid, const char *serial, signer_pass_record_t *out,
                           char *err, size_t err_size);
void signer_pass_record_dispose(signer_pass_record_t *rec);

/* The "@rev" of pk:tpl:{template_id} (decimal digits) into rev. 0, SIGNER_ERR_NOT_FOUND (no template),
 * SIGNER_ERR_REDIS, SIGNER_ERR_DATA. */
int signer_store_template_rev(signer_store_t *s, const char *template_id, char *rev, size_t rev_size,
                              char *err, size_t err_size);

typedef struct signer_template {
    char rev[24];
    /* sorted by name; names and bytes point into reply or shared, and so do the SHA-1 digests, which
     * only shared has */
    cm_file_t *files;
    size_t count;
    void *reply;  /* the HGETALL reply that owns the bytes, or NULL */
    void *shared; /* the process's cached copy that owns them, or NULL (store.c) */
} signer_template_t;

/* Reads every "file:" field and "@rev" of pk:tpl:{template_id}, or takes them from the process's template
 * cache when the revision signer_store_read_pass saw is cached. 0, SIGNER_ERR_NOT_FOUND, SIGNER_ERR_REDIS,
 * SIGNER_ERR_DATA (over the limits, no @rev). Release with signer_template_dispose (any thread). */
int signer_store_read_template(signer_store_t *s, const char *template_id, signer_template_t *out, char *err,
                               size_t err_size);
void signer_template_dispose(signer_template_t *tpl);

/* Reads the pass's own files, pk:passfile:{ptid}:{serial} (name -> bytes), into out (rev unused; files
 * sorted by name; none is 0 files). 0, SIGNER_ERR_REDIS, SIGNER_ERR_DATA (over CM_PASS_MAX_FILES or
 * CM_PASS_FILES_MAX_BYTES, a name holding a NUL). Release with signer_template_dispose. */
int signer_store_read_pass_files(signer_store_t *s, const char *ptid, const char *serial,
                                 signer_template_t *out, char *err, size_t err_size);

/* The cached bundle of key when its id is id: 0 with *out (malloc'd), SIGNER_ERR_NOT_FOUND on a miss or
 * another id, SIGNER_ERR_REDIS. */
int signer_store_get_bundle(signer_store_t *s, const char *key, const char *id, unsigned char **out,
                            size_t *out_len, char *err, size_t err_size);
/* Replaces key's bundle with data under id, TTL ttl seconds. 0, SIGNER_ERR_REDIS or SIGNER_ERR_INTERNAL. */
int signer_store_put_bundle(signer_store_t *s, const char *key, const char *id, const unsigned char *data,
                            size_t len, long ttl, char *err, size_t err_size);

#endif
