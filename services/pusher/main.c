/*
 * passkit-pusher: reads pass change events from the pk:events stream as a member of the consumer
 * group "pushers" and pushes every registered device of each changed pass through APNs.
 *
 * This file reads the configuration, loads the certificates, handles signals and runs the loop:
 *   (re)connect -> re-read this consumer's own pending entries -> now and then XAUTOCLAIM entries
 *   that dead consumers left idle -> XREADGROUP new entries (BLOCK) -> batch.c -> repeat.
 * Any Redis failure drops the connection; the loop reconnects with backoff and starts over with
 * the pending entries, so nothing that was read is lost.
 *
 * SIGTERM/SIGINT: stop reading, finish and acknowledge the current batch, exit 0. A second signal
 * abandons the current batch at once (its unfinished events stay pending for the next pusher).
 */
#include "pusher.h"

#include "common/certs.h"
#include "common/config.h"
#include "common/log.h"
#include "common/redis_url.h"

#include <curl/curl.h>
#include <errno.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#define RECONNECT_MIN_MS   250
#define RECONNECT_MAX_MS   30000
#define CERT_EXPIRY_WARN_S (30 * 24 * 3600)

#define APNS_MAX_CONNECTIONS    4     /* per certificate, opened only when the traffic needs them */
#define APNS_PING_INTERVAL_MS   60000 /* PING a connection idle this long */
#define APNS_REQUEST_TIMEOUT_MS 30000 /* an answer later than this: the connection is broken */

static volatile sig_atomic_t stop_requested;
static volatile sig_atomic_t stop_now;
static volatile sig_atomic_t blocking_fd = -1;

static void on_signal(int sig)
{
    (void)sig;
    if (stop_requested)
        stop_now = 1;
    stop_requested = 1;
    /* Wake up a blocked XREADGROUP: hiredis retries reads interrupted by signals. */
    int fd = blocking_fd;
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
}

static struct {
    const char *redis_url, *certs_dir, *apns_url, *apns_ca_file, *consumer, *log_level;
    long batch, block_ms, claim_idle_ms, max_attempts;
} cfg;

static char default_consumer[CM_ID_MAX + 1];

static const cm_config_var_t config_vars[] = {
    {"REDIS_URL", CM_CONFIG_STRING, "redis://127.0.0.1:6379/0", 0, 0, 1, &cfg.redis_url,
     "redis://[[user]:password@]host[:port][/db]"},
    {"CERTS_DIR", CM_CONFIG_STRING, "./certs", 0, 0, 0, &cfg.certs_dir,
     "folder with one pass.* folder (certificate.pem, private-key.pem) per pass type"},
    {"APNS_URL", CM_CONFIG_STRING, "https://api.push.apple.com", 0, 0, 0, &cfg.apns_url,
     "APNs base URL, https://host[:port]"},
    {"APNS_CA_FILE", CM_CONFIG_STRING, "", 0, 0, 0, &cfg.apns_ca_file,
     "PEM file of CAs to trust for APNS_URL instead of the system ones (test APNs)"},
    {"PUSHER_CONSUMER", CM_CONFIG_STRING, default_consumer, 0, 0, 0, &cfg.consumer,
     "consumer name in the group, [A-Za-z0-9._-]; default <hostname>-<pid>"},
    {"PUSHER_BATCH", CM_CONFIG_INT, "100", 1, 10000, 0, &cfg.batch, "events per read"},
    {"PUSHER_BLOCK_MS", CM_CONFIG_INT, "5000", 1, 600000, 0, &cfg.block_ms, "XREADGROUP BLOCK time"},
    {"PUSHER_CLAIM_IDLE_MS", CM_CONFIG_INT, "60000", 1000, 86400000, 0, &cfg.claim_idle_ms,
     "claim events pending this long on another consumer"},
    {"PUSHER_MAX_ATTEMPTS", CM_CONFIG_INT, "5", 1, 100, 0, &cfg.max_attempts,
     "tries per push before giving up"},
    {"LOG_LEVEL", CM_CONFIG_STRING, "info", 0, 0, 0, &cfg.log_level, "debug, info, warn or error"},
};
#define NVARS (sizeof(config_vars) / sizeof(config_vars[0]))

static void make_default_consumer(void)
{
    char host[256] = "pusher";
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "pusher");
    host[sizeof(host) - 1] = '\0';
    host[96] = '\0';
    for (char *p = host; *p; p++)
        if (!cm_id_char_is_plain(*p))
            *p = '-';
    snprintf(default_consumer, sizeof(default_consumer), "%.96s-%ld", host[0] ? host : "pusher",
             (long)getpid());
}

