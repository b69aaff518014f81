/*
 * passkit-pusher: the cross-file declarations of the service.
 *
 * Flow: main.c reads events from the pk:events stream (events.c) in the consumer group "pushers",
 * batch.c turns a batch of events into one push per (pass type, push token) using the registrations
 * (registrations.c), drives them through APNs (apns_client.c) and acknowledges each event once every
 * push it caused was answered or abandoned. outcome.c holds the pure rules (what an APNs answer
 * means, how long to back off) so unit tests can include it alone.
 *
 * Everything runs on the main thread. Redis calls are blocking (hiredis sync API); the APNs client
 * keeps its HTTP/2 connections for the life of the process and drives them with poll().
 */
#ifndef PUSHER_PUSHER_H
#define PUSHER_PUSHER_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/certs.h"
#include "common/ids.h"

struct redisContext;

/* ---- small helpers: out of memory aborts ---- */

static inline void *pusher_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);
    if (p == NULL)
        abort();
    return p;
}

static inline void *pusher_xrealloc(void *p, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        abort();
    p = realloc(p, n * size == 0 ? 1 : n * size);
    if (p == NULL)
        abort();
    return p;
}

static inline char *pusher_xstrdup(const char *s)
{
    char *p = strdup(s);
    if (p == NULL)
        abort();
    return p;
}

/* Milliseconds of CLOCK_MONOTONIC. */
static inline uint64_t pusher_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- outcome.c: what an APNs answer means (outcome.h) ---- */

#include "outcome.h"

/* ---- events.c: the streams pk:events and pk:fanout, consumer group "pushers" ---- */

#define PUSHER_STREAM_ID_MAX       48 /* "<ms>-<seq>": two 20-digit numbers and a dash */
#define PUSHER_EVENT_TYPE_MAX      32
#define PUSHER_VERSION_MAX         32
#define PUSHER_FANOUT_CHUNK_MAX    10000 /* devices per pk:fanout entry, the most PUSHER_FANOUT_CHUNK allows */
#define PUSHER_DEADLETTER_MAXLEN_S "100000" /* pk:deadletter keeps about this many entries */

/* The skip reason of events that need no push (pass.created, template.updated): logged at debug. */
#define PUSHER_SKIP_NOTHING_TO_PUSH "nothing_to_push"

enum pusher_stream {
    PUSHER_STREAM_EVENTS, /* pk:events: one entry per change, from the api */
    PUSHER_STREAM_FANOUT, /* pk:fanout: chunks of a large event's devices, from the pushers */
};
#define PUSHER_NSTREAMS 2

enum pusher_event_kind {
    PUSHER_EVENT_PUSH, /* a pass changed: push its devices (or, for a chunk, the chunk's devices) */
    PUSHER_EVENT_SKIP, /* nothing to push (unknown type, bad fields, deleted entry, superseded): just ack */
};

/* One entry of either stream ("item"). */
typedef struct pusher_event {
    char id[PUSHER_STREAM_ID_MAX];
    enum pusher_stream stream;
    char type[PUSHER_EVENT_TYPE_MAX];
    char ptid[CM_ID_MAX + 1];
    char serial[CM_ID_MAX + 1];
    char version[PUSHER_VERSION_MAX];
    char origin[PUSHER_STREAM_ID_MAX]; /* chunk: the pk:events id it was split from */
    char *devices;                     /* chunk: space-separated device library ids (owned), else NULL */
    enum pusher_event_kind kind;
    const char *skip_reason; /* static string when kind == SKIP */
    size_t pending;          /* pushes of this item not yet answered or dead-lettered */
    int keep_pending;        /* a dead letter of it could not be written: never ack */
    int acked;               /* already acknowledged (split into chunks in the same transaction) */
} pusher_event_t;

typedef struct pusher_stream_state {
    long long trimmed, pending, lag, consumers_deleted; /* lag -1: unknown */
} pusher_stream_state_t;

#define PUSHER_REDIS_TIMEOUT_MS 5000 /* connect and command timeout (blocking reads add their BLOCK) */

/* Every call below blocks. On failure each returns -1 and writes a sentence to err; the caller
 * treats the connection as broken (reconnects). */

const char *pusher_stream_key(enum pusher_stream stream);

