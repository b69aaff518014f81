/*
 * APNs over HTTP/2: topics, scheduling and outcomes. The bytes are apns_conn.c's business.
 *
 * Each topic (pass type certificate) has a FIFO of pushes ready to go and a few connections.
 * A round of pusher_apns_run(): move pushes whose retry time has come from the retry heap to their
 * FIFO; hand ready pushes to connections with free streams, opening another connection only when
 * every open one is at the server's stream limit and none is still connecting; write; poll();
 * read, which reports answers through on_result(); close broken or drained connections; check
 * deadlines. All queues are threaded through the pushes (apns_queue.c), so a run allocates
 * nothing per push and no step scans all pushes.
 *
 * What a result means for its push:
 *   answered        attempt used; the status and reason decide (outcome.c), retry with backoff
 *   failed          attempt used, status 0 (connection lost, stream reset, timeout), retry
 *   refused         the server never processed it (GOAWAY, REFUSED_STREAM): at once to the front
 *                   of its FIFO, no attempt used (after APNS_MAX_REFUSALS in one run it counts as
 *                   failed, so a server that refuses everything cannot keep a run going forever)
 *   connect failure when a topic has no usable connection left, every push waiting for it fails
 *                   (attempt used): an unreachable APNs ends a run after max_attempts, as before
 */
#include "apns_internal.h"
#include "pusher.h"

#include "common/log.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

#define APNS_TICK_MS          250 /* on_tick period, and the longest poll during a run */
#define APNS_MAX_REFUSALS     8
#define APNS_RECONNECT_MIN_MS 250
#define APNS_RECONNECT_MAX_MS 30000

typedef struct topic {
    const cm_pass_identity_t *identity;
    pusher_apns_conn_t **conns;
    size_t nconns, conns_cap;
    pusher_apns_fifo_t ready;
    unsigned connect_failures; /* the current streak */
    uint64_t next_connect_ms;  /* no new connection before (after a failure) */
    int cert_refused_logged;
} topic_t;

typedef struct run {
    pusher_push_t *pushes;
    const pusher_apns_hooks_t *hooks;
    void *ctx;
    size_t remaining, finished;
    pusher_apns_timers_t timers;
} run_t;

struct pusher_apns {
    pusher_apns_conn_env_t env;
    SSL_CTX *ssl_ctx;
    int max_attempts, max_connections;
    long ping_interval_ms;
    topic_t *topics;
    size_t ntopics;
    pusher_apns_stats_t stats;
    run_t *run; /* during pusher_apns_run() */
    unsigned next_conn_id;
    uint32_t rng;
    struct pollfd *pfds; /* poll() scratch, one per connection */
    pusher_apns_conn_t **pconns;
    size_t pcap;
};

static uint32_t next_random(pusher_apns_t *a)
{
    /* xorshift32: jitter only needs to spread retries, not to be unpredictable. */
    uint32_t x = a->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    a->rng = x;
    return x;
}

/* ---- outcomes ---- */

static void log_final(pusher_apns_t *a, const pusher_push_t *p, enum pusher_outcome outcome)
{
    char tok[9];
    topic_t *t = &a->topics[p->topic];
    pusher_outcome_token_prefix(p->token, tok);
    switch (outcome) {
    case PUSHER_OUTCOME_OK:
        t->cert_refused_logged = 0; /* log again if the certificate is refused later */
        break;
    case PUSHER_OUTCOME_CERT:
        if (!t->cert_refused_logged) {
            CM_LOG(CM_LOG_ERROR,
                   "event=apns_certificate_refused ptid=%s status=%ld reason=%s note=\"logged once per "
                   "certificate\"",
                   t->identity->pass_type_id, p->status, p->reason);
            t->cert_refused_logged = 1;
        }
        break;
    case PUSHER_OUTCOME_REJECTED:
        CM_LOG(CM_LOG_WARN, "event=push_rejected ptid=%s token=%s status=%ld reason=%s",
               t->identity->pass_type_id, tok, p->status, p->reason);
        break;
    case PUSHER_OUTCOME_ABANDONED:
        CM_LOG(CM_LOG_ERROR, "event=push_abandoned ptid=%s token=%s attempts=%d status=%ld reason=\"%s\"",
               t->identity->pass_type_id, tok, p->attempts, p->status, p->reason);
        break;
    default:
        break;
    }
}

