/*
 * passkit-pusher: reads pass change events from the pk:events stream (and fan-out chunks from
 * pk:fanout) as a member of the consumer group "pushers" and pushes every registered device of each
 * changed pass through APNs.
 *
 * This file reads the configuration, loads the certificates, starts the status listener, handles
 * signals and runs the loop:
 *   (re)connect -> re-read this consumer's own pending entries -> now and then XAUTOCLAIM entries
 *   that dead consumers left idle, and trim the streams -> XREADGROUP new entries (BLOCK) -> wait
 *   until the newest is PUSHER_COALESCE_MS old -> batch.c -> repeat.
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
#include "common/metrics.h"
#include "common/redis_url.h"
#include "common/status_server.h"

#include <curl/curl.h>
#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdio.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define RECONNECT_MIN_MS     250
#define RECONNECT_MAX_MS     5000 /* a Redis back from an outage is used within 5 s */
#define CERT_EXPIRY_WARN_S   (30 * 24 * 3600)
#define CONSUMER_IDLE_MAX_MS 3600000L /* consumers holding nothing and idle this long are deleted */

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
    const char *redis_url, *certs_dir, *apns_url, *apns_ca_file, *consumer, *log_level, *listen;
    long batch, block_ms, claim_idle_ms, max_attempts, fanout_chunk, chunks_per_read, coalesce_ms,
        maintain_ms;
    long apns_connections, apns_ping_s, apns_timeout_ms;
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
    {"PUSHER_MAX_ATTEMPTS", CM_CONFIG_INT, "8", 1, 100, 0, &cfg.max_attempts,
     "tries per push before it goes to the dead-letter stream"},
    {"PUSHER_FANOUT_CHUNK", CM_CONFIG_INT, "1000", 1, PUSHER_FANOUT_CHUNK_MAX, 0, &cfg.fanout_chunk,
     "an event with more devices is split into pk:fanout chunks of this size, shared by all pushers"},
    {"PUSHER_CHUNKS_PER_READ", CM_CONFIG_INT, "4", 1, 100, 0, &cfg.chunks_per_read,
     "fan-out chunks a pusher takes at a time (fewer: fairer sharing; more: fewer pauses between them)"},
    {"PUSHER_COALESCE_MS", CM_CONFIG_INT, "100", 0, 10000, 0, &cfg.coalesce_ms,
     "wait until a new event is this old, so a burst of updates to a pass gives one push"},
    {"PUSHER_MAINTAIN_MS", CM_CONFIG_INT, "10000", 1000, 3600000, 0, &cfg.maintain_ms,
     "how often to trim the streams and refresh the group metrics"},
    {"PUSHER_APNS_CONNECTIONS", CM_CONFIG_INT, "4", 1, 64, 0, &cfg.apns_connections,
     "most HTTP/2 connections per certificate (a second opens only when the first is full)"},
    {"PUSHER_APNS_PING_S", CM_CONFIG_INT, "300", 1, 3600, 0, &cfg.apns_ping_s,
     "PING an APNs connection idle this long"},
    {"PUSHER_APNS_TIMEOUT_MS", CM_CONFIG_INT, "30000", 100, 600000, 0, &cfg.apns_timeout_ms,
     "a push unanswered this long counts as a failed attempt and its connection is closed"},
    {"PUSHER_LISTEN", CM_CONFIG_STRING, ":9102", 0, 0, 0, &cfg.listen,
     "host:port of /healthz, /readyz and /metrics, or 'off'"},
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
    char *scheme = NULL, *path = NULL, *user = NULL;
    if (u == NULL)
        abort();
    int url_ok = curl_url_set(u, CURLUPART_URL, cfg.apns_url, 0) == CURLUE_OK &&
                 curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK && strcmp(scheme, "https") == 0 &&
                 curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK && strcmp(path, "/") == 0 &&
                 strlen(cfg.apns_url) <= 200;
    if (url_ok && curl_url_get(u, CURLUPART_USER, &user, 0) == CURLUE_OK) {
        CM_LOG(CM_LOG_ERROR, "event=config_invalid var=APNS_URL reason=\"must not hold credentials (value "
                             "hidden): APNs authenticates the pass type certificate\"");
        bad = 1;
    } else if (!url_ok) {
        char shown[256];
        cm_log_clean(shown, sizeof(shown), cfg.apns_url, strlen(cfg.apns_url));
        CM_LOG(
            CM_LOG_ERROR,
            "event=config_invalid var=APNS_URL value=\"%s\" reason=\"must be https://host[:port] without a "
            "path\"",
            strchr(cfg.apns_url, '@') != NULL ? "(hidden: it may hold credentials)" : shown);
        bad = 1;
    }
    curl_free(scheme);
    curl_free(path);
    curl_free(user);
    curl_url_cleanup(u);
    if (cfg.apns_ca_file[0] != '\0') {
        /* Loaded here too, so that a wrong file is reported with every other mistake. */
        BIO *bio = BIO_new_file(cfg.apns_ca_file, "r");
        X509 *x = bio != NULL ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
        if (x == NULL) {
            CM_LOG(CM_LOG_ERROR, "event=config_invalid var=APNS_CA_FILE value=\"%s\" reason=\"%s\"",
                   cfg.apns_ca_file, bio == NULL ? "cannot read the file" : "no PEM certificate in it");
            bad = 1;
        }
        X509_free(x);
        BIO_free(bio);
        ERR_clear_error();
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

/* Milliseconds of the wall clock (stream ids carry Redis's wall-clock milliseconds). */
static uint64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000u + (uint64_t)tv.tv_usec / 1000u;
}

