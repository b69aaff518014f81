/* Problem lists for 422 answers; see common/problems.h. */
#include "common/problems.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cm_problems {
    json_t *list;
    size_t total;
};

cm_problems_t *cm_problems_new(void)
{
    cm_problems_t *p = calloc(1, sizeof(*p));
    if (p == NULL || (p->list = json_array()) == NULL)
        abort();
    return p;
}

void cm_problems_free(cm_problems_t *p)
{
    if (p == NULL)
        return;
    json_decref(p->list);
    free(p);
}

/* A JSON string of s, which may end in a sequence cut by vsnprintf or hold bytes that are not UTF-8:
 * drop a cut tail when that is the only flaw, else make every non-ASCII byte '?'. */
static json_t *text_new(char *s)
{
    json_t *j = json_string(s);
    size_t n = strlen(s);
    for (size_t cut = 1; j == NULL && cut <= 3 && cut <= n; cut++) {
        char c = s[n - cut];
        s[n - cut] = '\0';
        j = json_string(s);
        s[n - cut] = c;
    }
    if (j == NULL) {
        for (char *c = s; *c != '\0'; c++)
            if ((unsigned char)*c >= 0x80)
                *c = '?';
        j = json_string(s);
    }
    if (j == NULL)
        abort();
    return j;
}

__attribute__((format(printf, 4, 0))) static void add(cm_problems_t *p, const char *where_key,
                                                      const char *where, const char *fmt, va_list ap)
{
    char msg[512], place[CM_POINTER_MAX + 64];
    p->total++;
    if (json_array_size(p->list) >= CM_PROBLEMS_MAX)
        return;
    vsnprintf(msg, sizeof(msg), fmt, ap);
    snprintf(place, sizeof(place), "%s", where);
    json_t *o = json_object();
    if (o == NULL)
        abort();
    json_object_set_new(o, where_key, text_new(place));
    json_object_set_new(o, "message", text_new(msg));
    json_array_append_new(p->list, o);
}

void cm_problems_add_pointer(cm_problems_t *p, const char *pointer, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add(p, "pointer", pointer, fmt, ap);
    va_end(ap);
}

void cm_problems_add_file(cm_problems_t *p, const char *file, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    add(p, "file", file, fmt, ap);
    va_end(ap);
}

size_t cm_problems_count(const cm_problems_t *p)
{
    return p->total;
}

json_t *cm_problems_get(const cm_problems_t *p)
{
    return p->list;
}

json_t *cm_problems_body(const cm_problems_t *p, const char *subject)
{
    char summary[256];
    snprintf(summary, sizeof(summary), "%s: %zu problem%s", subject, p->total, p->total == 1 ? "" : "s");
    json_t *body = json_object();
    if (body == NULL)
        abort();
    json_object_set_new(body, "error", text_new(summary));
    json_object_set_new(body, "problems", json_deep_copy(p->list));
    if (p->total > json_array_size(p->list))
        json_object_set_new(body, "more", json_integer((json_int_t)(p->total - json_array_size(p->list))));
    return body;
}

char *cm_pointer_join(char *out, size_t out_size, const char *base, const char *token)
{
    size_t n = (size_t)snprintf(out, out_size, "%s/", base);
    if (n >= out_size)
        return out; /* cut, and already terminated */
    for (const char *t = token; *t != '\0' && n + 3 <= out_size; t++) {
        if (*t == '~' || *t == '/') {
            out[n++] = '~';
            out[n++] = *t == '~' ? '0' : '1';
        } else {
            out[n++] = *t;
        }
    }
    out[n] = '\0';
    return out;
}

char *cm_pointer_index(char *out, size_t out_size, const char *base, size_t index)
{
    snprintf(out, out_size, "%s/%zu", base, index);
    return out;
}
