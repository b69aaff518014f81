/*
 * PUT, PATCH and GET /admin/v1/passes/{ptid}/{serial}; see routes_admin.c.
 *
 * A write is two steps: read the context (current version, overrides and token, the template's
 * pass.json, the pass type's certificate entry) in one script, merge in C, then store with a script
 * that checks the version is still the one read (optimistic concurrency: a concurrent write makes it
 * retry, up to API_MAX_ATTEMPTS) and appends the event in the same atomic step.
 *
 * The stored "overrides" are the issuer's fields; "doc" is the template's pass.json with the overrides
 * merged over it (RFC 7386: objects merge deeply, null removes a key), without the keys the server
 * owns. PATCH takes a merge patch of the resource {"templateId", "pass"}; a body with neither key is
 * taken as a merge patch of "pass" itself.
 *
 * The merged pass.json is checked (common/passjson_check.h) before the server's keys are removed, so
 * that a malformed webServiceURL the issuer gave is reported too; any problem answers 422 listing all
 * of them, and nothing is stored.
 */
#include "admin.h"
#include "common/httpdate.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/merge.h"
#include "common/passjson_check.h"
#include "common/problems.h"
#include "metrics.h"
#include "scripts.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdarg.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Keys the server sets in every pass.json it signs; the issuer cannot choose them. */
static const char *const server_keys[] = {"passTypeIdentifier", "serialNumber", "teamIdentifier",
                                          "webServiceURL", "authenticationToken"};

static void read_context(api_op_t *op);

static void reply_json_error(h2o_req_t *req, int status, json_t *extra, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void reply_json_error(h2o_req_t *req, int status, json_t *extra, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_t *e = extra != NULL ? extra : json_object();
    json_object_set_new(e, "error", json_string(msg));
    cm_httpd_send_json(req, status, e);
    json_decref(e);
}

static void new_auth_token(char *out, size_t size)
{
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
        abort();
    size_t n = size - 1 < sizeof(raw) ? size - 1 : sizeof(raw);
    for (size_t i = 0; i < n; i++)
        out[i] = alphabet[raw[i] % 62]; /* 256 % 62 bias is immaterial for a 190-bit token */
    out[n] = '\0';
}

/* Checks the {"templateId", "pass"} resource. Returns 0, or replies 400 and returns -1. */
static int check_resource(h2o_req_t *req, const json_t *res, const char *self_ptid, const char *self_serial)
{
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)res, key, value)
    {
        if (strcmp(key, "templateId") != 0 && strcmp(key, "pass") != 0) {
            reply_json_error(req, 400, json_pack("{s:s}", "field", key),
                             "unknown field \"%s\" (expected \"templateId\" and \"pass\")", key);
            return -1;
        }
    }
    const char *tid = json_string_value(json_object_get(res, "templateId"));
    if (tid == NULL || !cm_id_is_plain(tid, strlen(tid))) {
        reply_json_error(req, 400, json_pack("{s:s}", "field", "templateId"),
                         "templateId must be a string of 1 to %d characters [A-Za-z0-9._-]", CM_ID_MAX);
        return -1;
    }
    json_t *pass = json_object_get(res, "pass");
    if (!json_is_object(pass)) {
        reply_json_error(req, 400, json_pack("{s:s}", "field", "pass"), "pass must be a JSON object");
        return -1;
    }
    json_t *token = json_object_get(pass, "authenticationToken");
    if (token != NULL && (!json_is_string(token) ||
                          !cm_id_is_auth_token(json_string_value(token), json_string_length(token)))) {
        reply_json_error(
            req, 400, json_pack("{s:s}", "field", "pass.authenticationToken"),
            "authenticationToken must be a string of %d to %d printable characters without spaces "
            "(Apple requires at least 16)",
            CM_AUTH_TOKEN_MIN, CM_AUTH_TOKEN_MAX);
        return -1;
    }
    const char *own[] = {"passTypeIdentifier", self_ptid, "serialNumber", self_serial};
    for (size_t i = 0; i < 4; i += 2) {
        json_t *v = json_object_get(pass, own[i]);
        if (v != NULL && (!json_is_string(v) || strcmp(json_string_value(v), own[i + 1]) != 0)) {
            reply_json_error(req, 400, json_pack("{s:s}", "field", own[i]),
                             "pass.%s must be \"%s\" (it comes from the URL) or absent", own[i], own[i + 1]);
            return -1;
        }
    }
    return 0;
}

