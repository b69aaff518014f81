/*
 * The HTTP server (common/httpd.h) over real sockets: request metrics (route prefix, method, status,
 * one count per request), and the graceful shutdown: answers to requests in flight at cm_httpd_stop
 * say "Connection: close" and their connection closes, idle keep-alive connections are closed by
 * cm_httpd_drain only after the quiet time, new connections are refused.
 *
 * The server runs on a loop in the test's thread; a client thread speaks HTTP/1.1 over blocking
 * sockets and only records what it got (cmocka's asserts must run in the test's thread), then wakes
 * the loop with a uv_async. A started cm_httpd cannot be freed (h2o 2.2.5): each test's server and
 * loop are kept in static storage, so they stay reachable.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/httpd.h"
#include "common/metrics.h"
#include "loopback_client.h"

#define SLOW_MS 50

struct server {
    uv_loop_t loop;
    cm_httpd_t *httpd;
    cm_metrics_t *metrics;
    uv_async_t client_done, drain_now;
    uv_timer_t slow_timer, drain_timer;
    cm_req_guard_t *slow; /* the /slow request being held */
    int stop_during_slow;
    int drained, client_finished;
};

static struct server servers[2];
static int next_server;

/* ---- the server side (loop thread) ---- */

static int on_fast(void *data, h2o_req_t *req)
{
    cm_httpd_send_bytes(req, 200, "text/plain", "fast", 4);
    return 0;
}

static int on_decline(void *data, h2o_req_t *req)
{
    return -1; /* h2o answers 404 */
}

static void on_slow_timer(uv_timer_t *t)
{
    struct server *s = t->data;
    if (s->stop_during_slow)
        cm_httpd_stop(s->httpd); /* while /slow is in flight */
    h2o_req_t *req = cm_req_guard_get(s->slow);
    if (req != NULL)
        cm_httpd_send_bytes(req, 200, "text/plain", "slow", 4);
    cm_req_guard_release(s->slow);
    s->slow = NULL;
}

static int on_slow(void *data, h2o_req_t *req)
{
    struct server *s = data;
    s->slow = cm_req_guard_new(req);
    uv_timer_start(&s->slow_timer, on_slow_timer, SLOW_MS, 0);
    return 0;
}

static void close_handle(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

/* Once the client is done and every connection closed, the loop ends: every handle is closed, ours and
 * the h2o context's, so uv_run returns. */
static void end_when_done(struct server *s)
{
    if (s->drained && s->client_finished)
        uv_walk(&s->loop, close_handle, NULL);
}

static void on_drain_tick(uv_timer_t *t)
{
    struct server *s = t->data;
    if (cm_httpd_drain(s->httpd, 1) > 0 || cm_httpd_inflight(s->httpd) > 0)
        return;
    s->drained = 1;
    uv_timer_stop(t);
    end_when_done(s);
}

static void on_drain_now(uv_async_t *a)
{
    struct server *s = a->data;
    cm_httpd_stop(s->httpd);
    uv_timer_start(&s->drain_timer, on_drain_tick, 0, 5);
}

static void on_client_done(uv_async_t *a)
{
    struct server *s = a->data;
    s->client_finished = 1;
    end_when_done(s);
}

static struct server *server_start(void)
{
    assert_true(next_server < (int)(sizeof(servers) / sizeof(servers[0])));
    struct server *s = &servers[next_server++];
    s->metrics = cm_metrics_new();
    assert_int_equal(uv_loop_init(&s->loop), 0);
    assert_int_equal(cm_httpd_new(&s->loop, "127.0.0.1:0", 1024, &s->httpd), 0);
    assert_int_equal(cm_httpd_port(s->httpd), -1); /* not listening yet */
    cm_httpd_route(s->httpd, "/fast", on_fast, s);
    cm_httpd_route(s->httpd, "/slow", on_slow, s);
    cm_httpd_route(s->httpd, "/v1/", on_decline, s);
    cm_httpd_set_metrics(s->httpd, s->metrics);
    assert_int_equal(cm_httpd_start(s->httpd), 0);
    assert_true(cm_httpd_port(s->httpd) > 0);
    uv_async_init(&s->loop, &s->client_done, on_client_done);
    uv_async_init(&s->loop, &s->drain_now, on_drain_now);
    uv_timer_init(&s->loop, &s->slow_timer);
    uv_timer_init(&s->loop, &s->drain_timer);
    s->client_done.data = s->drain_now.data = s->slow_timer.data = s->drain_timer.data = s;
    return s;
}

/* Runs the loop until the client is done; the loop is then closed (the cm_httpd stays, kept). */
static void server_run(struct server *s, void *(*client)(void *), void *arg)
{
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, client, arg), 0);
    uv_run(&s->loop, UV_RUN_DEFAULT);
    assert_int_equal(pthread_join(thread, NULL), 0);
    assert_int_equal(uv_loop_close(&s->loop), 0);
}