/* Coalescing: waits until the newest new event of the batch is PUSHER_COALESCE_MS old. Updates to a
 * pass written meanwhile make the older events superseded (registrations.c), so a burst gives each
 * device one push, whichever pushers hold its events. Chunks and re-read entries do not wait. */
static void coalesce_wait(const pusher_event_t *events, size_t n)
{
    uint64_t newest = 0;
    for (size_t i = 0; i < n; i++) {
        if (events[i].stream != PUSHER_STREAM_EVENTS || events[i].kind != PUSHER_EVENT_PUSH)
            continue;
        uint64_t ms = strtoull(events[i].id, NULL, 10);
        if (ms > newest)
            newest = ms;
    }
    uint64_t now = wall_ms();
    if (newest == 0 || newest + (uint64_t)cfg.coalesce_ms <= now)
        return;
    uint64_t wait = newest + (uint64_t)cfg.coalesce_ms - now;
    if (wait > (uint64_t)cfg.coalesce_ms) /* a clock far behind Redis's: never wait longer than the window */
        wait = (uint64_t)cfg.coalesce_ms;
    struct timespec ts = {(time_t)(wait / 1000), (long)(wait % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int maintain(redisContext *c, char *err, size_t err_size)
{
    for (int s = 0; s < PUSHER_NSTREAMS; s++) {
        pusher_stream_state_t st;
        if (pusher_events_maintain(c, (enum pusher_stream)s, CONSUMER_IDLE_MAX_MS, &st, err, err_size) != 0)
            return -1;
        pusher_metrics_stream_state((enum pusher_stream)s, &st);
        if (st.trimmed > 0 || st.consumers_deleted > 0)
            CM_LOG(CM_LOG_INFO,
                   "event=stream_maintained stream=%s trimmed=%lld consumers_deleted=%lld pending=%lld",
                   pusher_stream_key((enum pusher_stream)s), st.trimmed, st.consumers_deleted, st.pending);
    }
    return 0;
}

/* Connects, makes sure the group exists, loads the scripts and sends acks left from a failure. */
static int connect_redis(const cm_redis_url_t *url, redisContext **out, char *err, size_t err_size)
{
    redisContext *c = NULL;
    if (cm_redis_connect_sync(url, PUSHER_REDIS_TIMEOUT_MS, &c, err, err_size) != 0)
        return -1;
    if (pusher_events_create_groups(c, err, err_size) != 0 ||
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
    return ms < 1000 ? 1000 : ms > 5000 ? 5000 : ms;
}

/* New entries: a few fan-out chunks (so a large fan-out is shared by every pusher, not taken whole by
 * the first reader) and up to PUSHER_BATCH events; when there are none, block on both streams for
 * the first entry of either. */
static int read_new(redisContext *redis, long block_ms, pusher_event_t *events, size_t *n, char *err,
                    size_t err_size)
{
    const char *chunks_only[PUSHER_NSTREAMS] = {NULL, ">"}, *events_only[PUSHER_NSTREAMS] = {">", NULL};
    const char *both[PUSHER_NSTREAMS] = {">", ">"};
    size_t got_chunks = 0, got_events = 0;
    if (pusher_events_read(redis, cfg.consumer, chunks_only, (size_t)cfg.chunks_per_read, 0, &blocking_fd,
                           NULL, events, &got_chunks, err, err_size) != 0)
        return -1;
    if (pusher_events_read(redis, cfg.consumer, events_only, (size_t)cfg.batch, 0, &blocking_fd, NULL,
                           events + got_chunks, &got_events, err, err_size) != 0) {
        pusher_events_clear(events, got_chunks);
        return -1;
    }
    *n = got_chunks + got_events;
    if (*n > 0 || stop_requested)
        return 0;
    return pusher_events_read(redis, cfg.consumer, both, 1, block_ms, &blocking_fd, &stop_requested, events,
                              n, err, err_size);
}

static void drop_redis(redisContext **redis)
{
    redisFree(*redis);
    *redis = NULL;
    pusher_status_set_redis(0);
}

static int run(const cm_redis_url_t *url, pusher_apns_t *apns)
{
    redisContext *redis = NULL;
    size_t cap = (size_t)cfg.batch * PUSHER_NSTREAMS + (size_t)cfg.chunks_per_read;
    pusher_event_t *events = pusher_xcalloc(cap, sizeof(*events));
    char err[512];
    char pending_cursor[PUSHER_NSTREAMS][PUSHER_STREAM_ID_MAX];
    char claim_cursor[PUSHER_STREAM_ID_MAX] = "0-0";
    int reading_pending = 1, claim_stream = 0;
    long reconnect_ms = RECONNECT_MIN_MS;
    unsigned attempt = 0;
    uint64_t next_claim = 0, next_maintain = 0;

    while (!stop_requested) {
        if (redis == NULL) {
            if (connect_redis(url, &redis, err, sizeof(err)) != 0) {
                attempt++;
                pusher_metrics_redis_error("connect");
                CM_LOG(CM_LOG_ERROR,
                       "event=redis_unavailable host=%s port=%d attempt=%u error=\"%s\" retry_in_ms=%ld",
                       url->host, url->port, attempt, err, reconnect_ms);
                pause_ms(reconnect_ms);
                reconnect_ms = reconnect_ms * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : reconnect_ms * 2;
                continue;
            }
            pusher_status_set_redis(1);
            CM_LOG(CM_LOG_INFO, "event=redis_connected host=%s port=%d db=%d consumer=%s", url->host,
                   url->port, url->db, cfg.consumer);
            reconnect_ms = RECONNECT_MIN_MS;
            attempt = 0;
            reading_pending = 1;
            for (int st = 0; st < PUSHER_NSTREAMS; st++)
                snprintf(pending_cursor[st], sizeof(pending_cursor[st]), "0");
        }

        pusher_apns_service(apns, 0); /* idle connections: GOAWAY, PING */
        pusher_metrics_apns(apns);
        size_t n = 0;
        const char *source;
        int rc;
        uint64_t now = pusher_now_ms();
        if (now >= next_maintain) {
            next_maintain = now + (uint64_t)cfg.maintain_ms;
            if (maintain(redis, err, sizeof(err)) != 0) {
                CM_LOG(CM_LOG_ERROR, "event=redis_error call=maintain error=\"%s\" action=reconnect", err);
                pusher_metrics_redis_error("maintain");
                drop_redis(&redis);
                continue;
            }
        }
        if (reading_pending) {
            source = "pending";
            const char *starts[PUSHER_NSTREAMS] = {pending_cursor[0], pending_cursor[1]};
            rc = pusher_events_read(redis, cfg.consumer, starts, (size_t)cfg.batch, 0, &blocking_fd, NULL,
                                    events, &n, err, sizeof(err));
            if (rc == 0 && n == 0)
                reading_pending = 0;
            for (size_t i = 0; rc == 0 && i < n; i++) /* entries come grouped by stream, in id order */
                snprintf(pending_cursor[events[i].stream], PUSHER_STREAM_ID_MAX, "%s", events[i].id);
        } else if (now >= next_claim) {
            source = "claimed";
            rc = pusher_events_autoclaim(redis, (enum pusher_stream)claim_stream, cfg.consumer,
                                         cfg.claim_idle_ms, claim_cursor, (size_t)cfg.batch, events, &n, err,
                                         sizeof(err));
            if (rc == 0 && strcmp(claim_cursor, "0-0") == 0 && ++claim_stream == PUSHER_NSTREAMS) {
                claim_stream = 0;
                next_claim = now + (uint64_t)claim_interval_ms();
            }
        } else {
            source = "new";
            /* Wake up in time for the next claim and maintenance rounds, however long the BLOCK. */
            uint64_t next_duty = next_claim < next_maintain ? next_claim : next_maintain;
            long block_ms = cfg.block_ms;
            if (next_duty > now && next_duty - now < (uint64_t)block_ms)
                block_ms = (long)(next_duty - now);
            if (block_ms < 1)
                block_ms = 1;
            rc = read_new(redis, block_ms, events, &n, err, sizeof(err));
            if (rc == 0 && n > 0 && cfg.coalesce_ms > 0)
                coalesce_wait(events, n);
        }
        if (rc != 0) {
            if (stop_requested)
                break; /* the signal handler shut the socket down */
            CM_LOG(CM_LOG_ERROR, "event=redis_error call=read source=%s error=\"%s\" action=reconnect",
                   source, err);
            pusher_metrics_redis_error("read");
            drop_redis(&redis);
            continue;
        }
        if (n == 0)
            continue;
        pusher_batch_env_t env = {.redis = redis,
                                  .apns = apns,
                                  .consumer = cfg.consumer,
                                  .claim_idle_ms = cfg.claim_idle_ms,
                                  .fanout_chunk = (size_t)cfg.fanout_chunk,
                                  .stop_requested = &stop_requested,
                                  .stop_now = &stop_now};
        rc = pusher_batch_process(&env, events, n, source, err, sizeof(err));
        pusher_events_clear(events, n);
        if (rc != 0) {
            if (stop_now)
                break;
            CM_LOG(CM_LOG_ERROR, "event=batch_failed source=%s error=\"%s\" action=reconnect", source, err);
            drop_redis(&redis);
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
    cm_metrics_t *metrics = NULL;
    cm_status_server_t *status = NULL;
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
    pusher_status_set_certs(cm_certs_count(certs) > 0);
    pusher_apns_options_t apns_opt = {
        .base_url = cfg.apns_url,
        .ca_file = cfg.apns_ca_file,
        .max_attempts = (int)cfg.max_attempts,
        .max_connections = (int)cfg.apns_connections,
        .ping_interval_ms = cfg.apns_ping_s * 1000L,
        .request_timeout_ms = cfg.apns_timeout_ms,
    };
    if (pusher_apns_new(certs, &apns_opt, &apns, err, sizeof(err)) != 0) {
        CM_LOG(CM_LOG_ERROR, "event=startup_failed call=pusher_apns_new reason=\"%s\"", err);
        goto out;
    }
    metrics = cm_metrics_new();
    pusher_metrics_init(metrics);
    if (strcmp(cfg.listen, "off") != 0 && cm_status_server_start(cfg.listen, metrics, pusher_status_is_ready,
                                                                 NULL, &status, err, sizeof(err)) != 0) {
        CM_LOG(CM_LOG_ERROR, "event=startup_failed var=PUSHER_LISTEN value=\"%s\" reason=\"%s\"", cfg.listen,
               err);
        goto out;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    CM_LOG(CM_LOG_INFO, "event=started consumer=%s group=pushers apns=\"%s\" pass_types=%zu listen=%s",
           cfg.consumer, cfg.apns_url, cm_certs_count(certs), cfg.listen);
    rc = run(&redis_url, apns);
    CM_LOG(CM_LOG_INFO, "event=stopped consumer=%s", cfg.consumer);
out:
    cm_status_server_stop(status);
    cm_metrics_free(metrics);
    pusher_apns_free(apns);
    cm_certs_free(certs);
    pusher_batch_shutdown();
    curl_global_cleanup();
    return rc;
}
