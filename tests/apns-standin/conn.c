/*
 * One accepted TCP connection: the non-blocking TLS handshake, then a pump that moves bytes
 * between SSL and the HTTP/2 session until either side is finished.
 *
 * Output produced by nghttp2 is copied into out[]; while SSL_write() is blocked nothing is
 * appended (so a retried write always sees the same bytes first), and while out[] holds more
 * than OUT_HIGH bytes nothing is read: a client that does not read its answers stops being
 * read from. SSL_read() is called until it wants more from the socket, so bytes that OpenSSL
 * already decrypted and buffered are never left waiting for a poll() event that won't come.
 */
#include "standin.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <unistd.h>

#define OUT_HIGH (64 * 1024)

enum conn_state { CONN_HANDSHAKE, CONN_H2 };

struct standin_conn {
    int fd;
    unsigned id;
    enum conn_state state;
    SSL *ssl;
    const standin_server_t *server;
    standin_h2_t *h2;
    int64_t deadline_ms;
    char peer[64];
    char client_uid[STANDIN_MAX_UID + 1];
    bool has_uid;
    uint8_t *out;
    size_t out_len, out_cap;
    short hs_events;       /* what the handshake waits for */
    short read_events;     /* extra event SSL_read waits for (POLLOUT), 0 normally */
    short write_events;    /* what a blocked SSL_write waits for, 0 when not blocked */
    bool ssl_failed;       /* a fatal SSL error: no close_notify may be sent */
    const char *close_why; /* static string */
    char err[256];         /* what failed, for the close line; "" if nothing did */
    int64_t opened_ms;
};

standin_conn_t *standin_conn_new(SSL_CTX *ctx, const standin_server_t *server, int fd, unsigned id,
                                 const char *peer)
{
    struct standin_conn *c = standin_xcalloc(1, sizeof(*c));
    c->fd = fd;
    c->id = id;
    c->server = server;
    c->state = CONN_HANDSHAKE;
    c->opened_ms = standin_mono_ms();
    c->deadline_ms = c->opened_ms + STANDIN_HANDSHAKE_MS;
    c->hs_events = POLLIN;
    snprintf(c->peer, sizeof(c->peer), "%s", peer);
    c->ssl = SSL_new(ctx);
    if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1)
        abort(); /* only fails for lack of memory */
    SSL_set_accept_state(c->ssl);
    return c;
}

int standin_conn_fd(const standin_conn_t *c)
{
    return c->fd;
}

int64_t standin_conn_deadline(const standin_conn_t *c)
{
    return c->state == CONN_HANDSHAKE ? c->deadline_ms : 0;
}