/* ---- the client side (its own thread: records, never asserts) ---- */

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

struct exchange {
    char head[1024]; /* status line and headers, "" when nothing came back */
    char body[64];
    int eof_after; /* 1 when the server closed the connection after this answer */
};

/* Sends "METHOD path" and reads one answer (Content-Length bodies; none for HEAD). */
static void exchange(int fd, const char *method, const char *path, struct exchange *x, int check_eof)
{
    char req[256], buf[2048];
    size_t len = 0;
    memset(x, 0, sizeof(*x));
    int n = snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: localhost\r\n\r\n", method, path);
    if (write(fd, req, (size_t)n) != n)
        return;
    char *end = NULL;
    while (end == NULL && len + 1 < sizeof(buf)) {
        ssize_t r = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (r <= 0)
            return;
        len += (size_t)r;
        buf[len] = '\0';
        end = strstr(buf, "\r\n\r\n");
    }
    if (end == NULL)
        return;
    snprintf(x->head, sizeof(x->head), "%.*s", (int)(end - buf), buf);
    const char *cl = strstr(x->head, "Content-Length: ");
    size_t want = cl != NULL && strcmp(method, "HEAD") != 0 ? strtoul(cl + 16, NULL, 10) : 0;
    size_t have = len - (size_t)(end + 4 - buf);
    while (have < want && len + 1 < sizeof(buf)) {
        ssize_t r = read(fd, buf + len, sizeof(buf) - 1 - len);
        if (r <= 0)
            return;
        len += (size_t)r;
        have += (size_t)r;
    }
    snprintf(x->body, sizeof(x->body), "%.*s", (int)want, end + 4);
    if (check_eof)
        x->eof_after = read(fd, buf, sizeof(buf)) == 0;
}

/* ---- request metrics ---- */

struct metrics_client {
    int port;
    struct server *server;
    struct exchange x[6];
};

static void *metrics_client(void *arg)
{
    struct metrics_client *c = arg;
    int fd = loopback_connect(c->port);
    if (fd >= 0) {
        exchange(fd, "GET", "/fast", &c->x[0], 0);
        exchange(fd, "HEAD", "/fast", &c->x[1], 0);
        exchange(fd, "OPTIONS", "//fast/x?q=1", &c->x[2], 0);
        exchange(fd, "GET", "/nowhere", &c->x[3], 0);
        exchange(fd, "GET", "/v1/anything", &c->x[4], 0);
        exchange(fd, "DELETE", "/fast", &c->x[5], 0);
        close(fd);
    }
    uv_async_send(&c->server->drain_now);
    uv_async_send(&c->server->client_done);
    return NULL;
}

static int status_is(const struct exchange *x, const char *status_line)
{
    return strncmp(x->head, status_line, strlen(status_line)) == 0 && x->head[strlen(status_line)] == '\r';
}

static void counts_each_request_once_by_route_prefix(void **state)
{
    struct server *s = server_start();
    struct metrics_client *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->port = cm_httpd_port(s->httpd);
    c->server = s;
    server_run(s, metrics_client, c);

    assert_true(status_is(&c->x[0], "HTTP/1.1 200 OK"));
    assert_string_equal(c->x[0].body, "fast");
    assert_true(status_is(&c->x[1], "HTTP/1.1 200 OK"));
    assert_true(status_is(&c->x[2], "HTTP/1.1 200 OK"));
    assert_true(status_is(&c->x[3], "HTTP/1.1 404 File Not Found"));
    assert_true(status_is(&c->x[4], "HTTP/1.1 404 File Not Found"));
    assert_true(status_is(&c->x[5], "HTTP/1.1 200 OK"));

    char *text = cm_metrics_render(s->metrics, NULL);
    const char *counters = "# HELP http_requests_total HTTP requests answered, by route prefix, method and "
                           "status (0: the connection closed before an answer started).\n"
                           "# TYPE http_requests_total counter\n"
                           "http_requests_total{route=\"/fast\",method=\"GET\",status=\"200\"} 1\n"
                           "http_requests_total{route=\"/fast\",method=\"HEAD\",status=\"200\"} 1\n"
                           "http_requests_total{route=\"/fast\",method=\"other\",status=\"200\"} 1\n"
                           "http_requests_total{route=\"none\",method=\"GET\",status=\"404\"} 1\n"
                           "http_requests_total{route=\"/v1/\",method=\"GET\",status=\"404\"} 1\n"
                           "http_requests_total{route=\"/fast\",method=\"DELETE\",status=\"200\"} 1\n"
                           "# HELP http_request_duration_seconds ";
    assert_memory_equal(text, counters, strlen(counters));
    assert_non_null(strstr(text, "\n# TYPE http_request_duration_seconds histogram\n"));
    assert_non_null(strstr(text, "\nhttp_request_duration_seconds_count{route=\"/fast\"} 4\n"));
    assert_non_null(strstr(text, "\nhttp_request_duration_seconds_count{route=\"none\"} 1\n"));
    assert_non_null(strstr(text, "\nhttp_request_duration_seconds_count{route=\"/v1/\"} 1\n"));
    assert_non_null(strstr(text, "\nhttp_request_duration_seconds_bucket{route=\"/fast\",le=\"+Inf\"} 4\n"));
    assert_null(strstr(text, "/nowhere"));
    assert_null(strstr(text, "anything"));
    free(text);
    assert_int_equal(cm_httpd_inflight(s->httpd), 0);
    assert_int_equal(cm_httpd_port(s->httpd), -1); /* stopped */
    free(c);
}

