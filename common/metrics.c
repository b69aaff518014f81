/*
 * Prometheus metrics registry; see common/metrics.h.
 *
 * Design: a registry is a mutex and an array of families. A family keeps its series in an array in
 * creation order (the render order) and, when it has labels, an open-addressing hash table of
 * indexes into that array, keyed by the label values joined with NUL bytes. Label values are
 * cleaned (cut at CM_METRICS_MAX_LABEL_VALUE, invalid UTF-8 made '?') before they are hashed, so
 * two inputs that clean to the same text share one series and the output never repeats a series.
 * Histogram buckets are stored per bucket and summed up when rendered.
 *
 * Numbers go through printf/strtod, which assume the "C" locale (no service calls setlocale).
 */
#include "common/metrics.h"
#include "common/log.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Slots of a family's hash table: a power of two at least twice the largest series count. */
#define TABLE_SIZE 1024
#define KEY_MAX    (CM_METRICS_MAX_LABELS * (CM_METRICS_MAX_LABEL_VALUE + 1))

_Static_assert(TABLE_SIZE >= 2 * (CM_METRICS_MAX_SERIES + 1), "hash table too small");

const double cm_metrics_latency_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                             0.1,    0.25,  0.5,    1,     2.5,  5,     10};
const size_t cm_metrics_latency_nbuckets = sizeof(cm_metrics_latency_buckets) / sizeof(double);

enum kind { KIND_COUNTER, KIND_GAUGE, KIND_HISTOGRAM };

struct series {
    char *key; /* label values, each followed by a NUL byte */
    size_t key_len;
    uint64_t hash;
    double value; /* counter, gauge; histogram sum */
    uint64_t count;
    uint64_t buckets[]; /* histogram: nbounds + 1, the last one is +Inf; not cumulative */
};

struct cm_metric {
    cm_metrics_t *registry;
    enum kind kind;
    char *name, *help;
    size_t nlabels;
    char *label_names[CM_METRICS_MAX_LABELS];
    double *bounds;
    size_t nbounds;
    struct series **series;
    size_t nseries, series_cap;
    int32_t *table; /* TABLE_SIZE indexes into series, -1 when empty; NULL without labels */
};

struct cm_metrics {
    pthread_mutex_t lock;
    cm_metric_t **families;
    size_t nfamilies, families_cap;
};

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL)
        abort();
    return p;
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (p == NULL)
        abort();
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

__attribute__((noreturn, format(printf, 1, 2))) static void misuse(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    cm_log_write(CM_LOG_ERROR, "event=metrics_misuse reason=\"%s\"", msg);
    abort();
}

cm_metrics_t *cm_metrics_new(void)
{
    cm_metrics_t *m = xmalloc(sizeof(*m));
    memset(m, 0, sizeof(*m));
    if (pthread_mutex_init(&m->lock, NULL) != 0)
        abort();
    return m;
}

static void family_free(cm_metric_t *f)
{
    for (size_t i = 0; i < f->nseries; i++) {
        free(f->series[i]->key);
        free(f->series[i]);
    }
    free(f->series);
    free(f->table);
    for (size_t i = 0; i < f->nlabels; i++)
        free(f->label_names[i]);
    free(f->bounds);
    free(f->name);
    free(f->help);
    free(f);
}

void cm_metrics_free(cm_metrics_t *m)
{
    if (m == NULL)
        return;
    for (size_t i = 0; i < m->nfamilies; i++)
        family_free(m->families[i]);
    free(m->families);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static int is_name_char(char c, int first, int colon_ok)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon_ok && c == ':'))
        return 1;
    return !first && c >= '0' && c <= '9';
}

/* Metric names: [a-zA-Z_:][a-zA-Z0-9_:]*. Label names: [a-zA-Z_][a-zA-Z0-9_]*, not "__"-prefixed. */
static int name_is_valid(const char *s, size_t len, int is_label)
{
    if (len == 0 || len > CM_METRICS_MAX_NAME)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (!is_name_char(s[i], i == 0, !is_label))
            return 0;
    return !(is_label && len >= 2 && s[0] == '_' && s[1] == '_');
}

