/*
 * GET|HEAD /admin/v1/pkpasses?pass=<ptid>/<serial>&pass=...: several signed passes in one download, a
 * .pkpasses (Apple: a ZIP of .pkpass files, application/vnd.apple.pkpasses, at most 10 passes or
 * 150 MB). Each inner file is <serialNumber>.pkpass, stored uncompressed (a .pkpass is compressed
 * already).
 *
 * All or nothing: the request is checked first (2 to 10 passes, each "<ptid>/<serial>", none twice, no
 * two with the same serial number, since their file names would clash), then every bundle is asked of
 * the signer at once, exactly as the single admin download does. When the last answer is in, either
 * something failed and the request gets one error (404 naming every unknown pass, else 503, else 502),
 * or the ZIP is built on a libuv worker thread (copying and checksumming up to 150 MB must not hold
 * the loop) and handed to h2o, without another copy, back on the loop thread. A client that went away
 * meanwhile is detected through the request guard at each step; the batch is freed exactly once, by
 * whichever step ends it.
 */
#include "admin.h"
#include "common/bundle_zip.h"
#include "common/httpdate.h"
#include "common/log.h"
#include "common/path.h"
#include "signer_client.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MIN_PASSES 2
#define MAX_PASSES 10
#define MAX_BYTES  (150u * 1000 * 1000) /* Apple: "up to 150 MB" */

struct batch;

struct item {
    struct batch *batch;
    char ptid[CM_ID_MAX + 1];
    char serial[CM_ID_MAX + 1];
    char name[CM_ID_MAX + 8]; /* <serial>.pkpass */
    int status;               /* the signer's answer; 0: none */
    char error[256];
    unsigned char *body;
    size_t len;
};

struct batch {
    uv_loop_t *loop;
    cm_req_guard_t *guard;
    size_t count, pending;
    struct item items[MAX_PASSES];
    time_t mtime; /* of the entries: the newest Last-Modified of the passes, so the same versions give
                   * the same bytes */
    uv_work_t work;
    unsigned char *zip; /* built by the worker */
    size_t zip_len;
    int zip_rc;
    char zip_err[256];
};

static void batch_free(struct batch *b)
{
    cm_req_guard_release(b->guard);
    for (size_t i = 0; i < b->count; i++)
        free(b->items[i].body);
    free(b->zip);
    free(b);
}

/* Reads and checks the pass parameters into b. Returns 0, or answers 400 and returns -1. */
static int parse_passes_or_reply(h2o_req_t *req, struct batch *b)
{
    char value[2 * CM_ID_MAX + 2], shown[64];
    size_t n = 0;
    /* Counted first (up to a bound: each lookup scans the query) so that the error names the number. */
    while (n <= 100 &&
           cm_path_query_param_at(req->path.base, req->path.len, "pass", n, value, sizeof(value)) != 1)
        n++;
    if (n < MIN_PASSES || n > MAX_PASSES) {
        cm_httpd_send_error(
            req, 400,
            "a .pkpasses holds %d to %d passes (pass=<passTypeIdentifier>/<serialNumber>, repeated); "
            "got %s%zu",
            MIN_PASSES, MAX_PASSES, n > 100 ? "more than " : "", n > 100 ? (size_t)100 : n);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        struct item *it = &b->items[i];
        if (cm_path_query_param_at(req->path.base, req->path.len, "pass", i, value, sizeof(value)) != 0) {
            cm_httpd_send_error(req, 400, "pass parameter %zu is malformed or longer than %d characters",
                                i + 1, 2 * CM_ID_MAX + 1);
            return -1;
        }
        const char *slash = strchr(value, '/');
        size_t pl = slash != NULL ? (size_t)(slash - value) : 0;
        if (slash == NULL || pl > CM_ID_MAX || !cm_id_is_pass_type(value, pl) ||
            !cm_id_is_plain(slash + 1, strlen(slash + 1))) {
            cm_httpd_send_error(
                req, 400,
                "pass=%s is not <passTypeIdentifier>/<serialNumber> (\"pass.\" and [A-Za-z0-9.-], "
                "then 1 to %d characters [A-Za-z0-9._-])",
                cm_log_clean(shown, sizeof(shown), value, strlen(value)), CM_ID_MAX);
            return -1;
        }
        memcpy(it->ptid, value, pl);
        it->ptid[pl] = '\0';
        snprintf(it->serial, sizeof(it->serial), "%s", slash + 1);
        snprintf(it->name, sizeof(it->name), "%s.pkpass",
                 slash + 1); /* the serial (not it->serial: same object) */
        for (size_t j = 0; j < i; j++) {
            if (strcmp(b->items[j].serial, it->serial) != 0)
                continue;
            if (strcmp(b->items[j].ptid, it->ptid) == 0)
                cm_httpd_send_error(req, 400, "pass=%s/%s is listed twice", it->ptid, it->serial);
            else
                cm_httpd_send_error(
                    req, 400,
                    "pass=%s/%s and pass=%s/%s share a serial number: both files would be named "
                    "%s in the .pkpasses",
                    b->items[j].ptid, it->serial, it->ptid, it->serial, it->name);
            return -1;
        }
    }
    b->count = n;
    return 0;
}

