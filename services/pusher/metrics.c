/*
 * The pusher's metrics, served at PUSHER_LISTEN/metrics (Prometheus text format):
 *
 *   pusher_pushes_total{pass_type,outcome,reason}    final outcome of each push: ok, removed (410,
 *                                                    BadDeviceToken, DeviceTokenNotForTopic),
 *                                                    certificate_refused (403), rejected (other 4xx),
 *                                                    dead_lettered (attempts used up on 429/5xx),
 *                                                    unanswered (attempts used up without any answer:
 *                                                    its items stay pending); reason = APNs's, or the
 *                                                    transport error
 *   pusher_push_retries_total{pass_type,status,reason}  attempts that will be tried again
 *   pusher_push_duration_seconds                     APNs answer time of the last attempt of each push
 *   pusher_event_to_push_seconds                     from the change (the pk:events entry's time) to
 *                                                    its push being answered 200
 *   pusher_items_total{stream,result}                stream entries handled: pushed, split, superseded,
 *                                                    no_devices, or the skip reason
 *   pusher_fanout_chunks_written_total               pk:fanout chunks written by splits
 *   pusher_registrations_removed_total               devices forgotten after a dead-token answer
 *   pusher_group_pending{stream}, pusher_group_lag{stream}  the group "pushers" (refreshed every
 *                                                    PUSHER_MAINTAIN_MS), pusher_stream_trimmed_total{stream}
 *   pusher_apns_connections_open, pusher_apns_connects_total, pusher_apns_connect_failures_total,
 *   pusher_apns_goaways_total, pusher_apns_pings_total, pusher_apns_refused_streams_total
 *   pusher_redis_errors_total{call}
 *
 * Updates happen on the main thread; the status server's thread renders (the registry locks) and
 * asks pusher_status_is_ready (atomics).
 */
#include "pusher.h"

#include "common/metrics.h"

#include <stdatomic.h>
#include <stdio.h>
#include <sys/time.h>

static struct {
    cm_metric_t *pushes, *retries, *duration, *event_to_push, *items, *chunks, *removed, *pending, *lag,
        *trimmed, *conn_open, *connects, *connect_failures, *goaways, *pings, *refused, *redis_errors;
    pusher_apns_stats_t last_apns;
} m;

static const char *const stream_names[PUSHER_NSTREAMS] = {"events", "fanout"};

void pusher_metrics_init(cm_metrics_t *r)
{
    m.pushes = cm_metrics_counter(r, "pusher_pushes_total", "Pushes by final outcome and APNs reason",
                                  "pass_type,outcome,reason");
    m.retries = cm_metrics_counter(r, "pusher_push_retries_total", "Push attempts that will be retried",
                                   "pass_type,status,reason");
    m.duration =
        cm_metrics_histogram(r, "pusher_push_duration_seconds", "APNs answer time of a push's last attempt",
                             NULL, cm_metrics_latency_buckets, cm_metrics_latency_nbuckets);
    m.event_to_push = cm_metrics_histogram(r, "pusher_event_to_push_seconds",
                                           "Time from the change's stream entry to its push answered 200",
                                           NULL, cm_metrics_latency_buckets, cm_metrics_latency_nbuckets);
    m.items = cm_metrics_counter(r, "pusher_items_total", "Stream entries handled, by stream and result",
                                 "stream,result");
    m.chunks = cm_metrics_counter(r, "pusher_fanout_chunks_written_total", "pk:fanout chunks written", NULL);
    m.removed = cm_metrics_counter(r, "pusher_registrations_removed_total",
                                   "Device registrations removed after a dead-token answer", NULL);
    m.pending = cm_metrics_gauge(r, "pusher_group_pending",
                                 "Entries delivered to the group and not acknowledged", "stream");
    m.lag = cm_metrics_gauge(r, "pusher_group_lag", "Entries not yet delivered to the group (-1 unknown)",
                             "stream");
    m.trimmed = cm_metrics_counter(r, "pusher_stream_trimmed_total",
                                   "Acknowledged entries trimmed from the stream", "stream");
    m.conn_open =
        cm_metrics_gauge(r, "pusher_apns_connections_open", "HTTP/2 connections to APNs open", NULL);
    m.connects = cm_metrics_counter(r, "pusher_apns_connects_total", "APNs connections established", NULL);
    m.connect_failures = cm_metrics_counter(r, "pusher_apns_connect_failures_total",
                                            "APNs connection attempts that failed", NULL);
    m.goaways = cm_metrics_counter(r, "pusher_apns_goaways_total", "GOAWAY frames received from APNs", NULL);
    m.pings = cm_metrics_counter(r, "pusher_apns_pings_total", "Idle-connection PINGs sent", NULL);
    m.refused =
        cm_metrics_counter(r, "pusher_apns_refused_streams_total",
                           "Requests APNs never processed (GOAWAY, refused stream), re-sent at once", NULL);
    m.redis_errors = cm_metrics_counter(r, "pusher_redis_errors_total", "Redis calls that failed", "call");
}

