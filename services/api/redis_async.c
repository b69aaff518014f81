/*
 * hiredis async on libuv with automatic reconnection; see redis_async.h.
 * A disconnect schedules a reconnect after RECONNECT_MS; AUTH and SELECT are queued first on every
 * new connection, so commands sent afterwards run authenticated and in the right database.
 * The host name is never looked up on the loop (hiredis would call getaddrinfo there, and a lost DNS
 * packet stops the loop for 5 s): a connect uses the address remembered from the last working one
 * (common/redis_addr.h), or looks the name up in libuv's thread pool first.
 *
 * A connection is usable (commands are sent, api_redis_is_connected, api_dependency_up{redis}) only
 * once Redis answered a PING on it: a frozen Redis (SIGSTOP, a stalled VM) still completes TCP
 * handshakes in its kernel. A watchdog drops a connection whose connect or replies are overdue by
 * timeout_ms, at once: hiredis's redisAsyncDisconnect would wait for the replies that never come.
 */
#include "redis_async.h"
#include "common/log.h"
#include "common/redis_addr.h"
#include "common/redis_url.h"
#include "redis_uv.h"

#include "common/metrics.h"

#include <hiredis/async.h>
#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>

#define RECONNECT_MS          500
#define RECONNECT_AFTER_ERROR 5000 /* Redis refused the PING (NOAUTH, LOADING...): try again later */
#define WATCHDOG_MS           500
#define KEEPALIVE_MS          1000 /* an idle connection is PINGed this often, so a frozen Redis is noticed */

struct api_redis {
    uv_loop_t *loop;
    cm_redis_url_t url;
    redisAsyncContext *ac;
    int tcp_up;    /* hiredis reported the connect done */
    int connected; /* usable: Redis answered the PING */
    int closing;
    int timed_out;         /* the watchdog dropped the connection: on_disconnect says so */
    uint64_t reconnect_ms; /* the delay before the next attempt after this connection ends */
    uint64_t connect_started;
    int open_handles;        /* the two timers and a lookup in flight, closed at api_redis_free */
    uv_getaddrinfo_t lookup; /* the host name's lookup in the thread pool */
    int looking_up;
    int via_remembered; /* the connect in progress uses the remembered address */
    uv_timer_t reconnect_timer;
    uv_timer_t watchdog; /* fails the connection when a reply is overdue */
    long timeout_ms;
    api_metrics_t *metrics;
    size_t pending;         /* commands sent and not yet answered */
    uint64_t last_progress; /* loop time of the last reply (or of the first pending command) */
};

struct pending {
    api_redis_cb cb;
    void *data;
};

static void connect_now(api_redis_t *r);

static void count_error(const api_redis_t *r, const char *kind)
{
    cm_metric_add(r->metrics->redis_errors, 1, (const char *const[]){kind});
}

static void on_reconnect_timer(uv_timer_t *timer)
{
    connect_now(timer->data);
}

static void set_usable(api_redis_t *r, int usable)
{
    r->connected = usable;
    cm_metric_set(r->metrics->up, usable, (const char *const[]){"redis"});
}

/* Frees the connection now: pending callbacks get NULL, then (if the connect was done) on_disconnect
 * runs. Not from inside a hiredis callback. */
static void drop_connection(api_redis_t *r)
{
    redisAsyncContext *ac = r->ac;
    r->ac = NULL; /* the callbacks run below must not send on it */
    set_usable(r, 0);
    redisAsyncFree(ac);
}

/* Bookkeeping of every command sent (the watchdog measures from the first pending one) and answered. */
static void sent(api_redis_t *r)
{
    if (r->pending++ == 0)
        r->last_progress = uv_now(r->loop);
}

static void answered(api_redis_t *r)
{
    r->pending--;
    r->last_progress = uv_now(r->loop);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct pending *p = privdata;
    api_redis_t *r = ac->data;
    answered(r);
    if (reply == NULL)
        count_error(r, API_REDIS_ERR_NO_REPLY);
    else if (((redisReply *)reply)->type == REDIS_REPLY_ERROR)
        count_error(r, API_REDIS_ERR_REPLY);
    p->cb(reply, p->data);
    free(p);
}

