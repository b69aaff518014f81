/* libFuzzer target: .pkpass archives through the bundle reader (common/pkpass_reader.h), with a small
 * decompressed-size cap so that each input stays cheap. Every report must be serialisable JSON. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/pkpass_reader.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cm_pkpass_options_t opts = {.max_bytes = 1u << 20, .max_entries = 64};
    cm_pkpass_report_t *r = NULL;
    if (cm_pkpass_inspect(size > 0 ? data : NULL, size, &opts, &r) != 0)
        __builtin_trap();
    char *text = json_dumps(cm_pkpass_report_json(r), JSON_COMPACT);
    if (text == NULL)
        __builtin_trap();
    free(text);
    cm_pkpass_report_free(r);
    return 0;
}
