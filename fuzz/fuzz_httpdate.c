/* libFuzzer target: If-Modified-Since values (common/httpdate.h); a parsed date must round-trip. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "common/httpdate.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    time_t t, back;
    char buf[CM_HTTPDATE_SIZE];
    if (cm_httpdate_parse((const char *)data, size, &t) == 0 && t >= 0 && t < 253402300800) {
        cm_httpdate_format(t, buf);
        if (cm_httpdate_parse(buf, strlen(buf), &back) != 0 || back != t)
            __builtin_trap();
    }
    return 0;
}
