/*
 * One batch of items (pk:events entries and pk:fanout chunks), from lookup to acknowledgement.
 *
 * Each item counts the pushes it caused (`pending`); a push answered or dead-lettered decrements
 * every item it serves, and an item reaching zero is queued for XACK. The queue is flushed after
 * every round of answers, so a pusher killed mid-batch only re-sends what it had not finished. Items
 * with nothing to push (unknown type, no certificate, no registered device, superseded by a newer
 * version) are acked at once.
 *
 * A push given up after PUSHER_MAX_ATTEMPTS answers (429, 5xx) is written to pk:deadletter before
 * any item it served is acknowledged; one that never got an answer leaves its items pending, to be
 * claimed and tried again later: the dead letters queued are always sent before the acks queued, in one
 * flush. Both queues outlive the batch: when Redis fails, they stay queued and main.c flushes them after
 * reconnecting, before it re-reads its pending entries.
 */
#include "pusher.h"

#include "common/keys.h"
#include "common/log.h"

#include <hiredis/hiredis.h>
#include <stdio.h>

#define NO_CERT_LOGGED_MAX 1024 /* pass types remembered as "already logged: no certificate" */

#define DEADLETTER_FIELDS 18 /* 9 field/value pairs */

typedef struct id_queue {
    char **ids;
    size_t count, cap;
} id_queue_t;

typedef struct dead_letter {
    char *fields[DEADLETTER_FIELDS]; /* values at odd indexes are owned; names are static */
} dead_letter_t;

static id_queue_t ack_queues[PUSHER_NSTREAMS];
static dead_letter_t *dl_queue;
static size_t dl_count, dl_cap;
static char **no_cert_logged;
static size_t no_cert_count;

typedef struct batch {
    const pusher_batch_env_t *env;
    pusher_event_t *events;
    size_t nevents;
    int redis_broken, drain_logged;
    char err[256];
    uint64_t last_touch;
    size_t ok, removed, devices_removed, retried, rejected, cert_refused, deadlettered, unanswered, skipped,
        left_pending;
} batch_t;

static void queue_ack(const pusher_event_t *ev)
{
    id_queue_t *q = &ack_queues[ev->stream];
    if (q->count == q->cap) {
        q->cap = q->cap ? q->cap * 2 : 128;
        q->ids = pusher_xrealloc(q->ids, q->cap, sizeof(*q->ids));
    }
    q->ids[q->count++] = pusher_xstrdup(ev->id);
}

static void id_queue_clear(id_queue_t *q)
{
    for (size_t i = 0; i < q->count; i++)
        free(q->ids[i]);
    q->count = 0;
}

static void dead_letter_dispose(dead_letter_t *d)
{
    for (int i = 1; i < DEADLETTER_FIELDS; i += 2)
        free(d->fields[i]);
}

int pusher_batch_flush_acks(redisContext *c, char *err, size_t err_size)
{
    /* Dead letters first: an item is acknowledged only once its given-up pushes are on record. */
    for (size_t i = 0; i < dl_count; i++) {
        dead_letter_t *d = &dl_queue[i];
        if (pusher_events_deadletter(c, (const char *const *)d->fields, DEADLETTER_FIELDS, err, err_size) !=
            0) {
            memmove(dl_queue, dl_queue + i, (dl_count - i) * sizeof(*dl_queue));
            dl_count -= i;
            return -1;
        }
        dead_letter_dispose(d);
    }
    dl_count = 0;
    for (int s = 0; s < PUSHER_NSTREAMS; s++) {
        id_queue_t *q = &ack_queues[s];
        if (q->count == 0)
            continue;
        if (pusher_events_ack(c, (enum pusher_stream)s, (const char *const *)q->ids, q->count, err,
                              err_size) != 0)
            return -1;
        id_queue_clear(q);
    }
    return 0;
}

