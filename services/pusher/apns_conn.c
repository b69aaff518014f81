/*
 * One APNs connection: non-blocking TCP connect, TLS handshake with the pass type certificate,
 * then an nghttp2 client session pumped through SSL by hand.
 *
 * Requests live in slots allocated once the server's first SETTINGS frame says how many streams
 * it allows (nothing is sent before that, so the limit is never exceeded, not even during the
 * first round trip). A slot holds the :path and the first PUSHER_APNS_BODY_MAX bytes of the answer
 * and sits on an in-flight list in submission order, so the oldest request's timeout is checked in
 * O(1). The stream's user data is the slot's index + 1, so the slot array may grow when the
 * server raises its limit.
 *
 * Every submitted request is reported exactly once through env->on_result: from the stream-close
 * callback (an answer, a reset, or a REFUSED_STREAM closure for streams above a GOAWAY's last
 * stream id), from the frame-not-sent callback (requests nghttp2 had not started after a GOAWAY),
 * or when the connection is freed. A slot is released as it is reported, and callbacks find
 * their slot only while its stream id still matches, so a second report cannot happen.
 *
 * Output: frames from nghttp2_session_mem_send() are collected in out[] and handed to SSL_write()
 * in one piece of up to OUT_HIGH bytes; nothing is appended while a write is blocked, so a retried
 * SSL_write() always starts with the same bytes. Input: SSL_read() into a 32 KiB buffer until it
 * wants more from the socket, so bytes OpenSSL already decrypted are never left waiting for a
 * poll() event that will not come. The client never sends RST_STREAM: a stream ends when its
 * answer does.
 */
#include "apns_internal.h"
#include "pusher.h"

#include "common/log.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

#define OUT_HIGH    (64 * 1024) /* collect this much output before writing */
#define READ_BUF    (32 * 1024)
#define SLOT_NIL    UINT32_MAX
#define PATH_PREFIX "/3/device/"
#define ERROR_MAX   200

enum conn_state { CONN_TCP, CONN_TLS, CONN_H2 };

typedef struct slot {
    pusher_push_t *push; /* NULL once orphaned */
    int32_t stream_id;   /* 0 when the slot is free */
    uint32_t prev, next; /* in-flight list */
    uint64_t submitted_us;
    int status; /* final :status, 0 until received */
    unsigned char sent, complete, body_sent;
    size_t body_len;
    char path[sizeof(PATH_PREFIX) + CM_PUSH_TOKEN_MAX];
    char body[PUSHER_APNS_BODY_MAX];
} slot_t;

