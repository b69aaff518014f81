/* Prometheus registry and text rendering (common/metrics.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/metrics.h"

#define LABELS(...) ((const char *const[]){__VA_ARGS__})

/* Renders m and compares the whole text. */
static void assert_render(cm_metrics_t *m, const char *expected)
{
    size_t len = 12345;
    char *text = cm_metrics_render(m, &len);
    assert_non_null(text);
    assert_string_equal(text, expected);
    assert_int_equal(len, strlen(expected));
    free(text);
}

static void empty_registry_renders_nothing(void **state)
{
    cm_metrics_t *m = cm_metrics_new();
    assert_render(m, "");
    cm_metrics_free(m);
    cm_metrics_free(NULL);
}

static void counters_and_gauges_without_labels(void **state)
{
    cm_metrics_t *m = cm_metrics_new();
    cm_metric_t *c = cm_metrics_counter(m, "passkit_events_total", "Events read.", NULL);
    cm_metric_t *g = cm_metrics_gauge(m, "passkit_queue_depth", "Events waiting.", "");
    assert_render(m, "# HELP passkit_events_total Events read.\n"
                     "# TYPE passkit_events_total counter\n"
                     "passkit_events_total 0\n"
                     "# HELP passkit_queue_depth Events waiting.\n"
                     "# TYPE passkit_queue_depth gauge\n"
                     "passkit_queue_depth 0\n");
    cm_metric_add(c, 1, NULL);
    cm_metric_add(c, 2, NULL);
    cm_metric_add(c, -5, NULL);  /* ignored: counters do not go down */
    cm_metric_add(c, NAN, NULL); /* ignored */
    cm_metric_set(g, 7, NULL);
    cm_metric_add(g, -2.5, NULL);
    assert_render(m, "# HELP passkit_events_total Events read.\n"
                     "# TYPE passkit_events_total counter\n"
                     "passkit_events_total 3\n"
                     "# HELP passkit_queue_depth Events waiting.\n"
                     "# TYPE passkit_queue_depth gauge\n"
                     "passkit_queue_depth 4.5\n");
    cm_metric_set(g, -0.0, NULL);
    cm_metric_add(c, 1e20, NULL);
    assert_render(m, "# HELP passkit_events_total Events read.\n"
                     "# TYPE passkit_events_total counter\n"
                     "passkit_events_total 1e+20\n"
                     "# HELP passkit_queue_depth Events waiting.\n"
                     "# TYPE passkit_queue_depth gauge\n"
                     "passkit_queue_depth 0\n");
    cm_metrics_free(m);
}

static void numbers_print_short(void **state)
{
    cm_metrics_t *m = cm_metrics_new();
    cm_metric_t *g = cm_metrics_gauge(m, "g", "", "k");
    cm_metric_set(g, 0.1, LABELS("a"));
    cm_metric_set(g, 1.0 / 3, LABELS("b"));
    cm_metric_set(g, -42, LABELS("c"));
    cm_metric_set(g, 123456789012345, LABELS("d"));
    cm_metric_set(g, INFINITY, LABELS("e"));
    cm_metric_set(g, -INFINITY, LABELS("f"));
    cm_metric_set(g, NAN, LABELS("g"));
    cm_metric_set(g, 2.5e-7, LABELS("h"));
    assert_render(m, "# HELP g \n"
                     "# TYPE g gauge\n"
                     "g{k=\"a\"} 0.1\n"
                     "g{k=\"b\"} 0.33333333333333331\n"
                     "g{k=\"c\"} -42\n"
                     "g{k=\"d\"} 123456789012345\n"
                     "g{k=\"e\"} +Inf\n"
                     "g{k=\"f\"} -Inf\n"
                     "g{k=\"g\"} NaN\n"
                     "g{k=\"h\"} 2.5e-07\n");
    cm_metrics_free(m);
}

