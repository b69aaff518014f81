/*
 * JSON merge patch (RFC 7386), used both to lay a pass's fields over its template's pass.json (a deep
 * merge in which null removes a key) and to apply PATCH requests.
 */
#ifndef COMMON_MERGE_H
#define COMMON_MERGE_H

struct json_t;

/* Returns a new reference: target with patch applied. Neither argument is modified or stolen.
 * target may be NULL (treated as absent). A patch that is not an object replaces the target. */
struct json_t *cm_json_merge_patch(const struct json_t *target, const struct json_t *patch);

#endif
