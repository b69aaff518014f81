/*
 * passkit-signer: configuration, certificates, the loop, signals and shutdown. See signer.h for the
 * map of the other files.
 *
 * Start-up order: config, certificates (exit 1 naming every problem), the signing pool's size,
 * pk:passtype publication (waits for Redis, retrying every second, so the signer can start before Redis
 * in a compose stack), then the HTTP server. SIGHUP reloads the certificates (registry.c); one that
 * arrives during start-up is done once the loop runs. SIGTERM/SIGINT stop accepting, let requests in
 * flight and jobs in the thread pool finish, close the idle keep-alive connections (cm_httpd_drain) and
 * exit 0; after SHUTDOWN_GRACE_MS whatever still runs is cut short and the exit status is 1.
 */
#include "signer.h"

#include "common/config.h"
#include "common/httpd.h"
#include "common/log.h"
#include "common/metrics.h"

#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#define SHUTDOWN_GRACE_MS 25000
#define MAX_REQUEST_BODY  1024 /* the signer only serves GET */

static volatile sig_atomic_t startup_stop, startup_reload;
/* cm_httpd_free keeps a started server's memory until the process exits (common/httpd.c), and a grace
 * expiry leaves it in use: this keeps it reachable rather than leaked. */
static cm_httpd_t *live_httpd;

struct signer_main {
    uv_loop_t loop;
    cm_httpd_t *httpd;
    uv_signal_t sigterm, sigint, sighup;
    uv_timer_t drain;
    uint64_t drain_deadline;
    int stopping, drained;
};

static void on_startup_signal(int sig)
{
    if (sig == SIGHUP)
        startup_reload = 1;
    else
        startup_stop = 1;
}

#define MAX_WORKERS 1024 /* libuv's own limit for UV_THREADPOOL_SIZE */

/* The signing pool is libuv's thread pool, which reads UV_THREADPOOL_SIZE once, at the first
 * uv_queue_work: set it before anything is queued. workers 0 means one per online CPU. The pool also
 * runs the short jobs (PING, pk:passtype refresh, certificate reload) between signings. */
static long size_thread_pool(long workers)
{
    const char *source = "SIGNER_WORKERS";
    if (workers == 0) {
        workers = sysconf(_SC_NPROCESSORS_ONLN);
        source = "cores";
    }
    if (workers < 1)
        workers = 1;
    if (workers > MAX_WORKERS)
        workers = MAX_WORKERS;
    char text[16];
    snprintf(text, sizeof(text), "%ld", workers);
    setenv("UV_THREADPOOL_SIZE", text, 1);
    CM_LOG(CM_LOG_INFO, "event=thread_pool size=%ld source=%s", workers, source);
    return workers;
}

/* Every bundle allocates a few buffers of its size (typically 0.1-1 MB: template images, the archive,
 * Redis replies). glibc serves such sizes with fresh mmap()s until its adaptive threshold catches up,
 * and each new page is a fault plus a zeroing: that was a third of the signer's CPU time. A fixed
 * threshold above the usual bundle keeps them in the per-thread arenas, reused from one bundle to the
 * next; memory then stays at the working set of the busiest moment (bounded by the pool size), which
 * the trim threshold gives back once it is this far above what is in use. */
#define MALLOC_MMAP_THRESHOLD (8u << 20)
#define MALLOC_TRIM_THRESHOLD (32u << 20)

static void on_drain_tick(uv_timer_t *timer)
{
    struct signer_main *m = timer->data;
    size_t inflight = cm_httpd_inflight(m->httpd);
    size_t pending = signer_routes_bundles_pending() + (size_t)signer_passtypes_refresh_stop() +
                     (size_t)signer_routes_status_stop() + (size_t)signer_registry_busy();
    size_t open = cm_httpd_drain(m->httpd, pending == 0);
    if (inflight == 0 && pending == 0 && open == 0) {
        m->drained = 1;
        uv_stop(&m->loop);
        return;
    }
    if (uv_now(&m->loop) >= m->drain_deadline) {
        CM_LOG(CM_LOG_WARN, "event=shutdown_grace_expired inflight=%zu jobs=%zu connections=%zu", inflight,
               pending, open);
        uv_stop(&m->loop);
    }
}