/* Answers a write: 201 when created, else 200, with the pass's token, tag and Last-Modified. */
static void reply_written(h2o_req_t *req, api_op_t *op, int created, long long version,
                          long long last_modified)
{
    char lm[CM_HTTPDATE_SIZE], tag[32];
    cm_httpdate_format((time_t)last_modified, lm);
    snprintf(tag, sizeof(tag), "%lld", version);
    json_t *res = json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "passTypeIdentifier", op->ptid, "serialNumber",
                            op->serial, "templateId", op->template_id, "authenticationToken",
                            op->presented_token, "lastUpdated", tag, "lastModified", lm);
    CM_LOG(CM_LOG_INFO, "event=pass_%s ptid=%s serial=%s version=%lld", created ? "created" : "updated",
           op->ptid, op->serial, version);
    cm_httpd_send_json(req, created ? 201 : 200, res);
    json_decref(res);
}

/* Checks the merged pass.json. Returns 0, or replies 422 with every problem and returns -1. */
static int refused_or_reply(h2o_req_t *req, const api_op_t *op, const json_t *doc)
{
    cm_problems_t *problems = cm_problems_new();
    cm_passjson_check(doc, problems);
    size_t n = cm_problems_count(problems);
    if (n > 0) {
        CM_LOG(CM_LOG_INFO, "event=pass_refused ptid=%s serial=%s problems=%zu", op->ptid, op->serial, n);
        json_t *body = cm_problems_body(problems, "pass refused");
        json_object_set_new(body, "templateId", json_string(op->template_id));
        cm_httpd_send_json(req, 422, body);
        json_decref(body);
    }
    cm_problems_free(problems);
    return n > 0 ? -1 : 0;
}

/* 1 when a write would store exactly what is stored (same template, overrides and merged pass.json). */
static int is_unchanged(const char *stored_tid, const char *stored_overrides, const char *stored_doc,
                        const char *template_id, const json_t *overrides, const json_t *doc)
{
    if (stored_tid == NULL || stored_overrides == NULL || stored_doc == NULL ||
        strcmp(stored_tid, template_id) != 0)
        return 0;
    json_t *old_overrides = json_loads(stored_overrides, 0, NULL), *old_doc = json_loads(stored_doc, 0, NULL);
    int same = json_equal(old_overrides, overrides) && json_equal(old_doc, doc);
    json_decref(old_overrides);
    json_decref(old_doc);
    return same;
}

static void on_written(redisReply *reply, void *data)
{
    api_op_t *op = data;
    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 3) /* stored, event added */
        api_metrics_event(op->app->metrics,
                          reply->element[0]->integer == 1 ? "pass.created" : "pass.updated");
    h2o_req_t *req = api_op_req_or_reply(op, reply, REDIS_REPLY_ARRAY, -1);
    if (req == NULL)
        goto out;
    int conflict = api_retry_on_conflict(op, req, reply, read_context);
    if (conflict > 0)
        return; /* somebody wrote the pass meanwhile: merge again on the new state */
    if (conflict < 0)
        goto out;
    if (reply->elements != 3) {
        api_reply_redis_failure(req, reply);
        goto out;
    }
    reply_written(req, op, reply->element[0]->integer == 1, reply->element[1]->integer,
                  reply->element[2]->integer);
out:
    api_op_free(op);
}

static const char *str_or_null(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING ? r->str : NULL;
}

