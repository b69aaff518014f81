/*
 * GET /healthz, /readyz and /metrics on the api's listener: the routes of common/status_server.h, with
 * the same answers as the signer's and the pusher's.
 *
 * /healthz answers while the loop runs and touches nothing. /readyz must answer at once, on the loop,
 * so it reads state kept up to date elsewhere: whether the Redis connection is up (redis_async.c
 * reconnects by itself) and the outcome of the last signer probe, GET {SIGNER_URL}/readyz sent every
 * API_HEALTH_PROBE_MS through the signer client (one at a time, at most API_SIGNER_PROBE_TIMEOUT_MS).
 * Ready means both; once shutdown started it is never ready again. The probe's outcome also sets
 * api_dependency_up{signer} (redis_async.c keeps api_dependency_up{redis}).
 */
#include "app.h"
#include "metrics.h"
#include "redis_async.h"
#include "signer_client.h"

#include "common/metrics.h"
#include "common/status_server.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#define API_HEALTH_PROBE_MS 2000
#define REASON_MAX          200

static struct {
    api_app_t *app;
    uv_timer_t timer;
    int started, stopping, busy;
    int signer_ok; /* the last probe's outcome */
    char signer_reason[REASON_MAX];
} health;

static int is_ready(void *data, char *reason, size_t reason_size)
{
    (void)data;
    if (health.stopping) {
        snprintf(reason, reason_size, "shutting down");
        return 0;
    }
    if (!api_redis_is_connected(health.app->redis)) {
        snprintf(reason, reason_size, "redis: not connected");
        return 0;
    }
    if (!health.signer_ok) {
        snprintf(reason, reason_size, "%s", health.signer_reason);
        return 0;
    }
    return 1;
}

/* The reason the signer gave in its {"status":"not ready","reason":"..."} answer, or NULL. */
static const char *signer_reason(const api_signer_result_t *res, json_t **owner)
{
    *owner = res->body != NULL ? json_loadb(res->body, res->len, 0, NULL) : NULL;
    return json_string_value(json_object_get(*owner, "reason"));
}

static void on_probe_done(const api_signer_result_t *res, void *data)
{
    (void)data;
    health.busy = 0;
    if (health.stopping)
        return; /* the client is being freed (api_signer_free aborts the probe) */
    health.signer_ok = res->status == 200;
    if (res->status == 0) {
        snprintf(health.signer_reason, sizeof(health.signer_reason), "signer unreachable: %.160s",
                 res->error);
    } else if (res->status != 200) {
        json_t *body;
        const char *why = signer_reason(res, &body);
        if (why != NULL)
            snprintf(health.signer_reason, sizeof(health.signer_reason), "signer not ready: %.160s", why);
        else
            snprintf(health.signer_reason, sizeof(health.signer_reason), "signer not ready: status %d",
                     res->status);
        json_decref(body);
    }
    cm_metric_t *up = health.app->metrics->up;
    cm_metric_set(up, health.signer_ok, (const char *const[]){"signer"}); /* redis: redis_async.c */
}

static void on_probe_tick(uv_timer_t *timer)
{
    (void)timer;
    if (health.busy || health.stopping)
        return;
    health.busy = 1;
    api_signer_probe(health.app->signer, on_probe_done, NULL);
}

void api_routes_health_register(api_app_t *app)
{
    health.app = app;
    snprintf(health.signer_reason, sizeof(health.signer_reason), "signer: no answer yet");
    cm_status_routes(app->httpd, app->metrics->registry, is_ready, NULL);
    uv_timer_init(app->loop, &health.timer);
    uv_timer_start(&health.timer, on_probe_tick, 0, API_HEALTH_PROBE_MS);
    health.started = 1;
}

void api_routes_health_stop(void)
{
    health.stopping = 1;
    if (health.started && !uv_is_closing((uv_handle_t *)&health.timer))
        uv_close((uv_handle_t *)&health.timer, NULL);
}
