/* libFuzzer target: pass.strings files (common/pkpass_strings.h) in any encoding. */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "common/pkpass_strings.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *out = NULL;
    const char *encoding = NULL;
    char err[256];
    if (cm_pkpass_strings_parse(data, size, &out, &encoding, err, sizeof(err)) == 0) {
        if (!json_is_object(out) || encoding == NULL)
            __builtin_trap();
        json_decref(out);
    }
    return 0;
}
