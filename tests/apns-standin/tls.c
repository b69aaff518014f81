/*
 * The server's TLS context, as strict as APNs: TLS 1.2 or newer, ALPN must pick "h2", and the
 * client must present a certificate that chains to --client-ca. Renegotiation and session
 * resumption are off, and a peer that disappears without close_notify is treated as an ordinary
 * end of stream.
 */
#include "standin.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <string.h>

static void log_openssl(const char *call, const char *file)
{
    char buf[256];
    unsigned long e = ERR_peek_last_error();
    ERR_error_string_n(e, buf, sizeof(buf));
    standin_log(STANDIN_LOG_ERROR, "event=tls_setup_failed call=%s file=\"%s\" err=\"%s\"", call, file, buf);
    ERR_clear_error();
}

/* Accepts "h2" only. The client's list is length-prefixed protocol names. */
static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    unsigned int i = 0;
    while (i < inlen) {
        unsigned int n = in[i];
        if (n == 0 || i + 1 + n > inlen)
            break;
        if (n == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
            *out = in + i + 1;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + n;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL;
}

int standin_tls_ctx_new(const char *cert, const char *key, const char *client_ca, SSL_CTX **out)
{
    int rc = -1;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    STACK_OF(X509_NAME) *ca_names = NULL;
    static const unsigned char sid_ctx[] = "apns-standin";

    if (ctx == NULL) {
        log_openssl("SSL_CTX_new", "-");
        goto out;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
        log_openssl("SSL_CTX_set_min_proto_version", "-");
        goto out;
    }
    /* No session resumption: no tickets (issuing TLS 1.3 tickets cost about a quarter of each
     * handshake, and the pusher never resumed) and no session cache. Every connection does a
     * full handshake and has its client certificate verified. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_set_num_tickets(ctx, 0) != 1) {
        log_openssl("SSL_CTX_set_num_tickets", "-");
        goto out;
    }
    /* TLS runs on memory BIOs (conn.c): read ahead pulls every buffered record at once, and the
     * buffers stay for the connection's life instead of being released after every record. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_default_read_buffer_len(ctx, 64 * 1024);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        log_openssl("SSL_CTX_use_certificate_chain_file", cert);
        goto out;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        log_openssl("SSL_CTX_use_PrivateKey_file", key);
        goto out;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        log_openssl("SSL_CTX_check_private_key", key);
        goto out;
    }
    if (SSL_CTX_load_verify_locations(ctx, client_ca, NULL) != 1) {
        log_openssl("SSL_CTX_load_verify_locations", client_ca);
        goto out;
    }
    ca_names = SSL_load_client_CA_file(client_ca);
    if (ca_names == NULL) {
        log_openssl("SSL_load_client_CA_file", client_ca);
        goto out;
    }
    SSL_CTX_set_client_CA_list(ctx, ca_names); /* takes ownership */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    /* Resumed sessions keep the verified peer certificate; OpenSSL needs a context id for that. */
    if (SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1) != 1) {
        log_openssl("SSL_CTX_set_session_id_context", "-");
        goto out;
    }
    SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
    *out = ctx;
    ctx = NULL;
    rc = 0;
out:
    SSL_CTX_free(ctx);
    return rc;
}
