/* libFuzzer target: uploaded pass models (services/api/template_zip.c). */
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "template_zip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static api_template_t t;
    json_t *error = NULL;
    if (api_template_from_zip(data, size, &t, &error) == 0)
        api_template_dispose(&t);
    else
        json_decref(error);
    return 0;
}
