/*
 * One accepted TCP connection: the non-blocking TLS handshake, then a pump that moves bytes
 * between the socket, TLS and the HTTP/2 session until either side is finished.
 *
 * OpenSSL works on two memory BIOs, and this file alone touches the socket, so every syscall is
 * ours to batch: one read(2) of up to IN_CHUNK bytes per wakeup (a short read means the socket is
 * drained, so no read is spent on EAGAIN), all TLS records in that input decrypted and fed to
 * nghttp2, all of nghttp2's output collected into one plaintext batch, encrypted in full-size
 * records, and written with one write(2). The answers to a whole batch of requests share the
 * syscalls.
 *
 * A client that multiplexes (has had two or more requests open at once) tends to send its
 * requests in many small TLS records, and reading each as it lands costs a wakeup, a read and a
 * write apiece. Such a connection is therefore read at most once per --batch-us (hold_until_us):
 * the requests that arrive meanwhile are handled together. A client that sends one request and
 * waits for its answer is never held.
 *
 * Bounds: while more than OUT_HIGH encrypted bytes wait for the socket, nothing is read or
 * produced, so a client that does not read its answers stops being read from. Input is read at
 * most IN_BUDGET bytes per turn of the pump before the answers go out.
 */
#include "standin.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#define OUT_HIGH    (256 * 1024)
#define IN_BUDGET   (256 * 1024)
#define IN_CHUNK    (64 * 1024)
#define PLAIN_BATCH (64 * 1024)

/* Single-threaded: these buffers serve every connection, one at a time. */
static uint8_t in_buf[IN_CHUNK];
static uint8_t plain_buf[PLAIN_BATCH];

enum conn_state { CONN_HANDSHAKE, CONN_H2 };

struct standin_conn {
    int fd;
    unsigned id;
    enum conn_state state;
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl: socket bytes in, TLS bytes out */
    standin_server_t *server;
    standin_h2_t *h2;
    int64_t deadline_ms;
    char peer[64];
    char client_uid[STANDIN_MAX_UID + 1];
    bool has_uid;
    uint8_t *out; /* TLS bytes for the socket: out[out_off..out_len) */
    size_t out_off, out_len, out_cap;
    bool readable;         /* the socket may have bytes (poll said so, or the last read was full) */
    int64_t hold_until_us; /* --batch-us: no POLLIN before this (monotonic µs) */
    bool blocked;          /* the socket refused bytes: wait for POLLOUT */
    bool eof;              /* the client closed its side of TCP */
    bool ssl_failed;       /* a fatal TLS or socket error: no close_notify may be sent */
    bool sock_failed;      /* a socket call failed: nothing more is written */
    bool dropped;          /* --drop-after: closed without close_notify, nothing more written */
    const char *close_why; /* static string */
    char err[256];         /* what failed, for the close line; "" if nothing did */
    int64_t opened_ms;
};

standin_conn_t *standin_conn_new(SSL_CTX *ctx, standin_server_t *server, int fd, unsigned id,
                                 const char *peer)
{
    struct standin_conn *c = standin_xcalloc(1, sizeof(*c));
    c->fd = fd;
    c->id = id;
    c->server = server;
    c->state = CONN_HANDSHAKE;
    c->opened_ms = standin_mono_ms();
    c->deadline_ms = c->opened_ms + STANDIN_HANDSHAKE_MS;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    c->ssl = SSL_new(ctx);
    c->rbio = BIO_new(BIO_s_mem());
    c->wbio = BIO_new(BIO_s_mem());
    if (c->ssl == NULL || c->rbio == NULL || c->wbio == NULL)
        abort(); /* only fails for lack of memory */
    /* An empty rbio means "wait for more" until the socket ends (sock_read() then says EOF). */
    BIO_set_mem_eof_return(c->rbio, -1);
    SSL_set_bio(c->ssl, c->rbio, c->wbio);
    SSL_set_accept_state(c->ssl);
    return c;
}

int standin_conn_fd(const standin_conn_t *c)
{
    return c->fd;
}

int64_t standin_conn_deadline(const standin_conn_t *c)
{
    return c->state == CONN_HANDSHAKE ? c->deadline_ms : standin_h2_next_due(c->h2);
}

static size_t out_pending(const struct standin_conn *c)
{
    return c->out_len - c->out_off + BIO_ctrl_pending(c->wbio);
}

