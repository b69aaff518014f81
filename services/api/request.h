/*
 * Per-request state for the api's asynchronous handlers, and the helpers they share.
 *
 * A handler that needs Redis or the signer creates an api_op_t (api_op_new), fills what it parsed,
 * and starts the operation with the op as callback data. Each callback first takes the request with
 * api_op_req(): NULL means the client went away, and the callback only frees the op (api_op_free).
 * An op is freed exactly once, by whichever callback ends the request.
 */
#ifndef API_REQUEST_H
#define API_REQUEST_H

#include <time.h>

#include "app.h"
#include "common/ids.h"
#include "redis_async.h"

struct json_t;

typedef struct api_op api_op_t;
typedef void (*api_op_step_fn)(api_op_t *op, h2o_req_t *req);

struct api_op {
    api_app_t *app;
    cm_req_guard_t *guard;
    char ptid[CM_ID_MAX + 1];
    char serial[CM_ID_MAX + 1];
    char dli[CM_ID_MAX + 1];
    char template_id[CM_ID_MAX + 1];
    char presented_token[CM_AUTH_TOKEN_MAX + 1]; /* from Authorization: ApplePass <token> */
    char push_token[CM_PUSH_TOKEN_MAX + 1];
    char file[256];       /* a pass's own file: its path inside the bundle ("fr.lproj/logo.png") */
    long long version;    /* the pass's version, read by api_pass_authorize */
    time_t last_modified; /* the pass's Last-Modified second */
    api_op_step_fn next;  /* continuation after api_pass_authorize */
    struct json_t *body;  /* parsed request body, owned */
    int is_patch, attempts;
};

api_op_t *api_op_new(api_app_t *app, h2o_req_t *req);
h2o_req_t *api_op_req(const api_op_t *op);
void api_op_free(api_op_t *op);

/* EVAL script with the given arguments (no keys). On an immediate failure (Redis not connected) it
 * replies 503 to the request itself, frees op and returns -1; otherwise cb gets op as data. */
int api_op_eval(api_op_t *op, const char *script, int nargs, const char **args, const size_t *lens,
                api_redis_cb cb);

/* For a Redis callback: the request, when its client is still there and the reply has the expected type
 * (and exactly `elements` elements unless elements < 0). Otherwise NULL, after answering 503/500 when the
 * client is still there; the callback then only frees op. */
h2o_req_t *api_op_req_or_reply(api_op_t *op, const struct redisReply *reply, int type, long elements);

/* Each round of a write race has a winner, so this many concurrent writers of one pass all succeed. */
#define API_MAX_ATTEMPTS 100

/* For the array reply of a write script that answers {-409} when the pass's version moved since it was
 * read. 0 when reply is not that. Otherwise, for up to API_MAX_ATTEMPTS writes in all, calls again(op)
 * (to read the pass again and retry; it now owns op) and returns 1: the callback just returns. After the
 * last attempt, answers 409 and returns -1: the callback then frees op. */
int api_retry_on_conflict(api_op_t *op, h2o_req_t *req, const struct redisReply *reply,
                          void (*again)(api_op_t *op));

/* Reads "Authorization: ApplePass <token>" into op->presented_token. Returns 0, or answers 401 and
 * returns -1 (the caller still owns op). */
int api_applepass_or_reply(api_op_t *op, h2o_req_t *req);

/* Splits the request path and finds Apple's "v1" segment: right after PUBLIC_URL's path when the request
 * starts with it, else first. Returns 0 with *v1 its index, or answers 400 and returns -1. */
struct cm_path;
int api_v1_path_or_reply(const api_app_t *app, h2o_req_t *req, struct cm_path *path, size_t *v1);

/* Answers 405 with an Allow header and returns 0 (a route handler's "taken"). */
int api_method_not_allowed(h2o_req_t *req, const char *allow);

/* Replies 503 (Redis unreachable: reply NULL) or 500 (a Redis error reply), logging the cause. */
void api_reply_redis_failure(h2o_req_t *req, const struct redisReply *reply);

/* Reads "Authorization: <scheme> <credentials>" (scheme compared case-insensitively). Copies the
 * credentials into out (NUL-terminated). Returns 0, or -1 when the header is missing, has another
 * scheme, or the credentials are empty or longer than out_size - 1. */
int api_authorization(h2o_req_t *req, const char *scheme, char *out, size_t out_size);

/* Compares two NUL-terminated secrets in constant time (for equal lengths). 1 when equal. */
int api_secret_equal(const char *a, const char *b);

/* Copies segment i of a split path into out when check accepts it; 0 on success, -1 otherwise. */
int api_path_id(const struct cm_path *p, size_t i, int (*check)(const char *, size_t), char *out,
                size_t size);

/*
 * The authorization step shared by register, unregister and get-pass: reads the pass's authToken,
 * version and lastModified. Replies 404 (no such pass), 401 (token differs) or 503 by itself and frees
 * op; otherwise sets op->version and op->last_modified and calls next(op, req). op->ptid, op->serial
 * and op->presented_token must be set.
 */
void api_pass_authorize(api_op_t *op, api_op_step_fn next);

#endif