static void on_signal(uv_signal_t *handle, int signum)
{
    struct signer_main *m = handle->data;
    if (m->stopping)
        return;
    m->stopping = 1;
    CM_LOG(CM_LOG_INFO, "event=shutdown signal=%d inflight=%zu", signum, cm_httpd_inflight(m->httpd));
    cm_httpd_stop(m->httpd);
    m->drain_deadline = uv_now(&m->loop) + SHUTDOWN_GRACE_MS;
    uv_timer_start(&m->drain, on_drain_tick, 0, 20);
}

static void on_sighup(uv_signal_t *handle, int signum)
{
    struct signer_main *m = handle->data;
    (void)signum;
    if (m->stopping)
        return;
    /* also the way to make the signer read templates again after restoring an older Redis backup */
    signer_store_forget_templates();
    signer_registry_reload(&m->loop, signer_passtypes_refresh_now);
}

static void close_handle(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

int main(void)
{
    const char *redis_url = NULL, *listen = NULL, *public_url = NULL, *certs_dir = NULL, *log_level = NULL,
               *token = NULL, *wwdr_cert = NULL;
    long cache_ttl = 0, workers = 0;
    const cm_config_var_t vars[] = {
        {"REDIS_URL", CM_CONFIG_STRING, "redis://127.0.0.1:6379/0", 0, 0, 1, &redis_url,
         "redis://[[user]:password@]host[:port][/db]"},
        {"SIGNER_LISTEN", CM_CONFIG_STRING, "127.0.0.1:8081", 0, 0, 0, &listen,
         "host:port the signer listens on (keep it off public networks)"},
        {"SIGNER_TOKEN", CM_CONFIG_STRING, "", 0, 0, 1, &token,
         "when set, every bundle request must carry Authorization: Bearer <SIGNER_TOKEN>"},
        {"PUBLIC_URL", CM_CONFIG_STRING, "http://localhost:8080", 0, 0, 0, &public_url,
         "webServiceURL written into every pass: the base under which the api serves Apple's /v1 paths"},
        {"CERTS_DIR", CM_CONFIG_STRING, "./certs", 0, 0, 0, &certs_dir,
         "folder with one pass.<id>/{certificate,private-key}.pem per pass type (and optionally wwdr.pem)"},
        {"WWDR_CERT", CM_CONFIG_STRING, "", 0, 0, 0, &wwdr_cert,
         "PEM of the WWDR intermediate every certificate must be issued by; empty: CERTS_DIR/wwdr.pem when "
         "present, else Apple's WWDR G4 (built in)"},
        {"SIGNER_WORKERS", CM_CONFIG_INT, "0", 0, MAX_WORKERS, 0, &workers,
         "signing threads; 0: one per online CPU"},
        {"BUNDLE_CACHE_TTL", CM_CONFIG_INT, "86400", 0, 30L * 86400, 0, &cache_ttl,
         "seconds a signed bundle stays cached in Redis; 0 disables the cache"},
        {"LOG_LEVEL", CM_CONFIG_STRING, "info", 0, 0, 0, &log_level, "debug, info, warn or error"},
    };
    const size_t nvars = sizeof(vars) / sizeof(vars[0]);
    int rc = 1;
    char err[4096];
    signer_identities_t *ids = NULL;
    struct signer_main m;
    signer_app_t app;
    memset(&m, 0, sizeof(m));
    memset(&app, 0, sizeof(app));

    mallopt(M_MMAP_THRESHOLD, MALLOC_MMAP_THRESHOLD);
    mallopt(M_TRIM_THRESHOLD, MALLOC_TRIM_THRESHOLD);
    cm_log_init("signer", "info");
    if (cm_config_load(vars, nvars) != 0)
        return 1;
    if (cm_log_init("signer", log_level) != 0) {
        CM_LOG(CM_LOG_ERROR,
               "event=config_invalid var=LOG_LEVEL value=\"%s\" reason=\"not debug|info|warn|error\"",
               log_level);
        return 1;
    }
    cm_config_log(vars, nvars);
    if (strncmp(public_url, "https://", 8) != 0 && strncmp(public_url, "http://", 7) != 0) {
        CM_LOG(CM_LOG_ERROR, "event=config_invalid var=PUBLIC_URL value=\"%s\" reason=\"not an http(s) URL\"",
               public_url);
        return 1;
    }
    if (strncmp(public_url, "http://", 7) == 0)
        CM_LOG(CM_LOG_WARN,
               "event=public_url_not_https reason=\"Wallet accepts http only on development devices\"");
    if (cm_redis_url_parse(redis_url, &app.redis, err, sizeof(err)) != 0) {
        CM_LOG(CM_LOG_ERROR, "event=config_invalid var=REDIS_URL reason=\"%s\"", err);
        return 1;
    }
    CM_LOG(CM_LOG_INFO, "event=redis host=%s port=%d db=%d", app.redis.host, app.redis.port, app.redis.db);

    /* A client that disconnects must not kill the process with SIGPIPE (h2o and hiredis write to sockets). */
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_startup_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);

    app.metrics = signer_metrics_new();
    if (signer_registry_load(certs_dir, wwdr_cert, app.metrics) != 0)
        goto out;
    ids = signer_registry_acquire();
    CM_LOG(CM_LOG_INFO, "event=certs_loaded dir=\"%s\" pass_types=%zu", certs_dir,
           cm_certs_count(signer_identities_certs(ids)));
    app.public_url = public_url;
    app.cache_ttl = cache_ttl;
    app.token = token;
    cm_metric_set(app.metrics->workers, (double)size_thread_pool(workers), NULL);

    if (signer_passtypes_publish(signer_identities_certs(ids), &app.redis, &startup_stop) != 0) {
        CM_LOG(CM_LOG_INFO, "event=shutdown reason=\"signal while waiting for redis\"");
        rc = 0;
        goto out;
    }

    if (uv_loop_init(&m.loop) != 0)
        abort();
    if (cm_httpd_new(&m.loop, listen, MAX_REQUEST_BODY, &m.httpd) != 0) {
        CM_LOG(CM_LOG_ERROR, "event=httpd_failed address=\"%s\"", listen);
        goto out;
    }
    signer_identities_release(ids);
    ids = NULL;
    signer_routes_bundles_register(m.httpd, &m.loop, &app);
    signer_routes_status_register(m.httpd, &m.loop, &app);
    cm_httpd_set_metrics(m.httpd, app.metrics->registry);
    uv_signal_init(&m.loop, &m.sigterm);
    uv_signal_init(&m.loop, &m.sigint);
    uv_signal_init(&m.loop, &m.sighup);
    uv_timer_init(&m.loop, &m.drain);
    m.sigterm.data = m.sigint.data = m.sighup.data = m.drain.data = &m;
    uv_signal_start(&m.sigterm, on_signal, SIGTERM);
    uv_signal_start(&m.sigint, on_signal, SIGINT);
    uv_signal_start(&m.sighup, on_sighup, SIGHUP);
    signer_passtypes_refresh_start(&m.loop, &app.redis);
    if (startup_reload)
        signer_registry_reload(&m.loop, signer_passtypes_refresh_now);
    if (startup_stop) {
        rc = 0;
    } else if (cm_httpd_start(m.httpd) == 0) {
        uv_run(&m.loop, UV_RUN_DEFAULT);
        rc = 0;
    }
    if (!m.drained &&
        (m.stopping || cm_httpd_inflight(m.httpd) > 0 || signer_routes_bundles_pending() > 0 ||
         signer_passtypes_refresh_stop() || signer_routes_status_stop() || signer_registry_busy())) {
        /* Grace expired: workers may still hold jobs and h2o connections are open. Freeing either would
         * race with them; the process exit reclaims everything. Whatever was still running was cut
         * short: that is a failure. */
        if (m.stopping)
            rc = 1;
        CM_LOG(CM_LOG_WARN, "event=exit status=%d cleanup=skipped", rc);
        live_httpd = m.httpd;
        return rc;
    }
    live_httpd = m.httpd;
    cm_httpd_stop(m.httpd);
    cm_httpd_free(m.httpd);
    /* No client connection is left (on_drain_tick); what remains are h2o's own timers and async handle,
     * and ours. Nothing runs on this loop again. */
    uv_walk(&m.loop, close_handle, NULL);
    uv_run(&m.loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&m.loop) != 0)
        CM_LOG(CM_LOG_WARN, "event=loop_close_busy");
    signer_store_free_all();
    CM_LOG(CM_LOG_INFO, "event=exit status=%d", rc);
out:
    signer_identities_release(ids);
    signer_registry_dispose();
    return rc;
}
