/*
 * The signer's Prometheus families, served on its own listener by routes_status.c. Names follow
 * Prometheus conventions: _total counters, _seconds histograms, base units.
 */
#include "signer.h"

#include "common/metrics.h"

#include <stdlib.h>

signer_metrics_t *signer_metrics_new(void)
{
    signer_metrics_t *m = calloc(1, sizeof(*m));
    if (m == NULL)
        abort();
    cm_metrics_t *r = cm_metrics_new();
    m->registry = r;
    m->requests =
        cm_metrics_counter(r, "signer_requests_total", "Bundle requests answered, by HTTP status.", "status");
    m->request_seconds =
        cm_metrics_histogram(r, "signer_request_seconds", "Bundle requests, from arrival to answer.", NULL,
                             cm_metrics_latency_buckets, cm_metrics_latency_nbuckets);
    m->signings =
        cm_metrics_counter(r, "signer_signings_total",
                           "Bundles built and signed (cache misses), by result: ok or failed.", "result");
    m->signing_seconds =
        cm_metrics_histogram(r, "signer_signing_seconds",
                             "Worker time of a job that built and signed a bundle (Redis reads included).",
                             NULL, cm_metrics_latency_buckets, cm_metrics_latency_nbuckets);
    m->cache_hits = cm_metrics_counter(r, "signer_cache_hits_total",
                                       "Jobs answered from the pk:bundle cache without signing.", NULL);
    m->cache_misses = cm_metrics_counter(r, "signer_cache_misses_total",
                                         "Jobs that found no cached bundle for the pass version.", NULL);
    m->waiters =
        cm_metrics_counter(r, "signer_singleflight_waiters_total",
                           "Requests answered by a job another request started for the same pass.", NULL);
    m->cert_expiry = cm_metrics_gauge(r, "signer_certificate_expiry_days",
                                      "Days until the pass type certificate expires (negative: expired; NaN: "
                                      "no longer loaded).",
                                      "pass_type");
    m->cert_loaded =
        cm_metrics_gauge(r, "signer_certificates_loaded", "Pass type certificates in use.", NULL);
    m->cert_reloads = cm_metrics_counter(r, "signer_certificate_reloads_total",
                                         "Certificate reloads (SIGHUP), by result: ok, partial (some pass "
                                         "types refused) or failed (previous certificates kept).",
                                         "result");
    m->workers = cm_metrics_gauge(r, "signer_workers", "Threads of the signing pool.", NULL);
    m->redis_errors = cm_metrics_counter(r, "signer_redis_errors_total",
                                         "Redis failures, by call: bundle (a job's reads and writes) or ping "
                                         "(the readiness check).",
                                         "call");
    return m;
}