/* XGROUP CREATE <stream> pushers 0 MKSTREAM for both streams; an existing group is fine. */
int pusher_events_create_groups(struct redisContext *c, char *err, size_t err_size);

/* XREADGROUP GROUP pushers <consumer> COUNT <count> [BLOCK <block_ms>] STREAMS pk:events pk:fanout
 * <starts[0]> <starts[1]>, leaving out a stream whose start is NULL. Starts ">" read new entries
 * (block_ms > 0 blocks); ids re-read this consumer's pending entries after them (block_ms is ignored). Fills
 * events[0..*n); events must hold count * PUSHER_NSTREAMS. While blocking, *blocking_fd holds the socket so a
 * signal handler can shutdown() it; it is -1 otherwise. A blocking read does not start when *stop (may be
 * NULL) is set. Free the entries with pusher_events_clear. */
int pusher_events_read(struct redisContext *c, const char *consumer,
                       const char *const starts[PUSHER_NSTREAMS], size_t count, long block_ms,
                       volatile sig_atomic_t *blocking_fd, const volatile sig_atomic_t *stop,
                       pusher_event_t *events, size_t *n, char *err, size_t err_size);

/* XAUTOCLAIM <stream> pushers <consumer> <min_idle_ms> <cursor> COUNT <count>. cursor is in/out
 * ("0-0" to start; "0-0" again when the scan is complete). Fills events like pusher_events_read. */
int pusher_events_autoclaim(struct redisContext *c, enum pusher_stream stream, const char *consumer,
                            long min_idle_ms, char cursor[PUSHER_STREAM_ID_MAX], size_t count,
                            pusher_event_t *events, size_t *n, char *err, size_t err_size);

/* Frees what the entries own (chunk device lists). */
void pusher_events_clear(pusher_event_t *events, size_t n);

/* XACK <stream> pushers id... */
int pusher_events_ack(struct redisContext *c, enum pusher_stream stream, const char *const *ids, size_t n,
                      char *err, size_t err_size);

/* XCLAIM <stream> pushers <consumer> 0 id... JUSTID: resets the idle time of entries this consumer
 * is still working on, so no other pusher claims them during a long batch. */
int pusher_events_touch(struct redisContext *c, enum pusher_stream stream, const char *consumer,
                        const char *const *ids, size_t n, char *err, size_t err_size);

/* Makes entries this consumer holds but cannot handle (no certificate for their pass type) claimable
 * at once by the others: XCLAIM ... IDLE <idle_ms> JUSTID. */
int pusher_events_release(struct redisContext *c, enum pusher_stream stream, const char *consumer,
                          const char *const *ids, size_t n, long idle_ms, char *err, size_t err_size);

/* In one MULTI/EXEC: XADD the devices dlis[0..ndlis) to pk:fanout in chunks of `chunk`, and XACK the
 * event. *nchunks = the number of entries written. */
int pusher_events_split(struct redisContext *c, const pusher_event_t *ev, char **dlis, size_t ndlis,
                        size_t chunk, size_t *nchunks, char *err, size_t err_size);

/* XADD pk:deadletter MAXLEN ~ PUSHER_DEADLETTER_MAXLEN_S * field value ... */
int pusher_events_deadletter(struct redisContext *c, const char *const *fields, size_t nfields, char *err,
                             size_t err_size);

/* Trims the stream below what every group still needs, deletes consumers of "pushers" that hold
 * nothing and were idle longer than consumer_idle_max_ms, and reports the group's pending and lag. */
int pusher_events_maintain(struct redisContext *c, enum pusher_stream stream, long consumer_idle_max_ms,
                           pusher_stream_state_t *out, char *err, size_t err_size);

/* ---- apns_client.c: HTTP/2 pushes to APNs (apns_client.h) ---- */

#include "apns_client.h"

/* ---- registrations.c: who to push, and forgetting dead tokens ---- */

typedef struct pusher_lookup_stats {
    size_t superseded;     /* items skipped: the pass has a newer version (a later event pushes) */
    size_t split;          /* events split into pk:fanout chunks */
    size_t chunks_written; /* chunks those splits wrote */
} pusher_lookup_stats_t;