/* An attempt of push i ended with p->status / p->reason set: retry it or report it. */
static void settle(pusher_apns_t *a, run_t *run, size_t i)
{
    pusher_push_t *p = &run->pushes[i];
    enum pusher_outcome outcome = pusher_outcome_classify(p->status, p->reason);
    if (outcome == PUSHER_OUTCOME_RETRY) {
        if (p->attempts < a->max_attempts) {
            uint64_t delay = pusher_outcome_backoff_ms(p->attempts, next_random(a));
            pusher_apns_timers_add(&run->timers, run->pushes, i, pusher_now_ms() + delay);
            run->hooks->on_retry(run->ctx, p, delay);
            return;
        }
        outcome = PUSHER_OUTCOME_ABANDONED;
    }
    log_final(a, p, outcome);
    run->remaining--;
    run->finished++;
    run->hooks->on_done(run->ctx, p, outcome);
}

static void fail_attempt(pusher_apns_t *a, run_t *run, size_t i, const char *error, uint64_t latency_us)
{
    pusher_push_t *p = &run->pushes[i];
    p->attempts++;
    p->status = 0;
    p->latency_us = latency_us;
    cm_log_clean(p->reason, sizeof(p->reason), error, strlen(error));
    settle(a, run, i);
}

static void on_result(void *owner, const pusher_apns_result_t *r)
{
    pusher_apns_t *a = owner;
    run_t *run = a->run;
    if (run == NULL)
        return;
    pusher_push_t *p = r->push;
    size_t i = (size_t)(p - run->pushes);
    switch (r->kind) {
    case PUSHER_APNS_REFUSED:
        if (++p->link.refusals <= APNS_MAX_REFUSALS) {
            a->stats.refused_streams_total++;
            pusher_apns_fifo_push_front(&a->topics[p->topic].ready, run->pushes, i);
            return;
        }
        fail_attempt(a, run, i, "refused by the server too often", r->latency_us);
        return;
    case PUSHER_APNS_FAILED:
        fail_attempt(a, run, i, r->error, r->latency_us);
        return;
    case PUSHER_APNS_ANSWERED:
        p->attempts++;
        p->answered++;
        p->status = r->status;
        p->latency_us = r->latency_us;
        pusher_outcome_reason(r->body, r->body_len, p->reason, sizeof(p->reason));
        settle(a, run, i);
        return;
    }
}

/* ---- connections ---- */

static void topic_add_conn(topic_t *t, pusher_apns_conn_t *c)
{
    if (t->nconns == t->conns_cap) {
        t->conns_cap = t->conns_cap ? t->conns_cap * 2 : 4;
        t->conns = pusher_xrealloc(t->conns, t->conns_cap, sizeof(*t->conns));
    }
    t->conns[t->nconns++] = c;
}

/* A connection attempt of topic t failed with error. */
static void connect_failed(pusher_apns_t *a, topic_t *t, const char *error, int not_h2)
{
    a->stats.connect_failures_total++;
    if (t->connect_failures++ == 0) {
        if (not_h2)
            CM_LOG(
                CM_LOG_ERROR,
                "event=apns_not_http2 ptid=%s url_host=%s error=\"%s\" note=\"APNs must speak HTTP/2; logged "
                "once per failure streak\"",
                t->identity->pass_type_id, a->env.host, error);
        else
            CM_LOG(CM_LOG_ERROR,
                   "event=apns_connect_failed ptid=%s error=\"%s\" note=\"logged once per failure "
                   "streak\"",
                   t->identity->pass_type_id, error);
    }
    unsigned shift = t->connect_failures - 1 < 8 ? t->connect_failures - 1 : 8;
    uint64_t delay = (uint64_t)APNS_RECONNECT_MIN_MS << shift;
    t->next_connect_ms = pusher_now_ms() + (delay < APNS_RECONNECT_MAX_MS ? delay : APNS_RECONNECT_MAX_MS);
    /* With another connection still usable, the waiting pushes wait for it. */
    for (size_t k = 0; k < t->nconns; k++)
        if (!pusher_apns_conn_is_draining(t->conns[k]) && pusher_apns_conn_error(t->conns[k])[0] == '\0')
            return;
    run_t *run = a->run;
    if (run == NULL)
        return;
    char why[PUSHER_REASON_MAX];
    snprintf(why, sizeof(why), "%s", error);
    size_t i;
    while ((i = pusher_apns_fifo_pop(&t->ready, run->pushes)) != PUSHER_APNS_NIL)
        fail_attempt(a, run, i, why, 0);
}

