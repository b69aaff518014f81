/*
 * One batch of events, from lookup to acknowledgement.
 *
 * Each event counts the pushes it caused (`pending`); a push answered or abandoned decrements every
 * event it serves, and an event reaching zero is queued for XACK. The queue is flushed after every
 * round of answers, so a pusher killed mid-batch only re-sends what it had not finished. Events
 * with nothing to push (unknown type, no certificate, no registered device) are acked at once.
 *
 * The ack queue outlives the batch: when Redis fails, the ids stay queued and main.c flushes them
 * after reconnecting, before it re-reads its pending entries.
 */
#include "pusher.h"

#include "common/log.h"

#include <hiredis/hiredis.h>
#include <stdio.h>

#define NO_CERT_LOGGED_MAX 1024 /* pass types remembered as "already logged: no certificate" */

static char **ack_queue;
static size_t ack_count, ack_cap;
static char **no_cert_logged;
static size_t no_cert_count;

typedef struct batch {
    const pusher_batch_env_t *env;
    pusher_event_t *events;
    size_t nevents;
    int redis_broken;
    char err[256];
    uint64_t last_touch;
    size_t ok, removed, devices_removed, retried, rejected, cert_refused, abandoned, skipped;
} batch_t;

static void queue_ack(const char *id)
{
    if (ack_count == ack_cap) {
        ack_cap = ack_cap ? ack_cap * 2 : 128;
        ack_queue = pusher_xrealloc(ack_queue, ack_cap, sizeof(*ack_queue));
    }
    ack_queue[ack_count++] = pusher_xstrdup(id);
}

int pusher_batch_flush_acks(redisContext *c, char *err, size_t err_size)
{
    if (ack_count == 0)
        return 0;
    if (pusher_events_ack(c, (const char *const *)ack_queue, ack_count, err, err_size) != 0)
        return -1;
    for (size_t i = 0; i < ack_count; i++)
        free(ack_queue[i]);
    ack_count = 0;
    return 0;
}

void pusher_batch_shutdown(void)
{
    for (size_t i = 0; i < ack_count; i++)
        free(ack_queue[i]);
    free(ack_queue);
    ack_queue = NULL;
    ack_count = ack_cap = 0;
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
           "events of it are acknowledged without pushing\" note=\"logged once per pass type\"",
           ev->ptid, ev->serial, ev->id);
    if (no_cert_count < NO_CERT_LOGGED_MAX) {
        no_cert_logged = pusher_xrealloc(no_cert_logged, no_cert_count + 1, sizeof(*no_cert_logged));
        no_cert_logged[no_cert_count++] = pusher_xstrdup(ev->ptid);
    }
}

static void mark_broken(batch_t *b, const char *what)
{
    if (!b->redis_broken)
        CM_LOG(CM_LOG_ERROR, "event=redis_error call=%s error=\"%s\"", what, b->err);
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
    size_t n = 0;
    for (size_t i = 0; i < b->nevents; i++)
        if (b->events[i].pending > 0)
            ids[n++] = b->events[i].id;
    if (n > 0 && pusher_events_touch(b->env->redis, b->env->consumer, ids, n, b->err, sizeof(b->err)) != 0)
        mark_broken(b, "XCLAIM");
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

static void on_done(void *ctx, pusher_push_t *p, enum pusher_outcome outcome)
{
    batch_t *b = ctx;
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
    case PUSHER_OUTCOME_ABANDONED:
        b->abandoned++;
        break;
    default:
        b->rejected++;
        break;
    }
    for (size_t i = 0; i < p->nevents; i++) {
        pusher_event_t *ev = &b->events[p->events[i]];
        /* A push APNs never answered (it was unreachable the whole time) was not delivered: its event
         * stays pending, and XAUTOCLAIM hands it out again after PUSHER_CLAIM_IDLE_MS. */
        if (outcome == PUSHER_OUTCOME_ABANDONED && p->status == 0)
            ev->unanswered = 1;
        if (--ev->pending > 0)
            continue;
        if (ev->unanswered)
            CM_LOG(CM_LOG_WARN,
                   "event=event_left_pending id=%s ptid=%s serial=%s reason=\"a push got no answer\"", ev->id,
                   ev->ptid, ev->serial);
        else
            queue_ack(ev->id);
    }
}

static void on_retry(void *ctx, pusher_push_t *p, uint64_t delay_ms)
{
    batch_t *b = ctx;
    char tok[9];
    pusher_outcome_token_prefix(p->token, tok);
    b->retried++;
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
}

static int should_abort(void *ctx)
{
    batch_t *b = ctx;
    return *b->env->stop_now != 0;
}

int pusher_batch_process(const pusher_batch_env_t *env, pusher_event_t *events, size_t n, const char *source,
                         char *err, size_t err_size)
{
    uint64_t started = pusher_now_ms();
    batch_t b = {.env = env, .events = events, .nevents = n, .last_touch = started};
    pusher_push_t *pushes = NULL;
    size_t npushes = 0;
    long *topics = pusher_xcalloc(n, sizeof(*topics));
    int rc = -1;

    for (size_t i = 0; i < n; i++) {
        pusher_event_t *ev = &events[i];
        if (ev->kind == PUSHER_EVENT_PUSH && (topics[i] = pusher_apns_topic(env->apns, ev->ptid)) < 0) {
            log_no_certificate_once(ev);
            ev->kind = PUSHER_EVENT_SKIP;
            ev->skip_reason = "no_certificate";
        } else if (ev->kind == PUSHER_EVENT_SKIP) {
            CM_LOG(strcmp(ev->skip_reason, PUSHER_SKIP_NOTHING_TO_PUSH) == 0 ? CM_LOG_DEBUG : CM_LOG_WARN,
                   "event=event_skipped id=%s type=\"%s\" reason=%s", ev->id, ev->type, ev->skip_reason);
        }
    }
    if (pusher_regs_lookup(env->redis, events, topics, n, &pushes, &npushes, err, err_size) != 0)
        goto out;
    for (size_t i = 0; i < n; i++) {
        if (events[i].kind == PUSHER_EVENT_SKIP)
            b.skipped++;
        if (events[i].pending == 0)
            queue_ack(events[i].id);
    }
    flush(&b);
    if (b.redis_broken)
        goto fail;

    pusher_apns_hooks_t hooks = {on_done, on_retry, on_tick, should_abort};
    if (pusher_apns_run(env->apns, pushes, npushes, &hooks, &b) != 0) {
        snprintf(err, err_size, "batch aborted by a second stop signal: unfinished events stay pending");
        goto out;
    }
    flush(&b);
    if (b.redis_broken)
        goto fail;
    rc = 0;
    goto out;
fail:
    snprintf(err, err_size, "%s", b.err);
out:
    CM_LOG(CM_LOG_INFO,
           "event=batch source=%s events=%zu pushes=%zu ok=%zu removed=%zu retried=%zu failed=%zu "
           "rejected=%zu certificate_refused=%zu abandoned=%zu devices_removed=%zu skipped=%zu ms=%llu%s",
           source, n, npushes, b.ok, b.removed, b.retried, b.rejected + b.cert_refused + b.abandoned,
           b.rejected, b.cert_refused, b.abandoned, b.devices_removed, b.skipped,
           (unsigned long long)(pusher_now_ms() - started), rc == 0 ? "" : " complete=false");
    pusher_regs_free_pushes(pushes, npushes);
    free(topics);
    return rc;
}