struct pusher_apns_conn {
    const pusher_apns_conn_env_t *env;
    const cm_pass_identity_t *identity;
    unsigned id;
    enum conn_state state;
    int fd;
    struct addrinfo *addrs, *addr; /* the attempt in progress */
    char addr_text[64];
    SSL *ssl;
    short tls_wants;      /* what the handshake waits for */
    int read_wants_write; /* SSL_read needs the socket writable */
    int write_blocked;    /* SSL_write must be retried with the same bytes */
    int failed;           /* broken transport: no goodbye */
    int not_h2;           /* ALPN did not select h2 */
    nghttp2_session *h2;
    int established, draining;
    slot_t *slots;
    uint32_t nslots, nfree;
    uint32_t *free_slots;
    uint32_t head, tail; /* in-flight list, oldest first */
    size_t in_flight;
    uint32_t max_streams; /* the server's limit as last read */
    uint8_t *out;
    size_t out_off, out_len, out_cap;
    uint8_t *read_buf;
    uint64_t started_ms, last_activity_ms, ping_sent_ms;
    uint64_t answered;
    char tls_version[16];
    char error[ERROR_MAX];
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static int set_error(pusher_apns_conn_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Records why the connection is finished (the first reason wins). Returns -1. */
static int set_error(pusher_apns_conn_t *c, const char *fmt, ...)
{
    if (c->error[0] == '\0') {
        char raw[ERROR_MAX];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(raw, sizeof(raw), fmt, ap);
        va_end(ap);
        cm_log_clean(c->error, sizeof(c->error), raw, strlen(raw));
    }
    return -1;
}

/* An OpenSSL failure: the error queue, or errno for a syscall error, plus the verify result. */
static int fail_tls(pusher_apns_conn_t *c, const char *what, int ssl_err)
{
    char detail[160];
    unsigned long e = ERR_peek_last_error();
    if (ssl_err == SSL_ERROR_SYSCALL && e == 0)
        snprintf(detail, sizeof(detail), "%s",
                 errno != 0 ? strerror(errno) : "connection closed by the server");
    else if (ssl_err == SSL_ERROR_ZERO_RETURN)
        snprintf(detail, sizeof(detail), "closed by the server (close_notify)");
    else
        ERR_error_string_n(e, detail, sizeof(detail));
    long verify = c->ssl != NULL ? SSL_get_verify_result(c->ssl) : X509_V_OK;
    ERR_clear_error();
    c->failed = 1;
    if (verify != X509_V_OK)
        return set_error(c, "%s: %s; certificate verify: %s", what, detail,
                         X509_verify_cert_error_string(verify));
    return set_error(c, "%s: %s", what, detail);
}

/* ---- slots ---- */

static void ensure_slots(pusher_apns_conn_t *c, uint32_t want)
{
    if (want > PUSHER_APNS_MAX_STREAMS)
        want = PUSHER_APNS_MAX_STREAMS;
    if (want <= c->nslots)
        return;
    c->slots = pusher_xrealloc(c->slots, want, sizeof(*c->slots));
    c->free_slots = pusher_xrealloc(c->free_slots, want, sizeof(*c->free_slots));
    /* Push new slots so that the lowest index is used first. */
    for (uint32_t i = want; i-- > c->nslots;) {
        c->slots[i].stream_id = 0;
        c->slots[i].push = NULL;
        c->free_slots[c->nfree++] = i;
    }
    c->nslots = want;
}

/* The slot of a stream, or NULL when it is not one of ours any more. */
static slot_t *slot_of(pusher_apns_conn_t *c, int32_t stream_id)
{
    uintptr_t v = (uintptr_t)nghttp2_session_get_stream_user_data(c->h2, stream_id);
    if (v != 0 && v <= c->nslots && c->slots[v - 1].stream_id == stream_id)
        return &c->slots[v - 1];
    return NULL;
}

/* Reports the request of slot s and frees the slot. */
static void finish(pusher_apns_conn_t *c, slot_t *s, enum pusher_apns_result_kind kind, const char *error)
{
    uint32_t idx = (uint32_t)(s - c->slots);
    if (s->prev != SLOT_NIL)
        c->slots[s->prev].next = s->next;
    else
        c->head = s->next;
    if (s->next != SLOT_NIL)
        c->slots[s->next].prev = s->prev;
    else
        c->tail = s->prev;
    c->in_flight--;
    if (kind == PUSHER_APNS_ANSWERED)
        c->answered++;
    pusher_push_t *push = s->push;
    s->push = NULL;
    s->stream_id = 0;
    if (push != NULL) {
        pusher_apns_result_t r = {.push = push,
                                  .kind = kind,
                                  .status = s->status,
                                  .body = s->body,
                                  .body_len = s->body_len,
                                  .error = error != NULL ? error : ""};
        r.latency_us = now_us() - s->submitted_us;
        c->env->on_result(c->env->owner, &r);
    }
    c->free_slots[c->nfree++] = idx;
}

/* ---- nghttp2 callbacks ---- */

static ssize_t read_body(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                         uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    pusher_apns_conn_t *c = user_data;
    slot_t *s = &c->slots[(uintptr_t)source->ptr - 1];
    static const char body[] = "{}";
    size_t left = sizeof(body) - 1 - s->body_sent;
    size_t n = left < length ? left : length;
    memcpy(buf, body + s->body_sent, n);
    s->body_sent += (unsigned char)n;
    if (s->body_sent == sizeof(body) - 1)
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data)
{
    pusher_apns_conn_t *c = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || namelen != 7 || memcmp(name, ":status", 7) != 0)
        return 0;
    slot_t *s = slot_of(c, frame->hd.stream_id);
    if (s == NULL || valuelen != 3)
        return 0;
    int status = 0;
    for (size_t i = 0; i < 3; i++) {
        if (value[i] < '0' || value[i] > '9')
            return 0;
        status = status * 10 + (value[i] - '0');
    }
    if (status >= 200) /* 1xx is not the answer */
        s->status = status;
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
                         size_t len, void *user_data)
{
    pusher_apns_conn_t *c = user_data;
    slot_t *s = slot_of(c, stream_id);
    if (s == NULL)
        return 0;
    size_t room = sizeof(s->body) - s->body_len;
    size_t n = len < room ? len : room;
    memcpy(s->body + s->body_len, data, n);
    s->body_len += n;
    return 0;
}

static void log_settings(pusher_apns_conn_t *c)
{
    uint32_t max = nghttp2_session_get_remote_settings(c->h2, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    if (c->established && max == c->max_streams)
        return;
    ensure_slots(c, max);
    if (!c->established) {
        c->established = 1;
        c->env->stats->connects_total++;
        CM_LOG(CM_LOG_INFO,
               "event=apns_connected ptid=%s conn=%u addr=%s tls=%s alpn=h2 max_streams=%u used_streams=%u "
               "connect_ms=%llu",
               c->identity->pass_type_id, c->id, c->addr_text, c->tls_version, max, c->nslots,
               (unsigned long long)(pusher_now_ms() - c->started_ms));
    } else {
        CM_LOG(CM_LOG_INFO,
               "event=apns_max_streams_changed ptid=%s conn=%u max_streams=%u was=%u in_flight=%zu",
               c->identity->pass_type_id, c->id, max, c->max_streams, c->in_flight);
    }
    c->max_streams = max;
}

static void on_goaway(pusher_apns_conn_t *c, const nghttp2_goaway *g)
{
    size_t requeued = 0;
    for (uint32_t i = c->head; i != SLOT_NIL; i = c->slots[i].next)
        if (c->slots[i].stream_id > g->last_stream_id || !c->slots[i].sent)
            requeued++;
    char reason[PUSHER_REASON_MAX];
    pusher_outcome_reason((const char *)g->opaque_data, g->opaque_data_len, reason, sizeof(reason));
    c->draining = 1;
    c->env->stats->goaways_total++;
    CM_LOG(g->error_code == NGHTTP2_NO_ERROR ? CM_LOG_INFO : CM_LOG_WARN,
           "event=apns_goaway ptid=%s conn=%u error=%s last_stream_id=%d requeued=%zu in_flight=%zu "
           "answered=%llu reason=\"%s\"",
           c->identity->pass_type_id, c->id, nghttp2_http2_strerror(g->error_code), g->last_stream_id,
           requeued, c->in_flight - requeued, (unsigned long long)c->answered, reason);
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    pusher_apns_conn_t *c = user_data;
    switch (frame->hd.type) {
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
            slot_t *s = slot_of(c, frame->hd.stream_id);
            if (s != NULL)
                s->complete = 1;
        }
        break;
    case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK))
            log_settings(c);
        break;
    case NGHTTP2_PING:
        if (frame->hd.flags & NGHTTP2_FLAG_ACK)
            c->ping_sent_ms = 0;
        break;
    case NGHTTP2_GOAWAY:
        on_goaway(c, &frame->goaway);
        break;
    default:
        break;
    }
    return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    pusher_apns_conn_t *c = user_data;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST) {
        slot_t *s = slot_of(c, frame->hd.stream_id);
        if (s != NULL)
            s->sent = 1;
    }
    return 0;
}