/* Removes connection k of topic t and frees it; in-flight requests are reported. A connection that
 * never got established counts as a failed attempt, unless quiet (we gave up on it ourselves). */
static void close_conn_as(pusher_apns_t *a, topic_t *t, size_t k, int quiet)
{
    pusher_apns_conn_t *c = t->conns[k];
    t->conns[k] = t->conns[--t->nconns];
    a->stats.connections_open--;
    int established = pusher_apns_conn_is_established(c), not_h2 = pusher_apns_conn_not_h2(c);
    char error[PUSHER_REASON_MAX * 2];
    snprintf(error, sizeof(error), "%s", pusher_apns_conn_error(c));
    pusher_apns_conn_free(c, NULL);
    if (!established && !quiet)
        connect_failed(a, t, error[0] ? error : "closed before HTTP/2 was set up", not_h2);
}

static void close_conn(pusher_apns_t *a, topic_t *t, size_t k)
{
    close_conn_as(a, t, k, 0);
}

static void open_conn(pusher_apns_t *a, topic_t *t)
{
    char err[256];
    pusher_apns_conn_t *c = NULL;
    if (pusher_apns_conn_new(&a->env, t->identity, ++a->next_conn_id, &c, err, sizeof(err)) != 0) {
        connect_failed(a, t, err, 0);
        return;
    }
    topic_add_conn(t, c);
    a->stats.connections_open++;
}

/* Hands ready pushes of topic t to its connections; opens one more when they are all full. */
static void dispatch(pusher_apns_t *a, run_t *run, topic_t *t, uint64_t now)
{
    if (t->ready.count == 0)
        return;
    size_t usable = 0, connecting = 0;
    for (size_t k = 0; k < t->nconns && t->ready.count > 0; k++) {
        pusher_apns_conn_t *c = t->conns[k];
        if (pusher_apns_conn_is_draining(c) || pusher_apns_conn_error(c)[0] != '\0')
            continue;
        usable++;
        if (!pusher_apns_conn_is_established(c)) {
            connecting++;
            continue;
        }
        size_t room = pusher_apns_conn_capacity(c);
        while (room-- > 0 && t->ready.count > 0 && !pusher_apns_conn_is_draining(c)) {
            size_t i = pusher_apns_fifo_pop(&t->ready, run->pushes);
            pusher_apns_conn_submit(c, &run->pushes[i], t->identity->pass_type_id);
        }
    }
    if (t->ready.count == 0 || connecting > 0 || usable >= (size_t)a->max_connections ||
        now < t->next_connect_ms)
        return;
    open_conn(a, t);
}

/* Pushes of the run submitted on a connection and not settled yet. */
static size_t in_flight(const pusher_apns_t *a, const run_t *run)
{
    size_t waiting = run->timers.count;
    for (size_t t = 0; t < a->ntopics; t++)
        waiting += a->topics[t].ready.count;
    return run->remaining - waiting;
}

static size_t count_conns(const pusher_apns_t *a)
{
    size_t n = 0;
    for (size_t i = 0; i < a->ntopics; i++)
        n += a->topics[i].nconns;
    return n;
}

/* Writes what every connection has to send; closes those that fail. */
static void flush_all(pusher_apns_t *a)
{
    for (size_t i = 0; i < a->ntopics; i++) {
        topic_t *t = &a->topics[i];
        for (size_t k = t->nconns; k-- > 0;)
            if (pusher_apns_conn_flush(t->conns[k]) != 0)
                close_conn(a, t, k);
    }
}

/* Deadlines, idle PINGs, and the end of a failure streak. Call after reading what the connections
 * had to say, so an answer that is already here is never taken for a timeout. */
