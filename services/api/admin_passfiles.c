/*
 * PUT and DELETE /admin/v1/passes/{ptid}/{serial}/files/{name}: a pass's own files (per-pass images,
 * pk:passfile:{ptid}:{serial}), each replacing the template's file of that name in the signed bundle.
 *
 * A PUT reads the context (the pass's version, its template's file names, its own files and their
 * bytes) in one script, checks the image and the limits in C (common/bundle_files.h, common/limits.h:
 * 422 listing every problem), then stores it with a script that checks the version is still the one
 * read (a concurrent write of the pass makes it check again) and takes a new pass version with its
 * pass.updated event in the same atomic step, so devices are pushed as for any other change. The
 * same bytes again change nothing and push nobody. A DELETE is one script.
 */
#include "admin.h"
#include "common/bundle_files.h"
#include "common/httpdate.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/problems.h"
#include "metrics.h"
#include "scripts.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void read_context(api_op_t *op);

/* Answers a stored or removed file with the pass's new (or unchanged) version; bytes < 0 for a removal.
 * op->file is printable ASCII (routes_admin.c refuses other names). */
static void reply_done(h2o_req_t *req, const api_op_t *op, int status, const redisReply *reply,
                       long long bytes)
{
    char lm[CM_HTTPDATE_SIZE], tag[32], name[sizeof(op->file)];
    cm_httpdate_format((time_t)reply->element[2]->integer, lm);
    snprintf(tag, sizeof(tag), "%lld", reply->element[1]->integer);
    json_t *res = json_pack("{s:s,s:s,s:s,s:s,s:s}", "passTypeIdentifier", op->ptid, "serialNumber",
                            op->serial, "file", op->file, "lastUpdated", tag, "lastModified", lm);
    if (bytes >= 0)
        json_object_set_new(res, "bytes", json_integer(bytes));
    CM_LOG(CM_LOG_INFO, "event=pass_file_%s ptid=%s serial=%s file=\"%s\" version=%s",
           bytes < 0 ? "deleted" : "stored", op->ptid, op->serial,
           cm_log_clean(name, sizeof(name), op->file, strlen(op->file)), tag);
    cm_httpd_send_json(req, status, res);
    json_decref(res);
}

/* The names of a reply array of strings, appended to names (borrowed from the reply). */
static size_t collect_names(const redisReply *arr, const char **names, size_t n, size_t max, const char *skip)
{
    for (size_t i = 0; i < arr->elements && n < max; i++) {
        const redisReply *e = arr->element[i];
        if (e->type == REDIS_REPLY_STRING && strlen(e->str) == e->len &&
            (skip == NULL || strcmp(e->str, skip) != 0))
            names[n++] = e->str;
    }
    return n;
}

static void on_written(redisReply *reply, void *data)
{
    api_op_t *op = data;
    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 &&
        reply->element[0]->integer != 0) /* {0, ...}: the same bytes again, nothing changed */
        api_metrics_event(op->app->metrics, "pass.updated");
    h2o_req_t *req = api_op_req_or_reply(op, reply, REDIS_REPLY_ARRAY, -1);
    if (req == NULL)
        goto out;
    int conflict = api_retry_on_conflict(op, req, reply, read_context);
    if (conflict > 0)
        return; /* the pass changed meanwhile: check again against its new state */
    if (conflict < 0)
        goto out;
    if (reply->elements == 1 && reply->element[0]->integer == -404) {
        cm_httpd_send_error(req, 404, "no pass %s/%s", op->ptid, op->serial);
        goto out;
    }
    if (reply->elements != 3) {
        api_reply_redis_failure(req, reply);
        goto out;
    }
    reply_done(req, op, reply->element[0]->integer == 2 ? 201 : 200, reply, (long long)req->entity.len);
out:
    api_op_free(op);
}

