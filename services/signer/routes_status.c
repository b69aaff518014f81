/*
 * GET /healthz, /readyz and /metrics on the signer's own listener (common/status_server.h).
 *
 * /healthz answers while the loop runs and touches nothing. /readyz must answer at once, on the loop,
 * so it reads state kept up to date elsewhere: the outcome of a PING sent every SIGNER_READY_PING_MS
 * from the thread pool (the loop never blocks on Redis) and the number of loaded certificates. A PING
 * queues behind the signing jobs, so under load the answer can be up to that queue's length old.
 */
#include "signer.h"

#include "common/httpd.h"
#include "common/metrics.h"
#include "common/status_server.h"

#include <stdio.h>
#include <string.h>
#include <uv.h>

static struct {
    const signer_app_t *app;
    uv_timer_t timer;
    uv_work_t work;
    int started, busy;
    int redis_ok; /* the last PING's outcome (loop thread) */
    char redis_err[200];
    int work_rc; /* written by the worker, read in the after-work callback */
    char work_err[200];
} status;

static int is_ready(void *data, char *reason, size_t reason_size)
{
    (void)data;
    if (signer_registry_count() == 0) {
        snprintf(reason, reason_size, "no certificate loaded");
        return 0;
    }
    if (!status.redis_ok) {
        snprintf(reason, reason_size, "redis unreachable: %s",
                 status.redis_err[0] != '\0' ? status.redis_err : "no answer yet");
        return 0;
    }
    return 1;
}

static void on_ping_work(uv_work_t *work)
{
    (void)work;
    status.work_err[0] = '\0';
    status.work_rc = signer_store_ping(signer_store_for_thread(&status.app->redis), status.work_err,
                                       sizeof(status.work_err));
}

static void on_ping_done(uv_work_t *work, int rc)
{
    (void)work;
    status.busy = 0;
    if (rc != 0)
        return;
    status.redis_ok = status.work_rc == 0;
    if (!status.redis_ok)
        cm_metric_add(status.app->metrics->redis_errors, 1, (const char *const[]){"ping"});
    memcpy(status.redis_err, status.work_err, sizeof(status.redis_err));
}

static void on_ping_tick(uv_timer_t *timer)
{
    if (status.busy)
        return;
    status.busy = 1;
    if (uv_queue_work(timer->loop, &status.work, on_ping_work, on_ping_done) != 0)
        status.busy = 0;
}

void signer_routes_status_register(cm_httpd_t *httpd, uv_loop_t *loop, const signer_app_t *app)
{
    status.app = app;
    /* the publication before the loop started reached Redis */
    status.redis_ok = 1;
    cm_status_routes(httpd, app->metrics->registry, is_ready, NULL);
    uv_timer_init(loop, &status.timer);
    uv_timer_start(&status.timer, on_ping_tick, SIGNER_READY_PING_MS, SIGNER_READY_PING_MS);
    status.started = 1;
}

int signer_routes_status_stop(void)
{
    if (status.started && !uv_is_closing((uv_handle_t *)&status.timer))
        uv_close((uv_handle_t *)&status.timer, NULL);
    return status.busy;
}
