/*
 * The api's Prometheus families, served by routes_health.c on GET /metrics of the api's own listener,
 * next to http_requests_total and http_request_duration_seconds, which common/httpd.c counts for every
 * request. Names follow Prometheus conventions: _total counters, _seconds histograms, base units.
 *
 *   api_redis_errors_total{kind}           Redis trouble, by kind (see the API_REDIS_ERR_* labels)
 *   api_signer_requests_total{status}      bundle requests to the signer, by its HTTP status (0: none)
 *   api_signer_request_seconds             those requests, from start to answer (or failure)
 *   api_events_published_total{type}       events the api's scripts appended to pk:events
 *   api_dependency_up{dependency}          redis: connection answers; signer: last probe answered 200
 *
 * Updating them is thread-safe (common/metrics.h); the api only does so on its loop thread.
 */
#ifndef API_METRICS_H
#define API_METRICS_H

typedef struct cm_metrics cm_metrics_t;
typedef struct cm_metric cm_metric_t;

typedef struct api_metrics {
    cm_metrics_t *registry;
    cm_metric_t *redis_errors;    /* api_redis_errors_total{kind} */
    cm_metric_t *signer_requests; /* api_signer_requests_total{status} */
    cm_metric_t *signer_seconds;  /* api_signer_request_seconds */
    cm_metric_t *events;          /* api_events_published_total{type} */
    cm_metric_t *up;              /* api_dependency_up{dependency} */
} api_metrics_t;

/* kind values of api_redis_errors_total */
#define API_REDIS_ERR_CONNECT       "connect"       /* a connection attempt failed */
#define API_REDIS_ERR_DISCONNECT    "disconnect"    /* an open connection was lost (not at shutdown) */
#define API_REDIS_ERR_TIMEOUT       "timeout"       /* no reply within REDIS_TIMEOUT_MS: connection dropped */
#define API_REDIS_ERR_NOT_CONNECTED "not_connected" /* a command refused at once: no connection */
#define API_REDIS_ERR_NO_REPLY      "no_reply"    /* a command sent whose connection broke before the reply */
#define API_REDIS_ERR_REPLY         "error_reply" /* Redis answered a command with an error */

/* Creates the registry and the families. Never fails (misuse aborts). */
api_metrics_t *api_metrics_new(void);
/* Frees them; accepts NULL. Nothing may use them any more (at exit, after the loop ended). */
void api_metrics_free(api_metrics_t *m);

/* One more event of type ("pass.created", "pass.updated", "template.updated") in pk:events. */
void api_metrics_event(api_metrics_t *m, const char *type);

#endif