static void on_zipped(uv_work_t *work, int status)
{
    struct batch *b = work->data;
    h2o_req_t *req = cm_req_guard_get(b->guard);
    if (req == NULL)
        goto out;
    if (status != 0 || b->zip_rc != 0) {
        CM_LOG(CM_LOG_ERROR, "event=pkpasses_failed passes=%zu reason=\"%s\"", b->count,
               status != 0 ? uv_strerror(status) : b->zip_err);
        cm_httpd_send_error(req, 500, "cannot build the .pkpasses");
        goto out;
    }
    CM_LOG(CM_LOG_INFO, "event=pkpasses_served passes=%zu bytes=%zu", b->count, b->zip_len);
    cm_httpd_add_header(req, "Content-Disposition", "attachment; filename=\"passes.pkpasses\"");
    cm_httpd_add_header(req, "Cache-Control", "no-cache");
    cm_httpd_send_owned(req, 200, "application/vnd.apple.pkpasses", b->zip, b->zip_len); /* no copy */
    b->zip = NULL;
out:
    batch_free(b);
}

/* On a worker thread: touches nothing but the batch, which the loop thread leaves alone meanwhile. */
static void zip_passes(uv_work_t *work)
{
    struct batch *b = work->data;
    cm_file_t files[MAX_PASSES];
    for (size_t i = 0; i < b->count; i++)
        files[i] = (cm_file_t){.name = b->items[i].name, .data = b->items[i].body, .len = b->items[i].len};
    b->zip_rc = cm_bundle_zip_stored(files, b->count, b->mtime, MAX_BYTES, &b->zip, &b->zip_len, b->zip_err,
                                     sizeof(b->zip_err));
}

