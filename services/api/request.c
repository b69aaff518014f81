/* Shared handler helpers; see request.h. */
#include "request.h"
#include "common/keys.h"
#include "common/log.h"
#include "common/path.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

api_op_t *api_op_new(api_app_t *app, h2o_req_t *req)
{
    api_op_t *op = calloc(1, sizeof(*op));
    if (op == NULL)
        abort();
    op->app = app;
    op->guard = cm_req_guard_new(req);
    return op;
}

h2o_req_t *api_op_req(const api_op_t *op)
{
    return cm_req_guard_get(op->guard);
}

void api_op_free(api_op_t *op)
{
    if (op == NULL)
        return;
    cm_req_guard_release(op->guard);
    json_decref(op->body);
    OPENSSL_cleanse(op->presented_token, sizeof(op->presented_token));
    free(op);
}

int api_op_eval(api_op_t *op, const char *script, int nargs, const char **args, const size_t *lens,
                api_redis_cb cb)
{
    enum { MAX_ARGS = 512 };
    const char *argv[MAX_ARGS + 3];
    size_t argvlen[MAX_ARGS + 3];
    if (nargs > MAX_ARGS)
        abort();
    argv[0] = "EVAL";
    argvlen[0] = 4;
    argv[1] = script;
    argvlen[1] = strlen(script);
    argv[2] = "0";
    argvlen[2] = 1;
    for (int i = 0; i < nargs; i++) {
        argv[3 + i] = args[i];
        argvlen[3 + i] = lens != NULL ? lens[i] : strlen(args[i]);
    }
    if (api_redis_command(op->app->redis, cb, op, nargs + 3, argv, argvlen) != 0) {
        h2o_req_t *req = api_op_req(op);
        if (req != NULL)
            api_reply_redis_failure(req, NULL);
        api_op_free(op);
        return -1;
    }
    return 0;
}

h2o_req_t *api_op_req_or_reply(api_op_t *op, const redisReply *reply, int type, long elements)
{
    h2o_req_t *req = api_op_req(op);
    if (req == NULL)
        return NULL;
    if (reply == NULL || reply->type != type || (elements >= 0 && reply->elements != (size_t)elements)) {
        api_reply_redis_failure(req, reply);
        return NULL;
    }
    return req;
}

int api_retry_on_conflict(api_op_t *op, h2o_req_t *req, const redisReply *reply, void (*again)(api_op_t *op))
{
    if (reply->elements != 1 || reply->element[0]->integer != -409)
        return 0;
    if (++op->attempts < API_MAX_ATTEMPTS) {
        again(op);
        return 1;
    }
    cm_httpd_send_error(req, 409, "the pass is being changed concurrently, try again");
    return -1;
}

int api_applepass_or_reply(api_op_t *op, h2o_req_t *req)
{
    if (api_authorization(req, "ApplePass", op->presented_token, sizeof(op->presented_token)) == 0)
        return 0;
    cm_httpd_add_header(req, "WWW-Authenticate", "ApplePass");
    cm_httpd_send_error(req, 401, "missing Authorization: ApplePass <authenticationToken>");
    return -1;
}

int api_v1_path_or_reply(const api_app_t *app, h2o_req_t *req, cm_path_t *path, size_t *v1)
{
    cm_path_t base;
    if (cm_path_split(req->path.base, req->path.len, path) != 0) {
        cm_httpd_send_error(req, 400, "malformed path");
        return -1;
    }
    /* Routes are "<base>/v1/..." and "/v1/...": prefer the first reading when the path has the base
     * followed by "v1" (PUBLIC_URL may itself end in "/v1"). */
    *v1 = 0;
    if (cm_path_split(app->base_path, strlen(app->base_path), &base) == 0 && base.count > 0 &&
        base.count < path->count && cm_path_is(path, base.count, "v1")) {
        size_t i = 0;
        while (i < base.count && path->len[i] == base.len[i] &&
               memcmp(path->seg[i], base.seg[i], base.len[i]) == 0)
            i++;
        if (i == base.count)
            *v1 = base.count;
    }
    return 0;
}

int api_method_not_allowed(h2o_req_t *req, const char *allow)
{
    cm_httpd_add_header(req, "Allow", allow);
    cm_httpd_send_error(req, 405, "method not allowed here (allowed: %s)", allow);
    return 0;
}