/* A request nghttp2 did not start (a GOAWAY arrived first): the server never saw it. */
static int on_frame_not_send(nghttp2_session *session, const nghttp2_frame *frame, int lib_error_code,
                             void *user_data)
{
    pusher_apns_conn_t *c = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    slot_t *s = slot_of(c, frame->hd.stream_id);
    /* The stream may not exist yet, so its user data may be unreachable: rare, search. */
    for (uint32_t i = c->head; s == NULL && i != SLOT_NIL; i = c->slots[i].next)
        if (c->slots[i].stream_id == frame->hd.stream_id)
            s = &c->slots[i];
    if (s != NULL) {
        char why[96];
        snprintf(why, sizeof(why), "not sent: %s", nghttp2_strerror(lib_error_code));
        finish(c, s, PUSHER_APNS_REFUSED, why);
    }
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data)
{
    pusher_apns_conn_t *c = user_data;
    slot_t *s = slot_of(c, stream_id);
    if (s == NULL)
        return 0;
    if (s->status != 0 && (s->complete || error_code == NGHTTP2_NO_ERROR)) {
        finish(c, s, PUSHER_APNS_ANSWERED, NULL);
    } else if (error_code == NGHTTP2_REFUSED_STREAM) {
        finish(c, s, PUSHER_APNS_REFUSED, "stream refused by the server");
    } else {
        char why[96];
        snprintf(why, sizeof(why), "stream closed without an answer: %s", nghttp2_http2_strerror(error_code));
        finish(c, s, PUSHER_APNS_FAILED, why);
    }
    return 0;
}