static void on_context(redisReply *reply, void *data)
{
    api_op_t *op = data;
    json_t *resource = NULL, *tpl = NULL, *doc = NULL;
    char *overrides_s = NULL, *doc_s = NULL;
    h2o_req_t *req = api_op_req_or_reply(op, reply, REDIS_REPLY_ARRAY, 8);
    if (req == NULL)
        goto out;
    const char *version = str_or_null(reply->element[0]), *stored_tid = str_or_null(reply->element[1]),
               *stored_overrides = str_or_null(reply->element[2]),
               *stored_token = str_or_null(reply->element[3]), *tpl_json = str_or_null(reply->element[4]),
               *team = str_or_null(reply->element[5]), *stored_doc = str_or_null(reply->element[6]),
               *stored_lm = str_or_null(reply->element[7]);
    if (op->is_patch) {
        if (version == NULL) {
            cm_httpd_send_error(req, 404, "no pass %s/%s", op->ptid, op->serial);
            goto out;
        }
        json_t *current = json_pack("{s:s,s:o}", "templateId", stored_tid != NULL ? stored_tid : "", "pass",
                                    json_loads(stored_overrides != NULL ? stored_overrides : "{}", 0, NULL));
        resource = cm_json_merge_patch(current, op->body);
        json_decref(current);
    } else {
        resource = json_deep_copy(op->body); /* edited below; a retry must see the request as sent */
    }
    if (check_resource(req, resource, op->ptid, op->serial) != 0)
        goto out;
    snprintf(op->template_id, sizeof(op->template_id), "%s",
             json_string_value(json_object_get(resource, "templateId")));
    if (team == NULL) {
        reply_json_error(
            req, 422, json_pack("{s:s}", "passTypeIdentifier", op->ptid),
            "no certificate for pass type %s: the signer has none loaded (CERTS_DIR/%s/certificate.pem)",
            op->ptid, op->ptid);
        goto out;
    }
    if (tpl_json == NULL) {
        reply_json_error(req, 422, json_pack("{s:s}", "templateId", op->template_id),
                         "template \"%s\" does not exist (upload it with PUT /admin/v1/templates/%s)",
                         op->template_id, op->template_id);
        goto out;
    }
    if ((tpl = json_loads(tpl_json, 0, NULL)) == NULL) {
        cm_httpd_send_error(req, 500, "template \"%s\" has an unreadable pass.json", op->template_id);
        goto out;
    }
    json_t *pass = json_object_get(resource, "pass");
    const char *asked_token = json_string_value(json_object_get(pass, "authenticationToken"));
    if (stored_token != NULL && asked_token != NULL && strcmp(stored_token, asked_token) != 0) {
        reply_json_error(req, 409, json_pack("{s:s}", "field", "pass.authenticationToken"),
                         "authenticationToken cannot change: devices keep the token of the copy they hold");
        goto out;
    }
    if (stored_token != NULL)
        snprintf(op->presented_token, sizeof(op->presented_token), "%s", stored_token);
    else if (asked_token != NULL)
        snprintf(op->presented_token, sizeof(op->presented_token), "%s", asked_token);
    else
        new_auth_token(op->presented_token, 33);
    json_object_del(pass, "authenticationToken");
    doc = cm_json_merge_patch(tpl, pass);
    if (refused_or_reply(req, op, doc) != 0)
        goto out;
    for (size_t i = 0; i < sizeof(server_keys) / sizeof(server_keys[0]); i++)
        json_object_del(doc, server_keys[i]);
    overrides_s = json_dumps(pass, JSON_COMPACT);
    doc_s = json_dumps(doc, JSON_COMPACT);
    if (strlen(doc_s) > CM_PASS_DOC_MAX_BYTES) {
        cm_httpd_send_error(req, 400, "the pass's pass.json would be %zu bytes, more than the %u allowed",
                            strlen(doc_s), CM_PASS_DOC_MAX_BYTES);
        goto out;
    }
    if (version != NULL &&
        is_unchanged(stored_tid, stored_overrides, stored_doc, op->template_id, pass, doc)) {
        /* Nothing changes: no new version, no event, no push (Apple: push only when the pass changed). */
        reply_written(req, op, 0, strtoll(version, NULL, 10),
                      stored_lm != NULL ? strtoll(stored_lm, NULL, 10) : 0);
        goto out;
    }
    const char *args[] = {op->ptid,           op->serial,  version != NULL ? version : "0",
                          op->template_id,    overrides_s, doc_s,
                          op->presented_token};
    api_op_eval(op, API_SCRIPT_WRITE_PASS, 7, args, NULL, on_written);
    op = NULL; /* owned by the script's callback now */
out:
    free(overrides_s);
    free(doc_s);
    json_decref(doc);
    json_decref(tpl);
    json_decref(resource);
    api_op_free(op);
}