int64_t standin_conn_hold_until(const standin_conn_t *c)
{
    return c->hold_until_us;
}

short standin_conn_events(const standin_conn_t *c, int64_t now_us)
{
    short ev = 0;
    if (!c->eof && out_pending(c) < OUT_HIGH && now_us >= c->hold_until_us)
        ev |= POLLIN;
    if (c->blocked)
        ev |= POLLOUT;
    return ev;
}

/* Marks the connection failed with why; keeps the OpenSSL error of the failed call (ssl_err)
 * for the close line and clears OpenSSL's error queue. Returns -1. */
static int fail_ssl(struct standin_conn *c, const char *why, int ssl_err)
{
    char *buf = c->err;
    size_t size = sizeof(c->err);
    unsigned long e = ERR_peek_last_error();
    if (ssl_err == SSL_ERROR_SYSCALL && e == 0)
        snprintf(buf, size, "unexpected EOF");
    else
        ERR_error_string_n(e, buf, size);
    long verify = SSL_get_verify_result(c->ssl);
    if (verify != X509_V_OK) {
        size_t n = strlen(buf);
        snprintf(buf + n, size - n, "; verify: %s", X509_verify_cert_error_string(verify));
    }
    ERR_clear_error();
    c->ssl_failed = true;
    c->close_why = why;
    return -1;
}

/* A socket call failed with errno: nothing more can be said over TLS. Returns -1. */
static int fail_socket(struct standin_conn *c, const char *why)
{
    snprintf(c->err, sizeof(c->err), "%s", strerror(errno));
    c->ssl_failed = true;
    c->sock_failed = true;
    c->close_why = why;
    return -1;
}

/* Socket -> rbio. Returns 1 if bytes came in, 0 if none, -1 on a socket error. At EOF the
 * rbio is told, so that OpenSSL reports the end once it has handed out everything before it. */
static int sock_read(struct standin_conn *c)
{
    size_t total = 0;
    bool was_eof = c->eof;
    while (c->readable && !c->eof && total < IN_BUDGET) {
        ssize_t n = read(c->fd, in_buf, sizeof(in_buf));
        if (n > 0) {
            if (BIO_write(c->rbio, in_buf, (int)n) != (int)n)
                abort(); /* a memory BIO only fails for lack of memory */
            total += (size_t)n;
            c->readable = (size_t)n == sizeof(in_buf); /* short: the socket is drained */
        } else if (n == 0) {
            c->eof = true;
            BIO_set_mem_eof_return(c->rbio, 0);
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            c->readable = false;
        } else {
            return fail_socket(c, "read_failed");
        }
    }
    if (total > 0 && c->state == CONN_H2 && c->server->batch_us > 0 && standin_h2_max_open(c->h2) >= 2)
        c->hold_until_us = standin_mono_us() + c->server->batch_us;
    return total > 0 || c->eof != was_eof;
}

/* wbio -> out -> socket. Returns 1 if bytes went out, 0 if not, -1 on a socket error. */
static int sock_write(struct standin_conn *c)
{
    int progress = 0;
    size_t pending = BIO_ctrl_pending(c->wbio);
    if (pending > 0) {
        if (c->out_off > 0) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        if (c->out_len + pending > c->out_cap) {
            c->out_cap = c->out_len + pending + OUT_HIGH;
            c->out = standin_xrealloc(c->out, c->out_cap);
        }
        int n = BIO_read(c->wbio, c->out + c->out_len, (int)pending);
        if (n > 0)
            c->out_len += (size_t)n;
    }
    while (c->out_len > c->out_off) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n > 0) {
            c->out_off += (size_t)n;
            progress = 1;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->blocked = true;
            return progress;
        }
        return fail_socket(c, "write_failed");
    }
    c->out_off = c->out_len = 0;
    c->blocked = false;
    return progress;
}

static void read_client_uid(struct standin_conn *c)
{
    X509 *cert = SSL_get0_peer_certificate(c->ssl);
    X509_NAME *name = cert != NULL ? X509_get_subject_name(cert) : NULL;
    int idx = name != NULL ? X509_NAME_get_index_by_NID(name, NID_userId, -1) : -1;
    if (idx < 0)
        return;
    ASN1_STRING *data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, idx));
    unsigned char *utf8 = NULL;
    int n = ASN1_STRING_to_UTF8(&utf8, data);
    if (n > 0 && n <= STANDIN_MAX_UID && memchr(utf8, '\0', (size_t)n) == NULL) {
        memcpy(c->client_uid, utf8, (size_t)n);
        c->client_uid[n] = '\0';
        c->has_uid = true;
    }
    OPENSSL_free(utf8);
}