int pusher_apns_conn_env_init(pusher_apns_conn_env_t *env)
{
    nghttp2_session_callbacks *cb = NULL;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        abort();
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_frame_not_send_callback(cb, on_frame_not_send);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
    env->callbacks = cb;
    return 0;
}

void pusher_apns_conn_env_dispose(pusher_apns_conn_env_t *env)
{
    nghttp2_session_callbacks_del(env->callbacks);
    env->callbacks = NULL;
}

/* ---- TCP ---- */

static void describe_addr(pusher_apns_conn_t *c)
{
    char host[INET6_ADDRSTRLEN] = "?", port[8] = "?";
    getnameinfo(c->addr->ai_addr, c->addr->ai_addrlen, host, sizeof(host), port, sizeof(port),
                NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(c->addr_text, sizeof(c->addr_text), c->addr->ai_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host,
             port);
}

static int start_tls(pusher_apns_conn_t *c);

/* Starts connecting to c->addr, moving on to the next address while they fail at once. Returns 0
 * (connecting or connected) or -1 when no address is left. */
static int start_connect(pusher_apns_conn_t *c)
{
    int last_errno = 0;
    for (; c->addr != NULL; c->addr = c->addr->ai_next) {
        describe_addr(c);
        c->fd = socket(c->addr->ai_family, c->addr->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                       c->addr->ai_protocol);
        if (c->fd < 0) {
            last_errno = errno;
            continue;
        }
        int one = 1;
        setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(c->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
        if (connect(c->fd, c->addr->ai_addr, c->addr->ai_addrlen) == 0)
            return start_tls(c);
        if (errno == EINPROGRESS)
            return 0;
        last_errno = errno;
        close(c->fd);
        c->fd = -1;
    }
    c->failed = 1;
    return set_error(c, "connect to %s:%s (%s): %s", c->env->host, c->env->port, c->addr_text,
                     strerror(last_errno));
}

static int finish_connect(pusher_apns_conn_t *c)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err == 0)
        return start_tls(c);
    close(c->fd);
    c->fd = -1;
    if (c->addr->ai_next == NULL) {
        c->failed = 1;
        return set_error(c, "connect to %s:%s (%s): %s", c->env->host, c->env->port, c->addr_text,
                         strerror(err));
    }
    c->addr = c->addr->ai_next;
    return start_connect(c);
}

/* ---- TLS ---- */

static int start_h2(pusher_apns_conn_t *c);