/* Splits "a,b" into f->label_names; aborts on a bad or repeated name. */
static void parse_label_names(cm_metric_t *f, const char *label_names)
{
    if (label_names == NULL || label_names[0] == '\0')
        return;
    const char *p = label_names;
    for (;;) {
        const char *end = strchr(p, ',');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        if (!name_is_valid(p, len, 1))
            misuse("metric %s: bad label name in \"%s\"", f->name, label_names);
        if (f->kind == KIND_HISTOGRAM && len == 2 && memcmp(p, "le", 2) == 0)
            misuse("metric %s: a histogram cannot have a label named le", f->name);
        for (size_t i = 0; i < f->nlabels; i++)
            if (strlen(f->label_names[i]) == len && memcmp(f->label_names[i], p, len) == 0)
                misuse("metric %s: label %.*s given twice", f->name, (int)len, p);
        if (f->nlabels == CM_METRICS_MAX_LABELS)
            misuse("metric %s: more than %d labels", f->name, CM_METRICS_MAX_LABELS);
        char *name = xmalloc(len + 1);
        memcpy(name, p, len);
        name[len] = '\0';
        f->label_names[f->nlabels++] = name;
        if (end == NULL)
            break;
        p = end + 1;
    }
}

static uint64_t hash_key(const char *key, size_t len)
{
    uint64_t h = 14695981039346656037ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)key[i];
        h *= 1099511628211ULL;
    }
    return h;
}

/* Creates a series for key (the caller holds the lock and checked the limit). */
static struct series *series_create(cm_metric_t *f, const char *key, size_t key_len, uint64_t hash)
{
    size_t nb = f->kind == KIND_HISTOGRAM ? f->nbounds + 1 : 0;
    struct series *s = xmalloc(sizeof(*s) + nb * sizeof(s->buckets[0]));
    memset(s, 0, sizeof(*s) + nb * sizeof(s->buckets[0]));
    s->key = xmalloc(key_len + 1);
    memcpy(s->key, key, key_len);
    s->key[key_len] = '\0';
    s->key_len = key_len;
    s->hash = hash;
    if (f->nseries == f->series_cap) {
        f->series_cap = f->series_cap == 0 ? 4 : f->series_cap * 2;
        f->series = xrealloc(f->series, f->series_cap * sizeof(f->series[0]));
    }
    f->series[f->nseries++] = s;
    if (f->table != NULL) {
        size_t slot = hash & (TABLE_SIZE - 1);
        while (f->table[slot] >= 0)
            slot = (slot + 1) & (TABLE_SIZE - 1);
        f->table[slot] = (int32_t)(f->nseries - 1);
    }
    return s;
}

static cm_metric_t *family_new(cm_metrics_t *m, enum kind kind, const char *name, const char *help,
                               const char *label_names)
{
    if (name == NULL || !name_is_valid(name, strlen(name), 0))
        misuse("bad metric name \"%.*s\"", CM_METRICS_MAX_NAME, name != NULL ? name : "(null)");
    cm_metric_t *f = xmalloc(sizeof(*f));
    memset(f, 0, sizeof(*f));
    f->registry = m;
    f->kind = kind;
    f->name = xstrdup(name);
    f->help = xstrdup(help != NULL ? help : "");
    parse_label_names(f, label_names);
    if (f->nlabels > 0) {
        f->table = xmalloc(TABLE_SIZE * sizeof(f->table[0]));
        memset(f->table, 0xff, TABLE_SIZE * sizeof(f->table[0])); /* -1 everywhere */
    }
    return f;
}

static cm_metric_t *registry_add(cm_metrics_t *m, cm_metric_t *f)
{
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->nfamilies; i++)
        if (strcmp(m->families[i]->name, f->name) == 0)
            misuse("metric %s registered twice", f->name);
    if (m->nfamilies == m->families_cap) {
        m->families_cap = m->families_cap == 0 ? 8 : m->families_cap * 2;
        m->families = xrealloc(m->families, m->families_cap * sizeof(m->families[0]));
    }
    m->families[m->nfamilies++] = f;
    if (f->nlabels == 0)
        series_create(f, "", 0, hash_key("", 0));
    pthread_mutex_unlock(&m->lock);
    return f;
}

cm_metric_t *cm_metrics_counter(cm_metrics_t *m, const char *name, const char *help, const char *label_names)
{
    return registry_add(m, family_new(m, KIND_COUNTER, name, help, label_names));
}

cm_metric_t *cm_metrics_gauge(cm_metrics_t *m, const char *name, const char *help, const char *label_names)
{
    return registry_add(m, family_new(m, KIND_GAUGE, name, help, label_names));
}

cm_metric_t *cm_metrics_histogram(cm_metrics_t *m, const char *name, const char *help,
                                  const char *label_names, const double *upper_bounds, size_t nbounds)
{
    cm_metric_t *f = family_new(m, KIND_HISTOGRAM, name, help, label_names);
    if (nbounds == 0 || nbounds > CM_METRICS_MAX_BUCKETS || upper_bounds == NULL)
        misuse("histogram %s: %zu bounds (1 to %d)", name, nbounds, CM_METRICS_MAX_BUCKETS);
    for (size_t i = 0; i < nbounds; i++)
        if (!isfinite(upper_bounds[i]) || (i > 0 && upper_bounds[i] <= upper_bounds[i - 1]))
            misuse("histogram %s: bounds must be finite and strictly ascending", name);
    f->bounds = xmalloc(nbounds * sizeof(double));
    memcpy(f->bounds, upper_bounds, nbounds * sizeof(double));
    f->nbounds = nbounds;
    return registry_add(m, f);
}