short standin_conn_events(const standin_conn_t *c)
{
    if (c->state == CONN_HANDSHAKE)
        return c->hs_events;
    if (c->write_events != 0)
        return c->write_events; /* the blocked write goes first */
    short ev = c->read_events;
    if (c->out_len < OUT_HIGH)
        ev |= POLLIN;
    if (c->out_len > 0)
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
        snprintf(buf, size, "%s", errno != 0 ? strerror(errno) : "unexpected EOF");
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

/* Returns 1 when the handshake completed, 0 when it waits for I/O, -1 on failure. */
static int handshake(struct standin_conn *c)
{
    ERR_clear_error();
    errno = 0;
    int r = SSL_accept(c->ssl);
    if (r != 1) {
        int e = SSL_get_error(c->ssl, r);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            c->hs_events = e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT;
            return 0;
        }
        return fail_ssl(c, "tls_failed", e);
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
    standin_log(STANDIN_LOG_INFO, "event=conn_ready conn=%u peer=%s tls=%s alpn=h2 client_uid=%s", c->id,
                c->peer, SSL_get_version(c->ssl), c->has_uid ? c->client_uid : "-");
    c->h2 = standin_h2_new(c->server, c->id, c->has_uid ? c->client_uid : NULL);
    c->state = CONN_H2;
    return 1;
}

/* Writes out[] until it is empty or SSL blocks. Returns 1 if bytes went out, 0 if not, -1 on
 * failure. */
static int flush_out(struct standin_conn *c)
{
    int progress = 0;
    while (c->out_len > 0) {
        int len = c->out_len > INT32_MAX ? INT32_MAX : (int)c->out_len;
        ERR_clear_error();
        errno = 0;
        int n = SSL_write(c->ssl, c->out, len);
        if (n > 0) {
            memmove(c->out, c->out + n, c->out_len - (size_t)n);
            c->out_len -= (size_t)n;
            progress = 1;
            continue;
        }
        int e = SSL_get_error(c->ssl, n);
        if (e == SSL_ERROR_WANT_WRITE || e == SSL_ERROR_WANT_READ) {
            c->write_events = e == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN;
            return progress;
        }
        return fail_ssl(c, "write_failed", e);
    }
    c->write_events = 0;
    return progress;
}

/* Moves nghttp2's pending output into out[]. Returns 1 if any, 0 if none, -1 on failure. */
static int fill_out(struct standin_conn *c)
{
    int progress = 0;
    while (c->write_events == 0 && c->out_len < OUT_HIGH) {
        const uint8_t *data = NULL;
        ssize_t n = standin_h2_pending(c->h2, &data);
        if (n < 0) {
            c->close_why = "h2_error";
            return -1;
        }
        if (n == 0)
            break;
        if (c->out_len + (size_t)n > c->out_cap) {
            c->out_cap = c->out_len + (size_t)n + OUT_HIGH;
            c->out = standin_xrealloc(c->out, c->out_cap);
        }
        memcpy(c->out + c->out_len, data, (size_t)n);
        c->out_len += (size_t)n;
        progress = 1;
    }
    return progress;
}

/* Reads what SSL has. Returns 1 if bytes came in, 0 if SSL waits, -1 on end or failure. */
static int read_in(struct standin_conn *c)
{
    uint8_t buf[16384];
    ERR_clear_error();
    errno = 0;
    int n = SSL_read(c->ssl, buf, sizeof(buf));
    if (n > 0) {
        c->read_events = 0;
        if (standin_h2_recv(c->h2, buf, (size_t)n) != 0) {
            c->close_why = "h2_error";
            return -1;
        }
        return 1;
    }
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        c->read_events = e == SSL_ERROR_WANT_WRITE ? POLLOUT : 0;
        return 0;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        c->close_why = "client_closed";
        return -1;
    }
    return fail_ssl(c, "read_failed", e);
}

static int pump(struct standin_conn *c)
{
    for (;;) {
        int progress = 0, r;
        if ((r = flush_out(c)) < 0)
            return -1;
        progress |= r;
        if (c->write_events == 0 && c->out_len < OUT_HIGH) {
            if ((r = read_in(c)) < 0) {
                /* The client is gone or finished: still try to hand over what is queued. */
                if (fill_out(c) >= 0)
                    flush_out(c);
                return -1;
            }
            progress |= r;
        }
        if ((r = fill_out(c)) < 0)
            return -1;
        progress |= r;
        if (!progress)
            break;
    }
    if (c->out_len == 0 && standin_h2_is_done(c->h2)) {
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
    if (c->state == CONN_HANDSHAKE) {
        int r = handshake(c);
        if (r <= 0)
            return r;
    }
    return pump(c);
}

void standin_conn_goaway(standin_conn_t *c)
{
    if (c->state != CONN_H2 || c->ssl_failed)
        return;
    standin_h2_terminate(c->h2);
    if (fill_out(c) >= 0)
        flush_out(c);
}

void standin_conn_free(standin_conn_t *c, const char *why)
{
    if (c == NULL)
        return;
    if (why == NULL)
        why = c->close_why != NULL ? c->close_why : "closed";
    unsigned answered = c->h2 != NULL ? standin_h2_answered(c->h2) : 0;
    standin_h2_free(c->h2, why);
    bool failed = c->err[0] != '\0' || strcmp(why, "handshake_timeout") == 0;
    standin_log(failed ? STANDIN_LOG_WARN : STANDIN_LOG_INFO,
                "event=conn_close conn=%u peer=%s why=%s answered=%u ms=%lld%s%s%s", c->id, c->peer, why,
                answered, (long long)(standin_mono_ms() - c->opened_ms), c->err[0] != '\0' ? " err=\"" : "",
                c->err, c->err[0] != '\0' ? "\"" : "");
    if (c->state == CONN_H2 && !c->ssl_failed) {
        ERR_clear_error();
        SSL_shutdown(c->ssl); /* one non-blocking close_notify; the answer is not awaited */
    }
    ERR_clear_error();
    SSL_free(c->ssl);
    close(c->fd);
    free(c->out);
    free(c);
}
