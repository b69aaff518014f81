/*
 * h2o (libuv) server wrapper; see common/httpd.h.
 *
 * Design: h2o gets a single handler at "/", and this file dispatches by prefix itself. h2o's own
 * path matching would not see "//v1/..." (a webServiceURL with a trailing slash, spec pitfall 11) as
 * "/v1/...", so the prefix is compared against the path with runs of '/' collapsed.
 *
 * Every request the handler sees gets a record in its pool (h2o_mem_alloc_shared): the record's
 * dispose callback, which h2o runs when it disposes of the request, is the one place that counts it
 * (in-flight counter, metrics, last activity for the drain). Accepted connections are kept in a list
 * (their uv handle is the first member of a struct conn, freed by the close callback h2o calls), so
 * the drain counts and closes exactly this server's connections, whatever else runs on the loop.
 */
#include "common/httpd.h"
#include "common/log.h"
#include "common/metrics.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#define MAX_ROUTES 16

struct route {
    const char *prefix;
    size_t prefix_len;
    cm_httpd_handler_fn fn;
    void *data;
};

struct dispatch_handler {
    h2o_handler_t super;
    cm_httpd_t *httpd;
};

/* An accepted connection; tcp first, so the handle h2o gives its close callback is the struct. */
struct conn {
    uv_tcp_t tcp;
    h2o_linklist_t link; /* in cm_httpd.conns */
};

/* Lives in the request's pool; see on_request_dispose. */
struct request_record {
    cm_httpd_t *httpd;
    h2o_req_t *req;
    const char *route;
    const char *method;
    uint64_t started_ns;
};

struct cm_httpd {
    h2o_loop_t *loop;
    char *listen;
    h2o_globalconf_t config;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    uv_tcp_t listener;
    int listening, context_ready;
    struct route routes[MAX_ROUTES];
    size_t route_count;
    size_t inflight;
    size_t max_body;
    h2o_linklist_t conns;   /* open client connections (struct conn) */
    uint64_t last_activity; /* loop time (ms) a request last started or ended */
    cm_metric_t *requests;  /* http_requests_total, or NULL */
    cm_metric_t *durations; /* http_request_duration_seconds, or NULL */
};

struct cm_req_guard {
    h2o_req_t *req;
    int refs; /* one for the pool slot, one for the owner of the asynchronous operation */
};

/* Copies the path (without the query) collapsing runs of '/' into one. */
static size_t collapse_path(const h2o_req_t *req, char *out, size_t size)
{
    size_t n = 0;
    for (size_t i = 0; i < req->path.len && req->path.base[i] != '?' && n + 1 < size; i++) {
        char c = req->path.base[i];
        if (c == '/' && n > 0 && out[n - 1] == '/')
            continue;
        out[n++] = c;
    }
    out[n] = '\0';
    return n;
}

/* The method as a metric label: one of the methods the services use, else "other". */
static const char *method_label(const h2o_req_t *req)
{
    static const char *const known[] = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"};
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (h2o_memis(req->method.base, req->method.len, known[i], strlen(known[i])))
            return known[i];
    return "other";
}

/* h2o disposes of the request (answer sent, or connection closed): the pool, and this record with it,
 * is being cleared, but req itself is still valid. */
static void on_request_dispose(void *p)
{
    struct request_record *rec = p;
    cm_httpd_t *httpd = rec->httpd;
    httpd->inflight--;
    httpd->last_activity = uv_now(httpd->loop);
    if (httpd->requests == NULL)
        return;
    char status[16];
    snprintf(status, sizeof(status), "%d", rec->req->res.status > 0 ? rec->req->res.status : 0);
    cm_metric_add(httpd->requests, 1, (const char *const[]){rec->route, rec->method, status});
    cm_metric_observe(httpd->durations, (double)(uv_hrtime() - rec->started_ns) / 1e9,
                      (const char *const[]){rec->route});
}

