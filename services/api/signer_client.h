/*
 * The api's client for the signer service: GET {SIGNER_URL}/v1/bundles/{ptid}/{serial} and the
 * readiness probe GET {SIGNER_URL}/readyz, over libcurl's multi interface driven by the uv loop (the
 * loop never blocks on the signer).
 *
 * api_signer_fetch and api_signer_probe call cb exactly once on the loop thread, also when the signer
 * cannot be reached (result->status 0 and result->error set) and at shutdown. The result and its body
 * are borrowed for the duration of the callback.
 */
#ifndef API_SIGNER_CLIENT_H
#define API_SIGNER_CLIENT_H

#include <stddef.h>
#include <uv.h>

#include "app.h"
#include "metrics.h"

typedef struct api_signer_result {
    int status;             /* HTTP status of the signer's answer; 0 when there was none */
    char error[256];        /* transport error (status 0), else the signer's JSON "error" (or its body) */
    char last_modified[64]; /* the Last-Modified header of a 200 */
    char version[32];       /* the X-Pass-Version header of a 200 */
    const char *body;
    size_t len;
} api_signer_result_t;

typedef void (*api_signer_cb)(const api_signer_result_t *result, void *data);

/* token: sent as "Authorization: Bearer <token>" with every bundle request when not empty (the signer's
 * SIGNER_TOKEN). Bundle requests count in metrics->signer_requests and metrics->signer_seconds
 * (metrics must outlive the client). */
int api_signer_new(uv_loop_t *loop, const char *base_url, long timeout_ms, const char *token,
                   api_metrics_t *metrics, api_signer_t **out);
void api_signer_fetch(api_signer_t *signer, const char *pass_type_id, const char *serial, api_signer_cb cb,
                      void *data);

/* How long a readiness probe may take (at most the client's timeout_ms). */
#define API_SIGNER_PROBE_TIMEOUT_MS 1500

/* GET {SIGNER_URL}/readyz, without the token (the signer's status routes need none), at most
 * API_SIGNER_PROBE_TIMEOUT_MS. Not counted in the metrics. */
void api_signer_probe(api_signer_t *signer, api_signer_cb cb, void *data);
/* Aborts every transfer (each callback runs with status 0) and frees the client once its handles closed. */
void api_signer_free(api_signer_t *signer);

#endif