static int handshake(pusher_apns_conn_t *c)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_do_handshake(c->ssl);
    if (rc != 1) {
        int e = SSL_get_error(c->ssl, rc);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            c->tls_wants = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
            return 0;
        }
        char what[64 + sizeof(c->addr_text)];
        snprintf(what, sizeof(what), "TLS handshake with %s", c->addr_text);
        return fail_tls(c, what, e);
    }
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
        c->not_h2 = 1;
        return set_error(c, "%s did not select HTTP/2 with ALPN (selected: %.*s)", c->addr_text,
                         alpn_len > 0 ? (int)alpn_len : 4, alpn_len > 0 ? (const char *)alpn : "none");
    }
    snprintf(c->tls_version, sizeof(c->tls_version), "%s", SSL_get_version(c->ssl));
    return start_h2(c);
}

static int start_tls(pusher_apns_conn_t *c)
{
    c->state = CONN_TLS;
    c->ssl = SSL_new(c->env->ssl_ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, c->fd) != 1)
        abort();
    if (SSL_use_certificate(c->ssl, c->identity->cert) != 1 ||
        SSL_use_PrivateKey(c->ssl, c->identity->key) != 1)
        return fail_tls(c, "cannot use the pass type certificate", SSL_ERROR_SSL);
    if (c->env->host_is_ip) {
        if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), c->env->host) != 1)
            return fail_tls(c, "cannot set the IP address to verify", SSL_ERROR_SSL);
    } else if (SSL_set_tlsext_host_name(c->ssl, c->env->host) != 1 ||
               SSL_set1_host(c->ssl, c->env->host) != 1) {
        return fail_tls(c, "cannot set the host name to verify", SSL_ERROR_SSL);
    }
    SSL_set_connect_state(c->ssl);
    return handshake(c);
}

/* ---- HTTP/2 ---- */

static int start_h2(pusher_apns_conn_t *c)
{
    nghttp2_option *opt = NULL;
    if (nghttp2_option_new(&opt) != 0)
        abort();
    /* Until the server's SETTINGS arrive: we send nothing anyway, but nghttp2 should not either. */
    nghttp2_option_set_peer_max_concurrent_streams(opt, 1);
    int rc = nghttp2_session_client_new2(&c->h2, c->env->callbacks, c, opt);
    nghttp2_option_del(opt);
    if (rc != 0)
        abort();
    nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    if (nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, settings, 1) != 0)
        abort();
    c->state = CONN_H2;
    c->last_activity_ms = pusher_now_ms();
    return pusher_apns_conn_flush(c);
}

static int do_read(pusher_apns_conn_t *c)
{
    c->read_wants_write = 0;
    for (;;) {
        ERR_clear_error();
        errno = 0;
        int n = SSL_read(c->ssl, c->read_buf, READ_BUF);
        if (n > 0) {
            ssize_t rv = nghttp2_session_mem_recv(c->h2, c->read_buf, (size_t)n);
            if (rv < 0) /* nghttp2 queued a GOAWAY: the flush after this sends it if it can */
                return set_error(c, "HTTP/2 error from the server: %s", nghttp2_strerror((int)rv));
            c->last_activity_ms = pusher_now_ms();
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_READ)
            return 0;
        if (e == SSL_ERROR_WANT_WRITE) {
            c->read_wants_write = 1;
            return 0;
        }
        if (e == SSL_ERROR_ZERO_RETURN || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0 && errno == 0)) {
            c->failed = 1;
            return set_error(c, "connection closed by the server");
        }
        return fail_tls(c, "TLS read", e);
    }
}

