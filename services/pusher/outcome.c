/*
 * The pure rules of the pusher: what an APNs answer means for a token (spec §2.4), how a reason is
 * read from an error body, and the retry backoff. No I/O, so tests/unit/test_pusher_outcome.c can
 * include this file alone.
 */
#include "pusher.h"

#include <jansson.h>
#include <stdio.h>

enum pusher_outcome pusher_outcome_classify(long status, const char *reason)
{
    if (status == 200)
        return PUSHER_OUTCOME_OK;
    /* No HTTP answer: connection refused or dropped (GOAWAY, reset), timeout. */
    if (status == 0)
        return PUSHER_OUTCOME_RETRY;
    /* 410 is only ever sent for a token that is no longer valid for the topic. */
    if (status == 410)
        return PUSHER_OUTCOME_REMOVE;
    if (status == 400 &&
        (strcmp(reason, "BadDeviceToken") == 0 || strcmp(reason, "DeviceTokenNotForTopic") == 0))
        return PUSHER_OUTCOME_REMOVE;
    if (status == 429 || (status >= 500 && status <= 599))
        return PUSHER_OUTCOME_RETRY;
    if (status == 403)
        return PUSHER_OUTCOME_CERT;
    return PUSHER_OUTCOME_REJECTED;
}

static int is_reason_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

void pusher_outcome_reason(const char *body, size_t len, char *out, size_t out_size)
{
    if (out_size == 0)
        return;
    out[0] = '\0';
    if (len == 0)
        return;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, NULL);
    json_t *reason = json_is_object(doc) ? json_object_get(doc, "reason") : NULL;
    const char *s = json_is_string(reason) ? json_string_value(reason) : NULL;
    if (s == NULL) {
        snprintf(out, out_size, "unparseable");
    } else {
        size_t n = json_string_length(reason);
        int ok = n > 0 && n < out_size;
        for (size_t i = 0; ok && i < n; i++)
            ok = is_reason_char(s[i]);
        if (ok)
            memcpy(out, s, n + 1);
        else
            snprintf(out, out_size, "invalid");
    }
    json_decref(doc);
}

uint64_t pusher_outcome_backoff_ms(int attempts, uint32_t rnd)
{
    uint64_t d = PUSHER_BACKOFF_BASE_MS;
    for (int i = 1; i < attempts && d < PUSHER_BACKOFF_CAP_MS; i++)
        d *= 2;
    if (d > PUSHER_BACKOFF_CAP_MS)
        d = PUSHER_BACKOFF_CAP_MS;
    uint64_t half = d / 2;
    return half + rnd % (d - half + 1);
}

void pusher_outcome_token_prefix(const char *token, char out[9])
{
    size_t n = strnlen(token, 8);
    memcpy(out, token, n);
    out[n] = '\0';
}

const char *pusher_outcome_name(enum pusher_outcome outcome)
{
    switch (outcome) {
    case PUSHER_OUTCOME_OK:
        return "ok";
    case PUSHER_OUTCOME_REMOVE:
        return "remove";
    case PUSHER_OUTCOME_CERT:
        return "certificate_refused";
    case PUSHER_OUTCOME_REJECTED:
        return "rejected";
    case PUSHER_OUTCOME_RETRY:
        return "retry";
    case PUSHER_OUTCOME_ABANDONED:
        return "abandoned";
    }
    return "unknown";
}
