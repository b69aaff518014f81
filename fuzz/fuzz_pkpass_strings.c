/* libFuzzer target: pass.strings files (common/pkpass_strings.h) in any encoding, the one parser of them
 * (the bundle reader's and, through cm_bundle_files_strings_check, upload validation's). */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/pkpass_strings.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *out = NULL;
    const char *encoding = NULL;
    char err[256];
    err[0] = '\0';
    if (cm_pkpass_strings_parse(data, size, &out, &encoding, err, sizeof(err)) == 0) {
        if (!json_is_object(out) || encoding == NULL)
            __builtin_trap();
        json_decref(out);
    } else if (out != NULL || err[0] == '\0' || memchr(err, '\0', sizeof(err)) == NULL) {
        __builtin_trap(); /* a refusal leaves *out alone and always says why */
    }
    return 0;
}