static void track_request(cm_httpd_t *httpd, h2o_req_t *req, const char *route)
{
    struct request_record *rec = h2o_mem_alloc_shared(&req->pool, sizeof(*rec), on_request_dispose);
    *rec = (struct request_record){httpd, req, route, method_label(req), uv_hrtime()};
    httpd->inflight++;
    httpd->last_activity = uv_now(httpd->loop);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    cm_httpd_t *httpd = ((struct dispatch_handler *)self)->httpd;
    char path[1024];
    size_t len = collapse_path(req, path, sizeof(path));
    const struct route *best = NULL;
    for (size_t i = 0; i < httpd->route_count; i++) {
        const struct route *r = &httpd->routes[i];
        if (len < r->prefix_len || memcmp(path, r->prefix, r->prefix_len) != 0)
            continue;
        if (len > r->prefix_len && path[r->prefix_len] != '/' && r->prefix[r->prefix_len - 1] != '/')
            continue;
        if (best == NULL || r->prefix_len > best->prefix_len)
            best = r;
    }
    track_request(httpd, req, best != NULL ? best->prefix : "none");
    if (best == NULL)
        return -1;
    if (req->entity.len > httpd->max_body) {
        cm_httpd_send_error(req, 413, "the request body is larger than %zu bytes", httpd->max_body);
        return 0;
    }
    return best->fn(best->data, req);
}

int cm_httpd_new(h2o_loop_t *loop, const char *listen, size_t max_body, cm_httpd_t **out)
{
    cm_httpd_t *httpd = calloc(1, sizeof(*httpd));
    if (httpd == NULL)
        abort();
    httpd->loop = loop;
    httpd->listen = strdup(listen);
    h2o_linklist_init_anchor(&httpd->conns);
    h2o_config_init(&httpd->config);
    /* h2o buffers a whole body before any handler runs, so its limit is the memory one request may
     * hold: it is max_body itself. A body announced larger is refused by h2o (plain-text 413) before
     * it is read; a chunked one that grows past it too. The dispatcher's own check (a JSON 413) stays
     * for bodies h2o counted differently. */
    httpd->max_body = max_body;
    httpd->config.max_request_entity_size = max_body;
    httpd->config.server_name = h2o_iovec_init(H2O_STRLIT("passkit"));
    h2o_hostconf_t *host =
        h2o_config_register_host(&httpd->config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *pathconf = h2o_config_register_path(host, "/", 0);
    struct dispatch_handler *h = (void *)h2o_create_handler(pathconf, sizeof(*h));
    h->super.on_req = on_req;
    h->httpd = httpd;
    *out = httpd;
    return 0;
}

void cm_httpd_route(cm_httpd_t *httpd, const char *prefix, cm_httpd_handler_fn fn, void *data)
{
    if (httpd->route_count == MAX_ROUTES)
        abort();
    struct route *r = &httpd->routes[httpd->route_count++];
    r->prefix = prefix;
    r->prefix_len = strlen(prefix);
    r->fn = fn;
    r->data = data;
}

void cm_httpd_set_metrics(cm_httpd_t *httpd, cm_metrics_t *metrics)
{
    httpd->requests = cm_metrics_counter(metrics, "http_requests_total",
                                         "HTTP requests answered, by route prefix, method and status (0: "
                                         "the connection closed before an answer started).",
                                         "route,method,status");
    httpd->durations = cm_metrics_histogram(
        metrics, "http_request_duration_seconds",
        "HTTP requests, from the whole request read to the last byte of the answer written, by route prefix.",
        "route", cm_metrics_latency_buckets, cm_metrics_latency_nbuckets);
}

/* h2o closed the connection's socket (or the accept failed). */
static void on_conn_closed(uv_handle_t *h)
{
    struct conn *c = (struct conn *)h;
    h2o_linklist_unlink(&c->link);
    free(c);
}

static void on_accept(uv_stream_t *listener, int status)
{
    cm_httpd_t *httpd = listener->data;
    if (status != 0)
        return;
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        abort();
    h2o_linklist_insert(&httpd->conns, &c->link);
    uv_tcp_init(listener->loop, &c->tcp);
    if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_closed);
    h2o_accept(&httpd->accept_ctx, sock);
}

int cm_httpd_parse_listen(const char *listen, struct sockaddr_storage *ss)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (colon == NULL || (size_t)(colon - listen) >= sizeof(host))
        return -1;
    memcpy(host, listen, colon - listen);
    host[colon - listen] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535)
        return -1;
    memset(ss, 0, sizeof(*ss));
    if (host[0] == '[') { /* [::1]:8080 */
        size_t hl = strlen(host);
        if (host[hl - 1] != ']')
            return -1;
        host[hl - 1] = '\0';
        return uv_ip6_addr(host + 1, (int)port, (struct sockaddr_in6 *)ss) == 0 ? 0 : -1;
    }
    return uv_ip4_addr(host[0] != '\0' ? host : "0.0.0.0", (int)port, (struct sockaddr_in *)ss) == 0 ? 0 : -1;
}

