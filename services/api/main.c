/*
 * passkit-api: Apple's PassKit web service (/v1) and the admin API (/admin/v1) on h2o.
 * This file reads the configuration, builds the loop, the metrics, the Redis connection, the signer
 * client and the routes, and handles SIGTERM/SIGINT:
 *   1. stop accepting (the listener closes: new connections are refused) and report not ready;
 *   2. let the requests in flight finish: their answers say "Connection: close" (common/httpd.c), and
 *      so do the answers to requests that still arrive on connections already open;
 *   3. once no request and no Redis command is in flight, close the idle keep-alive connections
 *      (cm_httpd_drain, after its quiet time);
 *   4. when no connection is left, close Redis and the signer client and exit 0.
 * If that takes longer than SHUTDOWN_GRACE_MS, what is left is cut short (Redis commands in flight get
 * no reply, their requests 503) and the exit status is 1.
 */
#include "app.h"
#include "common/config.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/redis_url.h"
#include "metrics.h"
#include "redis_async.h"
#include "signer_client.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SHUTDOWN_GRACE_MS 10000

static api_app_t app;
static uv_signal_t sigterm, sigint;
static uv_timer_t drain_timer;
static uint64_t drain_deadline;
static int grace_expired;

static const cm_config_var_t config_vars[] = {
    {"REDIS_URL", CM_CONFIG_STRING, "redis://127.0.0.1:6379/0", 0, 0, 1, &app.cfg.redis_url,
     "redis://host:port/db"},
    {"API_LISTEN", CM_CONFIG_STRING, "0.0.0.0:8080", 0, 0, 0, &app.cfg.listen, "host:port to listen on"},
    {"SIGNER_URL", CM_CONFIG_STRING, "http://127.0.0.1:8081", 0, 0, 0, &app.cfg.signer_url,
     "base URL of the signer"},
    {"PUBLIC_URL", CM_CONFIG_STRING, "http://localhost:8080", 0, 0, 0, &app.cfg.public_url,
     "webServiceURL of the passes; its path prefixes /v1"},
    {"ADMIN_TOKEN", CM_CONFIG_STRING, NULL, 0, 0, 1, &app.cfg.admin_token, "bearer token of the admin API"},
    {"MAX_BODY_BYTES", CM_CONFIG_INT, "10485760", 1024, 104857600, 0, &app.cfg.max_body,
     "largest request body"},
    {"SIGNER_TIMEOUT_MS", CM_CONFIG_INT, "10000", 100, 600000, 0, &app.cfg.signer_timeout_ms,
     "how long to wait for the signer"},
    {"REDIS_TIMEOUT_MS", CM_CONFIG_INT, "5000", 100, 600000, 0, &app.cfg.redis_timeout_ms,
     "how long a Redis reply may take before the connection is dropped"},
    {"SIGNER_TOKEN", CM_CONFIG_STRING, "", 0, 0, 1, &app.cfg.signer_token,
     "shared secret sent to the signer as a bearer token (empty: none)"},
    {"LOG_LEVEL", CM_CONFIG_STRING, "info", 0, 0, 0, &app.cfg.log_level, "debug, info, warn or error"},
};
#define CONFIG_COUNT (sizeof(config_vars) / sizeof(config_vars[0]))

void api_route_v1(api_app_t *a, const char *suffix, cm_httpd_handler_fn fn)
{
    const char *bases[2] = {"", a->base_path};
    for (int i = 0; i < (a->base_path[0] != '\0' ? 2 : 1); i++) {
        if (a->prefix_count == sizeof(a->prefixes) / sizeof(a->prefixes[0]))
            abort();
        size_t n = strlen(bases[i]) + strlen(suffix) + 4;
        char *prefix = malloc(n);
        if (prefix == NULL)
            abort();
        snprintf(prefix, n, "%s/v1%s", bases[i], suffix);
        a->prefixes[a->prefix_count++] = prefix;
        cm_httpd_route(a->httpd, prefix, fn, a);
    }
}

/* The path of PUBLIC_URL without trailing slashes: Wallet calls webServiceURL + "/v1/...". */
static int public_base_path(const char *url, char **out)
{
    char *path = NULL;
    CURLU *u = curl_url();
    int rc = -1;
    if (u == NULL)
        abort();
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK)
        goto out;
    size_t n = strlen(path);
    while (n > 0 && path[n - 1] == '/')
        path[--n] = '\0';
    *out = strdup(path);
    rc = 0;
out:
    curl_free(path);
    curl_url_cleanup(u);
    return rc;
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void on_drain_tick(uv_timer_t *t)
{
    size_t open = cm_httpd_drain(app.httpd, 1);
    size_t inflight = cm_httpd_inflight(app.httpd), redis_pending = api_redis_pending(app.redis);
    int drained = open == 0 && inflight == 0 && redis_pending == 0;
    if (!drained && uv_now(t->loop) < drain_deadline)
        return;
    if (drained) {
        CM_LOG(CM_LOG_INFO, "event=shutdown_drained");
    } else {
        CM_LOG(CM_LOG_WARN, "event=shutdown_grace_expired inflight=%zu redis_pending=%zu connections=%zu",
               inflight, redis_pending, open);
        grace_expired = 1;
    }
    api_signer_free(app.signer);
    app.signer = NULL;
    api_redis_free(app.redis);
    app.redis = NULL;
    close_handle((uv_handle_t *)&drain_timer);
    close_handle((uv_handle_t *)&sigterm);
    close_handle((uv_handle_t *)&sigint);
    uv_stop(t->loop);
}