static void labels_in_creation_order(void **state)
{
    cm_metrics_t *m = cm_metrics_new();
    cm_metric_t *c = cm_metrics_counter(m, "passkit_pushes_total", "Pushes by outcome.", "outcome,reason");
    assert_render(m, "# HELP passkit_pushes_total Pushes by outcome.\n"
                     "# TYPE passkit_pushes_total counter\n");
    cm_metric_add(c, 1, LABELS("failed", "BadDeviceToken"));
    cm_metric_add(c, 1, LABELS("delivered", ""));
    cm_metric_add(c, 2, LABELS("failed", "BadDeviceToken"));
    cm_metric_add(c, 1, LABELS("failed", "Unregistered"));
    cm_metric_add(c, 0, LABELS("retried", "")); /* adding 0 creates the series */
    assert_render(m, "# HELP passkit_pushes_total Pushes by outcome.\n"
                     "# TYPE passkit_pushes_total counter\n"
                     "passkit_pushes_total{outcome=\"failed\",reason=\"BadDeviceToken\"} 3\n"
                     "passkit_pushes_total{outcome=\"delivered\",reason=\"\"} 1\n"
                     "passkit_pushes_total{outcome=\"failed\",reason=\"Unregistered\"} 1\n"
                     "passkit_pushes_total{outcome=\"retried\",reason=\"\"} 0\n");
    cm_metrics_free(m);
}

static void escapes_label_values_and_help(void **state)
{
    cm_metrics_t *m = cm_metrics_new();
    cm_metric_t *c = cm_metrics_counter(m, "esc_total", "Back\\slash, \"quotes\" and\nnewline.", "v");
    cm_metric_add(c, 1, LABELS("a\\b"));
    cm_metric_add(c, 1, LABELS("say \"hi\""));
    cm_metric_add(c, 1, LABELS("two\nlines"));
    cm_metric_add(c, 1, LABELS("caf\xc3\xa9"));     /* valid UTF-8 stays */
    cm_metric_add(c, 1, LABELS("bad\xff\xc3(end")); /* invalid bytes become '?' */
    cm_metric_add(c, 1, LABELS("bad\xfe\xc3(end")); /* ... and land in the same series */
    assert_render(m, "# HELP esc_total Back\\\\slash, \"quotes\" and\\nnewline.\n"
                     "# TYPE esc_total counter\n"
                     "esc_total{v=\"a\\\\b\"} 1\n"
                     "esc_total{v=\"say \\\"hi\\\"\"} 1\n"
                     "esc_total{v=\"two\\nlines\"} 1\n"
                     "esc_total{v=\"caf\xc3\xa9\"} 1\n"
                     "esc_total{v=\"bad?\?(end\"} 2\n");
    cm_metrics_free(m);
}

static void long_label_values_are_cut(void **state)
{
    cm_metrics_t *m = cm_metrics_new();
    cm_metric_t *c = cm_metrics_counter(m, "long_total", "h", "v");
    char a[300], b[300], expected[512];
    memset(a, 'x', sizeof(a) - 1);
    a[sizeof(a) - 1] = '\0';
    memcpy(b, a, sizeof(b));
    b[200] = 'y'; /* differs after the cut: same series */
    cm_metric_add(c, 1, LABELS(a));
    cm_metric_add(c, 1, LABELS(b));
    snprintf(expected, sizeof(expected),
             "# HELP long_total h\n# TYPE long_total counter\nlong_total{v=\"%.*s\"} 2\n",
             CM_METRICS_MAX_LABEL_VALUE, a);
    assert_render(m, expected);
    cm_metrics_free(m);
}

static void histogram_buckets_sum_count(void **state)
{
    cm_metrics_t *m = cm_metrics_new();
    const double bounds[] = {0.1, 0.5, 1};
    cm_metric_t *h = cm_metrics_histogram(m, "passkit_apns_seconds", "APNs round trips.", NULL, bounds, 3);
    assert_render(m, "# HELP passkit_apns_seconds APNs round trips.\n"
                     "# TYPE passkit_apns_seconds histogram\n"
                     "passkit_apns_seconds_bucket{le=\"0.1\"} 0\n"
                     "passkit_apns_seconds_bucket{le=\"0.5\"} 0\n"
                     "passkit_apns_seconds_bucket{le=\"1\"} 0\n"
                     "passkit_apns_seconds_bucket{le=\"+Inf\"} 0\n"
                     "passkit_apns_seconds_sum 0\n"
                     "passkit_apns_seconds_count 0\n");
    cm_metric_observe(h, 0.05, NULL);
    cm_metric_observe(h, 0.1, NULL); /* on the bound: counted in le="0.1" */
    cm_metric_observe(h, 0.25, NULL);
    cm_metric_observe(h, 3, NULL);
    cm_metric_observe(h, NAN, NULL); /* ignored */
    assert_render(m, "# HELP passkit_apns_seconds APNs round trips.\n"
                     "# TYPE passkit_apns_seconds histogram\n"
                     "passkit_apns_seconds_bucket{le=\"0.1\"} 2\n"
                     "passkit_apns_seconds_bucket{le=\"0.5\"} 3\n"
                     "passkit_apns_seconds_bucket{le=\"1\"} 3\n"
                     "passkit_apns_seconds_bucket{le=\"+Inf\"} 4\n"
                     "passkit_apns_seconds_sum 3.4\n"
                     "passkit_apns_seconds_count 4\n");
    cm_metrics_free(m);
}