void pusher_batch_shutdown(void)
{
    for (int s = 0; s < PUSHER_NSTREAMS; s++) {
        id_queue_clear(&ack_queues[s]);
        free(ack_queues[s].ids);
        ack_queues[s] = (id_queue_t){0};
    }
    for (size_t i = 0; i < dl_count; i++)
        dead_letter_dispose(&dl_queue[i]);
    free(dl_queue);
    dl_queue = NULL;
    dl_count = dl_cap = 0;
    for (size_t i = 0; i < no_cert_count; i++)
        free(no_cert_logged[i]);
    free(no_cert_logged);
    no_cert_logged = NULL;
    no_cert_count = 0;
}

static void log_no_certificate_once(const pusher_event_t *ev)
{
    for (size_t i = 0; i < no_cert_count; i++)
        if (strcmp(no_cert_logged[i], ev->ptid) == 0)
            return;
    CM_LOG(CM_LOG_ERROR,
           "event=no_certificate ptid=%s serial=%s id=%s reason=\"no certificate loaded for this pass type: "
           "its entries are left pending for a pusher that has one\" note=\"logged once per pass type\"",
           ev->ptid, ev->serial, ev->id);
    if (no_cert_count < NO_CERT_LOGGED_MAX) {
        no_cert_logged = pusher_xrealloc(no_cert_logged, no_cert_count + 1, sizeof(*no_cert_logged));
        no_cert_logged[no_cert_count++] = pusher_xstrdup(ev->ptid);
    }
}

static void mark_broken(batch_t *b, const char *what)
{
    if (!b->redis_broken) {
        CM_LOG(CM_LOG_ERROR, "event=redis_error call=%s error=\"%s\"", what, b->err);
        pusher_metrics_redis_error(what);
        pusher_status_set_redis(0);
    }
    b->redis_broken = 1;
}

static void flush(batch_t *b)
{
    if (!b->redis_broken && pusher_batch_flush_acks(b->env->redis, b->err, sizeof(b->err)) != 0)
        mark_broken(b, "XACK");
}

/* Keeps our unfinished entries from looking idle, so XAUTOCLAIM elsewhere leaves them alone. */
static void touch(batch_t *b)
{
    uint64_t now = pusher_now_ms();
    if (b->redis_broken || now - b->last_touch < (uint64_t)b->env->claim_idle_ms / 3)
        return;
    b->last_touch = now;
    const char **ids = pusher_xcalloc(b->nevents, sizeof(*ids));
    for (int s = 0; s < PUSHER_NSTREAMS && !b->redis_broken; s++) {
        size_t n = 0;
        for (size_t i = 0; i < b->nevents; i++)
            if (b->events[i].pending > 0 && b->events[i].stream == (enum pusher_stream)s)
                ids[n++] = b->events[i].id;
        if (n > 0 && pusher_events_touch(b->env->redis, (enum pusher_stream)s, b->env->consumer, ids, n,
                                         b->err, sizeof(b->err)) != 0)
            mark_broken(b, "XCLAIM");
    }
    free(ids);
}

/* Entries this pusher will not finish, left pending but made claimable by the other pushers at once
 * (their next XAUTOCLAIM, within a few seconds): those of a pass type it has no certificate for (one
 * of them may have it: a rollout in progress), and, when stopping (stopping = 1), every entry whose
 * pushes were not all answered, so that a pusher scaled in does not hold them for
 * PUSHER_CLAIM_IDLE_MS. */
static void release_unhandled(batch_t *b, int stopping)
{
    const char **ids = pusher_xcalloc(b->nevents, sizeof(*ids));
    for (int s = 0; s < PUSHER_NSTREAMS && !b->redis_broken; s++) {
        size_t n = 0;
        for (size_t i = 0; i < b->nevents; i++)
            if ((b->events[i].keep_pending || (stopping && b->events[i].pending > 0)) &&
                b->events[i].stream == (enum pusher_stream)s)
                ids[n++] = b->events[i].id;
        if (n > 0 && pusher_events_release(b->env->redis, (enum pusher_stream)s, b->env->consumer, ids, n,
                                           b->env->claim_idle_ms, b->err, sizeof(b->err)) != 0)
            mark_broken(b, "XCLAIM");
    }
    free(ids);
}