/* Returns 1 when the handshake completed, 0 when it waits for input, -1 on failure. */
static int handshake(struct standin_conn *c)
{
    for (;;) {
        if (sock_read(c) < 0)
            return -1;
        ERR_clear_error();
        int r = SSL_accept(c->ssl);
        if (sock_write(c) < 0) /* our handshake messages, or the alert of a failure */
            return -1;
        if (r == 1)
            break;
        int e = SSL_get_error(c->ssl, r);
        if (e != SSL_ERROR_WANT_READ)
            return fail_ssl(c, "tls_failed", e);
        if (c->eof)
            return fail_ssl(c, "tls_failed", SSL_ERROR_SYSCALL);
        if (!c->readable)
            return 0;
    }
    const unsigned char *alpn = NULL;
    unsigned alpn_len = 0;
    SSL_get0_alpn_selected(c->ssl, &alpn, &alpn_len);
    if (alpn_len != 2 || memcmp(alpn, "h2", 2) != 0) {
        snprintf(c->err, sizeof(c->err), "client did not offer ALPN h2");
        c->close_why = "no_h2";
        return -1;
    }
    read_client_uid(c);
    c->server->stats->connections++;
    standin_log(STANDIN_LOG_INFO, "event=conn_ready conn=%u peer=%s tls=%s alpn=h2 client_uid=%s", c->id,
                c->peer, SSL_get_version(c->ssl), c->has_uid ? c->client_uid : "-");
    c->h2 = standin_h2_new(c->server, c->id, c->has_uid ? c->client_uid : NULL);
    c->state = CONN_H2;
    return 1;
}

/* Feeds len plaintext bytes to nghttp2. Returns 0, or -1 with close_why set. */
static int h2_feed(struct standin_conn *c, size_t len)
{
    int r = len > 0 ? standin_h2_recv(c->h2, plain_buf, len) : 0;
    if (r == STANDIN_H2_DROP) {
        c->close_why = "drop_after";
        c->dropped = true;
        return -1;
    }
    if (r != 0) {
        c->close_why = "h2_error";
        return -1;
    }
    return 0;
}

/* rbio -> TLS -> nghttp2, for every complete record buffered. The plaintext of many records
 * (clients often send one small record per frame) is collected and fed to nghttp2 at once.
 * Returns 1 if bytes came out, 0 if TLS waits for more, -1 on the end of the connection or a
 * failure; what came before the end is fed first. */
static int tls_read(struct standin_conn *c)
{
    size_t len = 0;
    int progress = 0, n, e;
    /* Once per batch: a successful SSL_read() leaves the error queue as empty as it found it. */
    ERR_clear_error();
    for (;;) {
        if (sizeof(plain_buf) - len < 16384) { /* room for a whole record */
            if (h2_feed(c, len) != 0)
                return -1;
            len = 0;
        }
        n = SSL_read(c->ssl, plain_buf + len, (int)(sizeof(plain_buf) - len));
        if (n <= 0)
            break;
        len += (size_t)n;
        progress = 1;
    }
    e = SSL_get_error(c->ssl, n);
    int rc = progress;
    if (e == SSL_ERROR_ZERO_RETURN) {
        c->close_why = "client_closed";
        rc = -1;
    } else if (e != SSL_ERROR_WANT_READ) {
        rc = fail_ssl(c, "read_failed", e);
    }
    if (h2_feed(c, len) != 0)
        return -1;
    return rc;
}

/* Encrypts len plaintext bytes into wbio (a memory BIO takes everything). Returns 0, or -1
 * when TLS refuses to write (the session failed or was shut down). */