static void on_setup_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    redisReply *rep = reply;
    if (rep != NULL && rep->type == REDIS_REPLY_ERROR)
        CM_LOG(CM_LOG_ERROR, "event=redis_setup_failed command=%s reason=\"%s\"", (const char *)privdata,
               rep->str);
}

/* The answer to our own PING: the first one on a connection makes it usable; any error (NOAUTH after a
 * failed AUTH, LOADING...) makes it unusable and closes it once the commands sent on it are answered. */
static void on_ping(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)privdata;
    api_redis_t *r = ac->data;
    redisReply *rep = reply;
    answered(r);
    if (rep == NULL || r->closing)
        return; /* the connection is going away: on_disconnect has it */
    if (rep->type == REDIS_REPLY_ERROR) {
        CM_LOG(CM_LOG_WARN, "event=redis_unusable host=%s port=%d reason=\"%s\"", r->url.host, r->url.port,
               rep->str);
        count_error(r, API_REDIS_ERR_REPLY);
        set_usable(r, 0);
        r->reconnect_ms = RECONNECT_AFTER_ERROR;
        redisAsyncDisconnect(ac);
        return;
    }
    if (!r->connected) {
        set_usable(r, 1);
        CM_LOG(CM_LOG_INFO, "event=redis_connected host=%s port=%d", r->url.host, r->url.port);
    }
}

static void send_ping(api_redis_t *r)
{
    if (redisAsyncCommand(r->ac, on_ping, NULL, "PING") == REDIS_OK)
        sent(r);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    api_redis_t *r = ac->data;
    if (status != REDIS_OK) {
        CM_LOG(CM_LOG_WARN, "event=redis_connect_failed host=%s port=%d reason=\"%s\"", r->url.host,
               r->url.port, ac->errstr);
        count_error(r, API_REDIS_ERR_CONNECT);
        if (r->via_remembered)
            cm_redis_addr_forget(r->url.host, r->url.port); /* moved, or down: look the name up next */
        r->ac = NULL; /* hiredis frees the context after this callback */
        if (!r->closing)
            uv_timer_start(&r->reconnect_timer, on_reconnect_timer, RECONNECT_MS, 0);
        return;
    }
    r->tcp_up = 1;
    if (!r->via_remembered)
        cm_redis_addr_remember(r->url.host, r->url.port, ac->c.fd, cm_redis_addr_now_ms());
    send_ping(r); /* queued after AUTH and SELECT: its answer says the connection is ready for commands */
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    api_redis_t *r = ac->data;
    uint64_t delay = r->reconnect_ms;
    const char *reason = r->timed_out         ? "no reply within REDIS_TIMEOUT_MS"
                         : status == REDIS_OK ? "closed"
                                              : ac->errstr;
    r->ac = NULL;
    r->tcp_up = 0;
    r->timed_out = 0;
    r->reconnect_ms = RECONNECT_MS;
    set_usable(r, 0);
    if (r->closing)
        return;
    count_error(r, API_REDIS_ERR_DISCONNECT);
    CM_LOG(CM_LOG_WARN, "event=redis_disconnected reason=\"%s\"", reason);
    uv_timer_start(&r->reconnect_timer, on_reconnect_timer, delay, 0);
}