static void remove_token(batch_t *b, const pusher_push_t *p)
{
    const char *ptid = pusher_apns_topic_name(b->env->apns, p->topic);
    char tok[9];
    pusher_outcome_token_prefix(p->token, tok);
    for (size_t i = 0; i < p->ndlis; i++) {
        int removed = 0;
        if (b->redis_broken || pusher_regs_remove(b->env->redis, ptid, p->dlis[i], p->token, &removed, b->err,
                                                  sizeof(b->err)) != 0) {
            if (!b->redis_broken)
                mark_broken(b, "EVALSHA");
            CM_LOG(CM_LOG_ERROR,
                   "event=registration_remove_failed ptid=%s dli=%s token=%s status=%ld reason=%s "
                   "note=\"will be removed on the next push to it\"",
                   ptid, p->dlis[i], tok, p->status, p->reason);
            continue;
        }
        if (removed) {
            b->devices_removed++;
            pusher_metrics_registration_removed();
            CM_LOG(CM_LOG_INFO, "event=registration_removed ptid=%s dli=%s token=%s status=%ld reason=%s",
                   ptid, p->dlis[i], tok, p->status, p->reason);
        } else {
            CM_LOG(CM_LOG_INFO,
                   "event=registration_kept ptid=%s dli=%s token=%s status=%ld reason=%s "
                   "note=\"the device registered another token meanwhile\"",
                   ptid, p->dlis[i], tok, p->status, p->reason);
        }
    }
}

/* Space-separated strings: the push's devices, or the ids / serial numbers of the items it served. */
static char *join_dlis(const pusher_push_t *p)
{
    size_t len = 1;
    for (size_t i = 0; i < p->ndlis; i++)
        len += strlen(p->dlis[i]) + 1;
    char *out = pusher_xcalloc(len, 1), *w = out;
    for (size_t i = 0; i < p->ndlis; i++)
        w += sprintf(w, "%s%s", i ? " " : "", p->dlis[i]);
    return out;
}

static char *join_items(const batch_t *b, const pusher_push_t *p, int serials)
{
    size_t len = 1;
    for (size_t i = 0; i < p->nevents; i++)
        len += (serials ? strlen(b->events[p->events[i]].serial) : strlen(b->events[p->events[i]].id)) + 1;
    char *out = pusher_xcalloc(len, 1), *w = out;
    for (size_t i = 0; i < p->nevents; i++) {
        const pusher_event_t *ev = &b->events[p->events[i]];
        w += sprintf(w, "%s%s", i ? " " : "", serials ? ev->serial : ev->id);
    }
    return out;
}

static void queue_dead_letter(batch_t *b, const pusher_push_t *p)
{
    char status[24], attempts[24];
    snprintf(status, sizeof(status), "%ld", p->status);
    snprintf(attempts, sizeof(attempts), "%d", p->attempts);
    if (dl_count == dl_cap) {
        dl_cap = dl_cap ? dl_cap * 2 : 64;
        dl_queue = pusher_xrealloc(dl_queue, dl_cap, sizeof(*dl_queue));
    }
    dead_letter_t *d = &dl_queue[dl_count++];
    const char *names[DEADLETTER_FIELDS / 2] = {
        "passTypeIdentifier", "token",   "devices", "items", "serialNumbers", "status", "reason",
        "attempts",           "consumer"};
    char *values[DEADLETTER_FIELDS / 2] = {pusher_xstrdup(pusher_apns_topic_name(b->env->apns, p->topic)),
                                           pusher_xstrdup(p->token),
                                           join_dlis(p),
                                           join_items(b, p, 0),
                                           join_items(b, p, 1),
                                           pusher_xstrdup(status),
                                           pusher_xstrdup(p->reason),
                                           pusher_xstrdup(attempts),
                                           pusher_xstrdup(b->env->consumer)};
    for (int i = 0; i < DEADLETTER_FIELDS / 2; i++) {
        d->fields[2 * i] = (char *)names[i];
        d->fields[2 * i + 1] = values[i];
    }
}

