/* libFuzzer target: the pass.json rules (common/passjson_check.h) on any JSON document, and the
 * 422 body built from what they report. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/passjson_check.h"
#include "common/problems.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *doc = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
    if (doc == NULL)
        return 0;
    cm_problems_t *problems = cm_problems_new();
    cm_passjson_check(doc, problems);
    json_t *body = cm_problems_body(problems, "pass refused");
    char *text = json_dumps(body, JSON_COMPACT);
    if (text == NULL)
        __builtin_trap(); /* the body is always valid JSON text */
    free(text);
    json_decref(body);
    cm_problems_free(problems);
    json_decref(doc);
    return 0;
}
