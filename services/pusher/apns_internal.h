/*
 * Internal interfaces of the APNs client, shared by its files only:
 *   apns_queue.c  the waiting lines of a run: FIFOs and the retry heap, threaded through the pushes
 *   apns_conn.c   one connection: TCP, TLS, the nghttp2 client session, its request slots
 *   apns_client.c the public API (apns_client.h): topics, scheduling, outcomes, hooks
 */
#ifndef PUSHER_APNS_INTERNAL_H
#define PUSHER_APNS_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "apns_client.h"

struct ssl_ctx_st;
struct nghttp2_session_callbacks;

#define PUSHER_APNS_NIL SIZE_MAX /* "no push" in the queue links */

/* ---- apns_queue.c ---- */

/* A FIFO of pushes, linked through pushes[i].link.next. O(1) everything. */
typedef struct pusher_apns_fifo {
    size_t head, tail, count;
} pusher_apns_fifo_t;

void pusher_apns_fifo_init(pusher_apns_fifo_t *q);
void pusher_apns_fifo_push_back(pusher_apns_fifo_t *q, pusher_push_t *pushes, size_t i);
void pusher_apns_fifo_push_front(pusher_apns_fifo_t *q, pusher_push_t *pushes, size_t i);
/* Removes and returns the first push, or PUSHER_APNS_NIL when empty. */
size_t pusher_apns_fifo_pop(pusher_apns_fifo_t *q, pusher_push_t *pushes);

/* Pushes waiting for a retry, ordered by link.due_ms: a pairing heap linked through link.child and
 * link.next (a push is in one FIFO or in the heap, never both). Insertion O(1), removal of the
 * earliest O(log n) amortized; pushes due at the same time come out in any order. */
typedef struct pusher_apns_timers {
    size_t root, count;
} pusher_apns_timers_t;

void pusher_apns_timers_init(pusher_apns_timers_t *t);
void pusher_apns_timers_add(pusher_apns_timers_t *t, pusher_push_t *pushes, size_t i, uint64_t due_ms);
/* The earliest due time, or UINT64_MAX when empty. */
uint64_t pusher_apns_timers_next(const pusher_apns_timers_t *t, const pusher_push_t *pushes);
/* Removes and returns a push due at or before now, or PUSHER_APNS_NIL when none is. */
size_t pusher_apns_timers_pop_due(pusher_apns_timers_t *t, pusher_push_t *pushes, uint64_t now);

/* ---- apns_conn.c ---- */

typedef struct pusher_apns_conn pusher_apns_conn_t;

enum pusher_apns_result_kind {
    PUSHER_APNS_ANSWERED, /* an HTTP answer: status and body */
    PUSHER_APNS_REFUSED,  /* the server did not process it (REFUSED_STREAM, above GOAWAY's last stream,
                           * never sent): try again at once, no attempt used */
    PUSHER_APNS_FAILED,   /* sent, then no answer (stream reset, connection lost, timeout) */
};

typedef struct pusher_apns_result {
    pusher_push_t *push;
    enum pusher_apns_result_kind kind;
    long status;      /* ANSWERED only */
    const char *body; /* ANSWERED: the first bytes of the body (at most PUSHER_APNS_BODY_MAX) */
    size_t body_len;
    const char *error; /* FAILED / REFUSED: why, a short sentence */
    uint64_t latency_us;
} pusher_apns_result_t;

#define PUSHER_APNS_BODY_MAX 1024 /* kept bytes of an answer body (APNs sends < 200) */

/* What every connection of a client shares. Owned by apns_client.c. */
typedef struct pusher_apns_conn_env {
    struct ssl_ctx_st *ssl_ctx;
    struct nghttp2_session_callbacks *callbacks; /* filled in by pusher_apns_conn_env_init */
    char host[256]; /* for DNS and certificate checks: no brackets around an IPv6 address */
    char port[8];
    char authority[300]; /* :authority, "host" or "host:port" (IPv6 in brackets) */
    int host_is_ip;
    long request_timeout_ms;
    pusher_apns_stats_t *stats;
    /* Called once per submitted request whose push is still attached (see _orphan), from inside
     * pusher_apns_conn_io / _flush / _free. Must not call into the connection. */
    void (*on_result)(void *owner, const pusher_apns_result_t *r);
    void *owner;
} pusher_apns_conn_env_t;