static void on_done(void *ctx, pusher_push_t *p, enum pusher_outcome outcome)
{
    batch_t *b = ctx;
    const char *ptid = pusher_apns_topic_name(b->env->apns, p->topic);
    pusher_metrics_push_done(ptid, outcome, p->status, p->reason, p->latency_us, b->events[p->events[0]].id,
                             b->events[p->events[0]].origin);
    switch (outcome) {
    case PUSHER_OUTCOME_OK:
        b->ok++;
        break;
    case PUSHER_OUTCOME_REMOVE:
        b->removed++;
        remove_token(b, p);
        break;
    case PUSHER_OUTCOME_CERT:
        b->cert_refused++;
        break;
    case PUSHER_OUTCOME_ABANDONED: {
        char tok[9];
        pusher_outcome_token_prefix(p->token, tok);
        if (p->answered < p->attempts) {
            /* Some attempts got no answer at all (APNs unreachable for part of the time): this looks
             * like an outage, not a refusal. Its items stay pending and XAUTOCLAIM hands them out again
             * after PUSHER_CLAIM_IDLE_MS, so an outage delays pushes but loses none. Only a push that
             * APNs answered with 429/5xx every time is dead-lettered. */
            b->unanswered++;
            CM_LOG(CM_LOG_ERROR, "event=push_unanswered ptid=%s token=%s attempts=%d reason=\"%s\"", ptid,
                   tok, p->attempts, p->reason);
            for (size_t i = 0; i < p->nevents; i++)
                b->events[p->events[i]].keep_pending = 1;
            break;
        }
        b->deadlettered++;
        queue_dead_letter(b, p);
        CM_LOG(CM_LOG_ERROR,
               "event=push_dead_lettered ptid=%s token=%s attempts=%d status=%ld reason=\"%s\" stream=%s",
               ptid, tok, p->attempts, p->status, p->reason, CM_KEY_DEADLETTER);
        break;
    }
    default:
        b->rejected++;
        break;
    }
    for (size_t i = 0; i < p->nevents; i++) {
        pusher_event_t *ev = &b->events[p->events[i]];
        if (--ev->pending > 0)
            continue;
        if (ev->keep_pending)
            CM_LOG(
                CM_LOG_WARN,
                "event=event_left_pending id=%s stream=%s ptid=%s serial=%s reason=\"a push got no answer\"",
                ev->id, pusher_stream_key(ev->stream), ev->ptid, ev->serial);
        else
            queue_ack(ev);
    }
}

static void on_retry(void *ctx, pusher_push_t *p, uint64_t delay_ms)
{
    batch_t *b = ctx;
    char tok[9];
    pusher_outcome_token_prefix(p->token, tok);
    b->retried++;
    pusher_metrics_push_retry(pusher_apns_topic_name(b->env->apns, p->topic), p->status, p->reason);
    CM_LOG(CM_LOG_DEBUG,
           "event=push_retry ptid=%s token=%s attempt=%d status=%ld reason=\"%s\" delay_ms=%llu",
           pusher_apns_topic_name(b->env->apns, p->topic), tok, p->attempts, p->status, p->reason,
           (unsigned long long)delay_ms);
}

static void on_tick(void *ctx)
{
    batch_t *b = ctx;
    flush(b);
    touch(b);
    pusher_metrics_apns(b->env->apns);
}

static int should_abort(void *ctx)
{
    batch_t *b = ctx;
    return *b->env->stop_now != 0;
}

static int should_drain(void *ctx)
{
    batch_t *b = ctx;
    if (*b->env->stop_requested == 0)
        return 0;
    if (!b->drain_logged) {
        b->drain_logged = 1;
        CM_LOG(CM_LOG_INFO,
               "event=stop_requested action=drain note=\"collecting the answers in flight; a second "
               "signal stops at once\"");
    }
    return 1;
}