/* Checks beyond types and bounds; logs every problem. */
static int validate(cm_redis_url_t *redis_url)
{
    int bad = 0;
    char err[512];
    if (cm_log_init("pusher", cfg.log_level) != 0) {
        CM_LOG(CM_LOG_ERROR,
               "event=config_invalid var=LOG_LEVEL value=\"%s\" reason=\"not debug, info, warn or error\"",
               cfg.log_level);
        bad = 1;
    }
    if (cm_redis_url_parse(cfg.redis_url, redis_url, err, sizeof(err)) != 0) {
        /* The message quotes the URL: show it only when it holds no credentials. */
        if (strchr(cfg.redis_url, '@') != NULL)
            snprintf(err, sizeof(err),
                     "not redis://[[user]:password@]host[:port][/db] (value hidden: it has credentials)");
        for (char *p = err; *p; p++)
            if (*p == '"')
                *p = '\'';
        CM_LOG(CM_LOG_ERROR, "event=config_invalid var=REDIS_URL reason=\"%s\"", err);
        bad = 1;
    }
    CURLU *u = curl_url();
    char *scheme = NULL, *path = NULL;
    if (u == NULL)
        abort();
    if (curl_url_set(u, CURLUPART_URL, cfg.apns_url, 0) != CURLUE_OK ||
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK || strcmp(scheme, "https") != 0 ||
        curl_url_get(u, CURLUPART_PATH, &path, 0) != CURLUE_OK || strcmp(path, "/") != 0 ||
        strlen(cfg.apns_url) > 200) {
        CM_LOG(CM_LOG_ERROR,
               "event=config_invalid var=APNS_URL value=\"%s\" reason=\"must be https://host[:port] without "
               "a path\"",
               cfg.apns_url);
        bad = 1;
    }
    curl_free(scheme);
    curl_free(path);
    curl_url_cleanup(u);
    if (cfg.apns_ca_file[0] != '\0' && access(cfg.apns_ca_file, R_OK) != 0) {
        CM_LOG(CM_LOG_ERROR, "event=config_invalid var=APNS_CA_FILE value=\"%s\" reason=\"cannot read: %s\"",
               cfg.apns_ca_file, strerror(errno));
        bad = 1;
    }
    if (!cm_id_is_plain(cfg.consumer, strlen(cfg.consumer))) {
        CM_LOG(
            CM_LOG_ERROR,
            "event=config_invalid var=PUSHER_CONSUMER value=\"%s\" reason=\"must be 1-%d of [A-Za-z0-9._-]\"",
            cfg.consumer, CM_ID_MAX);
        bad = 1;
    }
    return bad ? -1 : 0;
}

static void log_certs(const cm_certs_t *certs)
{
    time_t now = time(NULL);
    for (size_t i = 0; i < cm_certs_count(certs); i++) {
        const cm_pass_identity_t *id = cm_certs_at(certs, i);
        long days = (long)((id->not_after - now) / 86400);
        CM_LOG(CM_LOG_INFO, "event=certificate_loaded ptid=%s team=%s expires_in_days=%ld", id->pass_type_id,
               id->team_id, days);
        if (id->not_after - now < CERT_EXPIRY_WARN_S)
            CM_LOG(CM_LOG_WARN, "event=certificate_expiring ptid=%s expires_in_days=%ld", id->pass_type_id,
                   days);
    }
}

