/* libFuzzer target: pass.strings files (common/bundle_files.h): decoding by byte order mark, then the
 * .strings scanner. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/bundle_files.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char msg[256];
    if (cm_bundle_files_strings_check(data, size, msg, sizeof(msg)) != 0 &&
        memchr(msg, '\0', sizeof(msg)) == NULL)
        __builtin_trap(); /* a refusal always says why */
    return 0;
}
