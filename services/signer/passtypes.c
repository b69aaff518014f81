/*
 * The pk:passtype:{ptid} entries that tell the api which pass types can be signed (and their Team ID).
 *
 * The first publication runs before the loop exists, so blocking Redis calls and sleep() are fine there.
 * Afterwards a timer republishes every SIGNER_PASSTYPE_REFRESH_MS from the thread pool, so the entries
 * come back after Redis lost them (restart without persistence, FLUSHALL), and right after a certificate
 * reload. A refresh holds a reference to the generation it publishes. Entries of pass types that left
 * CERTS_DIR are not deleted: another replica may still sign them.
 */
#include "signer.h"

#include "common/keys.h"
#include "common/log.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

/* One attempt: every HSET on a new connection. Logs each entry, or with quiet only the entries that were
 * missing. Returns 0, or -1 with the reason in err. */
static int publish_once(const cm_certs_t *certs, const cm_redis_url_t *url, int quiet, char *err,
                        size_t err_size)
{
    redisContext *c = NULL;
    if (cm_redis_connect_sync(url, SIGNER_REDIS_TIMEOUT_MS, &c, err, err_size) != 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < cm_certs_count(certs) && rc == 0; i++) {
        const cm_pass_identity_t *id = cm_certs_at(certs, i);
        char key[CM_KEY_MAX], not_after[24];
        snprintf(key, sizeof(key), CM_KEY_PASSTYPE_FMT, id->pass_type_id);
        snprintf(not_after, sizeof(not_after), "%lld", (long long)id->not_after);
        const char *argv[] = {"HSET", key, "teamIdentifier", id->team_id, "notAfter", not_after};
        redisReply *r = redisCommandArgv(c, 6, argv, NULL);
        if (r == NULL || r->type == REDIS_REPLY_ERROR) {
            snprintf(err, err_size, "redis HSET %.200s: %.200s", key, r != NULL ? r->str : c->errstr);
            rc = -1;
        } else if (!quiet || (r->type == REDIS_REPLY_INTEGER && r->integer > 0)) {
            CM_LOG(CM_LOG_INFO, "event=passtype_published ptid=%s team=%s not_after=%lld", id->pass_type_id,
                   id->team_id, (long long)id->not_after);
        }
        if (r != NULL)
            freeReplyObject(r);
    }
    redisFree(c);
    return rc;
}

int signer_passtypes_publish(const cm_certs_t *certs, const cm_redis_url_t *url, volatile sig_atomic_t *stop)
{
    char err[512];
    for (unsigned attempt = 1; !*stop; attempt++) {
        if (publish_once(certs, url, 0, err, sizeof(err)) == 0)
            return 0;
        CM_LOG(CM_LOG_WARN, "event=passtype_publish_failed attempt=%u reason=\"%s\" retry_in=1s", attempt,
               err);
        sleep(1);
    }
    return -1;
}

/* Loop-thread state of the periodic refresh. */
static struct {
    uv_timer_t timer;
    uv_work_t work;
    signer_identities_t *ids; /* the generation being published */
    const cm_redis_url_t *url;
    int busy, started, again;
    char err[512];
    int rc;
} refresh;

static void on_refresh_work(uv_work_t *work)
{
    (void)work;
    refresh.rc =
        publish_once(signer_identities_certs(refresh.ids), refresh.url, 1, refresh.err, sizeof(refresh.err));
}

static void start_refresh(uv_loop_t *loop);

static void on_refresh_done(uv_work_t *work, int status)
{
    refresh.busy = 0;
    signer_identities_release(refresh.ids);
    refresh.ids = NULL;
    if (status == 0 && refresh.rc != 0)
        CM_LOG(CM_LOG_WARN, "event=passtype_publish_failed reason=\"%s\"", refresh.err);
    if (refresh.again && !uv_is_closing((uv_handle_t *)&refresh.timer)) {
        refresh.again = 0;
        start_refresh(work->loop);
    }
}

static void start_refresh(uv_loop_t *loop)
{
    if (refresh.busy) {
        refresh.again = 1;
        return;
    }
    refresh.ids = signer_registry_acquire();
    refresh.busy = 1;
    if (uv_queue_work(loop, &refresh.work, on_refresh_work, on_refresh_done) != 0) {
        refresh.busy = 0;
        signer_identities_release(refresh.ids);
        refresh.ids = NULL;
    }
}

static void on_refresh_tick(uv_timer_t *timer)
{
    signer_registry_observe(time(NULL));
    if (!refresh.busy)
        start_refresh(timer->loop);
}

void signer_passtypes_refresh_start(struct uv_loop_s *loop, const cm_redis_url_t *url)
{
    refresh.url = url;
    uv_timer_init(loop, &refresh.timer);
    uv_timer_start(&refresh.timer, on_refresh_tick, SIGNER_PASSTYPE_REFRESH_MS, SIGNER_PASSTYPE_REFRESH_MS);
    refresh.started = 1;
}

void signer_passtypes_refresh_now(void)
{
    if (refresh.started && !uv_is_closing((uv_handle_t *)&refresh.timer))
        start_refresh(refresh.timer.loop);
}

int signer_passtypes_refresh_stop(void)
{
    if (refresh.started && !uv_is_closing((uv_handle_t *)&refresh.timer))
        uv_close((uv_handle_t *)&refresh.timer, NULL);
    return refresh.busy;
}
