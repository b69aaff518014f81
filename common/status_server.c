/*
 * /healthz, /readyz and /metrics; see common/status_server.h.
 *
 * Design of the threaded server: the thread owns a uv loop and a cm_httpd on it. The loop and its
 * wake-up handle are made before the thread starts, so that stop can always signal it; every other
 * uv and h2o call (binding included) happens on the thread, and the starting thread waits on a
 * semaphore for the outcome. cm_status_server_stop wakes the loop with uv_async_send, and the loop
 * thread then
 *   1. stops accepting (cm_httpd_stop),
 *   2. shutdown(2)s every open connection, so h2o reads EOF (or fails a write) and closes it the
 *      way it closes any connection a client dropped: h2o 2.2.5 has no call that closes a
 *      context's connections, and its idle keep-alive connections would linger up to 10 s,
 *   3. waits until no TCP handle is left, then closes what remains on the loop: its own handles
 *      and those of the h2o context, which can never be disposed of (cm_httpd_free keeps a
 *      started server). The cm_httpd itself is put on a list of things kept for the life of the
 *      process, so its memory stays reachable (LeakSanitizer does not report it) and the loop can
 *      be closed and freed,
 *   4. empties h2o's per-thread free lists before the thread ends (see release_h2o_thread_caches).
 * If a connection were still open after STOP_GRACE_MS, the loop is left as it is and kept too:
 * closing a handle under h2o's feet could crash; leaking a loop cannot.
 *
 * Process-wide state: h2o is built for one context per thread (that is how its own server runs);
 * its pool and buffer caches are thread-local, and libuv loops are independent of each other. The
 * only shared state here is the keep list, behind a mutex.
 */
#include "common/status_server.h"
#include "common/httpd.h"
#include "common/metrics.h"

#include <errno.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#if H2O_VERSION_MAJOR != 2 || H2O_VERSION_MINOR != 2
#error "release_h2o_thread_caches and the shutdown sequence are written for h2o 2.2: check them again"
#endif

#define REASON_MAX     256
#define STOP_GRACE_MS  1000
#define STOP_POLL_MS   5
#define MAX_BODY_BYTES 1024 /* these routes take no body; a small one still gets its 405 */
/* h2o 2.2.5 keeps at most 16 freed pool chunks per thread (memory.c, mempool_allocator). */
#define H2O_POOL_RECYCLE_MAX 16

struct status_routes {
    cm_metrics_t *metrics;
    cm_ready_fn ready;
    void *ready_data;
};

struct cm_status_server {
    uv_loop_t *loop;
    uv_async_t wake;
    uv_timer_t drain;
    uint64_t drain_deadline;
    int loop_abandoned;
    cm_httpd_t *httpd;
    struct status_routes routes;
    char *listen;
    pthread_t thread;
    uv_sem_t started;
    int start_rc, port;
    char err[256];
};

/* Memory kept until the process exits, reachable from here. */
struct kept {
    struct kept *next;
    void *ptr;
};
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;
static struct kept *kept_head;

static void keep_forever(void *ptr)
{
    struct kept *k = malloc(sizeof(*k));
    if (k == NULL)
        abort();
    k->ptr = ptr;
    pthread_mutex_lock(&kept_lock);
    k->next = kept_head;
    kept_head = k;
    pthread_mutex_unlock(&kept_lock);
}

/* ---- the routes ---- */

static int path_is(const h2o_req_t *req, const char *path)
{
    return h2o_memis(req->path_normalized.base, req->path_normalized.len, path, strlen(path));
}

/* 1 for GET and HEAD; otherwise sends 405 and returns 0. */
static int method_is_get_or_reply(h2o_req_t *req)
{
    if (h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET")) ||
        h2o_memis(req->method.base, req->method.len, H2O_STRLIT("HEAD")))
        return 1;
    cm_httpd_add_header(req, "allow", "GET, HEAD");
    cm_httpd_send_error(req, 405, "only GET and HEAD are allowed here");
    return 0;
}

static int on_healthz(void *data, h2o_req_t *req)
{
    static const char body[] = "{\"status\":\"ok\"}";
    if (!path_is(req, "/healthz"))
        return -1;
    if (method_is_get_or_reply(req))
        cm_httpd_send_bytes(req, 200, "application/json", body, sizeof(body) - 1);
    return 0;
}

