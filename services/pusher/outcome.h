/*
 * The pure rules of the pusher (outcome.c): what an APNs answer means, how a reason is read from an
 * error body, the retry backoff. Split out of pusher.h so that apns_client.h can include it alone.
 */
#ifndef PUSHER_OUTCOME_H
#define PUSHER_OUTCOME_H

#include <stddef.h>
#include <stdint.h>

#define PUSHER_REASON_MAX      128 /* longest reason kept (APNs reasons are < 32 bytes; transport errors more) */
#define PUSHER_BACKOFF_BASE_MS 1000
#define PUSHER_BACKOFF_CAP_MS  60000

enum pusher_outcome {
    PUSHER_OUTCOME_OK,        /* 200 */
    PUSHER_OUTCOME_REMOVE,    /* token is dead: 410, 400 BadDeviceToken / DeviceTokenNotForTopic */
    PUSHER_OUTCOME_CERT,      /* 403: the certificate was refused; not retried */
    PUSHER_OUTCOME_REJECTED,  /* any other answer that must not be retried */
    PUSHER_OUTCOME_RETRY,     /* 429, 5xx, or no HTTP answer at all (status 0) */
    PUSHER_OUTCOME_ABANDONED, /* RETRY, but PUSHER_MAX_ATTEMPTS were used up */
};

/* Classifies an answer. status 0 means no HTTP answer (transport error). reason may be "". */
enum pusher_outcome pusher_outcome_classify(long status, const char *reason);

/* Extracts the "reason" string of an APNs error body into out (always NUL-terminated). An empty
 * body gives "". A body that is not a JSON object with a string reason gives "unparseable"; a reason
 * with characters outside [A-Za-z0-9_] or longer than out_size-1 gives "invalid". */
void pusher_outcome_reason(const char *body, size_t len, char *out, size_t out_size);

/* Delay before attempt number attempts+1, after `attempts` failed attempts (>= 1): exponential from
 * PUSHER_BACKOFF_BASE_MS, capped at PUSHER_BACKOFF_CAP_MS, with "equal jitter": a value in
 * [d/2, d] picked from rnd. */
uint64_t pusher_outcome_backoff_ms(int attempts, uint32_t rnd);

/* The loggable prefix of a push token: its first 8 characters (never the whole token). */
void pusher_outcome_token_prefix(const char *token, char out[9]);

const char *pusher_outcome_name(enum pusher_outcome outcome);

#endif