/* Length of the valid UTF-8 sequence at s (at most avail bytes), or 0 when it is not one. */
static size_t utf8_sequence(const unsigned char *s, size_t avail)
{
    if (s[0] < 0x80)
        return 1;
    size_t n;
    uint32_t cp;
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        n = 2;
        cp = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        n = 3;
        cp = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        n = 4;
        cp = s[0] & 0x07;
    } else {
        return 0;
    }
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

/* Writes the cleaned label values, each followed by NUL, into key (KEY_MAX bytes); returns the length. */
static size_t build_key(const cm_metric_t *f, const char *const *values, char *key)
{
    size_t len = 0;
    for (size_t i = 0; i < f->nlabels; i++) {
        const unsigned char *v = (const unsigned char *)values[i];
        if (v == NULL)
            misuse("metric %s: label value %zu is NULL", f->name, i);
        size_t in = 0, out = 0;
        while (v[in] != '\0' && out < CM_METRICS_MAX_LABEL_VALUE) {
            size_t avail = strnlen((const char *)v + in, 4);
            size_t n = utf8_sequence(v + in, avail);
            if (n == 0) {
                key[len + out++] = '?';
                in++;
                continue;
            }
            if (out + n > CM_METRICS_MAX_LABEL_VALUE)
                break; /* cut before a character that does not fit */
            memcpy(key + len + out, v + in, n);
            in += n;
            out += n;
        }
        len += out;
        key[len++] = '\0';
    }
    return len;
}

static struct series *lookup(cm_metric_t *f, const char *key, size_t key_len, uint64_t hash)
{
    for (size_t slot = hash & (TABLE_SIZE - 1);; slot = (slot + 1) & (TABLE_SIZE - 1)) {
        int32_t i = f->table[slot];
        if (i < 0)
            return NULL;
        struct series *s = f->series[i];
        if (s->hash == hash && s->key_len == key_len && memcmp(s->key, key, key_len) == 0)
            return s;
    }
}

/* The series for label_values, created when new; the caller holds the lock. */
static struct series *series_get(cm_metric_t *f, const char *const *label_values)
{
    if (f->nlabels == 0)
        return f->series[0];
    if (label_values == NULL)
        misuse("metric %s: no label values for %zu labels", f->name, f->nlabels);
    char key[KEY_MAX];
    size_t key_len = build_key(f, label_values, key);
    uint64_t hash = hash_key(key, key_len);
    struct series *s = lookup(f, key, key_len, hash);
    if (s != NULL)
        return s;
    if (f->nseries >= CM_METRICS_MAX_SERIES) {
        const char *other[CM_METRICS_MAX_LABELS];
        for (size_t i = 0; i < f->nlabels; i++)
            other[i] = "other";
        key_len = build_key(f, other, key);
        hash = hash_key(key, key_len);
        if ((s = lookup(f, key, key_len, hash)) != NULL)
            return s;
    }
    return series_create(f, key, key_len, hash);
}

void cm_metric_add(cm_metric_t *f, double v, const char *const *label_values)
{
    if (f->kind == KIND_HISTOGRAM)
        misuse("metric %s: add on a histogram", f->name);
    if (f->kind == KIND_COUNTER && !(v >= 0))
        return;
    pthread_mutex_lock(&f->registry->lock);
    series_get(f, label_values)->value += v;
    pthread_mutex_unlock(&f->registry->lock);
}

void cm_metric_set(cm_metric_t *f, double v, const char *const *label_values)
{
    if (f->kind != KIND_GAUGE)
        misuse("metric %s: set on something that is not a gauge", f->name);
    pthread_mutex_lock(&f->registry->lock);
    series_get(f, label_values)->value = v;
    pthread_mutex_unlock(&f->registry->lock);
}

void cm_metric_observe(cm_metric_t *f, double v, const char *const *label_values)
{
    if (f->kind != KIND_HISTOGRAM)
        misuse("metric %s: observe on something that is not a histogram", f->name);
    if (isnan(v))
        return;
    size_t b = 0;
    while (b < f->nbounds && v > f->bounds[b])
        b++;
    pthread_mutex_lock(&f->registry->lock);
    struct series *s = series_get(f, label_values);
    s->buckets[b]++;
    s->value += v;
    s->count++;
    pthread_mutex_unlock(&f->registry->lock);
}

/* A growing output buffer. */
struct out {
    char *buf;
    size_t len, cap;
};