int pusher_batch_process(const pusher_batch_env_t *env, pusher_event_t *events, size_t n, const char *source,
                         char *err, size_t err_size)
{
    uint64_t started = pusher_now_ms();
    batch_t b = {.env = env, .events = events, .nevents = n, .last_touch = started};
    pusher_push_t *pushes = NULL;
    size_t npushes = 0;
    pusher_lookup_stats_t lookup = {0};
    long *topics = pusher_xcalloc(n, sizeof(*topics));
    int rc = -1;

    for (size_t i = 0; i < n; i++) {
        pusher_event_t *ev = &events[i];
        if (ev->kind == PUSHER_EVENT_PUSH && (topics[i] = pusher_apns_topic(env->apns, ev->ptid)) < 0) {
            /* Another pusher may have the certificate (a rollout in progress): never acknowledge. The
             * entry stays pending and XAUTOCLAIM hands it out again after PUSHER_CLAIM_IDLE_MS. */
            log_no_certificate_once(ev);
            ev->kind = PUSHER_EVENT_SKIP;
            ev->skip_reason = "no_certificate";
            ev->keep_pending = 1;
        } else if (ev->kind == PUSHER_EVENT_SKIP) {
            CM_LOG(strcmp(ev->skip_reason, PUSHER_SKIP_NOTHING_TO_PUSH) == 0 ? CM_LOG_DEBUG : CM_LOG_WARN,
                   "event=event_skipped id=%s stream=%s type=\"%s\" reason=%s", ev->id,
                   pusher_stream_key(ev->stream), ev->type, ev->skip_reason);
        }
    }
    if (pusher_regs_lookup(env->redis, events, topics, n, env->fanout_chunk, &pushes, &npushes, &lookup, err,
                           err_size) != 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (events[i].kind == PUSHER_EVENT_SKIP)
            b.skipped++;
        if (events[i].pending == 0 && !events[i].acked && !events[i].keep_pending)
            queue_ack(&events[i]);
    }
    pusher_metrics_items(events, n, lookup.chunks_written);
    flush(&b);
    release_unhandled(&b, 0);
    if (b.redis_broken)
        goto fail;

    pusher_apns_hooks_t hooks = {on_done, on_retry, on_tick, should_abort, should_drain};
    int ran = pusher_apns_run(env->apns, pushes, npushes, &hooks, &b);
    if (ran < 0) {
        snprintf(err, err_size, "batch aborted by a second stop signal: unfinished items stay pending");
        goto out;
    }
    if (ran > 0) {
        for (size_t i = 0; i < n; i++)
            b.left_pending += events[i].pending > 0;
        CM_LOG(CM_LOG_INFO,
               "event=batch_drained items_left_pending=%zu reason=\"stop requested: answers in flight were "
               "collected; the entries not finished are released to the other pushers\"",
               b.left_pending);
    }
    flush(&b);
    if (ran > 0)
        release_unhandled(&b, 1);
    if (b.redis_broken)
        goto fail;
    rc = 0;
    goto out;
fail:
    snprintf(err, err_size, "%s", b.err);
out:
    CM_LOG(CM_LOG_INFO,
           "event=batch source=%s items=%zu pushes=%zu ok=%zu removed=%zu retried=%zu failed=%zu "
           "rejected=%zu certificate_refused=%zu dead_lettered=%zu unanswered=%zu devices_removed=%zu "
           "skipped=%zu "
           "superseded=%zu split=%zu chunks_written=%zu ms=%llu%s",
           source, n, npushes, b.ok, b.removed, b.retried,
           b.rejected + b.cert_refused + b.deadlettered + b.unanswered, b.rejected, b.cert_refused,
           b.deadlettered, b.unanswered, b.devices_removed, b.skipped, lookup.superseded, lookup.split,
           lookup.chunks_written, (unsigned long long)(pusher_now_ms() - started),
           rc == 0 ? "" : " complete=false");
    pusher_regs_free_pushes(pushes, npushes);
    free(topics);
    return rc;
}