/* ---- graceful shutdown ---- */

struct shutdown_client {
    int port;
    struct server *server;
    struct exchange a1, b1, c1, slow, b2;
    int refused;            /* connect after the stop: -ECONNREFUSED */
    int c_eof;              /* the idle connection C was closed by the server */
    double b2_at, c_eof_at; /* when b2's answer came, when C's EOF came */
};

static void *shutdown_client(void *arg)
{
    struct shutdown_client *c = arg;
    int a = loopback_connect(c->port), b = loopback_connect(c->port), idle = loopback_connect(c->port);
    if (a < 0 || b < 0 || idle < 0)
        goto out;
    exchange(a, "GET", "/fast", &c->a1, 0);
    exchange(b, "GET", "/fast", &c->b1, 0);
    exchange(idle, "GET", "/fast", &c->c1, 0);
    /* In flight while the server stops (on_slow_timer): its answer comes after the stop. */
    exchange(a, "GET", "/slow", &c->slow, 1);
    /* b was idle during the stop: its next request is still served, and closes it. */
    exchange(b, "GET", "/fast", &c->b2, 1);
    c->b2_at = now_seconds();
    c->refused = loopback_connect(c->port);
    if (c->refused >= 0)
        close(c->refused);
    uv_async_send(&c->server->drain_now);
    char buf[16];
    c->c_eof = read(idle, buf, sizeof(buf)) == 0;
    c->c_eof_at = now_seconds();
out:
    if (a >= 0)
        close(a);
    if (b >= 0)
        close(b);
    if (idle >= 0)
        close(idle);
    uv_async_send(&c->server->client_done);
    return NULL;
}

static int has_header(const struct exchange *x, const char *line)
{
    char needle[256];
    snprintf(needle, sizeof(needle), "\r\n%s\r\n", line);
    char head[sizeof(x->head) + 2];
    snprintf(head, sizeof(head), "%s\r\n", x->head);
    return strstr(head, needle) != NULL;
}

static void stop_closes_connections_after_their_answer(void **state)
{
    struct server *s = server_start();
    s->stop_during_slow = 1;
    struct shutdown_client *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->port = cm_httpd_port(s->httpd);
    c->server = s;
    server_run(s, shutdown_client, c);

    assert_true(status_is(&c->a1, "HTTP/1.1 200 OK"));
    assert_true(has_header(&c->a1, "Connection: keep-alive"));
    assert_true(has_header(&c->b1, "Connection: keep-alive"));
    assert_true(has_header(&c->c1, "Connection: keep-alive"));
    /* the answer to the request in flight at the stop */
    assert_true(status_is(&c->slow, "HTTP/1.1 200 OK"));
    assert_string_equal(c->slow.body, "slow");
    assert_true(has_header(&c->slow, "Connection: close"));
    assert_true(c->slow.eof_after);
    /* a request on a connection that was idle at the stop */
    assert_true(status_is(&c->b2, "HTTP/1.1 200 OK"));
    assert_string_equal(c->b2.body, "fast");
    assert_true(has_header(&c->b2, "Connection: close"));
    assert_true(c->b2.eof_after);
    assert_int_equal(c->refused, -ECONNREFUSED);
    /* the connection that stayed idle: closed by the drain, not before the quiet time */
    assert_true(c->c_eof);
    assert_true(c->c_eof_at - c->b2_at >= CM_HTTPD_DRAIN_QUIET_MS / 1000.0 - 0.01);
    assert_true(c->c_eof_at - c->b2_at < 2.0);
    assert_true(s->drained);
    assert_int_equal(cm_httpd_inflight(s->httpd), 0);

    char *text = cm_metrics_render(s->metrics, NULL);
    assert_non_null(strstr(text, "\nhttp_requests_total{route=\"/fast\",method=\"GET\",status=\"200\"} 4\n"));
    assert_non_null(strstr(text, "\nhttp_requests_total{route=\"/slow\",method=\"GET\",status=\"200\"} 1\n"));
    free(text);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(counts_each_request_once_by_route_prefix),
        cmocka_unit_test(stop_closes_connections_after_their_answer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
