/*
 * The api service's shared state: configuration, the loop, the HTTP server, the Redis connection and
 * the signer client. One instance, owned by main.c, used on the loop thread only.
 */
#ifndef API_APP_H
#define API_APP_H

#include "common/httpd.h"

typedef struct api_redis api_redis_t;
typedef struct api_signer api_signer_t;
typedef struct api_metrics api_metrics_t;

typedef struct api_config {
    const char *redis_url;
    const char *listen;
    const char *signer_url;
    const char *public_url;
    const char *admin_token;
    const char *log_level;
    long max_body;
    long signer_timeout_ms;
    long redis_timeout_ms;
    const char *signer_token;
} api_config_t;

typedef struct api_app {
    api_config_t cfg;
    uv_loop_t *loop;
    cm_httpd_t *httpd;
    api_redis_t *redis;
    api_signer_t *signer;
    api_metrics_t *metrics; /* metrics.h: the registry of /metrics */
    char *base_path;        /* the path of PUBLIC_URL without trailing '/', "" for none */
    char *prefixes[16];     /* route prefixes built by api_route_v1, freed at exit */
    size_t prefix_count;
} api_app_t;

/* Registers fn for "/v1" + suffix, and for base_path + "/v1" + suffix when PUBLIC_URL has a path. */
void api_route_v1(api_app_t *app, const char *suffix, cm_httpd_handler_fn fn);

/* Asks the signer for the pass's bundle and replies with it (200), or 404 / 502 / 503 + Retry-After.
 * Frees op. Used by GET /v1/passes and the admin download. */
struct api_op;
void api_reply_bundle(struct api_op *op, int as_attachment);

/* Route registration, one per routes_*.c file. */
void api_routes_devices_register(api_app_t *app);
void api_routes_passes_register(api_app_t *app);
void api_routes_log_register(api_app_t *app);
void api_routes_admin_register(api_app_t *app);
/* /healthz, /readyz (Redis connected and the signer's /readyz answered 200 at the last probe) and
 * /metrics; starts the signer probe (routes_health.c). Needs app->redis, app->signer, app->metrics. */
void api_routes_health_register(api_app_t *app);
/* Shutdown started: /readyz answers 503 from now on and the probe stops (idempotent). A probe still in
 * flight ends when the signer client is freed. */
void api_routes_health_stop(void);

#endif