/* Creates the nghttp2 callbacks of env. Returns 0 or -1 (out of memory aborts anyway). */
int pusher_apns_conn_env_init(pusher_apns_conn_env_t *env);
void pusher_apns_conn_env_dispose(pusher_apns_conn_env_t *env);

/* Resolves the host (blocking getaddrinfo: no cache, as Apple asks) and starts a non-blocking
 * connect. Returns 0 and *out, or -1 with err when no connection attempt could even start. */
int pusher_apns_conn_new(const pusher_apns_conn_env_t *env, const cm_pass_identity_t *id, unsigned conn_id,
                         pusher_apns_conn_t **out, char *err, size_t err_size);

/* Closes the connection (a GOAWAY first when it is healthy), reports every request still on it
 * (REFUSED when it never left, FAILED otherwise, with why), logs the close when the connection had
 * been established, and frees it. Accepts NULL. */
void pusher_apns_conn_free(pusher_apns_conn_t *c, const char *why);

int pusher_apns_conn_fd(const pusher_apns_conn_t *c);
/* The poll() events the connection waits for. */
short pusher_apns_conn_events(const pusher_apns_conn_t *c);
/* Does the I/O that is possible now. Returns 0, or -1 when the connection is finished: broken, or
 * drained after a GOAWAY (pusher_apns_conn_error says which); then free it. */
int pusher_apns_conn_io(pusher_apns_conn_t *c, short revents);
/* Writes what the session has to send. Returns 0 or -1 like _io. */
int pusher_apns_conn_flush(pusher_apns_conn_t *c);

/* How many more requests may be submitted now: 0 before the server's first SETTINGS, after a GOAWAY,
 * or while the streams in flight are at the server's limit. */
size_t pusher_apns_conn_capacity(const pusher_apns_conn_t *c);
/* Queues a request for push with apns-topic topic (borrowed: must outlive the connection). Call
 * only when _capacity() > 0; bytes go out with the next _flush or _io. */
void pusher_apns_conn_submit(pusher_apns_conn_t *c, pusher_push_t *push, const char *topic);

int pusher_apns_conn_is_established(const pusher_apns_conn_t *c); /* the server's SETTINGS arrived */
int pusher_apns_conn_is_draining(const pusher_apns_conn_t *c);    /* no new requests: GOAWAY */
int pusher_apns_conn_not_h2(const pusher_apns_conn_t *c);         /* ALPN did not select h2 */
size_t pusher_apns_conn_in_flight(const pusher_apns_conn_t *c);
const char *pusher_apns_conn_error(const pusher_apns_conn_t *c); /* why it failed; "" if it did not */
uint64_t pusher_apns_conn_idle_since_ms(const pusher_apns_conn_t *c);

/* The next moment _check has something to do (connect timeout, oldest request's timeout, PING
 * acknowledgement timeout), or UINT64_MAX. */
uint64_t pusher_apns_conn_deadline(const pusher_apns_conn_t *c);
/* Returns -1 when a deadline has passed (the connection is broken: free it), 0 otherwise. */
int pusher_apns_conn_check(pusher_apns_conn_t *c, uint64_t now_ms);

/* Sends a PING unless one is outstanding. */
void pusher_apns_conn_ping(pusher_apns_conn_t *c);

/* Detaches every push in flight: their answers will be read and dropped. */
void pusher_apns_conn_orphan(pusher_apns_conn_t *c);

#define PUSHER_APNS_CONNECT_TIMEOUT_MS 10000 /* TCP + TLS + the server's SETTINGS */
#define PUSHER_APNS_PING_TIMEOUT_MS    10000
#define PUSHER_APNS_MAX_STREAMS        1000 /* our own cap when the server allows more */

#endif