void api_reply_redis_failure(h2o_req_t *req, const redisReply *reply)
{
    char path[128];
    cm_log_clean(path, sizeof(path), req->path.base, req->path.len);
    /* No reply, or Redis busy running a script, loading its data set or failing over: try again. */
    const char *err = reply != NULL && reply->type == REDIS_REPLY_ERROR ? reply->str : NULL;
    if (reply == NULL ||
        (err != NULL && (strncmp(err, "BUSY", 4) == 0 || strncmp(err, "LOADING", 7) == 0 ||
                         strncmp(err, "MASTERDOWN", 10) == 0 || strncmp(err, "TRYAGAIN", 8) == 0))) {
        CM_LOG(CM_LOG_ERROR, "event=redis_unavailable path=\"%s\" reason=\"%s\"", path,
               err != NULL ? err : "no connection or no reply");
        cm_httpd_add_header(req, "Retry-After", "5");
        cm_httpd_send_error(req, 503, "storage unavailable, try again later");
        return;
    }
    CM_LOG(CM_LOG_ERROR, "event=redis_error path=\"%s\" reason=\"%s\"", path,
           err != NULL ? err : "unexpected reply type");
    cm_httpd_send_error(req, 500, "internal storage error");
}

int api_authorization(h2o_req_t *req, const char *scheme, char *out, size_t out_size)
{
    h2o_iovec_t v = cm_httpd_header(req, "authorization");
    size_t sl = strlen(scheme);
    if (v.base == NULL || v.len < sl + 2 || strncasecmp(v.base, scheme, sl) != 0 || v.base[sl] != ' ')
        return -1;
    const char *c = v.base + sl + 1;
    size_t cl = v.len - sl - 1;
    while (cl > 0 && *c == ' ')
        c++, cl--;
    while (cl > 0 && c[cl - 1] == ' ')
        cl--;
    if (cl == 0 || cl >= out_size)
        return -1;
    memcpy(out, c, cl);
    out[cl] = '\0';
    return 0;
}

int api_secret_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return 0;
    return CRYPTO_memcmp(a, b, la) == 0;
}

int api_path_id(const cm_path_t *p, size_t i, int (*check)(const char *, size_t), char *out, size_t size)
{
    if (i >= p->count || p->len[i] >= size || !check(p->seg[i], p->len[i]))
        return -1;
    memcpy(out, p->seg[i], p->len[i] + 1);
    return 0;
}

static void on_authorize(redisReply *reply, void *data)
{
    api_op_t *op = data;
    h2o_req_t *req = api_op_req_or_reply(op, reply, REDIS_REPLY_ARRAY, 3);
    if (req == NULL)
        goto done;
    redisReply *token = reply->element[0];
    if (token->type != REDIS_REPLY_STRING) {
        cm_httpd_send_error(req, 404, "no pass %s/%s", op->ptid, op->serial);
        goto done;
    }
    if (!api_secret_equal(token->str, op->presented_token)) {
        char path[128];
        CM_LOG(CM_LOG_INFO, "event=unauthorized ptid=%s serial=%s path=\"%s\"", op->ptid, op->serial,
               cm_log_clean(path, sizeof(path), req->path.base, req->path.len));
        cm_httpd_send_error(req, 401, "authentication token does not match");
        goto done;
    }
    op->version =
        reply->element[1]->type == REDIS_REPLY_STRING ? strtoll(reply->element[1]->str, NULL, 10) : 0;
    op->last_modified =
        reply->element[2]->type == REDIS_REPLY_STRING ? (time_t)strtoll(reply->element[2]->str, NULL, 10) : 0;
    op->next(op, req);
    return;
done:
    api_op_free(op);
}

void api_pass_authorize(api_op_t *op, api_op_step_fn next)
{
    char key[CM_KEY_MAX];
    snprintf(key, sizeof(key), CM_KEY_PASS_FMT, op->ptid, op->serial);
    const char *argv[] = {"HMGET", key, "authToken", "version", "lastModified"};
    op->next = next;
    if (api_redis_command(op->app->redis, on_authorize, op, 5, argv, NULL) != 0) {
        h2o_req_t *req = api_op_req(op);
        if (req != NULL)
            api_reply_redis_failure(req, NULL);
        api_op_free(op);
    }
}