int pusher_apns_conn_flush(pusher_apns_conn_t *c)
{
    if (c->state != CONN_H2 || c->failed)
        return c->error[0] ? -1 : 0;
    for (;;) {
        if (c->out_off > 0 && !c->write_blocked) {
            /* After a partial write: keep the buffer from creeping (no write is pending, so moving
             * the bytes is allowed). */
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        while (!c->write_blocked && c->out_len < OUT_HIGH) {
            const uint8_t *data = NULL;
            ssize_t n = nghttp2_session_mem_send(c->h2, &data);
            if (n < 0)
                return set_error(c, "nghttp2_session_mem_send: %s", nghttp2_strerror((int)n));
            if (n == 0)
                break;
            if (c->out_len + (size_t)n > c->out_cap) {
                while (c->out_len + (size_t)n > c->out_cap)
                    c->out_cap = c->out_cap ? c->out_cap * 2 : 2 * OUT_HIGH;
                c->out = pusher_xrealloc(c->out, c->out_cap, 1);
            }
            memcpy(c->out + c->out_len, data, (size_t)n);
            c->out_len += (size_t)n;
        }
        if (c->out_off == c->out_len)
            return 0;
        ERR_clear_error();
        errno = 0;
        int w = SSL_write(c->ssl, c->out + c->out_off, (int)(c->out_len - c->out_off));
        if (w > 0) {
            c->write_blocked = 0;
            c->out_off += (size_t)w;
            if (c->out_off == c->out_len)
                c->out_off = c->out_len = 0;
            continue;
        }
        int e = SSL_get_error(c->ssl, w);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            c->write_blocked = 1;
            return 0;
        }
        return fail_tls(c, "TLS write", e);
    }
}

/* ---- the public side ---- */

int pusher_apns_conn_new(const pusher_apns_conn_env_t *env, const cm_pass_identity_t *id, unsigned conn_id,
                         pusher_apns_conn_t **out, char *err, size_t err_size)
{
    struct addrinfo hints, *addrs = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_ADDRCONFIG | (env->host_is_ip ? AI_NUMERICHOST : 0);
    int rc = getaddrinfo(env->host, env->port, &hints, &addrs);
    if (rc != 0) {
        snprintf(err, err_size, "cannot resolve %s: %s", env->host, gai_strerror(rc));
        return -1;
    }
    pusher_apns_conn_t *c = pusher_xcalloc(1, sizeof(*c));
    c->env = env;
    c->identity = id;
    c->id = conn_id;
    c->fd = -1;
    c->head = c->tail = SLOT_NIL;
    c->addrs = c->addr = addrs;
    c->started_ms = pusher_now_ms();
    c->read_buf = pusher_xcalloc(1, READ_BUF);
    c->state = CONN_TCP;
    if (start_connect(c) != 0 && c->state == CONN_TCP) {
        snprintf(err, err_size, "%s", c->error);
        pusher_apns_conn_free(c, NULL);
        return -1;
    }
    /* A failure after the TCP connect (TLS setup) shows on the first _io or _check. */
    *out = c;
    return 0;
}

void pusher_apns_conn_free(pusher_apns_conn_t *c, const char *why)
{
    if (c == NULL)
        return;
    if (why == NULL)
        why = c->error[0] ? c->error : "closed";
    if (c->state == CONN_H2 && !c->failed) {
        /* Best effort: one non-blocking attempt to say goodbye. */
        nghttp2_session_terminate_session(c->h2, NGHTTP2_NO_ERROR);
        c->write_blocked = 0;
        pusher_apns_conn_flush(c);
        SSL_shutdown(c->ssl);
    }
    size_t failed = 0, refused = 0;
    while (c->head != SLOT_NIL) {
        slot_t *s = &c->slots[c->head];
        if (s->sent)
            failed++;
        else
            refused++;
        finish(c, s, s->sent ? PUSHER_APNS_FAILED : PUSHER_APNS_REFUSED, why);
    }
    /* Our shutdown, or the server closing after its GOAWAY, is the expected end; the rest is not. */
    if (c->established)
        CM_LOG(failed > 0 || (!c->draining && strcmp(why, "shutdown") != 0) ? CM_LOG_WARN : CM_LOG_INFO,
               "event=apns_connection_closed ptid=%s conn=%u addr=%s answered=%llu failed=%zu requeued=%zu "
               "open_s=%llu reason=\"%s\"",
               c->identity->pass_type_id, c->id, c->addr_text, (unsigned long long)c->answered, failed,
               refused, (unsigned long long)((pusher_now_ms() - c->started_ms) / 1000), why);
    if (c->h2 != NULL)
        nghttp2_session_del(c->h2);
    SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    freeaddrinfo(c->addrs);
    free(c->slots);
    free(c->free_slots);
    free(c->out);
    free(c->read_buf);
    free(c);
}