static int tls_write(struct standin_conn *c, const uint8_t *data, size_t len)
{
    if (len > 0)
        ERR_clear_error();
    while (len > 0) {
        int n = SSL_write(c->ssl, data, len > INT32_MAX ? INT32_MAX : (int)len);
        if (n <= 0)
            return fail_ssl(c, "write_failed", SSL_get_error(c->ssl, n));
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

/* nghttp2 -> TLS, in batches of up to PLAIN_BATCH bytes. Returns 1 if any, 0 if none, -1 on
 * failure. */
static int fill_out(struct standin_conn *c)
{
    size_t plain_len = 0, queued = out_pending(c);
    int progress = 0;
    while (queued + plain_len < OUT_HIGH) {
        const uint8_t *data = NULL;
        ssize_t n = standin_h2_pending(c->h2, &data);
        if (n < 0) {
            c->close_why = "h2_error";
            return -1;
        }
        if (n == 0)
            break;
        progress = 1;
        if (plain_len + (size_t)n > sizeof(plain_buf)) {
            if (tls_write(c, plain_buf, plain_len) != 0)
                return -1;
            queued += plain_len;
            plain_len = 0;
        }
        if ((size_t)n > sizeof(plain_buf)) {
            if (tls_write(c, data, (size_t)n) != 0)
                return -1;
            queued += (size_t)n;
            continue;
        }
        memcpy(plain_buf + plain_len, data, (size_t)n);
        plain_len += (size_t)n;
    }
    if (tls_write(c, plain_buf, plain_len) != 0)
        return -1;
    return progress;
}

static int pump(struct standin_conn *c)
{
    for (;;) {
        int progress = 0, r;
        if (out_pending(c) < OUT_HIGH) {
            if ((r = sock_read(c)) < 0)
                return -1;
            progress |= r;
            if ((r = tls_read(c)) < 0) {
                /* The client is gone or finished: still try to hand over what is queued
                 * (not after --drop-after, which cuts the connection as it is). */
                if (!c->dropped && !c->ssl_failed && fill_out(c) >= 0)
                    sock_write(c);
                return -1;
            }
            progress |= r;
        }
        if ((r = fill_out(c)) < 0)
            return -1;
        progress |= r;
        if ((r = sock_write(c)) < 0)
            return -1;
        progress |= r;
        if (!progress || c->blocked)
            break;
    }
    if (out_pending(c) == 0 && standin_h2_is_done(c->h2)) {
        c->close_why = "session_done";
        return -1;
    }
    return 0;
}

int standin_conn_io(standin_conn_t *c, short revents)
{
    if (revents & POLLNVAL) {
        c->close_why = "poll_nval";
        return -1;
    }
    if (revents & (POLLIN | POLLHUP | POLLERR))
        c->readable = true;
    if (c->state == CONN_HANDSHAKE) {
        int r = handshake(c);
        if (r <= 0)
            return r;
    }
    return pump(c);
}

int standin_conn_timer(standin_conn_t *c, int64_t now)
{
    if (c->state == CONN_HANDSHAKE) {
        if (now < c->deadline_ms)
            return 0;
        c->close_why = "handshake_timeout";
        return -1;
    }
    standin_h2_run_due(c->h2, now);
    return pump(c);
}

void standin_conn_goaway(standin_conn_t *c)
{
    if (c->state != CONN_H2 || c->ssl_failed || c->dropped)
        return;
    standin_h2_terminate(c->h2);
    if (fill_out(c) >= 0)
        sock_write(c);
}

void standin_conn_free(standin_conn_t *c, const char *why)
{
    if (c == NULL)
        return;
    if (why == NULL)
        why = c->close_why != NULL ? c->close_why : "closed";
    unsigned answered = c->h2 != NULL ? standin_h2_answered(c->h2) : 0;
    unsigned max_open = c->h2 != NULL ? standin_h2_max_open(c->h2) : 0;
    standin_h2_free(c->h2, c->dropped ? "dropped by --drop-after" : why);
    bool failed = c->err[0] != '\0' || strcmp(why, "handshake_timeout") == 0;
    standin_log(failed ? STANDIN_LOG_WARN : STANDIN_LOG_INFO,
                "event=conn_close conn=%u peer=%s why=%s answered=%u max_open_streams=%u ms=%lld%s%s%s",
                c->id, c->peer, why, answered, max_open, (long long)(standin_mono_ms() - c->opened_ms),
                c->err[0] != '\0' ? " err=\"" : "", c->err, c->err[0] != '\0' ? "\"" : "");
    if (!c->dropped) {
        /* One non-blocking close_notify (the answer is not awaited), or the alert of a failed
         * handshake that is still queued. */
        if (c->state == CONN_H2 && !c->ssl_failed) {
            ERR_clear_error();
            SSL_shutdown(c->ssl);
        }
        if (!c->sock_failed)
            sock_write(c);
    }
    ERR_clear_error();
    SSL_free(c->ssl);
    close(c->fd);
    free(c->out);
    free(c);
}
