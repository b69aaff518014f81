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
 *   cm_httpd_set_metrics(httpd, registry);           // optional: http_requests_total and latencies
 *   cm_httpd_start(httpd);                           // binds and listens; errors name the address
 *   ... uv_run ...
 *   cm_httpd_stop(httpd);                            // stops accepting; in-flight requests finish
 *   while (cm_httpd_drain(httpd, 1) > 0) ...         // from a timer: until every connection closed
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
/*
 * Request metrics, for every request the server's handler sees (requests h2o refuses on its own before
 * any handler, such as a malformed request line or a body announced larger than max_body, are not
 * counted). Registers in metrics, which must outlive the server, two families:
 *   http_requests_total{route,method,status}   counter
 *   http_request_duration_seconds{route}       histogram, cm_metrics_latency_buckets
 * route is the prefix given to cm_httpd_route that matched (also when its handler then declined and
 * h2o answered 404), or "none"; never the request's path, so the series stay few. method is GET, HEAD,
 * POST, PUT, PATCH or DELETE, else "other". status is the status the response was started with, or
 * "0" when the request ended without one (its connection closed first). A request is counted once, when
 * h2o disposes of it: after the last byte of the answer was handed to the socket, or when its
 * connection closed. The duration runs from the moment the whole request (body included) reached the
 * handler to that disposal. Before cm_httpd_start only; at most one server per registry (a family
 * name registered twice aborts). Without this call nothing is counted.
 */
struct cm_metrics;
void cm_httpd_set_metrics(cm_httpd_t *httpd, struct cm_metrics *metrics);
/* Binds and listens. Returns 0, or -1 after logging why (address in use, bad address). */
int cm_httpd_start(cm_httpd_t *httpd);
/* The port the server listens on (the one chosen when listen asked for port 0), or -1 when it does not
 * listen. */
int cm_httpd_port(const cm_httpd_t *httpd);
/* Stops accepting new connections; connections already open are served to the end. From then on every
 * HTTP/1 response says "Connection: close" and h2o closes its connection once it is sent, also for the
 * requests that were in flight when stop was called (h2o 2.2.5 on its own only does so for requests it
 * reads after the stop); HTTP/2 connections get GOAWAY from h2o. Idempotent. */
void cm_httpd_stop(cm_httpd_t *httpd);

/* How long the server must have had no request in flight, none starting and none ending, before
 * cm_httpd_drain closes the idle connections left. */
#define CM_HTTPD_DRAIN_QUIET_MS 200

/*
 * One step of a graceful shutdown, after cm_httpd_stop; call it again and again (a 10-50 ms timer)
 * until it returns 0. Returns the number of client connections still open.
 *
 * Connections that carry a request close by themselves once it is answered (see cm_httpd_stop). What
 * stays open are idle keep-alive connections, which h2o 2.2.5 would keep until their client sends
 * something or its 10 s timeout. When close_idle is set (the caller has no work of its own left that
 * could still answer a request), no request is in flight and none started or ended for
 * CM_HTTPD_DRAIN_QUIET_MS, drain shuts each remaining connection down (shutdown(2)) unless bytes of a
 * request wait unread on it, so that h2o reads EOF and closes it through its own path: nothing is cut
 * while h2o still uses it. A client that sends a request on such a connection at that very moment
 * sees the connection closed (or reset) before any byte of an answer and its request was not
 * processed: the race every HTTP/1.1 server has when it closes an idle connection, which clients
 * handle by retrying on a new connection (RFC 9112 section 9.3.1). The quiet time makes it unlikely for
 * a client that keeps sending: its next request arrives on the connection first and gets its answer
 * with "Connection: close".
 *
 * Loop thread only.
 */
size_t cm_httpd_drain(cm_httpd_t *httpd, int close_idle);
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