static void labelled_histogram_with_latency_buckets(void **state)
{
    cm_metrics_t *m = cm_metrics_new();
    assert_int_equal(cm_metrics_latency_nbuckets, 14);
    assert_true(cm_metrics_latency_buckets[0] == 0.0005);
    assert_true(cm_metrics_latency_buckets[13] == 10);
    cm_metric_t *h = cm_metrics_histogram(m, "req_seconds", "Requests.", "route", cm_metrics_latency_buckets,
                                          cm_metrics_latency_nbuckets);
    cm_metric_observe(h, 0.003, LABELS("/v1/passes"));
    cm_metric_observe(h, 12, LABELS("/v1/passes"));
    cm_metric_observe(h, 0.0001, LABELS("/v1/log"));
    const char *expected = "# HELP req_seconds Requests.\n"
                           "# TYPE req_seconds histogram\n"
                           "req_seconds_bucket{route=\"/v1/passes\",le=\"0.0005\"} 0\n"
                           "req_seconds_bucket{route=\"/v1/passes\",le=\"0.001\"} 0\n"
                           "req_seconds_bucket{route=\"/v1/passes\",le=\"0.0025\"} 0\n"
                           "req_seconds_bucket{route=\"/v1/passes\",le=\"0.005\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/passes\",le=\"0.01\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/passes\",le=\"0.025\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/passes\",le=\"0.05\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/passes\",le=\"0.1\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/passes\",le=\"0.25\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/passes\",le=\"0.5\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/passes\",le=\"1\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/passes\",le=\"2.5\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/passes\",le=\"5\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/passes\",le=\"10\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/passes\",le=\"+Inf\"} 2\n"
                           "req_seconds_sum{route=\"/v1/passes\"} 12.003\n"
                           "req_seconds_count{route=\"/v1/passes\"} 2\n"
                           "req_seconds_bucket{route=\"/v1/log\",le=\"0.0005\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/log\",le=\"0.001\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/log\",le=\"0.0025\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/log\",le=\"0.005\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/log\",le=\"0.01\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/log\",le=\"0.025\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/log\",le=\"0.05\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/log\",le=\"0.1\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/log\",le=\"0.25\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/log\",le=\"0.5\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/log\",le=\"1\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/log\",le=\"2.5\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/log\",le=\"5\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/log\",le=\"10\"} 1\n"
                           "req_seconds_bucket{route=\"/v1/log\",le=\"+Inf\"} 1\n"
                           "req_seconds_sum{route=\"/v1/log\"} 0.0001\n"
                           "req_seconds_count{route=\"/v1/log\"} 1\n";
    assert_render(m, expected);
    cm_metrics_free(m);
}

static void overflow_goes_to_other(void **state)
{
    cm_metrics_t *m = cm_metrics_new();
    cm_metric_t *c = cm_metrics_counter(m, "many_total", "h", "id,kind");
    char id[16];
    for (int i = 0; i < CM_METRICS_MAX_SERIES + 20; i++) {
        snprintf(id, sizeof(id), "%d", i);
        cm_metric_add(c, 1, LABELS(id, "k"));
    }
    cm_metric_add(c, 5, LABELS("0", "k"));     /* an existing series is still counted on its own */
    cm_metric_add(c, 1, LABELS("other", "x")); /* new: goes to other,other */
    size_t len;
    char *text = cm_metrics_render(m, &len);
    /* The last lines: series 499 (the 500th), then the overflow series. */
    assert_non_null(strstr(text, "many_total{id=\"0\",kind=\"k\"} 6\n"));
    const char *tail = "many_total{id=\"499\",kind=\"k\"} 1\n"
                       "many_total{id=\"other\",kind=\"other\"} 21\n";
    assert_true(len >= strlen(tail));
    assert_string_equal(text + len - strlen(tail), tail);
    assert_null(strstr(text, "id=\"500\""));
    size_t lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    assert_int_equal(lines, 2 + CM_METRICS_MAX_SERIES + 1);
    free(text);
    cm_metrics_free(m);
}

