/* For the unit tests: a problem list (common/problems.h) as text to compare with one string. Include
 * after <cmocka.h>. */
#ifndef TESTS_UNIT_PROBLEMS_TEXT_H
#define TESTS_UNIT_PROBLEMS_TEXT_H

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/problems.h"

/* One "WHERE: MESSAGE\n" line a problem, WHERE being its member where ("file" or "pointer"). The caller
 * frees. */
static inline char *problems_text(const cm_problems_t *p, const char *where_key)
{
    size_t size = 1;
    char *out = calloc(1, size);
    assert_non_null(out);
    json_t *e;
    size_t i;
    json_array_foreach(cm_problems_get(p), i, e)
    {
        const char *where = json_string_value(json_object_get(e, where_key));
        const char *msg = json_string_value(json_object_get(e, "message"));
        assert_non_null(where);
        assert_non_null(msg);
        size += strlen(where) + strlen(msg) + 3;
        out = realloc(out, size);
        assert_non_null(out);
        strcat(out, where);
        strcat(out, ": ");
        strcat(out, msg);
        strcat(out, "\n");
    }
    return out;
}

#endif
