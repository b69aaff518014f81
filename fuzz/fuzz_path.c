/* libFuzzer target: request paths and query parameters (common/path.h). */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/path.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    cm_path_t p;
    char value[64];
    if (cm_path_split((const char *)data, size, &p) == 0) {
        for (size_t i = 0; i < p.count; i++)
            if (strlen(p.seg[i]) != p.len[i] || memchr(p.seg[i], '/', p.len[i]) != NULL)
                __builtin_trap();
    }
    cm_path_query_param((const char *)data, size, "passesUpdatedSince", value, sizeof(value));
    return 0;
}