static void families_keep_registration_order(void **state)
{
    cm_metrics_t *m = cm_metrics_new();
    cm_metric_t *b = cm_metrics_gauge(m, "b_gauge", "B.", NULL);
    cm_metric_t *a = cm_metrics_counter(m, "a_total", "A.", "x");
    cm_metric_add(a, 1, LABELS("1"));
    cm_metric_set(b, 2, NULL);
    assert_render(m, "# HELP b_gauge B.\n# TYPE b_gauge gauge\nb_gauge 2\n"
                     "# HELP a_total A.\n# TYPE a_total counter\na_total{x=\"1\"} 1\n");
    cm_metrics_free(m);
}

/* Runs misuse(m) in a child process and asserts that it aborted. */
static void assert_aborts(void (*misuse)(cm_metrics_t *m))
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY); /* the child's log line is expected */
        dup2(devnull, STDERR_FILENO);
        cm_metrics_t *m = cm_metrics_new();
        cm_metrics_counter(m, "taken_total", "h", "a");
        misuse(m);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(WTERMSIG(status), SIGABRT);
}

static void bad_metric_name(cm_metrics_t *m)
{
    cm_metrics_counter(m, "9lives", "h", NULL);
}
static void dashed_metric_name(cm_metrics_t *m)
{
    cm_metrics_gauge(m, "passkit-queue", "h", NULL);
}
static void same_name_twice(cm_metrics_t *m)
{
    cm_metrics_gauge(m, "taken_total", "h", NULL);
}
static void reserved_label_name(cm_metrics_t *m)
{
    cm_metrics_counter(m, "c_total", "h", "a,__b");
}
static void empty_label_name(cm_metrics_t *m)
{
    cm_metrics_counter(m, "c_total", "h", "a,,b");
}
static void repeated_label_name(cm_metrics_t *m)
{
    cm_metrics_counter(m, "c_total", "h", "a,b,a");
}
static void histogram_with_le(cm_metrics_t *m)
{
    cm_metrics_histogram(m, "h", "h", "le", cm_metrics_latency_buckets, cm_metrics_latency_nbuckets);
}
static void bounds_not_ascending(cm_metrics_t *m)
{
    const double b[] = {1, 1};
    cm_metrics_histogram(m, "h", "h", NULL, b, 2);
}
static void bound_infinite(cm_metrics_t *m)
{
    const double b[] = {1, INFINITY};
    cm_metrics_histogram(m, "h", "h", NULL, b, 2);
}
static void set_on_counter(cm_metrics_t *m)
{
    cm_metric_set(cm_metrics_counter(m, "c_total", "h", NULL), 1, NULL);
}
static void observe_on_gauge(cm_metrics_t *m)
{
    cm_metric_observe(cm_metrics_gauge(m, "g", "h", NULL), 1, NULL);
}
static void missing_label_values(cm_metrics_t *m)
{
    cm_metric_add(cm_metrics_counter(m, "c_total", "h", "a"), 1, NULL);
}

static void misuse_aborts(void **state)
{
    assert_aborts(bad_metric_name);
    assert_aborts(dashed_metric_name);
    assert_aborts(same_name_twice);
    assert_aborts(reserved_label_name);
    assert_aborts(empty_label_name);
    assert_aborts(repeated_label_name);
    assert_aborts(histogram_with_le);
    assert_aborts(bounds_not_ascending);
    assert_aborts(bound_infinite);
    assert_aborts(set_on_counter);
    assert_aborts(observe_on_gauge);
    assert_aborts(missing_label_values);
}

#define THREADS 4
#define ROUNDS  30000

