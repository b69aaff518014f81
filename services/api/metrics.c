/* The api's Prometheus families; see metrics.h. */
#include "metrics.h"

#include "common/metrics.h"

#include <stdlib.h>

api_metrics_t *api_metrics_new(void)
{
    api_metrics_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        abort();
    cm_metrics_t *r = cm_metrics_new();
    m->registry = r;
    m->redis_errors = cm_metrics_counter(
        r, "api_redis_errors_total",
        "Redis trouble by kind: connect, disconnect, timeout, not_connected (command refused at once), "
        "no_reply (connection lost before the reply), error_reply.",
        "kind");
    m->signer_requests =
        cm_metrics_counter(r, "api_signer_requests_total",
                           "Bundle requests to the signer, by its HTTP status (0: no answer).", "status");
    m->signer_seconds = cm_metrics_histogram(
        r, "api_signer_request_seconds", "Bundle requests to the signer, from start to answer or failure.",
        NULL, cm_metrics_latency_buckets, cm_metrics_latency_nbuckets);
    m->events =
        cm_metrics_counter(r, "api_events_published_total",
                           "Events appended to pk:events (each with the change it announces).", "type");
    m->up = cm_metrics_gauge(r, "api_dependency_up",
                             "1 when the dependency is usable (redis: the connection answers; signer: its "
                             "/readyz at the last probe), else 0.",
                             "dependency");
    return m;
}

void api_metrics_free(api_metrics_t *m)
{
    if (m == NULL)
        return;
    cm_metrics_free(m->registry);
    free(m);
}

void api_metrics_event(api_metrics_t *m, const char *type)
{
    cm_metric_add(m->events, 1, (const char *const[]){type});
}