/* Looks up the devices of each PUSH item (pk:regs for an event, the chunk's own list for a chunk,
 * then pk:devtoken), coalescing into one push per (topic, token). topics[i] is the topic index of
 * events[i] (ignored for SKIP items). Items whose pass has a newer version become SKIP
 * ("superseded"); events with more than `chunk` devices are split into pk:fanout chunks and marked
 * acked. On success *pushes (free with pusher_regs_free_pushes) holds *npushes pushes and each item's
 * `pending` is the number of pushes that reference it. Two pipelined round trips (plus one
 * transaction per split). */
int pusher_regs_lookup(struct redisContext *c, pusher_event_t *events, const long *topics, size_t nevents,
                       size_t chunk, pusher_push_t **pushes, size_t *npushes, pusher_lookup_stats_t *stats,
                       char *err, size_t err_size);
void pusher_regs_free_pushes(pusher_push_t *pushes, size_t n);

/* SCRIPT LOAD of the removal script; call after each connect. */
int pusher_regs_load_scripts(struct redisContext *c, char *err, size_t err_size);

/* Atomically, if pk:devtoken:{dli}:{ptid} still equals token: SREM dli from pk:regs:{ptid}:{serial}
 * for every serial of pk:devpasses:{dli}:{ptid}, then DEL both. *removed = 1 when it did, 0 when the
 * device has another token by now (or none). */
int pusher_regs_remove(struct redisContext *c, const char *ptid, const char *dli, const char *token,
                       int *removed, char *err, size_t err_size);

/* ---- batch.c: one batch of events from read to acknowledgement ---- */

typedef struct pusher_batch_env {
    struct redisContext *redis;
    pusher_apns_t *apns;
    const char *consumer;
    long claim_idle_ms;
    size_t fanout_chunk; /* events with more devices are split into pk:fanout chunks of this size */
    volatile sig_atomic_t *stop_requested; /* set by SIGTERM: collect answers in flight, start nothing */
    volatile sig_atomic_t *stop_now;       /* set by a second SIGTERM: abandon the batch without acking */
} pusher_batch_env_t;

/* Processes events[0..n): looks up tokens, pushes, removes dead registrations and acknowledges each
 * event when all its pushes are done. source names the read ("pending", "claimed", "new") in the
 * log line. Returns 0, or -1 when Redis failed (err says why; events not acknowledged stay pending
 * and are read again after the reconnect) or the batch was aborted. Acknowledgements that could not
 * be sent are kept and retried by pusher_batch_flush_acks. */
int pusher_batch_process(const pusher_batch_env_t *env, pusher_event_t *events, size_t n, const char *source,
                         char *err, size_t err_size);

/* Sends acknowledgements left over from a batch whose Redis connection failed. 0 when none remain. */
int pusher_batch_flush_acks(struct redisContext *c, char *err, size_t err_size);

/* Frees what the batch module keeps between batches. */
void pusher_batch_shutdown(void);

/* ---- metrics.c: the pusher's Prometheus metrics (the families are documented there) ---- */

struct cm_metrics;
void pusher_metrics_init(struct cm_metrics *registry);
/* A push's final outcome; item_id/origin: the stream id of the first item it served and, for a
 * chunk, the pk:events id it came from (for the time from the change to the push). */
void pusher_metrics_push_done(const char *ptid, enum pusher_outcome outcome, long status, const char *reason,
                              uint64_t latency_us, const char *item_id, const char *origin);
void pusher_metrics_push_retry(const char *ptid, long status, const char *reason);
/* Items of a batch after lookup, by stream and result, and the chunks its splits wrote. */
void pusher_metrics_items(const pusher_event_t *items, size_t n, size_t chunks_written);
void pusher_metrics_registration_removed(void);
void pusher_metrics_stream_state(enum pusher_stream stream, const pusher_stream_state_t *state);
void pusher_metrics_apns(const pusher_apns_t *apns);
void pusher_metrics_redis_error(const char *call);

/* Readiness (read by the status server's thread): Redis answered the last call, and certificates. */
void pusher_status_set_redis(int ok);
void pusher_status_set_certs(int loaded);
/* A cm_ready_fn: 1 when both hold, else 0 and why. */
int pusher_status_is_ready(void *data, char *reason, size_t reason_size);

#endif