/* Sleeps ms unless a stop is requested. */
static void pause_ms(long ms)
{
    while (ms > 0 && !stop_requested) {
        long step = ms < 100 ? ms : 100;
        struct timespec ts = {0, step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

/* Connects, makes sure the group exists, loads the scripts and sends acks left from a failure. */
static int connect_redis(const cm_redis_url_t *url, redisContext **out, char *err, size_t err_size)
{
    redisContext *c = NULL;
    if (cm_redis_connect_sync(url, PUSHER_REDIS_TIMEOUT_MS, &c, err, err_size) != 0)
        return -1;
    if (pusher_events_create_group(c, err, err_size) != 0 ||
        pusher_regs_load_scripts(c, err, err_size) != 0 || pusher_batch_flush_acks(c, err, err_size) != 0) {
        redisFree(c);
        return -1;
    }
    *out = c;
    return 0;
}

static long claim_interval_ms(void)
{
    long ms = cfg.claim_idle_ms / 2;
    return ms < 1000 ? 1000 : ms > 30000 ? 30000 : ms;
}

static int run(const cm_redis_url_t *url, pusher_apns_t *apns)
{
    redisContext *redis = NULL;
    pusher_event_t *events = pusher_xcalloc((size_t)cfg.batch, sizeof(*events));
    char err[512];
    char pending_cursor[PUSHER_STREAM_ID_MAX] = "0", claim_cursor[PUSHER_STREAM_ID_MAX] = "0-0";
    int reading_pending = 1;
    long reconnect_ms = RECONNECT_MIN_MS;
    unsigned attempt = 0;
    uint64_t next_claim = 0;

    while (!stop_requested) {
        if (redis == NULL) {
            if (connect_redis(url, &redis, err, sizeof(err)) != 0) {
                attempt++;
                CM_LOG(CM_LOG_ERROR,
                       "event=redis_unavailable host=%s port=%d attempt=%u error=\"%s\" retry_in_ms=%ld",
                       url->host, url->port, attempt, err, reconnect_ms);
                pause_ms(reconnect_ms);
                reconnect_ms = reconnect_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : reconnect_ms * 2;
                continue;
            }
            CM_LOG(CM_LOG_INFO, "event=redis_connected host=%s port=%d db=%d consumer=%s", url->host,
                   url->port, url->db, cfg.consumer);
            reconnect_ms = RECONNECT_MIN_MS;
            attempt = 0;
            reading_pending = 1;
            snprintf(pending_cursor, sizeof(pending_cursor), "0");
        }

        pusher_apns_service(apns, 0); /* idle connections: GOAWAY, PING */
        size_t n = 0;
        const char *source;
        int rc;
        uint64_t now = pusher_now_ms();
        if (reading_pending) {
            source = "pending";
            rc = pusher_events_read(redis, cfg.consumer, pending_cursor, (size_t)cfg.batch, 0, &blocking_fd,
                                    events, &n, err, sizeof(err));
            if (rc == 0 && n == 0)
                reading_pending = 0;
            else if (rc == 0)
                snprintf(pending_cursor, sizeof(pending_cursor), "%s", events[n - 1].id);
        } else if (now >= next_claim) {
            source = "claimed";
            rc = pusher_events_autoclaim(redis, cfg.consumer, cfg.claim_idle_ms, claim_cursor,
                                         (size_t)cfg.batch, events, &n, err, sizeof(err));
            if (rc == 0 && strcmp(claim_cursor, "0-0") == 0)
                next_claim = now + (uint64_t)claim_interval_ms();
        } else {
            source = "new";
            rc = pusher_events_read(redis, cfg.consumer, ">", (size_t)cfg.batch, cfg.block_ms, &blocking_fd,
                                    events, &n, err, sizeof(err));
        }
        if (rc != 0) {
            if (stop_requested)
                break; /* the signal handler shut the socket down */
            CM_LOG(CM_LOG_ERROR, "event=redis_error call=read source=%s error=\"%s\" action=reconnect",
                   source, err);
            redisFree(redis);
            redis = NULL;
            continue;
        }
        if (n == 0)
            continue;
        pusher_batch_env_t env = {redis, apns, cfg.consumer, cfg.claim_idle_ms, &stop_now};
        if (pusher_batch_process(&env, events, n, source, err, sizeof(err)) != 0) {
            if (stop_now)
                break;
            CM_LOG(CM_LOG_ERROR, "event=batch_failed source=%s error=\"%s\" action=reconnect", source, err);
            redisFree(redis);
            redis = NULL;
        }
    }

    if (redis != NULL && pusher_batch_flush_acks(redis, err, sizeof(err)) != 0)
        CM_LOG(CM_LOG_WARN,
               "event=ack_lost error=\"%s\" note=\"those events stay pending and will be pushed again\"",
               err);
    if (redis != NULL)
        redisFree(redis);
    free(events);
    return 0;
}

int main(void)
{
    int rc = 1;
    cm_certs_t *certs = NULL;
    pusher_apns_t *apns = NULL;
    cm_redis_url_t redis_url;
    static char err[8192];

    make_default_consumer();
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        CM_LOG(CM_LOG_ERROR, "event=startup_failed call=curl_global_init");
        return 1;
    }
    cm_log_init("pusher", "info");
    /* Every string has a default, so validate() can run even when an integer was bad: all
     * mistakes are reported at once. */
    int bad = cm_config_load(config_vars, NVARS) != 0;
    bad |= validate(&redis_url) != 0;
    if (cm_certs_load(cfg.certs_dir, 0, &certs, err, sizeof(err)) != 0) {
        for (char *p = err; *p; p++)
            if (*p == '"')
                *p = '\'';
        CM_LOG(CM_LOG_ERROR, "event=config_invalid var=CERTS_DIR value=\"%s\" reason=\"%s\"", cfg.certs_dir,
               err);
        bad = 1;
    }
    if (bad) {
        CM_LOG(CM_LOG_ERROR, "event=startup_failed reason=\"invalid configuration (see above)\"");
        goto out;
    }
    cm_config_log(config_vars, NVARS);
    log_certs(certs);
    pusher_apns_options_t apns_opt = {
        .base_url = cfg.apns_url,
        .ca_file = cfg.apns_ca_file,
        .max_attempts = (int)cfg.max_attempts,
        .max_connections = APNS_MAX_CONNECTIONS,
        .ping_interval_ms = APNS_PING_INTERVAL_MS,
        .request_timeout_ms = APNS_REQUEST_TIMEOUT_MS,
    };
    if (pusher_apns_new(certs, &apns_opt, &apns, err, sizeof(err)) != 0) {
        CM_LOG(CM_LOG_ERROR, "event=startup_failed call=pusher_apns_new reason=\"%s\"", err);
        goto out;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    CM_LOG(CM_LOG_INFO, "event=started consumer=%s group=pushers apns=\"%s\" pass_types=%zu", cfg.consumer,
           cfg.apns_url, cm_certs_count(certs));
    rc = run(&redis_url, apns);
    CM_LOG(CM_LOG_INFO, "event=stopped consumer=%s", cfg.consumer);
out:
    pusher_apns_free(apns);
    cm_certs_free(certs);
    pusher_batch_shutdown();
    curl_global_cleanup();
    return rc;
}
