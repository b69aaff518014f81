/*
 * Start-up work on the pass types: the signer's own certificate policy (on top of what cm_certs_load
 * checks) and the pk:passtype:{ptid} entries that tell the api which pass types can be signed.
 *
 * The first publication runs before the loop exists, so blocking Redis calls and sleep() are fine there.
 * Afterwards a timer republishes every SIGNER_PASSTYPE_REFRESH_MS from the thread pool, so the entries
 * come back after Redis lost them (restart without persistence, FLUSHALL).
 */
#include "signer.h"

#include "common/ids.h"
#include "common/keys.h"
#include "common/log.h"

#include <hiredis/hiredis.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

/* The subject OU of a certificate, into out ("" when absent). */
static void subject_ou(X509 *cert, char *out, size_t size)
{
    out[0] = '\0';
    X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_organizationalUnitName, out, (int)size);
}

int signer_passtypes_check(const cm_certs_t *certs, time_t now)
{
    int bad = 0;
    X509 *wwdr = cm_certs_wwdr(certs);
    char ou[64];
    subject_ou(wwdr, ou, sizeof(ou));
    if (strcmp(ou, "G4") != 0)
        CM_LOG(CM_LOG_WARN, "event=wwdr_not_g4 ou=\"%s\" reason=\"Wallet expects passes chained to WWDR G4\"",
               ou);
    for (size_t i = 0; i < cm_certs_count(certs); i++) {
        const cm_pass_identity_t *id = cm_certs_at(certs, i);
        int refused = 0;
        if (!cm_id_is_pass_type(id->pass_type_id, strlen(id->pass_type_id))) {
            CM_LOG(CM_LOG_ERROR,
                   "event=cert_refused file=%s reason=\"folder name is not a valid pass type identifier\"",
                   id->cert_path);
            refused = 1;
        }
        if (X509_check_issued(wwdr, id->cert) != X509_V_OK) {
            CM_LOG(CM_LOG_ERROR, "event=cert_refused file=%s reason=\"not issued by wwdr.pem\"",
                   id->cert_path);
            refused = 1;
        }
        if (now < id->not_before || now > id->not_after) {
            CM_LOG(CM_LOG_ERROR,
                   "event=cert_refused file=%s reason=\"not valid now\" not_before=%lld not_after=%lld",
                   id->cert_path, (long long)id->not_before, (long long)id->not_after);
            refused = 1;
        }
        if (!refused && id->not_after - now < 30 * 86400)
            CM_LOG(CM_LOG_WARN, "event=cert_expires_soon ptid=%s not_after=%lld", id->pass_type_id,
                   (long long)id->not_after);
        bad |= refused;
    }
    return bad ? -1 : 0;
}

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
    const cm_certs_t *certs;
    const cm_redis_url_t *url;
    int busy, started;
    char err[512];
    int rc;
} refresh;

static void on_refresh_work(uv_work_t *work)
{
    (void)work;
    refresh.rc = publish_once(refresh.certs, refresh.url, 1, refresh.err, sizeof(refresh.err));
}

static void on_refresh_done(uv_work_t *work, int status)
{
    (void)work;
    refresh.busy = 0;
    if (status == 0 && refresh.rc != 0)
        CM_LOG(CM_LOG_WARN, "event=passtype_publish_failed reason=\"%s\"", refresh.err);
}

static void on_refresh_tick(uv_timer_t *timer)
{
    if (refresh.busy)
        return;
    refresh.busy = 1;
    if (uv_queue_work(timer->loop, &refresh.work, on_refresh_work, on_refresh_done) != 0)
        refresh.busy = 0;
}

void signer_passtypes_refresh_start(struct uv_loop_s *loop, const cm_certs_t *certs,
                                    const cm_redis_url_t *url)
{
    refresh.certs = certs;
    refresh.url = url;
    uv_timer_init(loop, &refresh.timer);
    uv_timer_start(&refresh.timer, on_refresh_tick, SIGNER_PASSTYPE_REFRESH_MS, SIGNER_PASSTYPE_REFRESH_MS);
    refresh.started = 1;
}

int signer_passtypes_refresh_stop(void)
{
    if (refresh.started && !uv_is_closing((uv_handle_t *)&refresh.timer))
        uv_close((uv_handle_t *)&refresh.timer, NULL);
    return refresh.busy;
}