static void on_context(redisReply *reply, void *data)
{
    api_op_t *op = data;
    cm_problems_t *problems = NULL;
    h2o_req_t *req = api_op_req_or_reply(op, reply, REDIS_REPLY_ARRAY, -1);
    if (req == NULL)
        goto out;
    if (reply->elements == 0) {
        cm_httpd_send_error(req, 404, "no pass %s/%s", op->ptid, op->serial);
        goto out;
    }
    if (reply->elements != 4 || reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_ARRAY || reply->element[2]->type != REDIS_REPLY_ARRAY ||
        reply->element[3]->type != REDIS_REPLY_INTEGER) {
        api_reply_redis_failure(req, reply);
        goto out;
    }
    const redisReply *tfiles = reply->element[1], *own = reply->element[2];
    /* the other files of the bundle: the template's and the pass's own, but not the one being replaced */
    enum { MAX_OTHERS = CM_TEMPLATE_MAX_FILES + CM_PASS_MAX_FILES };
    const char *others[MAX_OTHERS];
    size_t n = collect_names(tfiles, others, 0, MAX_OTHERS, op->file);
    n = collect_names(own, others, n, MAX_OTHERS, op->file);
    size_t own_after = 1; /* this file, and the pass's others */
    for (size_t i = 0; i < own->elements; i++)
        own_after +=
            own->element[i]->type == REDIS_REPLY_STRING && strcmp(own->element[i]->str, op->file) != 0;
    unsigned long long bytes = (unsigned long long)reply->element[3]->integer + req->entity.len;

    problems = cm_problems_new();
    cm_bundle_files_check_own(op->file, (const unsigned char *)req->entity.base, req->entity.len, others, n,
                              problems);
    if (own_after > CM_PASS_MAX_FILES)
        cm_problems_add_file(problems, op->file, "a pass has at most %d files of its own: delete one first",
                             CM_PASS_MAX_FILES);
    if (bytes > CM_PASS_FILES_MAX_BYTES)
        cm_problems_add_file(problems, op->file,
                             "the pass's own files would be %llu bytes, more than the %u allowed", bytes,
                             CM_PASS_FILES_MAX_BYTES);
    if (cm_problems_count(problems) > 0) {
        CM_LOG(CM_LOG_INFO, "event=pass_file_refused ptid=%s serial=%s problems=%zu", op->ptid, op->serial,
               cm_problems_count(problems));
        json_t *body = cm_problems_body(problems, "file refused");
        cm_httpd_send_json(req, 422, body);
        json_decref(body);
        goto out;
    }
    const char *args[] = {op->ptid, op->serial, reply->element[0]->str, op->file, req->entity.base};
    const size_t lens[] = {strlen(op->ptid), strlen(op->serial), reply->element[0]->len, strlen(op->file),
                           req->entity.len};
    cm_problems_free(problems);
    api_op_eval(op, API_SCRIPT_WRITE_PASSFILE, 5, args, lens, on_written);
    return;
out:
    cm_problems_free(problems);
    api_op_free(op);
}

static void read_context(api_op_t *op)
{
    const char *args[] = {op->ptid, op->serial, op->file};
    api_op_eval(op, API_SCRIPT_PASSFILE_CONTEXT, 3, args, NULL, on_context);
}

void api_admin_put_pass_file(api_op_t *op, h2o_req_t *req)
{
    read_context(op);
}

static void on_deleted(redisReply *reply, void *data)
{
    api_op_t *op = data;
    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3)
        api_metrics_event(op->app->metrics, "pass.updated");
    h2o_req_t *req = api_op_req_or_reply(op, reply, REDIS_REPLY_ARRAY, -1);
    if (req == NULL)
        goto out;
    if (reply->elements == 1 && reply->element[0]->integer == -404) {
        cm_httpd_send_error(req, 404, "no pass %s/%s", op->ptid, op->serial);
    } else if (reply->elements == 1 && reply->element[0]->integer == -410) {
        json_t *e =
            json_pack("{s:s,s:s}", "error", "the pass has no file of its own by that name", "file", op->file);
        cm_httpd_send_json(req, 404, e);
        json_decref(e);
    } else if (reply->elements == 3) {
        reply_done(req, op, 200, reply, -1);
    } else {
        api_reply_redis_failure(req, reply);
    }
out:
    api_op_free(op);
}

void api_admin_delete_pass_file(api_op_t *op, h2o_req_t *req)
{
    const char *args[] = {op->ptid, op->serial, op->file};
    api_op_eval(op, API_SCRIPT_DELETE_PASSFILE, 3, args, NULL, on_deleted);
}
