/*
 * The status server (common/status_server.h) over real sockets: cm_status_server_start on
 * 127.0.0.1:0, a plain blocking-socket HTTP/1.1 client, exact statuses, headers and bodies, and
 * cm_status_server_stop with connections still open. Under the sanitizer build LeakSanitizer checks
 * that start and stop leave nothing unreachable behind.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "common/httpd.h"
#include "common/metrics.h"
#include "common/status_server.h"
#include "loopback_client.h"

struct readiness {
    atomic_int ready;
    const char *reason;
    atomic_int calls;
    pthread_t caller;
};

static int check_ready(void *data, char *reason, size_t reason_size)
{
    struct readiness *r = data;
    r->caller = pthread_self();
    atomic_fetch_add(&r->calls, 1);
    if (atomic_load(&r->ready))
        return 1;
    snprintf(reason, reason_size, "%s", r->reason);
    return 0;
}

static int connect_to(int port)
{
    int fd = loopback_connect(port);
    assert_true(fd >= 0);
    return fd;
}

static void send_all(int fd, const char *s)
{
    size_t len = strlen(s);
    while (len > 0) {
        ssize_t n = write(fd, s, len);
        assert_true(n > 0);
        s += n;
        len -= (size_t)n;
    }
}

/* Reads until EOF; returns the bytes read (NUL-terminated in buf). */
static size_t read_to_eof(int fd, char *buf, size_t size)
{
    size_t len = 0;
    for (;;) {
        assert_true(len + 1 < size);
        ssize_t n = read(fd, buf + len, size - 1 - len);
        assert_true(n >= 0);
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return len;
}

struct response {
    char raw[65536];
    char status_line[128];
    const char *headers; /* from the first header line to the blank line, inside raw */
    const char *body;
    size_t body_len;
};

/* Sends "METHOD path" with Connection: close (and body, when not NULL) and reads the whole answer. */
static void request(int port, const char *method, const char *path, const char *body, struct response *r)
{
    char req[1024];
    if (body != NULL)
        snprintf(req, sizeof(req),
                 "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Length: %zu\r\n\r\n%s",
                 method, path, strlen(body), body);
    else
        snprintf(req, sizeof(req), "%s %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n", method,
                 path);
    int fd = connect_to(port);
    send_all(fd, req);
    size_t len = read_to_eof(fd, r->raw, sizeof(r->raw));
    close(fd);
    const char *eol = strstr(r->raw, "\r\n");
    const char *end = strstr(r->raw, "\r\n\r\n");
    assert_non_null(eol);
    assert_non_null(end);
    snprintf(r->status_line, sizeof(r->status_line), "%.*s", (int)(eol - r->raw), r->raw);
    r->headers = eol + 2;
    r->body = end + 4;
    r->body_len = len - (size_t)(r->body - r->raw);
}

/* 1 when the response has exactly this header line (h2o writes Content-Length so, the rest in lower case). */
static int has_header(const struct response *r, const char *line)
{
    char needle[512];
    snprintf(needle, sizeof(needle), "\r\n%s\r\n", line);
    const char *p = strstr(r->headers - 2, needle);
    return p != NULL && p < r->body;
}

static void assert_answer(const struct response *r, const char *status_line, const char *content_type,
                          const char *body)
{
    char line[256];
    assert_string_equal(r->status_line, status_line);
    snprintf(line, sizeof(line), "content-type: %s", content_type);
    assert_true(has_header(r, line));
    snprintf(line, sizeof(line), "Content-Length: %zu", strlen(body));
    assert_true(has_header(r, line));
    assert_int_equal(r->body_len, strlen(body));
    assert_memory_equal(r->body, body, strlen(body));
}

static cm_status_server_t *start_or_fail(const char *listen, cm_metrics_t *m, struct readiness *ready)
{
    cm_status_server_t *s = NULL;
    char err[256] = "";
    int rc =
        cm_status_server_start(listen, m, ready != NULL ? check_ready : NULL, ready, &s, err, sizeof(err));
    if (rc != 0)
        fail_msg("cm_status_server_start: %s", err);
    assert_non_null(s);
    assert_true(cm_status_server_port(s) > 0);
    return s;
}

static void serves_the_three_routes(void **state)
{
    cm_metrics_t *m = cm_metrics_new();
    cm_metric_t *c = cm_metrics_counter(m, "passkit_pushes_total", "Pushes by outcome.", "outcome");
    cm_metric_add(c, 2, (const char *const[]){"delivered"});
    struct readiness ready = {.ready = 1, .reason = ""};
    cm_status_server_t *s = start_or_fail("127.0.0.1:0", m, &ready);
    int port = cm_status_server_port(s);
    struct response *r = malloc(sizeof(*r));
    assert_non_null(r);

    request(port, "GET", "/healthz", NULL, r);
    assert_answer(r, "HTTP/1.1 200 OK", "application/json", "{\"status\":\"ok\"}");

    request(port, "GET", "/readyz", NULL, r);
    assert_answer(r, "HTTP/1.1 200 OK", "application/json", "{\"status\":\"ready\"}");
    assert_false(pthread_equal(ready.caller, pthread_self())); /* asked on the server's thread */

    atomic_store(&ready.ready, 0);
    ready.reason = "redis unreachable: connection refused";
    request(port, "GET", "/readyz", NULL, r);
    assert_answer(r, "HTTP/1.1 503 Service Unavailable", "application/json",
                  "{\"status\":\"not ready\",\"reason\":\"redis unreachable: connection refused\"}");
    ready.reason = "quote \" and\nnewline \xff";
    request(port, "GET", "/readyz?verbose=1", NULL, r);
    assert_answer(r, "HTTP/1.1 503 Service Unavailable", "application/json",
                  "{\"status\":\"not ready\",\"reason\":\"quote \\\" and?newline ?\"}");
    ready.reason = "";
    request(port, "HEAD", "/readyz", NULL, r);
    assert_string_equal(r->status_line, "HTTP/1.1 503 Service Unavailable");
    char line[128];
    snprintf(line, sizeof(line), "Content-Length: %zu",
             strlen("{\"status\":\"not ready\",\"reason\":\"unknown\"}"));
    assert_true(has_header(r, line));
    assert_int_equal(r->body_len, 0);

    const char *metrics_text = "# HELP passkit_pushes_total Pushes by outcome.\n"
                               "# TYPE passkit_pushes_total counter\n"
                               "passkit_pushes_total{outcome=\"delivered\"} 2\n";
    request(port, "GET", "/metrics", NULL, r);
    assert_answer(r, "HTTP/1.1 200 OK", "text/plain; version=0.0.4; charset=utf-8", metrics_text);

    request(port, "HEAD", "/metrics", NULL, r);
    assert_string_equal(r->status_line, "HTTP/1.1 200 OK");
    snprintf(line, sizeof(line), "Content-Length: %zu", strlen(metrics_text));
    assert_true(has_header(r, line));
    assert_int_equal(r->body_len, 0);

    request(port, "POST", "/metrics", "x=1", r);
    assert_answer(r, "HTTP/1.1 405 Method Not Allowed", "application/json",
                  "{\"error\":\"only GET and HEAD are allowed here\"}");
    assert_true(has_header(r, "allow: GET, HEAD"));
    request(port, "DELETE", "/healthz", NULL, r);
    assert_string_equal(r->status_line, "HTTP/1.1 405 Method Not Allowed");
    assert_true(has_header(r, "allow: GET, HEAD"));

    request(port, "GET", "/healthz/extra", NULL, r);
    assert_string_equal(r->status_line, "HTTP/1.1 404 File Not Found");
    request(port, "GET", "/", NULL, r);
    assert_string_equal(r->status_line, "HTTP/1.1 404 File Not Found");

    cm_status_server_stop(s);
    free(r);
    cm_metrics_free(m); /* stop promised not to use it any more */
}

static int open_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void stop_closes_open_connections_and_frees_the_port(void **state)
{
    int fds = open_fds();
    cm_status_server_t *s = start_or_fail("127.0.0.1:0", NULL, NULL);
    int port = cm_status_server_port(s);
    char listen[32];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", port);

    /* An idle keep-alive connection after one answer, and one that never sent anything. */
    int kept = connect_to(port);
    send_all(kept, "GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n");
    char buf[4096];
    ssize_t n = read(kept, buf, sizeof(buf) - 1);
    assert_true(n > 0);
    buf[n] = '\0';
    assert_memory_equal(buf, "HTTP/1.1 200 OK\r\n", 17);
    assert_non_null(strstr(buf, "\r\nContent-Length: 0\r\n"));
    int silent = connect_to(port);
    /* A request sent in part. */
    int partial = connect_to(port);
    send_all(partial, "GET /healthz HTTP/1.1\r\nHost: loc");

    double t0 = now_seconds();
    cm_status_server_stop(s);
    double took = now_seconds() - t0;
    assert_true(took < 0.5); /* well under the 1 s after which the loop would be given up */
    assert_int_equal(read(kept, buf, sizeof(buf)), 0); /* the server closed them */
    assert_int_equal(read(silent, buf, sizeof(buf)), 0);
    assert_int_equal(read(partial, buf, sizeof(buf)), 0);
    close(kept);
    close(silent);
    close(partial);
    assert_int_equal(open_fds(), fds); /* the loop was closed, not given up */

    /* The port is free again. */
    s = start_or_fail(listen, NULL, NULL);
    assert_int_equal(cm_status_server_port(s), port);
    struct response *r = malloc(sizeof(*r));
    assert_non_null(r);
    request(port, "GET", "/healthz", NULL, r);
    assert_answer(r, "HTTP/1.1 200 OK", "application/json", "{\"status\":\"ok\"}");
    free(r);
    cm_status_server_stop(s);
    cm_status_server_stop(NULL);
}

static void start_reports_why_it_cannot_listen(void **state)
{
    cm_status_server_t *first = start_or_fail("127.0.0.1:0", NULL, NULL);
    char listen[32], err[256], expected[128];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", cm_status_server_port(first));
    cm_status_server_t *second = (cm_status_server_t *)&second; /* must stay untouched */
    cm_status_server_t *before = second;
    assert_int_equal(cm_status_server_start(listen, NULL, NULL, NULL, &second, err, sizeof(err)), -1);
    snprintf(expected, sizeof(expected), "cannot listen on %s: address already in use", listen);
    assert_string_equal(err, expected);
    assert_ptr_equal(second, before);

    assert_int_equal(cm_status_server_start("nonsense", NULL, NULL, NULL, &second, err, sizeof(err)), -1);
    assert_string_equal(err, "cannot listen on nonsense: not host:port");
    assert_int_equal(cm_status_server_start("127.0.0.1:99999", NULL, NULL, NULL, &second, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "cannot listen on 127.0.0.1:99999: not host:port");
    assert_int_equal(cm_status_server_start("10.255.255.1:0", NULL, NULL, NULL, &second, err, sizeof(err)),
                     -1);
    assert_string_equal(err, "cannot listen on 10.255.255.1:0: address not available");
    cm_status_server_stop(first);
}

/* cm_status_routes on a cm_httpd the "service" runs on its own loop (here: this thread's). */
static uv_loop_t service_loop;
static cm_httpd_t *service_httpd; /* a started cm_httpd is never freed: kept reachable here */
static uv_async_t client_done;

struct client {
    int port;
    struct response r[3];
};

static void *run_client(void *arg)
{
    struct client *c = arg;
    request(c->port, "GET", "/healthz", NULL, &c->r[0]);
    request(c->port, "GET", "/readyz", NULL, &c->r[1]);
    request(c->port, "PUT", "/readyz", "{}", &c->r[2]);
    uv_async_send(&client_done);
    return NULL;
}

static void on_client_done(uv_async_t *a)
{
    cm_httpd_stop(service_httpd);
    uv_stop(a->loop);
}

static void routes_on_a_service_httpd(void **state)
{
    struct readiness ready = {.ready = 0, .reason = "signer unreachable"};
    struct client *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->port = 18000 + (int)(getpid() % 2000); /* cm_httpd cannot say which port :0 chose */
    char listen[32];
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", c->port);
    assert_int_equal(uv_loop_init(&service_loop), 0);
    assert_int_equal(cm_httpd_new(&service_loop, listen, 1024, &service_httpd), 0);
    cm_status_routes(service_httpd, NULL, check_ready, &ready);
    if (cm_httpd_start(service_httpd) != 0)
        skip(); /* the port is taken: nothing this test can fix */
    uv_async_init(&service_loop, &client_done, on_client_done);
    pthread_t client;
    assert_int_equal(pthread_create(&client, NULL, run_client, c), 0);
    uv_run(&service_loop, UV_RUN_DEFAULT);
    assert_int_equal(pthread_join(client, NULL), 0);
    assert_answer(&c->r[0], "HTTP/1.1 200 OK", "application/json", "{\"status\":\"ok\"}");
    assert_answer(&c->r[1], "HTTP/1.1 503 Service Unavailable", "application/json",
                  "{\"status\":\"not ready\",\"reason\":\"signer unreachable\"}");
    assert_true(pthread_equal(ready.caller, pthread_self())); /* the loop's thread */
    assert_string_equal(c->r[2].status_line, "HTTP/1.1 405 Method Not Allowed");
    assert_true(has_header(&c->r[2], "allow: GET, HEAD"));
    free(c);
    /* The loop stays as it is (its h2o context cannot be disposed of); static, so reachable. */
}

static void many_starts_and_stops(void **state)
{
    cm_metrics_t *m = cm_metrics_new();
    cm_metrics_gauge(m, "up", "Always 1.", NULL);
    struct readiness ready = {.ready = 1, .reason = ""};
    struct response *r = malloc(sizeof(*r));
    assert_non_null(r);
    int fds = open_fds();
    for (int i = 0; i < 20; i++) {
        cm_status_server_t *s = start_or_fail("127.0.0.1:0", m, &ready);
        request(cm_status_server_port(s), "GET", "/metrics", NULL, r);
        assert_answer(r, "HTTP/1.1 200 OK", "text/plain; version=0.0.4; charset=utf-8",
                      "# HELP up Always 1.\n# TYPE up gauge\nup 0\n");
        cm_status_server_stop(s);
    }
    assert_int_equal(atomic_load(&ready.calls), 0);
    assert_int_equal(open_fds(), fds); /* each stop closed its loop */
    free(r);
    cm_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(serves_the_three_routes),
        cmocka_unit_test(stop_closes_open_connections_and_frees_the_port),
        cmocka_unit_test(start_reports_why_it_cannot_listen),
        cmocka_unit_test(many_starts_and_stops),
        cmocka_unit_test(routes_on_a_service_httpd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
