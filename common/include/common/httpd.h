/*
 * A small h2o (libuv flavour) HTTP/1.1 server shared by the api and the signer, plus the helpers
 * every handler needs: JSON replies, error replies, header lookup, and a guard that tells an
 * asynchronous callback whether its request is still alive.
 *
 * Threading: everything here runs on the thread that owns the uv loop given to cm_httpd_new.
 *
 * Usage:
 *   cm_httpd_new(loop, "0.0.0.0:8080", max_body, &httpd);
 *   cm_httpd_route(httpd, "/v1", on_v1, app);        // prefix routes, before cm_httpd_start
 *   cm_httpd_start(httpd);                           // binds and listens; errors name the address
 *   ... uv_run ...
 *   cm_httpd_stop(httpd);                            // stops accepting; in-flight requests finish
 *   cm_httpd_free(httpd);                            // after the loop ended
 */
#ifndef COMMON_HTTPD_H
#define COMMON_HTTPD_H

#include <stddef.h>
#include <h2o.h>

typedef struct cm_httpd cm_httpd_t;
struct json_t;

/* A route handler. Returns 0 when it took the request (answered it now or will later), -1 to let
 * h2o answer 404. data is the pointer given to cm_httpd_route. */
typedef int (*cm_httpd_handler_fn)(void *data, h2o_req_t *req);

/* Creates a server on loop. listen is "host:port" or ":port" (all interfaces). Request bodies larger
 * than max_body bytes are refused with 413 (h2o's own plain-text answer) before a handler sees them;
 * max_body is also what one request can make the server buffer. */
int cm_httpd_new(h2o_loop_t *loop, const char *listen, size_t max_body, cm_httpd_t **out);
/* Registers a handler for every path starting with prefix (longest prefix wins). Before start only. */
void cm_httpd_route(cm_httpd_t *httpd, const char *prefix, cm_httpd_handler_fn fn, void *data);
/* Binds and listens. Returns 0, or -1 after logging why (address in use, bad address). */
int cm_httpd_start(cm_httpd_t *httpd);
/* Stops accepting new connections; connections already open are served to the end. */
void cm_httpd_stop(cm_httpd_t *httpd);
/* Frees a server that was never started. A started one lives until the process exits (h2o 2.2.5 can't
 * dispose of a context whose connections are still open). Accepts NULL. */
void cm_httpd_free(cm_httpd_t *httpd);
/* Reads a listen address: "host:port", ":port" (all interfaces) or "[v6]:port", the port 0 to 65535 (not
 * empty). Returns 0 with *ss filled in (zeroed first), or -1. */
struct sockaddr_storage;
int cm_httpd_parse_listen(const char *listen, struct sockaddr_storage *ss);
/* Number of requests that have started and not yet been disposed (for graceful shutdown). */
size_t cm_httpd_inflight(const cm_httpd_t *httpd);

/* Replies with status and the JSON value (serialised compactly, Content-Type application/json).
 * Does not take the reference: the caller still owns json. */
void cm_httpd_send_json(h2o_req_t *req, int status, const struct json_t *json);
/* Replies {"error": message} with status; message is printf-formatted. */
void cm_httpd_send_error(h2o_req_t *req, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Replies with status, a Content-Type and the body bytes (copied into the request pool). For HEAD
 * requests the headers (with Content-Length) are sent and the body is not. */
void cm_httpd_send_bytes(h2o_req_t *req, int status, const char *content_type, const void *body, size_t len);
/* The same without the copy, for large bodies: takes body (malloc'd), which is freed with the request
 * (also when the client goes away before it was sent). */
void cm_httpd_send_owned(h2o_req_t *req, int status, const char *content_type, void *body, size_t len);
/* Replies with status and an empty body (204, 304, 200 "no content"). */
void cm_httpd_send_empty(h2o_req_t *req, int status);

/* The value of a request header (case-insensitive name), or a zero-length iovec with base NULL. */
h2o_iovec_t cm_httpd_header(h2o_req_t *req, const char *lower_case_name);
/* Adds a response header; name and value are copied into the request pool. */
void cm_httpd_add_header(h2o_req_t *req, const char *name, const char *value);

/*
 * Request guard: an asynchronous callback (Redis reply, signer answer, worker thread result) must not
 * touch a request whose client went away. Create a guard before starting the operation and pass it as
 * the callback's data; in the callback, cm_req_guard_get returns the request, or NULL when h2o has
 * disposed of it. Every guard is released exactly once, by the code that created it or the callback.
 */
typedef struct cm_req_guard cm_req_guard_t;
cm_req_guard_t *cm_req_guard_new(h2o_req_t *req);
h2o_req_t *cm_req_guard_get(const cm_req_guard_t *guard);
void cm_req_guard_release(cm_req_guard_t *guard);

#endif