static void read_context(api_op_t *op)
{
    const char *tid = json_string_value(json_object_get(op->body, "templateId"));
    const char *args[] = {op->ptid, op->serial, tid != NULL ? tid : ""};
    if (tid != NULL && !cm_id_is_plain(tid, strlen(tid)))
        args[2] = ""; /* refused by check_resource after the read */
    api_op_eval(op, API_SCRIPT_WRITE_CONTEXT, 3, args, NULL, on_context);
}

void api_admin_write_pass(api_op_t *op, h2o_req_t *req)
{
    json_error_t jerr;
    json_t *body = json_loadb(req->entity.base != NULL ? req->entity.base : "", req->entity.len,
                              JSON_REJECT_DUPLICATES, &jerr);
    if (body == NULL) {
        reply_json_error(req, 400, json_pack("{s:i,s:i}", "line", jerr.line, "column", jerr.column),
                         "body is not valid JSON: %s at line %d, column %d", jerr.text, jerr.line,
                         jerr.column);
        api_op_free(op);
        return;
    }
    if (!json_is_object(body)) {
        json_decref(body);
        cm_httpd_send_error(req, 400, "body must be a JSON object");
        api_op_free(op);
        return;
    }
    if (op->is_patch && json_object_get(body, "templateId") == NULL &&
        json_object_get(body, "pass") == NULL) {
        json_t *wrapped = json_pack("{s:o}", "pass", body); /* a merge patch of the pass itself */
        body = wrapped;
    }
    op->body = body;
    read_context(op);
}

static void on_read(redisReply *reply, void *data)
{
    api_op_t *op = data;
    h2o_req_t *req = api_op_req_or_reply(op, reply, REDIS_REPLY_ARRAY, -1);
    if (req == NULL)
        goto out;
    if (reply->elements != 3) {
        cm_httpd_send_error(req, 404, "no pass %s/%s", op->ptid, op->serial);
        goto out;
    }
    json_t *res = json_pack("{s:s,s:s,s:I}", "passTypeIdentifier", op->ptid, "serialNumber", op->serial,
                            "registeredDevices", (json_int_t)reply->element[1]->integer);
    json_t *files = json_array();
    for (size_t i = 0; i < reply->element[2]->elements; i++) {
        const redisReply *f = reply->element[2]->element[i];
        /* names were checked when they were stored; a JSON string refuses anything else */
        json_t *name = f->type == REDIS_REPLY_STRING ? json_stringn(f->str, f->len) : NULL;
        if (name != NULL)
            json_array_append_new(files, name);
    }
    json_object_set_new(res, "files", files);
    redisReply *h = reply->element[0];
    for (size_t i = 0; i + 1 < h->elements; i += 2) {
        const char *k = h->element[i]->str, *v = h->element[i + 1]->str;
        if (strcmp(k, "templateId") == 0) {
            json_object_set_new(res, "templateId", json_string(v));
        } else if (strcmp(k, "overrides") == 0) {
            json_object_set_new(res, "pass", json_loads(v, 0, NULL));
        } else if (strcmp(k, "doc") == 0) {
            json_object_set_new(res, "passJson", json_loads(v, 0, NULL));
        } else if (strcmp(k, "authToken") == 0) {
            json_object_set_new(res, "authenticationToken", json_string(v));
        } else if (strcmp(k, "version") == 0) {
            json_object_set_new(res, "lastUpdated", json_string(v));
        } else if (strcmp(k, "lastModified") == 0 || strcmp(k, "createdAt") == 0) {
            char date[CM_HTTPDATE_SIZE];
            cm_httpdate_format((time_t)strtoll(v, NULL, 10), date);
            json_object_set_new(res, k, json_string(date));
        }
    }
    cm_httpd_send_json(req, 200, res);
    json_decref(res);
out:
    api_op_free(op);
}

void api_admin_get_pass(api_op_t *op, h2o_req_t *req)
{
    const char *args[] = {op->ptid, op->serial};
    api_op_eval(op, API_SCRIPT_READ_PASS, 2, args, NULL, on_read);
}
