/*
 * Internal interfaces of apns-standin, the local stand-in for Apple's APNs provider API.
 *
 * The program is single-threaded: every function here runs on the one poll() loop in main.c
 * and none of them blocks (the record and stats files are regular files, written in large
 * batches). Modules:
 *   apns_rules.c  request validation (Apple's statuses and reasons) and the --rule table
 *   record.c      the JSON-lines request record (buffered) and the logfmt log on stderr
 *   stats.c       the counters behind --stats-file
 *   tls.c         the server SSL_CTX (TLS 1.2+, ALPN h2, mandatory client certificate)
 *   conn.c        one TCP connection: TLS handshake and the byte pump between SSL and HTTP/2
 *   h2_session.c  the nghttp2 server session of one connection: streams, answers, records
 */
#ifndef APNS_STANDIN_H
#define APNS_STANDIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>

struct ssl_ctx_st;

/* Limits of the stand-in. Apple's own: the 4096-byte payload. The others are ours. */
#define STANDIN_MAX_PAYLOAD     4096  /* larger bodies get 413 PayloadTooLarge */
#define STANDIN_MAX_HEADERS     64    /* per request, pseudo-headers included */
#define STANDIN_MAX_HEADER_LIST 16384 /* sum of name + value + 32 per field (RFC 9113) */
#define STANDIN_MAX_RULES       256
#define STANDIN_MAX_REASON      63
#define STANDIN_MAX_UID         255
#define STANDIN_MAX_COUNT       1000000 /* the largest N of --rule ...*N, --goaway-after, ... */
#define STANDIN_MAX_DELAY_MS    600000

/* Out of memory aborts (house rule); these never return NULL. */
static inline void *standin_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL)
        abort();
    return p;
}

static inline void *standin_xrealloc(void *old, size_t size)
{
    void *p = realloc(old, size ? size : 1);
    if (p == NULL)
        abort();
    return p;
}

/* ---- apns_rules.c ---------------------------------------------------------------------- */

/* One request header as received; bytes are not NUL-terminated. */
typedef struct standin_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} standin_header_t;

/* What the validator looks at. method/path are NULL when the pseudo-header was absent.
 * headers holds the regular (non-pseudo) headers in arrival order. body holds the first
 * min(body_len, STANDIN_MAX_PAYLOAD) bytes; body_len counts every byte received. */
typedef struct standin_request {
    const char *method;
    size_t method_len;
    const char *path;
    size_t path_len;
    const standin_header_t *headers;
    size_t n_headers;
    const char *body;
    size_t body_len;
    const char *client_uid; /* the client certificate's subject UID, NULL if it has none */
} standin_request_t;

typedef struct standin_rule {
    char *token; /* lower-case hex, owned */
    size_t token_len;
    int status;
    char reason[STANDIN_MAX_REASON + 1];
    long count; /* 0: permanent; else how many answers the rule gives (the "*N") */
    long left;  /* answers still to give, for a counted rule */
} standin_rule_t;

typedef struct standin_rules {
    standin_rule_t items[STANDIN_MAX_RULES];
    size_t n;
} standin_rules_t;

/* The answer to one request: status 200 has reason "". */
typedef struct standin_verdict {
    int status;
    char reason[STANDIN_MAX_REASON + 1];
} standin_verdict_t;

/* Parses "TOKEN=STATUS:REASON" or "TOKEN=STATUS:REASON*N" (hex token, status 200..599, reason
 * [A-Za-z0-9]{1,63}, empty allowed only with 200, N 1..STANDIN_MAX_COUNT) and appends it to
 * rules. Returns 0, or -1 with *err set to a static message; rules is unchanged on failure.
 * Which rule answers is decided by standin_rules_check(). */
int standin_rules_add(standin_rules_t *rules, const char *spec, const char **err);

/* Frees the tokens held by rules (the struct itself is the caller's). */
void standin_rules_dispose(standin_rules_t *rules);

/* Validates req the way APNs does (order documented in README.md), then applies rules: the
 * token's counted rules in the order they were added, each for its N answers, then its last
 * permanent rule, else 200. A counted rule that answers is used up by one; *rule gets the rule
 * that decided (NULL if none), so that an answer that is never sent can give it back
 * (rule->left++). Always fills *out and *rule; never fails. */