static const char *outcome_label(enum pusher_outcome outcome, long status)
{
    switch (outcome) {
    case PUSHER_OUTCOME_OK:
        return "ok";
    case PUSHER_OUTCOME_REMOVE:
        return "removed";
    case PUSHER_OUTCOME_CERT:
        return "certificate_refused";
    case PUSHER_OUTCOME_ABANDONED:
        return status != 0 ? "dead_lettered" : "unanswered";
    default:
        return "rejected";
    }
}

/* Milliseconds of a stream id "<ms>-<seq>", 0 when it is not one. */
static uint64_t id_ms(const char *id)
{
    char *end = NULL;
    unsigned long long ms = strtoull(id, &end, 10);
    return end != id && *end == '-' ? (uint64_t)ms : 0;
}

void pusher_metrics_push_done(const char *ptid, enum pusher_outcome outcome, long status, const char *reason,
                              uint64_t latency_us, const char *item_id, const char *origin)
{
    const char *labels[] = {ptid, outcome_label(outcome, status), reason};
    cm_metric_add(m.pushes, 1, labels);
    if (latency_us > 0)
        cm_metric_observe(m.duration, (double)latency_us / 1e6, NULL);
    uint64_t changed = id_ms(origin != NULL && origin[0] != '\0' ? origin : item_id);
    if (outcome == PUSHER_OUTCOME_OK && changed > 0) {
        struct timeval tv;
        gettimeofday(&tv, NULL);
        uint64_t now = (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
        cm_metric_observe(m.event_to_push, now > changed ? (double)(now - changed) / 1e3 : 0, NULL);
    }
}

void pusher_metrics_push_retry(const char *ptid, long status, const char *reason)
{
    char s[24];
    snprintf(s, sizeof(s), "%ld", status);
    const char *labels[] = {ptid, s, reason};
    cm_metric_add(m.retries, 1, labels);
}

void pusher_metrics_items(const pusher_event_t *items, size_t n, size_t chunks_written)
{
    for (size_t i = 0; i < n; i++) {
        const pusher_event_t *ev = &items[i];
        const char *result = ev->acked                       ? "split"
                             : ev->kind == PUSHER_EVENT_SKIP ? ev->skip_reason
                             : ev->pending == 0              ? "no_devices"
                                                             : "pushed";
        const char *labels[] = {stream_names[ev->stream], result};
        cm_metric_add(m.items, 1, labels);
    }
    if (chunks_written > 0)
        cm_metric_add(m.chunks, (double)chunks_written, NULL);
}

void pusher_metrics_registration_removed(void)
{
    cm_metric_add(m.removed, 1, NULL);
}

void pusher_metrics_stream_state(enum pusher_stream stream, const pusher_stream_state_t *state)
{
    const char *labels[] = {stream_names[stream]};
    cm_metric_set(m.pending, (double)state->pending, labels);
    cm_metric_set(m.lag, (double)state->lag, labels);
    if (state->trimmed > 0)
        cm_metric_add(m.trimmed, (double)state->trimmed, labels);
}

/* Counters of the client are totals since start: add what is new since the last copy. */
static void add_delta(cm_metric_t *f, uint64_t now, uint64_t *last)
{
    if (now > *last)
        cm_metric_add(f, (double)(now - *last), NULL);
    *last = now;
}

void pusher_metrics_apns(const pusher_apns_t *apns)
{
    pusher_apns_stats_t s;
    pusher_apns_stats(apns, &s);
    cm_metric_set(m.conn_open, (double)s.connections_open, NULL);
    add_delta(m.connects, s.connects_total, &m.last_apns.connects_total);
    add_delta(m.connect_failures, s.connect_failures_total, &m.last_apns.connect_failures_total);
    add_delta(m.goaways, s.goaways_total, &m.last_apns.goaways_total);
    add_delta(m.pings, s.pings_sent_total, &m.last_apns.pings_sent_total);
    add_delta(m.refused, s.refused_streams_total, &m.last_apns.refused_streams_total);
}

void pusher_metrics_redis_error(const char *call)
{
    const char *labels[] = {call};
    cm_metric_add(m.redis_errors, 1, labels);
}

static atomic_int redis_ok;
static atomic_int certs_loaded;

void pusher_status_set_redis(int ok)
{
    atomic_store(&redis_ok, ok != 0);
}

void pusher_status_set_certs(int loaded)
{
    atomic_store(&certs_loaded, loaded != 0);
}

int pusher_status_is_ready(void *data, char *reason, size_t reason_size)
{
    (void)data;
    if (!atomic_load(&certs_loaded)) {
        snprintf(reason, reason_size, "no pass type certificate loaded from CERTS_DIR");
        return 0;
    }
    if (!atomic_load(&redis_ok)) {
        snprintf(reason, reason_size, "redis unreachable");
        return 0;
    }
    return 1;
}