/* Connects to ip, numeric: hiredis's getaddrinfo returns at once. */
static void connect_to(api_redis_t *r, const char *ip, int remembered)
{
    r->via_remembered = remembered;
    r->tcp_up = 0;
    r->connect_started = uv_now(r->loop);
    redisAsyncContext *ac = redisAsyncConnect(ip, r->url.port);
    if (ac == NULL)
        abort();
    if (ac->err) {
        CM_LOG(CM_LOG_WARN, "event=redis_connect_failed host=%s port=%d address=%s reason=\"%s\"",
               r->url.host, r->url.port, ip, ac->errstr);
        count_error(r, API_REDIS_ERR_CONNECT);
        if (remembered)
            cm_redis_addr_forget(r->url.host, r->url.port);
        redisAsyncFree(ac);
        uv_timer_start(&r->reconnect_timer, on_reconnect_timer, RECONNECT_MS, 0);
        return;
    }
    ac->data = r;
    if (api_redis_uv_attach(ac, r->loop) != 0) {
        CM_LOG(CM_LOG_WARN, "event=redis_connect_failed reason=\"cannot watch the socket\"");
        count_error(r, API_REDIS_ERR_CONNECT);
        redisAsyncFree(ac);
        uv_timer_start(&r->reconnect_timer, on_reconnect_timer, RECONNECT_MS, 0);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    r->ac = ac;
    if (r->url.password[0] != '\0') {
        if (r->url.user[0] != '\0')
            redisAsyncCommand(ac, on_setup_reply, "AUTH", "AUTH %s %s", r->url.user, r->url.password);
        else
            redisAsyncCommand(ac, on_setup_reply, "AUTH", "AUTH %s", r->url.password);
    }
    if (r->url.db != 0)
        redisAsyncCommand(ac, on_setup_reply, "SELECT", "SELECT %d", r->url.db);
}

static void on_handle_closed(api_redis_t *r)
{
    if (--r->open_handles == 0)
        free(r);
}

/* The first IPv4 address, else the first IPv6 one (hiredis's own order), as text into ip. */
static int pick_address(const struct addrinfo *res, char *ip)
{
    for (int family = AF_INET;; family = AF_INET6) {
        for (const struct addrinfo *a = res; a != NULL; a = a->ai_next) {
            if (a->ai_family != family)
                continue;
            const void *addr = family == AF_INET
                                   ? (const void *)&((struct sockaddr_in *)a->ai_addr)->sin_addr
                                   : (const void *)&((struct sockaddr_in6 *)a->ai_addr)->sin6_addr;
            return inet_ntop(family, addr, ip, CM_REDIS_ADDR_SIZE) != NULL ? 0 : -1;
        }
        if (family == AF_INET6)
            return -1;
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    api_redis_t *r = req->data;
    char ip[CM_REDIS_ADDR_SIZE];
    int picked = status == 0 ? pick_address(res, ip) : -1;
    r->looking_up = 0;
    uv_freeaddrinfo(res);
    if (r->closing) {
        on_handle_closed(r);
        return;
    }
    r->open_handles--;
    if (picked != 0) {
        CM_LOG(CM_LOG_WARN, "event=redis_connect_failed host=%s port=%d reason=\"lookup: %s\"", r->url.host,
               r->url.port, status != 0 ? uv_strerror(status) : "no IPv4 or IPv6 address");
        count_error(r, API_REDIS_ERR_CONNECT);
        uv_timer_start(&r->reconnect_timer, on_reconnect_timer, RECONNECT_MS, 0);
        return;
    }
    connect_to(r, ip, 0);
}

static void connect_now(api_redis_t *r)
{
    char ip[CM_REDIS_ADDR_SIZE];
    if (cm_redis_addr_lookup(r->url.host, r->url.port, cm_redis_addr_now_ms(), ip)) {
        connect_to(r, ip, 1);
        return;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    r->lookup.data = r;
    int rc = uv_getaddrinfo(r->loop, &r->lookup, on_resolved, r->url.host, NULL, &hints);
    if (rc != 0) {
        CM_LOG(CM_LOG_WARN, "event=redis_connect_failed host=%s port=%d reason=\"lookup: %s\"", r->url.host,
               r->url.port, uv_strerror(rc));
        count_error(r, API_REDIS_ERR_CONNECT);
        uv_timer_start(&r->reconnect_timer, on_reconnect_timer, RECONNECT_MS, 0);
        return;
    }
    r->looking_up = 1;
    r->open_handles++;
}

/* hiredis 0.14 has no timeout for asynchronous connects or commands: a server that stops answering (or
 * a network that drops packets) would keep requests waiting forever. A connect not done within
 * timeout_ms is abandoned; when commands are pending and nothing came back for timeout_ms, the
 * connection is dropped: pending callbacks get NULL (503), and the reconnect logic takes over. */
static void on_watchdog(uv_timer_t *timer)
{
    api_redis_t *r = timer->data;
    uint64_t now = uv_now(r->loop);
    if (r->ac == NULL)
        return;
    if (!r->tcp_up) {
        long limit = r->via_remembered ? cm_redis_addr_connect_ms(r->timeout_ms) : r->timeout_ms;
        if (now - r->connect_started < (uint64_t)limit)
            return;
        CM_LOG(CM_LOG_WARN,
               "event=redis_connect_failed host=%s port=%d reason=\"not connected after %ld ms\"",
               r->url.host, r->url.port, limit);
        count_error(r, API_REDIS_ERR_CONNECT);
        if (r->via_remembered)
            cm_redis_addr_forget(r->url.host, r->url.port);
        drop_connection(r); /* hiredis calls no callback of ours for a connect still in progress */
        uv_timer_start(&r->reconnect_timer, on_reconnect_timer, RECONNECT_MS, 0);
        return;
    }
    if (r->pending == 0) {
        if (r->connected && now - r->last_progress >= KEEPALIVE_MS)
            send_ping(r);
        return;
    }
    if (now - r->last_progress < (uint64_t)r->timeout_ms)
        return;
    CM_LOG(CM_LOG_WARN, "event=redis_timeout pending=%zu waited_ms=%llu", r->pending,
           (unsigned long long)(now - r->last_progress));
    count_error(r, API_REDIS_ERR_TIMEOUT);
    r->timed_out = 1;
    drop_connection(r);
}

int api_redis_new(uv_loop_t *loop, const char *url, long timeout_ms, api_metrics_t *metrics,
                  api_redis_t **out)
{
    char err[256];
    api_redis_t *r = calloc(1, sizeof(*r));
    if (r == NULL)
        abort();
    if (cm_redis_url_parse(url, &r->url, err, sizeof(err)) != 0) {
        CM_LOG(CM_LOG_ERROR, "event=config_invalid var=REDIS_URL reason=\"%s\"", err);
        free(r);
        return -1;
    }
    r->loop = loop;
    r->timeout_ms = timeout_ms;
    r->reconnect_ms = RECONNECT_MS;
    r->metrics = metrics;
    set_usable(r, 0);
    uv_timer_init(loop, &r->reconnect_timer);
    r->reconnect_timer.data = r;
    uv_timer_init(loop, &r->watchdog);
    r->watchdog.data = r;
    uv_timer_start(&r->watchdog, on_watchdog, WATCHDOG_MS, WATCHDOG_MS);
    connect_now(r);
    *out = r;
    return 0;
}

int api_redis_command(api_redis_t *r, api_redis_cb cb, void *data, int argc, const char **argv,
                      const size_t *argvlen)
{
    if (r->ac == NULL || !r->connected || r->closing) {
        count_error(r, API_REDIS_ERR_NOT_CONNECTED);
        return -1; /* answered at once (503) rather than queued behind a connect that may never finish */
    }
    struct pending *p = malloc(sizeof(*p));
    if (p == NULL)
        abort();
    p->cb = cb;
    p->data = data;
    if (redisAsyncCommandArgv(r->ac, on_reply, p, argc, argv, argvlen) != REDIS_OK) {
        count_error(r, API_REDIS_ERR_NOT_CONNECTED);
        free(p);
        return -1;
    }
    sent(r);
    return 0;
}

int api_redis_is_connected(const api_redis_t *r)
{
    return r->connected;
}

size_t api_redis_pending(const api_redis_t *r)
{
    return r->pending;
}

static void on_timer_closed(uv_handle_t *h)
{
    on_handle_closed(h->data);
}

void api_redis_free(api_redis_t *r)
{
    if (r == NULL)
        return;
    r->closing = 1;
    r->open_handles += 2;
    if (r->looking_up)
        uv_cancel((uv_req_t *)&r->lookup); /* on_resolved still runs (UV_ECANCELED) and drops its count */
    uv_timer_stop(&r->reconnect_timer);
    uv_timer_stop(&r->watchdog);
    if (r->ac != NULL)
        redisAsyncFree(r->ac); /* pending callbacks run with NULL replies */
    r->ac = NULL;
    uv_close((uv_handle_t *)&r->reconnect_timer, on_timer_closed);
    uv_close((uv_handle_t *)&r->watchdog, on_timer_closed);
}
