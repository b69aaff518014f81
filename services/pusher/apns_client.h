/*
 * The pusher's APNs client: HTTP/2 over TLS (libnghttp2 + OpenSSL) with the pass type certificates
 * as TLS client certificates.
 *
 * Per certificate (topic) the client keeps one long-lived connection, and opens more (up to
 * max_connections) only while every open one has as many streams in flight as the server allows
 * and requests are still waiting. Requests are multiplexed up to the server's
 * SETTINGS_MAX_CONCURRENT_STREAMS, never more. Connections outlive pusher_apns_run(): between runs
 * the caller calls pusher_apns_service() so that idle connections answer GOAWAY and PING and are
 * checked with PINGs of their own.
 *
 * Everything runs on the caller's thread with non-blocking sockets and poll(); nothing here is
 * thread-safe. The process must ignore SIGPIPE (writes to a closed socket would kill it).
 */
#ifndef PUSHER_APNS_CLIENT_H
#define PUSHER_APNS_CLIENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/certs.h"
#include "common/ids.h"
#include "outcome.h"

typedef struct pusher_apns pusher_apns_t;

/* Bookkeeping of pusher_apns_run() inside each push, so that queueing a push never allocates.
 * Callers neither read nor write it. */
typedef struct pusher_apns_link {
    uint64_t due_ms;    /* when a retry is due */
    size_t next, child; /* queue and retry-heap links (indexes into the run's array) */
    unsigned refusals;  /* times the server refused the stream unprocessed in this run */
} pusher_apns_link_t;

/* One push: POST /3/device/<token> with topic = the pass type of cert index `topic`. The fields
 * after `token` belong to the caller of pusher_apns_run; the result fields are written by it. */
typedef struct pusher_push {
    size_t topic; /* index given by pusher_apns_topic() */
    char token[CM_PUSH_TOKEN_MAX + 1];
    char **dlis; /* device library ids that hold this token for this pass type */
    size_t ndlis, dlis_cap;
    size_t *events; /* indexes of the batch's events that caused this push */
    size_t nevents, events_cap;
    /* results */
    int attempts;
    long status;                    /* last HTTP status, 0 when there was no HTTP answer */
    char reason[PUSHER_REASON_MAX]; /* last APNs reason, or the transport error */
    uint64_t latency_us;            /* last attempt: request sent -> answer (or failure) */
    int answered;                   /* attempts that got an HTTP answer (the others: transport failures) */
    pusher_apns_link_t link;        /* private to apns_client.c */
} pusher_push_t;

typedef struct pusher_apns_hooks {
    /* Called exactly once per push with its final outcome (never RETRY). */
    void (*on_done)(void *ctx, pusher_push_t *push, enum pusher_outcome outcome);
    /* Called when a push is scheduled for another attempt. */
    void (*on_retry)(void *ctx, pusher_push_t *push, uint64_t delay_ms);
    /* Called after each round that finished pushes, and at least every 250 ms meanwhile. */
    void (*on_tick)(void *ctx);
    /* Polled every round: non-zero aborts the run (remaining pushes get no on_done). */
    int (*should_abort)(void *ctx);
    /* Polled every round: non-zero stops starting attempts (waiting pushes and retries are left
     * alone); the run returns 1 once the requests in flight are answered. Those left get no on_done. */
    int (*should_drain)(void *ctx);
} pusher_apns_hooks_t;

typedef struct pusher_apns_options {
    const char *base_url;    /* "https://host[:port]", no path; host may be a name, IPv4 or [IPv6] */
    const char *ca_file;     /* PEM CAs that replace the system store; NULL or "" for the system store */
    int max_attempts;        /* tries per push for 429 / 5xx / transport errors, >= 1 */
    int max_connections;     /* per certificate, >= 1 */
    long ping_interval_ms;   /* PING a connection idle this long, > 0 */
    long request_timeout_ms; /* a request unanswered this long breaks its connection, > 0 */
} pusher_apns_options_t;

/* Plain counters since pusher_apns_new(), for metrics. */
typedef struct pusher_apns_stats {
    uint64_t connections_open;       /* now: connecting, open or draining */
    uint64_t connects_total;         /* connections that reached HTTP/2 (the server's SETTINGS) */
    uint64_t connect_failures_total; /* attempts that did not: DNS, TCP, TLS, ALPN, timeout */
    uint64_t goaways_total;          /* GOAWAY frames received */
    uint64_t pings_sent_total;
    uint64_t refused_streams_total; /* requests the server did not process: re-queued, no attempt used */
} pusher_apns_stats_t;

/* Creates the client for every pass type of certs (borrowed: must outlive the client) and checks
 * the options (the URL, the CA file). No connection is opened yet. Returns 0 and *out, or -1 with a
 * sentence in err. */
int pusher_apns_new(const cm_certs_t *certs, const pusher_apns_options_t *opt, pusher_apns_t **out, char *err,
                    size_t err_size);

/* Says goodbye (GOAWAY) on every connection, best effort, and frees everything. Accepts NULL. */
void pusher_apns_free(pusher_apns_t *apns);

/* The topic index of a pass type identifier, or -1 when no certificate is loaded for it. */
long pusher_apns_topic(const pusher_apns_t *apns, const char *ptid);
const char *pusher_apns_topic_name(const pusher_apns_t *apns, size_t topic);

/* Sends every push, retrying with backoff, until each has a final outcome (reported through
 * hooks->on_done) or hooks->should_abort() says stop. pushes stays the caller's, but must not be
 * touched by anyone else until the call returns. Returns 0, or -1 when aborted (requests still in
 * flight are forgotten: their answers are read and dropped). Hooks run on this thread, from inside
 * the call, and must not call back into the client. Returns 1 when it stopped early because
 * should_drain said so (nothing left in flight). */
int pusher_apns_run(pusher_apns_t *apns, pusher_push_t *pushes, size_t n, const pusher_apns_hooks_t *hooks,
                    void *ctx);

/* Between runs: waits up to timeout_ms (0: not at all) for input on the open connections and
 * handles it (GOAWAY, PING acknowledgements, a server closing), sends a PING on a connection idle
 * for ping_interval_ms and closes one whose PING went unanswered for 10 s. Idle connections stay
 * open. */
void pusher_apns_service(pusher_apns_t *apns, int timeout_ms);

void pusher_apns_stats(const pusher_apns_t *apns, pusher_apns_stats_t *out);

#endif