static void housekeeping(pusher_apns_t *a, uint64_t now)
{
    for (size_t i = 0; i < a->ntopics; i++) {
        topic_t *t = &a->topics[i];
        for (size_t k = t->nconns; k-- > 0;) {
            pusher_apns_conn_t *c = t->conns[k];
            if (pusher_apns_conn_check(c, now) != 0) {
                close_conn(a, t, k);
                continue;
            }
            if (!pusher_apns_conn_is_established(c))
                continue;
            if (t->connect_failures > 0) {
                CM_LOG(CM_LOG_INFO, "event=apns_reconnected ptid=%s failed_attempts=%u",
                       t->identity->pass_type_id, t->connect_failures);
                t->connect_failures = 0;
                t->next_connect_ms = 0;
            }
            if (pusher_apns_conn_in_flight(c) == 0 && !pusher_apns_conn_is_draining(c) &&
                now >= pusher_apns_conn_idle_since_ms(c) + (uint64_t)a->ping_interval_ms) {
                pusher_apns_conn_ping(c);
                if (pusher_apns_conn_flush(c) != 0)
                    close_conn(a, t, k);
            }
        }
    }
}

/* The next moment housekeeping() has something to do, or UINT64_MAX. */
static uint64_t next_deadline(const pusher_apns_t *a)
{
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < a->ntopics; i++) {
        const topic_t *t = &a->topics[i];
        for (size_t k = 0; k < t->nconns; k++) {
            const pusher_apns_conn_t *c = t->conns[k];
            uint64_t d = pusher_apns_conn_deadline(c);
            next = d < next ? d : next;
            if (pusher_apns_conn_is_established(c) && pusher_apns_conn_in_flight(c) == 0 &&
                !pusher_apns_conn_is_draining(c)) {
                uint64_t ping_at = pusher_apns_conn_idle_since_ms(c) + (uint64_t)a->ping_interval_ms;
                next = ping_at < next ? ping_at : next;
            }
        }
    }
    return next;
}

/* One poll() over every connection for at most timeout_ms, then their I/O. */
static void poll_once(pusher_apns_t *a, int timeout_ms)
{
    size_t n = count_conns(a);
    if (n > a->pcap) {
        a->pcap = n * 2;
        a->pfds = pusher_xrealloc(a->pfds, a->pcap, sizeof(*a->pfds));
        a->pconns = pusher_xrealloc(a->pconns, a->pcap, sizeof(*a->pconns));
    }
    size_t m = 0;
    for (size_t i = 0; i < a->ntopics; i++) {
        for (size_t k = 0; k < a->topics[i].nconns; k++) {
            pusher_apns_conn_t *c = a->topics[i].conns[k];
            a->pconns[m] = c;
            a->pfds[m].fd = pusher_apns_conn_fd(c);
            a->pfds[m].events = pusher_apns_conn_events(c);
            a->pfds[m].revents = 0;
            m++;
        }
    }
    if (poll(a->pfds, (nfds_t)m, timeout_ms) <= 0)
        return;
    for (size_t j = 0; j < m; j++) {
        if (a->pfds[j].revents == 0)
            continue;
        pusher_apns_conn_t *c = a->pconns[j];
        if (pusher_apns_conn_io(c, a->pfds[j].revents) == 0)
            continue;
        /* Find it again: closing others may have moved it within its topic. */
        for (size_t i = 0; i < a->ntopics; i++)
            for (size_t k = 0; k < a->topics[i].nconns; k++)
                if (a->topics[i].conns[k] == c) {
                    close_conn(a, &a->topics[i], k);
                    goto next;
                }
    next:;
    }
}

static int timeout_until(uint64_t deadline, uint64_t now, int cap)
{
    if (deadline <= now)
        return 0;
    return deadline - now < (uint64_t)cap ? (int)(deadline - now) : cap;
}

/* ---- public API ---- */