int cm_httpd_start(cm_httpd_t *httpd)
{
    struct sockaddr_storage ss;
    if (cm_httpd_parse_listen(httpd->listen, &ss) != 0) {
        CM_LOG(CM_LOG_ERROR, "event=listen_failed address=\"%s\" reason=\"not host:port\"", httpd->listen);
        return -1;
    }
    h2o_context_init(&httpd->ctx, httpd->loop, &httpd->config);
    httpd->context_ready = 1;
    httpd->accept_ctx.ctx = &httpd->ctx;
    httpd->accept_ctx.hosts = httpd->config.hosts;
    uv_tcp_init(httpd->loop, &httpd->listener);
    httpd->listener.data = httpd;
    httpd->listening = 1;
    int r = uv_tcp_bind(&httpd->listener, (struct sockaddr *)&ss, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&httpd->listener, 1024, on_accept);
    if (r != 0) {
        CM_LOG(CM_LOG_ERROR, "event=listen_failed address=\"%s\" reason=\"%s\"", httpd->listen,
               uv_strerror(r));
        cm_httpd_stop(httpd);
        return -1;
    }
    CM_LOG(CM_LOG_INFO, "event=listening address=\"%s\"", httpd->listen);
    return 0;
}

int cm_httpd_port(const cm_httpd_t *httpd)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (!httpd->listening || uv_tcp_getsockname(&httpd->listener, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    return ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                          : ((struct sockaddr_in *)&ss)->sin_port);
}

void cm_httpd_stop(cm_httpd_t *httpd)
{
    if (!httpd->listening)
        return;
    httpd->listening = 0;
    uv_close((uv_handle_t *)&httpd->listener, NULL);
    h2o_context_request_shutdown(&httpd->ctx);
}

size_t cm_httpd_inflight(const cm_httpd_t *httpd)
{
    return httpd->inflight;
}

/* 1 when the connection's socket has no unread bytes (nothing a request could be made of). */
static int nothing_to_read(uv_os_fd_t fd)
{
    int n = 0;
    return ioctl(fd, FIONREAD, &n) == 0 && n == 0;
}

size_t cm_httpd_drain(cm_httpd_t *httpd, int close_idle)
{
    int quiet = close_idle && httpd->inflight == 0 &&
                uv_now(httpd->loop) - httpd->last_activity >= CM_HTTPD_DRAIN_QUIET_MS;
    size_t open = 0;
    for (h2o_linklist_t *node = httpd->conns.next; node != &httpd->conns; node = node->next) {
        struct conn *c = H2O_STRUCT_FROM_MEMBER(struct conn, link, node);
        uv_os_fd_t fd;
        if (uv_is_closing((uv_handle_t *)&c->tcp))
            continue;
        open++;
        if (quiet && uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 && nothing_to_read(fd))
            shutdown(fd, SHUT_RDWR); /* h2o reads EOF and closes the connection itself */
    }
    return open;
}

void cm_httpd_free(cm_httpd_t *httpd)
{
    if (httpd == NULL)
        return;
    /* h2o 2.2.5 cannot close the connections still attached to a context, and disposing of a context
     * with live connections aborts; so the context is only disposed of when it was never started. A
     * started server lives until the process exits (its memory stays reachable, not leaked). */
    if (httpd->context_ready)
        return;
    h2o_config_dispose(&httpd->config);
    free(httpd->listen);
    free(httpd);
}

h2o_iovec_t cm_httpd_header(h2o_req_t *req, const char *lower_case_name)
{
    size_t nlen = strlen(lower_case_name);
    for (size_t i = 0; i < req->headers.size; i++) {
        h2o_header_t *h = &req->headers.entries[i];
        if (h->name->len == nlen && h2o_lcstris(h->name->base, h->name->len, lower_case_name, nlen))
            return h->value;
    }
    return h2o_iovec_init(NULL, 0);
}