struct worker {
    cm_metric_t *c, *g, *h;
    int index;
};

static void *work(void *arg)
{
    struct worker *w = arg;
    char who[8];
    snprintf(who, sizeof(who), "t%d", w->index);
    for (int i = 0; i < ROUNDS; i++) {
        cm_metric_add(w->c, 1, LABELS(i % 2 ? "odd" : "even"));
        cm_metric_add(w->c, 1, LABELS(who));
        cm_metric_add(w->g, 1, NULL);
        cm_metric_observe(w->h, i % 3 ? 0.5 : 2, NULL);
    }
    return NULL;
}

static void concurrent_updates_are_exact(void **state)
{
    cm_metrics_t *m = cm_metrics_new();
    const double bounds[] = {1};
    struct worker w[THREADS];
    pthread_t t[THREADS];
    cm_metric_t *c = cm_metrics_counter(m, "ops_total", "h", "kind");
    cm_metric_t *g = cm_metrics_gauge(m, "level", "h", NULL);
    cm_metric_t *h = cm_metrics_histogram(m, "size", "h", NULL, bounds, 1);
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){c, g, h, i};
        assert_int_equal(pthread_create(&t[i], NULL, work, &w[i]), 0);
    }
    for (int i = 0; i < 20; i++) { /* renders while the workers write */
        char *text = cm_metrics_render(m, NULL);
        assert_non_null(strstr(text, "# TYPE size histogram\n"));
        free(text);
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(t[i], NULL), 0);
    /* Each thread: ROUNDS/2 even, ROUNDS/2 odd, ROUNDS under its own name; ROUNDS gauge adds;
     * observations: i % 3 == 0 (10000 of 30000) are 2, the rest 0.5. */
    int big = (ROUNDS + 2) / 3, small = ROUNDS - big;
    char expected[2048];
    char *text = cm_metrics_render(m, NULL);
    /* The series were created in an order the threads decided: look each one up. */
    const char *head = "# HELP ops_total h\n# TYPE ops_total counter\n";
    assert_memory_equal(text, head, strlen(head));
    snprintf(expected, sizeof(expected), "ops_total{kind=\"even\"} %d\n", THREADS * ROUNDS / 2);
    assert_non_null(strstr(text, expected));
    snprintf(expected, sizeof(expected), "ops_total{kind=\"odd\"} %d\n", THREADS * ROUNDS / 2);
    assert_non_null(strstr(text, expected));
    for (int i = 0; i < THREADS; i++) {
        char line[64];
        snprintf(line, sizeof(line), "ops_total{kind=\"t%d\"} %d\n", i, ROUNDS);
        assert_non_null(strstr(text, line));
    }
    snprintf(expected, sizeof(expected),
             "# HELP level h\n# TYPE level gauge\nlevel %d\n"
             "# HELP size h\n# TYPE size histogram\n"
             "size_bucket{le=\"1\"} %d\nsize_bucket{le=\"+Inf\"} %d\nsize_sum %d\nsize_count %d\n",
             THREADS * ROUNDS, THREADS * small, THREADS * ROUNDS, THREADS * (small / 2 + 2 * big),
             THREADS * ROUNDS);
    assert_non_null(strstr(text, expected));
    assert_string_equal(strstr(text, "# HELP level"), expected);
    size_t lines = 0; /* ops_total: HELP, TYPE, even, odd and one per thread, nothing else */
    for (const char *p = text; p < strstr(text, "# HELP level"); p++)
        lines += *p == '\n';
    assert_int_equal(lines, 4 + THREADS);
    free(text);
    cm_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_registry_renders_nothing),
        cmocka_unit_test(counters_and_gauges_without_labels),
        cmocka_unit_test(numbers_print_short),
        cmocka_unit_test(labels_in_creation_order),
        cmocka_unit_test(escapes_label_values_and_help),
        cmocka_unit_test(long_label_values_are_cut),
        cmocka_unit_test(histogram_buckets_sum_count),
        cmocka_unit_test(labelled_histogram_with_latency_buckets),
        cmocka_unit_test(overflow_goes_to_other),
        cmocka_unit_test(families_keep_registration_order),
        cmocka_unit_test(misuse_aborts),
        cmocka_unit_test(concurrent_updates_are_exact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
