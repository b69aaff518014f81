/*
 * Health and metrics over HTTP: GET/HEAD /healthz, /readyz and /metrics.
 *
 * Services with an event loop (api, signer) add the routes to their own cm_httpd with
 * cm_status_routes. A service without one (the pusher) runs cm_status_server_start: a thread of its
 * own with a uv loop and a cm_httpd serving only these routes.
 *
 *   GET /healthz  200 {"status":"ok"}
 *   GET /readyz   200 {"status":"ready"}, or 503 {"status":"not ready","reason":"..."}
 *   GET /metrics  200 text/plain; version=0.0.4; charset=utf-8, cm_metrics_render's text
 *   HEAD          the same headers, no body
 *   other methods 405 {"error":"..."} with "Allow: GET, HEAD"
 *   /healthz/x    404 (the paths are matched exactly; a query string is ignored)
 */
#ifndef COMMON_STATUS_SERVER_H
#define COMMON_STATUS_SERVER_H

#include <stddef.h>

/* Declared here so that this header does not pull in h2o (common/httpd.h has the same typedefs). */
typedef struct cm_httpd cm_httpd_t;
typedef struct cm_metrics cm_metrics_t;

/* Called on the status server's thread (the loop thread of the cm_httpd for cm_status_routes), so
 * it must be thread-safe and quick: it runs inside a request. Returns 1 when ready, 0 when not, with
 * a short reason written to reason (e.g. "redis unreachable: connection refused"); the reason is
 * cut at reason_size - 1 bytes, and bytes outside printable ASCII are shown as '?'. */
typedef int (*cm_ready_fn)(void *data, char *reason, size_t reason_size);

/* Adds the three routes to httpd (before cm_httpd_start). metrics may be NULL (an empty /metrics);
 * ready may be NULL (always ready). metrics and ready_data must outlive the server. The few bytes
 * that tie them to the routes are kept for the life of the process: a cm_httpd has no hook to free
 * them with, and a started one is never freed anyway. */
void cm_status_routes(cm_httpd_t *httpd, cm_metrics_t *metrics, cm_ready_fn ready, void *ready_data);

/*
 * A status server on a thread of its own, for services without an event loop.
 *
 * cm_status_server_start listens on listen ("host:port", ":port" for every interface, port 0 for
 * any free port) and returns 0 once it accepts connections, with *out set. On failure it returns -1
 * with a message in err (e.g. "cannot listen on 127.0.0.1:9100: address already in use"), and no
 * thread is left behind. The thread blocks every signal, so signals go to the service's threads.
 */
typedef struct cm_status_server cm_status_server_t;
int cm_status_server_start(const char *listen, cm_metrics_t *metrics, cm_ready_fn ready, void *ready_data,
                           cm_status_server_t **out, char *err, size_t err_size);
/* The port the server listens on (the one chosen when listen asked for port 0). */
int cm_status_server_port(const cm_status_server_t *s);
/* Stops accepting, closes the open connections (a response being written is cut short), and joins
 * the thread; accepts NULL. After it returns, ready and metrics are no longer used and the port is
 * free. Takes at most about a second.
 *
 * h2o 2.2.5 cannot dispose of a started context (see cm_httpd_free): the cm_httpd of a stopped
 * server and its h2o context (about 30 KB) stay allocated, and reachable, until the process exits:
 * meant to be started once per process. Everything else (the loop, its handles and file
 * descriptors, the thread's h2o buffers) is released, with one exception: after a client spoke
 * HTTP/2 (h2c) to the server, h2o's per-thread HTTP/2 write buffer (80 KB, in a thread-local list
 * h2o offers no way to empty) is lost when the thread ends, and LeakSanitizer reports it at exit.
 * Prometheus and kubelet probes speak HTTP/1.1. */
void cm_status_server_stop(cm_status_server_t *s);

#endif