void standin_rules_check(const standin_request_t *req, standin_rules_t *rules, standin_verdict_t *out,
                         standin_rule_t **rule);

/* If path is "/3/device/<rest>", points *token at <rest> (possibly empty) and returns 1;
 * otherwise returns 0. */
int standin_path_token(const char *path, size_t path_len, const char **token, size_t *token_len);

/* 1 if s is a canonical lower-case UUID (8-4-4-4-12 hex digits). */
int standin_is_uuid(const char *s, size_t len);

/* ---- record.c -------------------------------------------------------------------------- */

enum standin_log_level { STANDIN_LOG_INFO = 0, STANDIN_LOG_WARN = 1, STANDIN_LOG_ERROR = 2 };

/* One logfmt line on stderr, written with a single write(2):
 *   ts=... level=info svc=apns-standin <fmt...> */
void standin_log(enum standin_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Milliseconds since the Unix epoch (wall clock) and a monotonic clock (ms and µs). */
int64_t standin_now_ms(void);
int64_t standin_mono_ms(void);
int64_t standin_mono_us(void);

/* Opens path for appending. Returns 0 or -1 (errno set). Call once. */
int standin_record_open(const char *path);

/* Writes what is buffered, then closes the file. */
void standin_record_close(void);

/* One recorded request: see README.md for the shape. status 0 means "no answer was sent"
 * (the stream was reset or the connection closed first); error then says why. */
typedef struct standin_record_entry {
    unsigned conn_id;
    int32_t stream_id;
    const standin_request_t *req;
    const char *apns_id; /* the response's apns-id, NULL when no answer was sent */
    int status;          /* 0: none */
    const char *reason;  /* NULL or "" for none */
    const char *error;   /* NULL unless status is 0 */
} standin_record_entry_t;

/* Appends one JSON line to the record buffer. The buffer goes to the file (whole lines, one
 * write(2)) when it passes STANDIN_RECORD_FLUSH_BYTES, and whenever standin_record_flush() is
 * called: main.c does that when its loop has been idle for up to STANDIN_RECORD_IDLE_MS since
 * the last flush, and at least every STANDIN_RECORD_FLUSH_MS while busy.
 * Failures are logged, never fatal. */
#define STANDIN_RECORD_FLUSH_BYTES (256 * 1024)
#define STANDIN_RECORD_IDLE_MS     5
#define STANDIN_RECORD_FLUSH_MS    50
void standin_record_write(const standin_record_entry_t *e);

/* Writes the buffered lines to the file. */
void standin_record_flush(void);

/* Bytes waiting in the record buffer. */
size_t standin_record_pending(void);

/* Records written since the start (buffered ones included). */
uint64_t standin_record_count(void);

/* Fills out[37] with a fresh random lower-case UUID (version 4). */
void standin_uuid_new(char out[37]);

/* ---- stats.c --------------------------------------------------------------------------- */

/* The counters behind --stats-file. Plain values, updated where the events happen. */
typedef struct standin_stats {
    uint64_t answered_by_status[600]; /* index: the status sent */
    uint64_t connections;             /* HTTP/2 connections established (TLS + ALPN h2 done) */
    uint64_t goaways_sent;            /* GOAWAY frames sent, any error code */
    uint32_t max_open_streams;        /* peak of concurrently open streams on one connection */
} standin_stats_t;

/* Writes {"requests":..,"answered_by_status":{..},"connections":..,"goaways_sent":..,
 * "max_open_streams":..} to path through a temporary file renamed into place. requests is
 * standin_record_count(). Returns 0, or -1 after logging what failed. */
int standin_stats_write(const standin_stats_t *st, const char *path);

/* ---- tls.c ----------------------------------------------------------------------------- */

/* Builds the server context: certificate chain and key, TLS 1.2 minimum, ALPN that only
 * accepts "h2" (a client offering no h2 gets a fatal no_application_protocol alert), and
 * client certificates required and verified against client_ca. Returns 0 and *out, or -1
 * after logging what failed. Free with SSL_CTX_free(). */
int standin_tls_ctx_new(const char *cert, const char *key, const char *client_ca, struct ssl_ctx_st **out);

/* ---- h2_session.c ---------------------------------------------------------------------- */

/* Everything the connections share: options and the mutable rule counters and stats. */
typedef struct standin_server {
    standin_rules_t *rules;
    standin_stats_t *stats;
    uint32_t max_streams;
    long goaway_after; /* 0: off; else GOAWAY(NO_ERROR) after the N-th request of a connection */
    long drop_after;   /* 0: off; else close the connection abruptly after its N-th request */
    long delay_ms;     /* answer each request this long after it was received in full */
    long batch_us;     /* read a multiplexing client at most this often (0: as bytes arrive) */
    int log_requests;  /* one event=request log line per answer */
} standin_server_t;

typedef struct standin_h2 standin_h2_t;

/* Creates the HTTP/2 server session of connection conn_id and queues our SETTINGS.
 * client_uid (may be NULL) is copied. server must outlive the session. */
standin_h2_t *standin_h2_new(standin_server_t *server, unsigned conn_id, const char *client_uid);

/* standin_h2_recv() results besides 0. */
#define STANDIN_H2_FATAL (-1) /* the session hit a fatal error: close */
#define STANDIN_H2_DROP  (-2) /* --drop-after fired: close at once, send nothing more */

/* Feeds received bytes. Returns 0, STANDIN_H2_FATAL or STANDIN_H2_DROP. */
int standin_h2_recv(standin_h2_t *h2, const uint8_t *data, size_t len);

/* Monotonic ms at which the next delayed answer is due, or 0 when none waits. */
int64_t standin_h2_next_due(const standin_h2_t *h2);

/* Submits the delayed answers due at now (monotonic ms). */
void standin_h2_run_due(standin_h2_t *h2, int64_t now);

/* Returns the next bytes to send (borrowed, valid until the next call) or 0 when nothing is
 * pending; -1 on a fatal error. */
ssize_t standin_h2_pending(standin_h2_t *h2, const uint8_t **data);

/* 1 when the session wants neither to read nor to write (GOAWAY exchanged): close. */
int standin_h2_is_done(const standin_h2_t *h2);

/* Queues GOAWAY(NO_ERROR) for a shutdown. */
void standin_h2_terminate(standin_h2_t *h2);

/* Number of answers sent so far, and the peak number of streams open at once. */
unsigned standin_h2_answered(const standin_h2_t *h2);
unsigned standin_h2_max_open(const standin_h2_t *h2);

/* Records every request that never got an answer with error why, then frees everything.
 * Accepts NULL. */
void standin_h2_free(standin_h2_t *h2, const char *why);

/* ---- conn.c ---------------------------------------------------------------------------- */

typedef struct standin_conn standin_conn_t;

/* Takes ownership of fd (non-blocking, accepted) and starts the TLS handshake. The handshake
 * must finish within STANDIN_HANDSHAKE_MS. Never fails (out of memory aborts). */
#define STANDIN_HANDSHAKE_MS 10000
standin_conn_t *standin_conn_new(struct ssl_ctx_st *ctx, standin_server_t *server, int fd, unsigned id,
                                 const char *peer);

int standin_conn_fd(const standin_conn_t *c);

/* The poll() events the connection waits for at now_us (monotonic µs). */
short standin_conn_events(const standin_conn_t *c, int64_t now_us);

/* Until when (monotonic µs) the connection is not read from, to batch a multiplexing client's
 * requests (--batch-us); 0 or a past time when it may be read now. */
int64_t standin_conn_hold_until(const standin_conn_t *c);

/* When the connection next needs standin_conn_timer() (monotonic ms): the handshake deadline,
 * or the next delayed answer; 0 for never. */
int64_t standin_conn_deadline(const standin_conn_t *c);

/* Does all the I/O that is possible now. Returns 0 to keep the connection, -1 when it is
 * finished or failed; the caller then calls standin_conn_free(). */
int standin_conn_io(standin_conn_t *c, short revents);

/* Handles a passed deadline: a handshake that took too long fails (-1), due answers are sent
 * (then as standin_conn_io()). */
int standin_conn_timer(standin_conn_t *c, int64_t now);

/* Best effort for a shutdown: queues GOAWAY and tries one non-blocking flush. */
void standin_conn_goaway(standin_conn_t *c);

/* Logs the close with why, records unanswered requests, frees SSL, session and fd. */
void standin_conn_free(standin_conn_t *c, const char *why);

#endif