static void on_signal(uv_signal_t *s, int signum)
{
    if (uv_is_active((uv_handle_t *)&drain_timer))
        return;
    CM_LOG(CM_LOG_INFO, "event=shutdown_started signal=%d inflight=%zu", signum,
           cm_httpd_inflight(app.httpd));
    cm_httpd_stop(app.httpd);
    api_routes_health_stop();
    drain_deadline = uv_now(s->loop) + SHUTDOWN_GRACE_MS;
    uv_timer_start(&drain_timer, on_drain_tick, 0, 20);
}

int main(void)
{
    int exit_code = 1;
    uv_loop_t *loop = uv_default_loop();
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    cm_log_init("api", "info");
    int bad = cm_config_load(config_vars, CONFIG_COUNT) != 0; /* go on: report every problem at once */
    if (app.cfg.log_level != NULL && cm_log_init("api", app.cfg.log_level) != 0) {
        CM_LOG(CM_LOG_ERROR,
               "event=config_invalid var=LOG_LEVEL value=\"%s\" reason=\"not debug, info, warn or error\"",
               app.cfg.log_level);
        bad = 1;
    }
    size_t admin_len = app.cfg.admin_token != NULL ? strlen(app.cfg.admin_token) : 0;
    if (app.cfg.admin_token != NULL && (admin_len < 16 || admin_len > CM_AUTH_TOKEN_MAX)) {
        CM_LOG(CM_LOG_ERROR, "event=config_invalid var=ADMIN_TOKEN reason=\"must be 16 to %d characters\"",
               CM_AUTH_TOKEN_MAX);
        bad = 1;
    }
    if (app.cfg.signer_token != NULL && strlen(app.cfg.signer_token) > CM_AUTH_TOKEN_MAX) {
        CM_LOG(CM_LOG_ERROR, "event=config_invalid var=SIGNER_TOKEN reason=\"longer than %d characters\"",
               CM_AUTH_TOKEN_MAX);
        bad = 1;
    }
    cm_redis_url_t parsed;
    char url_err[256];
    if (app.cfg.redis_url != NULL &&
        cm_redis_url_parse(app.cfg.redis_url, &parsed, url_err, sizeof(url_err)) != 0) {
        CM_LOG(CM_LOG_ERROR, "event=config_invalid var=REDIS_URL reason=\"%s\"", url_err);
        bad = 1;
    }
    if (app.cfg.public_url != NULL && public_base_path(app.cfg.public_url, &app.base_path) != 0) {
        CM_LOG(CM_LOG_ERROR, "event=config_invalid var=PUBLIC_URL value=\"%s\" reason=\"not a URL\"",
               app.cfg.public_url);
        bad = 1;
    }
    if (bad)
        goto out;
    cm_config_log(config_vars, CONFIG_COUNT);
    app.loop = loop;
    app.metrics = api_metrics_new();
    if (api_redis_new(loop, app.cfg.redis_url, app.cfg.redis_timeout_ms, app.metrics, &app.redis) != 0)
        goto out;
    api_signer_new(loop, app.cfg.signer_url, app.cfg.signer_timeout_ms, app.cfg.signer_token, app.metrics,
                   &app.signer);
    cm_httpd_new(loop, app.cfg.listen, (size_t)app.cfg.max_body, &app.httpd);
    cm_httpd_set_metrics(app.httpd, app.metrics->registry);
    api_routes_devices_register(&app);
    api_routes_passes_register(&app);
    api_routes_log_register(&app);
    api_routes_admin_register(&app);
    api_routes_health_register(&app);
    if (cm_httpd_start(app.httpd) != 0)
        goto out;
    uv_signal_init(loop, &sigterm);
    uv_signal_init(loop, &sigint);
    uv_timer_init(loop, &drain_timer);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_run(loop, UV_RUN_DEFAULT);
    exit_code = grace_expired ? 1 : 0;
out:
    api_routes_health_stop();
    api_signer_free(app.signer);
    api_redis_free(app.redis);
    for (int i = 0; i < 8; i++)
        uv_run(loop, UV_RUN_NOWAIT); /* let close callbacks run */
    cm_httpd_free(app.httpd);
    api_metrics_free(app.metrics); /* the loop no longer runs: nothing counts or renders any more */
    for (size_t i = 0; i < app.prefix_count; i++)
        free(app.prefixes[i]);
    free(app.base_path);
    curl_global_cleanup();
    CM_LOG(CM_LOG_INFO, "event=exit code=%d", exit_code);
    return exit_code;
}