int pusher_apns_conn_fd(const pusher_apns_conn_t *c)
{
    return c->fd;
}

short pusher_apns_conn_events(const pusher_apns_conn_t *c)
{
    switch (c->state) {
    case CONN_TCP:
        return POLLOUT;
    case CONN_TLS:
        return c->tls_wants;
    case CONN_H2:
        break;
    }
    short ev = POLLIN;
    if (c->out_len > c->out_off || c->read_wants_write)
        ev |= POLLOUT;
    return ev;
}

int pusher_apns_conn_io(pusher_apns_conn_t *c, short revents)
{
    if (c->error[0])
        return -1;
    switch (c->state) {
    case CONN_TCP:
        return revents != 0 ? finish_connect(c) : 0;
    case CONN_TLS:
        return revents != 0 ? handshake(c) : 0;
    case CONN_H2:
        break;
    }
    if ((revents & (POLLIN | POLLERR | POLLHUP)) || (c->read_wants_write && (revents & POLLOUT))) {
        if (do_read(c) != 0) {
            if (!c->failed)
                pusher_apns_conn_flush(c);
            return -1;
        }
    }
    if (pusher_apns_conn_flush(c) != 0)
        return -1;
    if (c->draining && c->in_flight == 0 && c->out_len == c->out_off)
        return set_error(c, "drained after GOAWAY");
    if (!nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2) && c->out_len == c->out_off)
        return set_error(c, "HTTP/2 session finished");
    return 0;
}