static int on_readyz(void *data, h2o_req_t *req)
{
    static const char ready_body[] = "{\"status\":\"ready\"}";
    const struct status_routes *r = data;
    if (!path_is(req, "/readyz"))
        return -1;
    if (!method_is_get_or_reply(req))
        return 0;
    char reason[REASON_MAX] = "";
    if (r->ready == NULL || r->ready(r->ready_data, reason, sizeof(reason))) {
        cm_httpd_send_bytes(req, 200, "application/json", ready_body, sizeof(ready_body) - 1);
        return 0;
    }
    reason[sizeof(reason) - 1] = '\0';
    for (char *p = reason; *p != '\0'; p++) /* keeps the JSON valid whatever the callback wrote */
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            *p = '?';
    json_t *body = json_pack("{s:s,s:s}", "status", "not ready", "reason", reason[0] ? reason : "unknown");
    if (body == NULL)
        abort();
    cm_httpd_send_json(req, 503, body);
    json_decref(body);
    return 0;
}

static int on_metrics(void *data, h2o_req_t *req)
{
    const struct status_routes *r = data;
    if (!path_is(req, "/metrics"))
        return -1;
    if (!method_is_get_or_reply(req))
        return 0;
    size_t len = 0;
    char *text = r->metrics != NULL ? cm_metrics_render(r->metrics, &len) : NULL;
    cm_httpd_send_bytes(req, 200, "text/plain; version=0.0.4; charset=utf-8", text != NULL ? text : "", len);
    free(text);
    return 0;
}

static void add_routes(cm_httpd_t *httpd, struct status_routes *r)
{
    cm_httpd_route(httpd, "/healthz", on_healthz, r);
    cm_httpd_route(httpd, "/readyz", on_readyz, r);
    cm_httpd_route(httpd, "/metrics", on_metrics, r);
}

void cm_status_routes(cm_httpd_t *httpd, cm_metrics_t *metrics, cm_ready_fn ready, void *ready_data)
{
    struct status_routes *r = malloc(sizeof(*r));
    if (r == NULL)
        abort();
    r->metrics = metrics;
    r->ready = ready;
    r->ready_data = ready_data;
    keep_forever(r);
    add_routes(httpd, r);
}

/* ---- the threaded server ---- */

/* cm_httpd_start only logs why it cannot listen; binding a plain socket first (as libuv binds:
 * SO_REUSEADDR) gives the reason for err. */