static int parse_url(pusher_apns_t *a, const char *url, char *err, size_t err_size)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL, *user = NULL;
    int rc = -1;
    if (u == NULL)
        abort();
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK || strcmp(scheme, "https") != 0 ||
        curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK || strcmp(path, "/") != 0 ||
        curl_url_get(u, CURLUPART_QUERY, &query, 0) != CURLUE_NO_QUERY ||
        curl_url_get(u, CURLUPART_USER, &user, 0) != CURLUE_NO_USER) {
        snprintf(err, err_size, "APNs URL \"%s\" is not https://host[:port] without a path", url);
        goto out;
    }
    size_t hlen = strlen(host);
    const char *h = host;
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        h = host + 1;
        hlen -= 2;
    }
    if (hlen == 0 || hlen >= sizeof(a->env.host) || strlen(port) >= sizeof(a->env.port)) {
        snprintf(err, err_size, "APNs URL \"%s\": host or port too long", url);
        goto out;
    }
    memcpy(a->env.host, h, hlen);
    a->env.host[hlen] = '\0';
    snprintf(a->env.port, sizeof(a->env.port), "%s", port);
    if (strcmp(port, "443") == 0)
        snprintf(a->env.authority, sizeof(a->env.authority), "%s", host);
    else
        snprintf(a->env.authority, sizeof(a->env.authority), "%s:%s", host, port);
    unsigned char buf[sizeof(struct in6_addr)];
    a->env.host_is_ip =
        inet_pton(AF_INET, a->env.host, buf) == 1 || inet_pton(AF_INET6, a->env.host, buf) == 1;
    rc = 0;
out:
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_free(user);
    curl_url_cleanup(u);
    return rc;
}

static SSL_CTX *new_ssl_ctx(const char *ca_file, char *err, size_t err_size)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (ctx == NULL)
        abort();
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = ca_file != NULL && ca_file[0] != '\0' ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                                                   : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        snprintf(err, err_size, "cannot load the CAs to verify APNs with (%s)",
                 ca_file != NULL && ca_file[0] != '\0' ? ca_file : "system store");
        SSL_CTX_free(ctx);
        return NULL;
    }
    /* SSL_CTX_set_alpn_protos returns 0 on success. */
    if (SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x02h2", 3) != 0)
        abort();
    return ctx;
}

int pusher_apns_new(const cm_certs_t *certs, const pusher_apns_options_t *opt, pusher_apns_t **out, char *err,
                    size_t err_size)
{
    if (opt->max_attempts < 1 || opt->max_connections < 1 || opt->ping_interval_ms <= 0 ||
        opt->request_timeout_ms <= 0) {
        snprintf(err, err_size,
                 "APNs options out of range: max_attempts and max_connections must be >= 1, "
                 "the ping interval and request timeout > 0");
        return -1;
    }
    pusher_apns_t *a = pusher_xcalloc(1, sizeof(*a));
    if (parse_url(a, opt->base_url, err, err_size) != 0) {
        free(a);
        return -1;
    }
    a->ntopics = cm_certs_count(certs);
    for (size_t i = 0; i < a->ntopics; i++) {
        const cm_pass_identity_t *id = cm_certs_at(certs, i);
        if (id->cert == NULL || id->key == NULL) {
            snprintf(err, err_size, "no certificate or key for %s", id->pass_type_id);
            free(a);
            return -1;
        }
    }
    a->ssl_ctx = new_ssl_ctx(opt->ca_file, err, err_size);
    if (a->ssl_ctx == NULL) {
        free(a);
        return -1;
    }
    a->max_attempts = opt->max_attempts;
    a->max_connections = opt->max_connections;
    a->ping_interval_ms = opt->ping_interval_ms;
    a->rng = (uint32_t)pusher_now_ms() ^ ((uint32_t)getpid() << 16) ^ 0x9e3779b9u;
    if (a->rng == 0)
        a->rng = 1;
    a->topics = pusher_xcalloc(a->ntopics, sizeof(*a->topics));
    for (size_t i = 0; i < a->ntopics; i++) {
        a->topics[i].identity = cm_certs_at(certs, i);
        pusher_apns_fifo_init(&a->topics[i].ready);
    }
    a->env.ssl_ctx = a->ssl_ctx;
    a->env.request_timeout_ms = opt->request_timeout_ms;
    a->env.stats = &a->stats;
    a->env.on_result = on_result;
    a->env.owner = a;
    pusher_apns_conn_env_init(&a->env);
    *out = a;
    return 0;
}

void pusher_apns_free(pusher_apns_t *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->ntopics; i++) {
        topic_t *t = &a->topics[i];
        while (t->nconns > 0) {
            pusher_apns_conn_t *c = t->conns[--t->nconns];
            pusher_apns_conn_free(c, "shutdown");
        }
        free(t->conns);
    }
    a->stats.connections_open = 0;
    pusher_apns_conn_env_dispose(&a->env);
    SSL_CTX_free(a->ssl_ctx);
    free(a->topics);
    free(a->pfds);
    free(a->pconns);
    free(a);
}