size_t pusher_apns_conn_capacity(const pusher_apns_conn_t *c)
{
    if (!c->established || c->draining || c->error[0])
        return 0;
    uint32_t max = nghttp2_session_get_remote_settings(c->h2, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
    if (max > c->nslots)
        max = c->nslots;
    return max > c->in_flight ? max - c->in_flight : 0;
}

void pusher_apns_conn_submit(pusher_apns_conn_t *c, pusher_push_t *push, const char *topic)
{
#define NV(n, v, len, more)                                                                                  \
    {(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (len),                                                   \
     NGHTTP2_NV_FLAG_NO_COPY_NAME | NGHTTP2_NV_FLAG_NO_COPY_VALUE | (more)}
    uint32_t idx = c->free_slots[--c->nfree];
    slot_t *s = &c->slots[idx];
    size_t tlen = strnlen(push->token, CM_PUSH_TOKEN_MAX);
    memcpy(s->path, PATH_PREFIX, sizeof(PATH_PREFIX) - 1);
    memcpy(s->path + sizeof(PATH_PREFIX) - 1, push->token, tlen);
    /* :path is unique per request: "literal without indexing" (as APNs asks) keeps it out of the
     * HPACK tables. The other fields repeat and get indexed. */
    const nghttp2_nv nva[] = {
        NV(":method", "POST", 4, 0),
        NV(":scheme", "https", 5, 0),
        NV(":authority", c->env->authority, strlen(c->env->authority), 0),
        NV(":path", s->path, sizeof(PATH_PREFIX) - 1 + tlen, NGHTTP2_NV_FLAG_NO_INDEX),
        NV("apns-topic", topic, strlen(topic), 0),
        NV("apns-push-type", "background", 10, 0),
        NV("apns-priority", "5", 1, 0),
        NV("content-type", "application/json", 16, 0),
        NV("content-length", "2", 1, 0),
    };
#undef NV
    nghttp2_data_provider body = {.source.ptr = (void *)(uintptr_t)(idx + 1), .read_callback = read_body};
    int32_t sid = nghttp2_submit_request(c->h2, NULL, nva, sizeof(nva) / sizeof(nva[0]), &body,
                                         (void *)(uintptr_t)(idx + 1));
    if (sid < 0) {
        /* Stream ids used up (after ~10^9 requests): this connection takes no more. The request is
         * reported at once, as never sent. */
        c->free_slots[c->nfree++] = idx;
        c->draining = 1;
        pusher_apns_result_t r = {.push = push, .kind = PUSHER_APNS_REFUSED, .error = nghttp2_strerror(sid)};
        c->env->on_result(c->env->owner, &r);
        return;
    }
    s->push = push;
    s->stream_id = sid;
    s->status = 0;
    s->sent = s->complete = s->body_sent = 0;
    s->body_len = 0;
    s->submitted_us = now_us();
    s->next = SLOT_NIL;
    s->prev = c->tail;
    if (c->tail != SLOT_NIL)
        c->slots[c->tail].next = idx;
    else
        c->head = idx;
    c->tail = idx;
    c->in_flight++;
    c->last_activity_ms = s->submitted_us / 1000;
}

int pusher_apns_conn_is_established(const pusher_apns_conn_t *c)
{
    return c->established;
}

int pusher_apns_conn_is_draining(const pusher_apns_conn_t *c)
{
    return c->draining;
}

int pusher_apns_conn_not_h2(const pusher_apns_conn_t *c)
{
    return c->not_h2;
}

size_t pusher_apns_conn_in_flight(const pusher_apns_conn_t *c)
{
    return c->in_flight;
}

const char *pusher_apns_conn_error(const pusher_apns_conn_t *c)
{
    return c->error;
}

uint64_t pusher_apns_conn_idle_since_ms(const pusher_apns_conn_t *c)
{
    return c->last_activity_ms;
}

uint64_t pusher_apns_conn_deadline(const pusher_apns_conn_t *c)
{
    uint64_t d = UINT64_MAX;
    if (c->error[0])
        return 0;
    if (!c->established)
        d = c->started_ms + PUSHER_APNS_CONNECT_TIMEOUT_MS;
    if (c->head != SLOT_NIL) {
        uint64_t t = c->slots[c->head].submitted_us / 1000 + (uint64_t)c->env->request_timeout_ms;
        d = t < d ? t : d;
    }
    if (c->ping_sent_ms != 0) {
        uint64_t t = c->ping_sent_ms + PUSHER_APNS_PING_TIMEOUT_MS;
        d = t < d ? t : d;
    }
    return d;
}

int pusher_apns_conn_check(pusher_apns_conn_t *c, uint64_t now_ms)
{
    if (c->error[0])
        return -1;
    if (!c->established && now_ms >= c->started_ms + PUSHER_APNS_CONNECT_TIMEOUT_MS) {
        c->failed = 1;
        return set_error(c, "no HTTP/2 connection to %s within %d ms (%s)", c->addr_text,
                         PUSHER_APNS_CONNECT_TIMEOUT_MS,
                         c->state == CONN_TCP   ? "TCP connect"
                         : c->state == CONN_TLS ? "TLS handshake"
                                                : "SETTINGS");
    }
    if (c->head != SLOT_NIL &&
        now_ms >= c->slots[c->head].submitted_us / 1000 + (uint64_t)c->env->request_timeout_ms) {
        c->failed = 1;
        return set_error(c, "a request got no answer within %ld ms", c->env->request_timeout_ms);
    }
    if (c->ping_sent_ms != 0 && now_ms >= c->ping_sent_ms + PUSHER_APNS_PING_TIMEOUT_MS) {
        c->failed = 1;
        return set_error(c, "PING not acknowledged within %d ms", PUSHER_APNS_PING_TIMEOUT_MS);
    }
    return 0;
}

void pusher_apns_conn_ping(pusher_apns_conn_t *c)
{
    if (!c->established || c->ping_sent_ms != 0 || c->error[0])
        return;
    if (nghttp2_submit_ping(c->h2, NGHTTP2_FLAG_NONE, NULL) != 0)
        abort();
    c->ping_sent_ms = pusher_now_ms();
    c->env->stats->pings_sent_total++;
}

void pusher_apns_conn_orphan(pusher_apns_conn_t *c)
{
    for (uint32_t i = c->head; i != SLOT_NIL; i = c->slots[i].next)
        c->slots[i].push = NULL;
}
