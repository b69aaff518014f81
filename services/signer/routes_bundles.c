/*
 * GET|HEAD /v1/bundles/{passTypeIdentifier}/{serialNumber}: the signed .pkpass of a pass.
 *
 * The handler validates the identifiers on the loop, then hands the blocking part (Redis, building,
 * signing: signer_bundle_fetch) to the libuv thread pool. The answer is written in the after-work
 * callback, back on the loop thread, through a cm_req_guard: when the client went away meanwhile the
 * request is gone, nothing is written and the job is only freed. Every job is freed exactly there.
 */
#include "signer.h"

#include "common/httpd.h"
#include "common/httpdate.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/path.h"

#include <stdio.h>
#include <stdlib.h>
#include <openssl/crypto.h>
#include <string.h>
#include <strings.h>
#include <uv.h>

#define PKPASS_MIME "application/vnd.apple.pkpass"

struct bundle_job {
    uv_work_t work;
    cm_req_guard_t *guard;
    char ptid[CM_ID_MAX + 1];
    char serial[CM_ID_MAX + 1];
    uint64_t queued_ns, started_ns, done_ns;
    signer_fetch_result_t res;
};

/* Loop-thread state: the loop and settings given at registration, and the jobs in the pool. */
static uv_loop_t *bundles_loop;
static const signer_app_t *bundles_app;
static size_t bundles_pending;

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

static void on_work(uv_work_t *work)
{
    struct bundle_job *job = work->data;
    job->started_ns = uv_hrtime();
    signer_bundle_fetch(bundles_app, job->ptid, job->serial, &job->res);
    job->done_ns = uv_hrtime();
}

static void reply(h2o_req_t *req, const struct bundle_job *job, int status)
{
    const signer_fetch_result_t *res = &job->res;
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

static void on_after_work(uv_work_t *work, int status)
{
    struct bundle_job *job = work->data;
    bundles_pending--;
    if (status != 0) { /* cancelled: never ran */
        job->res.rc = SIGNER_ERR_INTERNAL;
        snprintf(job->res.err, sizeof(job->res.err), "bundle job cancelled");
        job->started_ns = job->done_ns = uv_hrtime();
    }
    int level;
    int http_status = signer_error_status(job->res.rc, &level);
    /* the reason is logged inside reason="...": keep it one logfmt value */
    for (char *c = job->res.err; *c != '\0'; c++)
        if (*c == '"' || *c == '\n')
            *c = '\'';
    h2o_req_t *req = cm_req_guard_get(job->guard);
    const char *client = req != NULL ? "" : " client=gone";
    double work_ms = (double)(job->done_ns - job->started_ns) / 1e6;
    double queue_ms = (double)(job->started_ns - job->queued_ns) / 1e6;
    if (job->res.rc == 0)
        CM_LOG(
            CM_LOG_INFO,
            "event=bundle ptid=%s serial=%s version=%s cache=%s bytes=%zu ms=%.1f queue_ms=%.1f status=200%s",
            job->ptid, job->serial, job->res.version, job->res.cache_hit ? "hit" : "miss",
            job->res.bundle_len, work_ms, queue_ms, client);
    else
        CM_LOG(level, "event=bundle_failed ptid=%s serial=%s status=%d ms=%.1f reason=\"%s\"%s", job->ptid,
               job->serial, http_status, work_ms, job->res.err, client);
    if (req != NULL)
        reply(req, job, http_status);
    cm_req_guard_release(job->guard);
    signer_fetch_result_dispose(&job->res);
    free(job);
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
    struct bundle_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        abort();
    memcpy(job->ptid, path.seg[2], path.len[2]);
    memcpy(job->serial, path.seg[3], path.len[3]);
    job->work.data = job;
    job->queued_ns = uv_hrtime();
    job->guard = cm_req_guard_new(req);
    int r = uv_queue_work(bundles_loop, &job->work, on_work, on_after_work);
    if (r != 0) {
        CM_LOG(CM_LOG_ERROR, "event=bundle_failed ptid=%s serial=%s reason=\"uv_queue_work: %s\"", job->ptid,
               job->serial, uv_strerror(r));
        cm_req_guard_release(job->guard);
        free(job);
        cm_httpd_send_error(req, 500, "cannot schedule the bundle build");
        return 0;
    }
    bundles_pending++;
    return 0;
}

void signer_routes_bundles_register(cm_httpd_t *httpd, uv_loop_t *loop, const signer_app_t *app)
{
    bundles_loop = loop;
    bundles_app = app;
    cm_httpd_route(httpd, "/v1/bundles", on_bundles, NULL);
}