static void out_put(struct out *o, const char *s, size_t n)
{
    if (o->len + n + 1 > o->cap) {
        while (o->len + n + 1 > o->cap)
            o->cap = o->cap == 0 ? 4096 : o->cap * 2;
        o->buf = xrealloc(o->buf, o->cap);
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void out_str(struct out *o, const char *s)
{
    out_put(o, s, strlen(s));
}

/* Prints v the shortest way that reads back the same; integral values without a decimal point. */
static void out_number(struct out *o, double v)
{
    char buf[40];
    if (isnan(v))
        snprintf(buf, sizeof(buf), "NaN");
    else if (isinf(v))
        snprintf(buf, sizeof(buf), v > 0 ? "+Inf" : "-Inf");
    else if (v == 0)
        snprintf(buf, sizeof(buf), "0"); /* also -0 */
    else if (fabs(v) < 1e15 && v == trunc(v))
        snprintf(buf, sizeof(buf), "%.0f", v);
    else {
        snprintf(buf, sizeof(buf), "%.15g", v);
        if (strtod(buf, NULL) != v)
            snprintf(buf, sizeof(buf), "%.17g", v);
    }
    out_str(o, buf);
}

static void out_uint(struct out *o, uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
    out_str(o, buf);
}

/* Escapes '\\' and '\n', and '"' too when quoted (label values; HELP text leaves quotes alone). */
static void out_escaped(struct out *o, const char *s, size_t n, int quoted)
{
    size_t start = 0;
    for (size_t i = 0; i < n; i++) {
        const char *rep;
        if (s[i] == '\\')
            rep = "\\\\";
        else if (s[i] == '\n')
            rep = "\\n";
        else if (s[i] == '"' && quoted)
            rep = "\\\"";
        else
            continue;
        out_put(o, s + start, i - start);
        out_str(o, rep);
        start = i + 1;
    }
    out_put(o, s + start, n - start);
}

/* Writes name{labels[,le="..."]} followed by a space. */
static void out_series_name(struct out *o, const cm_metric_t *f, const char *suffix, const struct series *s,
                            const double *le)
{
    out_str(o, f->name);
    out_str(o, suffix);
    if (f->nlabels > 0 || le != NULL) {
        out_put(o, "{", 1);
        const char *v = s->key;
        for (size_t i = 0; i < f->nlabels; i++) {
            size_t vlen = strlen(v);
            if (i > 0)
                out_put(o, ",", 1);
            out_str(o, f->label_names[i]);
            out_put(o, "=\"", 2);
            out_escaped(o, v, vlen, 1);
            out_put(o, "\"", 1);
            v += vlen + 1;
        }
        if (le != NULL) {
            out_str(o, f->nlabels > 0 ? ",le=\"" : "le=\"");
            out_number(o, *le);
            out_put(o, "\"", 1);
        }
        out_put(o, "}", 1);
    }
    out_put(o, " ", 1);
}

static void render_family(struct out *o, const cm_metric_t *f)
{
    static const char *const type_names[] = {"counter", "gauge", "histogram"};
    out_str(o, "# HELP ");
    out_str(o, f->name);
    out_put(o, " ", 1);
    out_escaped(o, f->help, strlen(f->help), 0);
    out_str(o, "\n# TYPE ");
    out_str(o, f->name);
    out_put(o, " ", 1);
    out_str(o, type_names[f->kind]);
    out_put(o, "\n", 1);
    for (size_t i = 0; i < f->nseries; i++) {
        const struct series *s = f->series[i];
        if (f->kind != KIND_HISTOGRAM) {
            out_series_name(o, f, "", s, NULL);
            out_number(o, s->value);
            out_put(o, "\n", 1);
            continue;
        }
        uint64_t cumulative = 0;
        for (size_t b = 0; b <= f->nbounds; b++) {
            const double inf = INFINITY;
            cumulative += s->buckets[b];
            out_series_name(o, f, "_bucket", s, b < f->nbounds ? &f->bounds[b] : &inf);
            out_uint(o, cumulative);
            out_put(o, "\n", 1);
        }
        out_series_name(o, f, "_sum", s, NULL);
        out_number(o, s->value);
        out_put(o, "\n", 1);
        out_series_name(o, f, "_count", s, NULL);
        out_uint(o, s->count);
        out_put(o, "\n", 1);
    }
}

char *cm_metrics_render(cm_metrics_t *m, size_t *len)
{
    struct out o = {NULL, 0, 0};
    out_put(&o, "", 0); /* an empty registry renders as "" */
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->nfamilies; i++)
        render_family(&o, m->families[i]);
    pthread_mutex_unlock(&m->lock);
    if (len != NULL)
        *len = o.len;
    return o.buf;
}
