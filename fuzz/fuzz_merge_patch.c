/* libFuzzer target: JSON merge patch (common/merge.h) on two documents split at the first NUL. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/merge.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *nul = memchr(data, 0, size);
    if (nul == NULL)
        return 0;
    json_t *target = json_loadb((const char *)data, (size_t)(nul - data), JSON_DECODE_ANY, NULL);
    json_t *patch = json_loadb((const char *)nul + 1, size - (size_t)(nul - data) - 1, JSON_DECODE_ANY, NULL);
    if (target != NULL && patch != NULL) {
        json_t *merged = cm_json_merge_patch(target, patch);
        /* Applying the same patch twice changes nothing more (RFC 7386 patches are idempotent). */
        json_t *again = cm_json_merge_patch(merged, patch);
        if (!json_equal(merged, again))
            __builtin_trap();
        json_decref(again);
        json_decref(merged);
    }
    json_decref(target);
    json_decref(patch);
    return 0;
}
