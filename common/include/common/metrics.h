/*
 * Prometheus metrics: a registry of counter, gauge and histogram families, rendered in the text
 * exposition format 0.0.4 (served by common/status_server.h on GET /metrics).
 *
 * Usage:
 *   cm_metrics_t *m = cm_metrics_new();
 *   cm_metric_t *pushes = cm_metrics_counter(m, "passkit_pushes_total", "Pushes by outcome.", "outcome");
 *   cm_metric_add(pushes, 1, (const char *const[]){"delivered"});
 *   cm_metric_t *lat = cm_metrics_histogram(m, "passkit_apns_seconds", "APNs round trips.", NULL,
 *                                           cm_metrics_latency_buckets, cm_metrics_latency_nbuckets);
 *   cm_metric_observe(lat, 0.042, NULL);
 *   char *text = cm_metrics_render(m, &len); ... free(text);
 *
 * Threading: every function may be called from any thread. One mutex per registry guards all of
 * it; an update holds it for a hash lookup and a few additions.
 *
 * Misuse is a programming error and aborts after logging why: a name outside the Prometheus
 * grammar, a family name registered twice, label values missing for a labelled family, set() on a
 * counter, observe() on something that is not a histogram, bad histogram bounds.
 */
#ifndef COMMON_METRICS_H
#define COMMON_METRICS_H

#include <stddef.h>

/* Distinct label combinations per family; further ones share one series whose values are all
 * "other" (that series comes on top of the limit). */
#define CM_METRICS_MAX_SERIES 500
/* Label names per family. */
#define CM_METRICS_MAX_LABELS 8
/* Finite bucket bounds per histogram (+Inf comes on top). */
#define CM_METRICS_MAX_BUCKETS 64
/* Bytes of a metric or label name. */
#define CM_METRICS_MAX_NAME 128
/* Bytes of a label value: longer values are cut there. Bytes that are not valid UTF-8 become '?'. */
#define CM_METRICS_MAX_LABEL_VALUE 128

typedef struct cm_metrics cm_metrics_t; /* a registry */
typedef struct cm_metric cm_metric_t;   /* one metric family */

cm_metrics_t *cm_metrics_new(void);
/* Frees the registry and every family in it. Accepts NULL. No other thread may use it any more. */
void cm_metrics_free(cm_metrics_t *m);

/* Registers a family. label_names is comma-separated ("outcome,reason"), or NULL (or "") for none;
 * label names follow [a-zA-Z_][a-zA-Z0-9_]*, do not start with "__", and a histogram may not use
 * "le". A family without labels has its one series from the start (rendered as 0). The returned
 * pointer lives as long as the registry. */
cm_metric_t *cm_metrics_counter(cm_metrics_t *m, const char *name, const char *help, const char *label_names);
cm_metric_t *cm_metrics_gauge(cm_metrics_t *m, const char *name, const char *help, const char *label_names);
/* upper_bounds: nbounds (1 to CM_METRICS_MAX_BUCKETS) finite values in strictly ascending order;
 * the +Inf bucket is implied. The bounds are copied. */
cm_metric_t *cm_metrics_histogram(cm_metrics_t *m, const char *name, const char *help,
                                  const char *label_names, const double *upper_bounds, size_t nbounds);

/* label_values: one string per label name, in order (NULL when the family has no labels). A series
 * is created on first use; past CM_METRICS_MAX_SERIES, new combinations go to the "other" series. */

/* Counter: adds v; a negative or NaN v is ignored (a counter never goes down). Gauge: adds v (any sign). */
void cm_metric_add(cm_metric_t *f, double v, const char *const *label_values);
/* Gauge only: sets the value to v. */
void cm_metric_set(cm_metric_t *f, double v, const char *const *label_values);
/* Histogram only: counts v in the first bucket whose bound is >= v and adds it to the sum. NaN is
 * ignored. */
void cm_metric_observe(cm_metric_t *f, double v, const char *const *label_values);

/* Renders every family in the Prometheus text format 0.0.4: "# HELP" and "# TYPE" lines, then the
 * series (families in registration order, series in creation order; label values escaped \\, \"
 * and \n), histograms as cumulative _bucket{le="..."} lines, _sum and _count. Integral values print
 * without a decimal point ("3", not "3.0"). Returns a malloc'd NUL-terminated string the caller
 * frees; *len (when len is not NULL) is its length. */
char *cm_metrics_render(cm_metrics_t *m, size_t *len);

/* Latency buckets in seconds, 0.0005 to 10, for request and round-trip histograms. */
extern const double cm_metrics_latency_buckets[];
extern const size_t cm_metrics_latency_nbuckets;

#endif