static int probe_listen(cm_status_server_t *s)
{
    struct sockaddr_storage ss;
    if (cm_httpd_parse_listen(s->listen, &ss) != 0) {
        snprintf(s->err, sizeof(s->err), "cannot listen on %.100s: not host:port", s->listen);
        return -1;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int rc = -1, one = 1;
    if (fd >= 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0)
        rc = bind(fd, (struct sockaddr *)&ss,
                  ss.ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (rc != 0)
        snprintf(s->err, sizeof(s->err), "cannot listen on %.100s: %s", s->listen,
                 uv_strerror(uv_translate_sys_error(e)));
    return rc;
}

static void find_port(uv_handle_t *h, void *arg)
{
    cm_status_server_t *s = arg;
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (h->type != UV_TCP || uv_tcp_getsockname((uv_tcp_t *)h, (struct sockaddr *)&ss, &len) != 0)
        return;
    s->port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                             : ((struct sockaddr_in *)&ss)->sin_port);
}

static void shutdown_connection(uv_handle_t *h, void *arg)
{
    uv_os_fd_t fd;
    if (h->type == UV_TCP && !uv_is_closing(h) && uv_fileno(h, &fd) == 0)
        shutdown(fd, SHUT_RDWR);
}

static void count_tcp(uv_handle_t *h, void *arg)
{
    if (h->type == UV_TCP)
        ++*(size_t *)arg;
}

static void close_handle(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void on_drain_tick(uv_timer_t *t)
{
    cm_status_server_t *s = t->data;
    size_t open = 0;
    uv_walk(s->loop, count_tcp, &open);
    if (open > 0 && uv_now(s->loop) < s->drain_deadline)
        return;
    uv_timer_stop(t);
    if (open > 0) {
        s->loop_abandoned = 1;
        uv_stop(s->loop);
        return;
    }
    uv_walk(s->loop, close_handle, NULL); /* ours and the h2o context's; uv_run then returns */
}

static void on_wake(uv_async_t *a)
{
    cm_status_server_t *s = a->data;
    if (uv_is_active((uv_handle_t *)&s->drain))
        return;
    cm_httpd_stop(s->httpd);
    uv_walk(s->loop, shutdown_connection, NULL);
    s->drain_deadline = uv_now(s->loop) + STOP_GRACE_MS;
    uv_timer_start(&s->drain, on_drain_tick, 0, STOP_POLL_MS);
}

/* h2o 2.2.5 keeps freed socket buffers and memory-pool chunks (up to 16 of each) in free lists that
 * live in thread-local storage; when the thread ends they become unreachable. The buffer list is
 * public (h2o_socket_buffer_prototype) and is emptied directly. The pool chunk list is static in
 * h2o: it is emptied by taking chunks through fresh pools and freeing them ourselves (a pool's first
 * chunk is the block h2o got from malloc, pool.chunks points to it). */
static void release_h2o_thread_caches(void)
{
    h2o_mem_recycle_t *buffers = &h2o_socket_buffer_prototype.allocator;
    while (buffers->cnt > 0)
        free(h2o_mem_alloc_recycle(buffers, 1));
    for (int i = 0; i < H2O_POOL_RECYCLE_MAX; i++) {
        h2o_mem_pool_t pool;
        h2o_mem_init_pool(&pool);
        h2o_mem_alloc_pool(&pool, 1);
        free(pool.chunks);
    }
}

/* Runs on the thread: everything up to listening. */
static int start_listening(cm_status_server_t *s)
{
    if (probe_listen(s) != 0)
        return -1;
    cm_httpd_new(s->loop, s->listen, MAX_BODY_BYTES, &s->httpd);
    add_routes(s->httpd, &s->routes);
    if (cm_httpd_start(s->httpd) != 0) {
        snprintf(s->err, sizeof(s->err), "cannot listen on %.100s (see the listen_failed log line)",
                 s->listen);
        return -1;
    }
    uv_walk(s->loop, find_port, s); /* the listener is the only TCP handle yet */
    return 0;
}

static void *status_thread(void *arg)
{
    cm_status_server_t *s = arg;
    uv_loop_t *loop = s->loop;
    int rc = start_listening(s);
    s->start_rc = rc;
    uv_sem_post(&s->started); /* on failure, the starting thread now waits in pthread_join */
    if (rc == 0)
        uv_run(loop, UV_RUN_DEFAULT);
    int abandoned = rc == 0 && s->loop_abandoned;
    if (!abandoned) {
        uv_walk(loop, close_handle, NULL); /* after a failed start: ours and the h2o context's */
        uv_run(loop, UV_RUN_DEFAULT);
        abandoned = uv_loop_close(loop) != 0;
    }
    if (abandoned)
        keep_forever(loop);
    else
        free(loop);
    s->loop = NULL;
    release_h2o_thread_caches();
    return NULL;
}

/* Frees s after its thread was joined, or when it never started. */
static void server_free(cm_status_server_t *s)
{
    if (s->loop != NULL) { /* no thread ran it: only the wake-up handles are on it */
        uv_walk(s->loop, close_handle, NULL);
        uv_run(s->loop, UV_RUN_DEFAULT);
        uv_loop_close(s->loop);
        free(s->loop);
    }
    if (s->httpd != NULL)
        keep_forever(s->httpd);
    uv_sem_destroy(&s->started);
    free(s->listen);
    free(s);
}

int cm_status_server_start(const char *listen, cm_metrics_t *metrics, cm_ready_fn ready, void *ready_data,
                           cm_status_server_t **out, char *err, size_t err_size)
{
    cm_status_server_t *s = calloc(1, sizeof(*s));
    if (s == NULL || (s->listen = strdup(listen)) == NULL || (s->loop = malloc(sizeof(*s->loop))) == NULL ||
        uv_sem_init(&s->started, 0) != 0)
        abort();
    s->routes = (struct status_routes){metrics, ready, ready_data};
    int rc = uv_loop_init(s->loop);
    if (rc != 0) {
        snprintf(err, err_size, "uv_loop_init: %s", uv_strerror(rc));
        free(s->loop);
        s->loop = NULL;
        goto fail;
    }
    uv_async_init(s->loop, &s->wake, on_wake);
    s->wake.data = s;
    uv_timer_init(s->loop, &s->drain);
    s->drain.data = s;

    /* The thread inherits this mask: signals stay with the service's own threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = pthread_create(&s->thread, NULL, status_thread, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        snprintf(err, err_size, "pthread_create: %s", strerror(rc));
        goto fail;
    }
    uv_sem_wait(&s->started);
    if (s->start_rc != 0) {
        snprintf(err, err_size, "%s", s->err);
        pthread_join(s->thread, NULL);
        goto fail;
    }
    *out = s;
    return 0;

fail:
    server_free(s);
    return -1;
}

int cm_status_server_port(const cm_status_server_t *s)
{
    return s->port;
}

void cm_status_server_stop(cm_status_server_t *s)
{
    if (s == NULL)
        return;
    uv_async_send(&s->wake);
    pthread_join(s->thread, NULL);
    server_free(s);
}