/* Every answer is in: one error for the whole request, or the ZIP. */
static void finish(struct batch *b)
{
    h2o_req_t *req = cm_req_guard_get(b->guard);
    char reason[256];
    if (req == NULL)
        goto out;
    json_t *unknown = json_array();
    char names[MAX_PASSES * (2 * CM_ID_MAX + 4)] = "";
    const struct item *unavailable = NULL, *failed = NULL;
    size_t total = 0, used = 0;
    for (size_t i = 0; i < b->count; i++) {
        const struct item *it = &b->items[i];
        if (it->status == 404) {
            char pass[2 * CM_ID_MAX + 2];
            snprintf(pass, sizeof(pass), "%s/%s", it->ptid, it->serial);
            json_array_append_new(unknown, json_string(pass));
            int w = snprintf(names + used, sizeof(names) - used, "%s%s", used > 0 ? ", " : "", pass);
            if (w > 0 && (size_t)w < sizeof(names) - used)
                used += (size_t)w;
        } else if (it->status == 0 || it->status == 503) {
            unavailable = unavailable != NULL ? unavailable : it;
        } else if (it->status != 200) {
            failed = failed != NULL ? failed : it;
        }
        total += it->len;
    }
    if (json_array_size(unknown) > 0) {
        json_t *e = json_pack("{s:s+,s:O}", "error", "no pass ", names, "passes", unknown);
        cm_httpd_send_json(req, 404, e);
        json_decref(e);
    } else if (unavailable != NULL) {
        CM_LOG(CM_LOG_ERROR, "event=signer_unavailable ptid=%s serial=%s status=%d reason=\"%s\"",
               unavailable->ptid, unavailable->serial, unavailable->status,
               cm_log_clean(reason, sizeof(reason), unavailable->error, strlen(unavailable->error)));
        cm_httpd_add_header(req, "Retry-After", "10");
        cm_httpd_send_error(req, 503, "the signer is unavailable, try again later");
    } else if (failed != NULL) {
        CM_LOG(CM_LOG_ERROR, "event=signer_failed ptid=%s serial=%s status=%d reason=\"%s\"", failed->ptid,
               failed->serial, failed->status,
               cm_log_clean(reason, sizeof(reason), failed->error, strlen(failed->error)));
        cm_httpd_send_error(req, 502, "the signer could not build the pass %s/%s (status %d)", failed->ptid,
                            failed->serial, failed->status);
    } else if (total > MAX_BYTES) {
        cm_httpd_send_error(req, 422, "the passes come to %zu bytes, more than the %u a .pkpasses may hold",
                            total, MAX_BYTES);
    } else {
        json_decref(unknown);
        b->work.data = b;
        if (b->mtime == 0)
            b->mtime = time(NULL); /* the signer sent no usable Last-Modified */
        int rc = uv_queue_work(b->loop, &b->work, zip_passes, on_zipped);
        if (rc == 0)
            return; /* on_zipped owns the batch now */
        CM_LOG(CM_LOG_ERROR, "event=pkpasses_failed passes=%zu reason=\"uv_queue_work: %s\"", b->count,
               uv_strerror(rc));
        cm_httpd_send_error(req, 500, "cannot build the .pkpasses");
        goto out;
    }
    json_decref(unknown);
out:
    batch_free(b);
}

static void on_fetched(const api_signer_result_t *res, void *data)
{
    struct item *it = data;
    struct batch *b = it->batch;
    it->status = res->status;
    snprintf(it->error, sizeof(it->error), "%s", res->error);
    if (res->status == 200) {
        it->body = malloc(res->len > 0 ? res->len : 1);
        if (it->body == NULL)
            abort();
        memcpy(it->body, res->body, res->len);
        it->len = res->len;
        time_t modified;
        if (cm_httpdate_parse(res->last_modified, strlen(res->last_modified), &modified) == 0 &&
            modified > b->mtime)
            b->mtime = modified;
    }
    if (--b->pending == 0)
        finish(b);
}

int api_admin_get_pkpasses(api_app_t *app, h2o_req_t *req)
{
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) &&
        !h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")))
        return api_method_not_allowed(req, "GET, HEAD");
    struct batch *b = calloc(1, sizeof(*b));
    if (b == NULL)
        abort();
    if (parse_passes_or_reply(req, b) != 0) {
        free(b);
        return 0;
    }
    b->loop = app->loop;
    b->guard = cm_req_guard_new(req);
    b->pending = b->count;
    for (size_t i = 0; i < b->count; i++)
        b->items[i].batch = b;
    /* Each fetch answers exactly once, also at shutdown; the last one to answer ends the batch. Counting
     * down from count before the first call keeps an immediate answer from ending it early. */
    for (size_t i = 0; i < b->count; i++)
        api_signer_fetch(app->signer, b->items[i].ptid, b->items[i].serial, on_fetched, &b->items[i]);
    return 0;
}