void cm_httpd_add_header(h2o_req_t *req, const char *name, const char *value)
{
    size_t nlen = strlen(name);
    char *n = h2o_mem_alloc_pool(&req->pool, nlen);
    for (size_t i = 0; i < nlen; i++) /* HTTP/2 forbids upper-case field names */
        n[i] = (name[i] >= 'A' && name[i] <= 'Z') ? (char)(name[i] - 'A' + 'a') : name[i];
    h2o_iovec_t v = h2o_strdup(&req->pool, value, SIZE_MAX);
    h2o_add_header_by_str(&req->pool, &req->res.headers, n, nlen, 1, NULL, v.base, v.len);
}

/* The reason phrase for the statuses the services send (HTTP/1.1 prints it; HTTP/2 has none). */
static const char *reason_phrase(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 204:
        return "No Content";
    case 304:
        return "Not Modified";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 422:
        return "Unprocessable Content";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    default:
        return "";
    }
}

/* Starts the response with status (the headers are set). Once cm_httpd_stop was called it says
 * "Connection: close": h2o 2.2.5 only turns keep-alive off for requests it parses after the shutdown
 * request, so an answer to a request that was in flight would otherwise invite the client to send
 * another request on a connection about to close. */
static void start_response(h2o_req_t *req, int status)
{
    static h2o_generator_t generator = {NULL, NULL};
    req->res.status = status;
    req->res.reason = reason_phrase(status);
    if (req->conn->ctx->shutdown_requested)
        req->http1_is_persistent = 0;
    h2o_start_response(req, &generator);
}

/* Sets the status, Content-Type and Content-Length and starts the response. Returns 0 when the body is
 * to follow, or -1 after ending a HEAD response (headers only). */
static int start_reply(h2o_req_t *req, int status, const char *content_type, size_t len)
{
    if (content_type != NULL)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type,
                       strlen(content_type));
    req->res.content_length = len;
    start_response(req, status);
    if (h2o_memis(req->input.method.base, req->input.method.len, H2O_STRLIT("HEAD"))) {
        h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
        return -1;
    }
    return 0;
}

void cm_httpd_send_bytes(h2o_req_t *req, int status, const char *content_type, const void *body, size_t len)
{
    if (start_reply(req, status, content_type, len) != 0)
        return;
    h2o_iovec_t buf = h2o_strdup(&req->pool, body, len);
    h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
}

static void free_owned(void *slot)
{
    free(*(void **)slot);
}

void cm_httpd_send_owned(h2o_req_t *req, int status, const char *content_type, void *body, size_t len)
{
    void **slot = h2o_mem_alloc_shared(&req->pool, sizeof(*slot), free_owned);
    *slot = body; /* freed with the request's pool, once h2o no longer needs the bytes */
    if (start_reply(req, status, content_type, len) != 0)
        return;
    h2o_iovec_t buf = h2o_iovec_init(body, len);
    h2o_send(req, &buf, 1, H2O_SEND_STATE_FINAL);
}

void cm_httpd_send_empty(h2o_req_t *req, int status)
{
    if (status != 204 && status != 304)
        req->res.content_length = 0;
    start_response(req, status);
    h2o_send(req, NULL, 0, H2O_SEND_STATE_FINAL);
}

void cm_httpd_send_json(h2o_req_t *req, int status, const json_t *json)
{
    char *body = json_dumps(json, JSON_COMPACT);
    if (body == NULL)
        abort();
    cm_httpd_send_bytes(req, status, "application/json", body, strlen(body));
    free(body);
}

void cm_httpd_send_error(h2o_req_t *req, int status, const char *fmt, ...)
{
    char message[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof(message), fmt, ap);
    va_end(ap);
    json_t *obj = json_pack("{s:s}", "error", message);
    cm_httpd_send_json(req, status, obj);
    json_decref(obj);
}

static void on_guard_dispose(void *p)
{
    cm_req_guard_t *g = *(cm_req_guard_t **)p;
    g->req = NULL;
    if (--g->refs == 0)
        free(g);
}

cm_req_guard_t *cm_req_guard_new(h2o_req_t *req)
{
    cm_req_guard_t *g = malloc(sizeof(*g));
    if (g == NULL)
        abort();
    g->req = req;
    g->refs = 2;
    cm_req_guard_t **slot = h2o_mem_alloc_shared(&req->pool, sizeof(*slot), on_guard_dispose);
    *slot = g;
    return g;
}

h2o_req_t *cm_req_guard_get(const cm_req_guard_t *guard)
{
    return guard->req;
}

void cm_req_guard_release(cm_req_guard_t *guard)
{
    if (guard != NULL && --guard->refs == 0)
        free(guard);
}