long pusher_apns_topic(const pusher_apns_t *a, const char *ptid)
{
    for (size_t i = 0; i < a->ntopics; i++)
        if (strcmp(a->topics[i].identity->pass_type_id, ptid) == 0)
            return (long)i;
    return -1;
}

const char *pusher_apns_topic_name(const pusher_apns_t *a, size_t topic)
{
    return a->topics[topic].identity->pass_type_id;
}

int pusher_apns_run(pusher_apns_t *a, pusher_push_t *pushes, size_t n, const pusher_apns_hooks_t *hooks,
                    void *ctx)
{
    run_t run = {.pushes = pushes, .hooks = hooks, .ctx = ctx, .remaining = n};
    uint64_t last_tick = pusher_now_ms();
    int rc = 0;

    pusher_apns_timers_init(&run.timers);
    for (size_t i = 0; i < a->ntopics; i++)
        pusher_apns_fifo_init(&a->topics[i].ready);
    for (size_t i = 0; i < n; i++) {
        pushes[i].link.refusals = 0;
        pushes[i].link.child = PUSHER_APNS_NIL;
        pusher_apns_fifo_push_back(&a->topics[pushes[i].topic].ready, pushes, i);
    }
    a->run = &run;
    while (run.remaining > 0) {
        if (hooks->should_abort(ctx)) {
            rc = -1;
            break;
        }
        uint64_t now = pusher_now_ms();
        int draining = hooks->should_drain(ctx);
        if (draining && in_flight(a, &run) == 0) {
            rc = 1;
            break;
        }
        size_t i;
        while (!draining && (i = pusher_apns_timers_pop_due(&run.timers, pushes, now)) != PUSHER_APNS_NIL)
            pusher_apns_fifo_push_back(&a->topics[pushes[i].topic].ready, pushes, i);
        for (size_t t = 0; t < a->ntopics && !draining; t++)
            dispatch(a, &run, &a->topics[t], now);
        flush_all(a);
        if (run.finished > 0 || now - last_tick >= APNS_TICK_MS) {
            hooks->on_tick(ctx);
            run.finished = 0;
            last_tick = now;
        }
        if (run.remaining == 0)
            break;

        uint64_t next = last_tick + APNS_TICK_MS;
        uint64_t due = pusher_apns_timers_next(&run.timers, pushes);
        next = due < next ? due : next;
        for (size_t t = 0; t < a->ntopics; t++)
            if (a->topics[t].ready.count > 0 && a->topics[t].next_connect_ms > now &&
                a->topics[t].next_connect_ms < next)
                next = a->topics[t].next_connect_ms;
        uint64_t hk = next_deadline(a);
        next = hk < next ? hk : next;
        poll_once(a, timeout_until(next, now, APNS_TICK_MS));
        housekeeping(a, pusher_now_ms());
    }
    if (run.finished > 0)
        hooks->on_tick(ctx);
    for (size_t t = 0; t < a->ntopics; t++) {
        topic_t *tp = &a->topics[t];
        for (size_t k = tp->nconns; k-- > 0;) {
            /* Between runs only pusher_apns_service() drives the connections, seconds apart: one
             * still being set up would time out. It was opened for traffic that is gone: drop it. */
            if (!pusher_apns_conn_is_established(tp->conns[k]))
                close_conn_as(a, tp, k, 1);
            else if (rc < 0)
                pusher_apns_conn_orphan(tp->conns[k]);
        }
    }
    a->run = NULL;
    return rc;
}

void pusher_apns_service(pusher_apns_t *a, int timeout_ms)
{
    if (count_conns(a) == 0)
        return;
    uint64_t now = pusher_now_ms();
    int wait = timeout_ms > 0 ? timeout_until(next_deadline(a), now, timeout_ms) : 0;
    poll_once(a, wait); /* input first: a PING answer already here is not a timeout */
    housekeeping(a, pusher_now_ms());
    flush_all(a);
}

void pusher_apns_stats(const pusher_apns_t *a, pusher_apns_stats_t *out)
{
    *out = a->stats;
}
