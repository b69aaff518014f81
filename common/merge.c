/* RFC 7386 JSON merge patch on jansson values; see common/merge.h. Jansson has no merge patch with
 * null-removal (json_object_update_recursive keeps nulls), hence these few lines. */
#include "common/merge.h"

#include <jansson.h>
#include <stdlib.h>

json_t *cm_json_merge_patch(const json_t *target, const json_t *patch)
{
    if (!json_is_object(patch))
        return json_deep_copy(patch);
    json_t *result = json_is_object(target) ? json_deep_copy(target) : json_object();
    if (result == NULL)
        abort();
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)patch, key, value)
    {
        if (json_is_null(value)) {
            json_object_del(result, key);
            continue;
        }
        json_t *merged = cm_json_merge_patch(json_object_get(result, key), value);
        json_object_set_new(result, key, merged);
    }
    return result;
}
