/*
 * APNs over HTTP/2 with libcurl's multi interface.
 *
 * One multi handle lives as long as the process, so connections (one per pass type certificate:
 * curl only shares a connection between transfers with the same client certificate) stay open
 * between batches. Transfers set CURLOPT_PIPEWAIT so that a burst waits for the first connection
 * and multiplexes onto it instead of opening one connection per push.
 *
 * pusher_apns_run() keeps at most APNS_MAX_INFLIGHT transfers in the multi handle; the others wait
 * in a FIFO ("ready") or, after a retryable failure, in an unordered list scanned each round for
 * entries whose backoff has elapsed ("retry"). A transfer that ends without an HTTP answer —
 * connection refused, reset, GOAWAY (curl 7.88 provokes one from nghttp2 servers every ~1000
 * streams), timeout — is a retryable failure like 429 and 5xx, so a dropped connection loses
 * nothing: every transfer that was in flight on it comes back here and is scheduled again.
 *
 * Client certificates are given as in-memory PEM blobs built from the loaded identities (no second
 * reading of the files, no doubt about relative paths); the key PEM lives in OpenSSL's secure
 * memory BIO and is wiped on free.
 */
#include "pusher.h"

#include "common/log.h"

#include <curl/curl.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <unistd.h>

#define APNS_MAX_INFLIGHT       1000 /* transfers in the multi handle at once */
#define APNS_MAX_STREAMS        500  /* per connection (APNs historically allows 500) */
#define APNS_BODY_MAX           1024 /* kept bytes of an answer body (APNs sends < 200) */
#define APNS_URL_MAX            512
#define APNS_CONNECT_TIMEOUT_MS 10000L
#define APNS_TIMEOUT_MS         30000L
#define APNS_MAXAGE_CONN_S      300L /* reconnect after this long idle rather than trust a stale socket */
#define APNS_TICK_MS            250  /* on_tick period, and the longest poll */

typedef struct topic {
    const cm_pass_identity_t *identity;
    struct curl_slist *headers;
    BIO *cert_pem, *key_pem; /* own the bytes the blobs point to */
    struct curl_blob cert_blob, key_blob;
    int cert_refused_logged;
} topic_t;

struct pusher_apns {
    CURLM *multi;
    char base_url[APNS_URL_MAX / 2];
    char *ca_file;
    int max_attempts;
    topic_t *topics;
    size_t ntopics;
    CURL **pool; /* idle easy handles, reused for their connection cache and settings */
    size_t npool, pool_cap;
    int not_h2_logged;
    uint32_t rng;
};

typedef struct request {
    pusher_push_t *push;
    CURL *easy;
    uint64_t due_ms;
    size_t body_len;
    char body[APNS_BODY_MAX];
    char errbuf[CURL_ERROR_SIZE];
    char url[APNS_URL_MAX];
} request_t;

static uint32_t next_random(pusher_apns_t *a)
{
    /* xorshift32: jitter only needs to spread retries, not to be unpredictable. */
    uint32_t x = a->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    a->rng = x;
    return x;
}

static int pem_blob(BIO *bio, struct curl_blob *blob)
{
    char *data = NULL;
    long len = BIO_get_mem_data(bio, &data);
    if (len <= 0)
        return -1;
    blob->data = data;
    blob->len = (size_t)len;
    blob->flags = CURL_BLOB_NOCOPY;
    return 0;
}

static int topic_init(topic_t *t, const cm_pass_identity_t *id, char *err, size_t err_size)
{
    char line[CM_ID_MAX + 32];
    t->identity = id;
    snprintf(line, sizeof(line), "apns-topic: %s", id->pass_type_id);
    const char *fixed[] = {line, "apns-push-type: background", "apns-priority: 5",
                           "content-type: application/json"};
    for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++) {
        struct curl_slist *h = curl_slist_append(t->headers, fixed[i]);
        if (h == NULL)
            abort();
        t->headers = h;
    }
    t->cert_pem = BIO_new(BIO_s_mem());
    t->key_pem = BIO_new(BIO_s_secmem());
    if (t->cert_pem == NULL || t->key_pem == NULL)
        abort();
    if (id->cert == NULL || id->key == NULL || PEM_write_bio_X509(t->cert_pem, id->cert) != 1 ||
        PEM_write_bio_PrivateKey(t->key_pem, id->key, NULL, NULL, 0, NULL, NULL) != 1 ||
        pem_blob(t->cert_pem, &t->cert_blob) != 0 || pem_blob(t->key_pem, &t->key_blob) != 0) {
        snprintf(err, err_size, "cannot export the certificate or key of %s for TLS client authentication",
                 id->pass_type_id);
        return -1;
    }
    return 0;
}

static void topic_dispose(topic_t *t)
{
    curl_slist_free_all(t->headers);
    BIO_free(t->cert_pem);
    BIO_free(t->key_pem); /* secure memory: cleansed */
}

int pusher_apns_new(const cm_certs_t *certs, const char *base_url, const char *ca_file, int max_attempts,
                    pusher_apns_t **out, char *err, size_t err_size)
{
    pusher_apns_t *a = pusher_xcalloc(1, sizeof(*a));
    size_t len = strlen(base_url);
    while (len > 0 && base_url[len - 1] == '/')
        len--;
    if (len == 0 || len >= sizeof(a->base_url)) {
        snprintf(err, err_size, "APNS_URL is empty or longer than %zu bytes", sizeof(a->base_url) - 1);
        free(a);
        return -1;
    }
    memcpy(a->base_url, base_url, len);
    a->ca_file = ca_file != NULL && ca_file[0] != '\0' ? pusher_xstrdup(ca_file) : NULL;
    a->max_attempts = max_attempts;
    a->rng = (uint32_t)pusher_now_ms() ^ ((uint32_t)getpid() << 16) ^ 0x9e3779b9u;
    if (a->rng == 0)
        a->rng = 1;
    a->ntopics = cm_certs_count(certs);
    a->topics = pusher_xcalloc(a->ntopics, sizeof(*a->topics));
    for (size_t i = 0; i < a->ntopics; i++) {
        if (topic_init(&a->topics[i], cm_certs_at(certs, i), err, err_size) != 0) {
            pusher_apns_free(a);
            return -1;
        }
    }
    a->multi = curl_multi_init();
    if (a->multi == NULL)
        abort();
    /* A few connections per host: one per certificate, and a second when one is full. */
    long max_host = (long)(a->ntopics * 2);
    if (max_host < 2)
        max_host = 2;
    if (max_host > 16)
        max_host = 16;
    curl_multi_setopt(a->multi, CURLMOPT_PIPELINING, CURLPIPE_MULTIPLEX);
    curl_multi_setopt(a->multi, CURLMOPT_MAX_HOST_CONNECTIONS, max_host);
    curl_multi_setopt(a->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, (long)APNS_MAX_STREAMS);
    *out = a;
    return 0;
}

void pusher_apns_free(pusher_apns_t *a)
{
    if (a == NULL)
        return;
    for (size_t i = 0; i < a->npool; i++)
        curl_easy_cleanup(a->pool[i]);
    free(a->pool);
    if (a->multi != NULL)
        curl_multi_cleanup(a->multi);
    for (size_t i = 0; i < a->ntopics; i++)
        topic_dispose(&a->topics[i]);
    free(a->topics);
    free(a->ca_file);
    free(a);
}

long pusher_apns_topic(const pusher_apns_t *a, const char *ptid)
{
    for (size_t i = 0; i < a->ntopics; i++)
        if (strcmp(a->topics[i].identity->pass_type_id, ptid) == 0)
            return (long)i;
    return -1;
}

const char *pusher_apns_topic_name(const pusher_apns_t *a, size_t topic)
{
    return a->topics[topic].identity->pass_type_id;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata)
{
    request_t *r = userdata;
    size_t n = size * nmemb;
    size_t room = sizeof(r->body) - r->body_len;
    memcpy(r->body + r->body_len, data, n < room ? n : room);
    r->body_len += n < room ? n : room;
    return n;
}

static CURL *easy_get(pusher_apns_t *a)
{
    if (a->npool > 0)
        return a->pool[--a->npool];
    CURL *e = curl_easy_init();
    if (e == NULL)
        abort();
    /* Settings that are the same for every push. */
    curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    curl_easy_setopt(e, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, "{}");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE, 2L);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, APNS_CONNECT_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, APNS_TIMEOUT_MS);
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(e, CURLOPT_MAXAGE_CONN, APNS_MAXAGE_CONN_S);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "https");
    curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(e, CURLOPT_SSLKEYTYPE, "PEM");
    if (a->ca_file != NULL)
        curl_easy_setopt(e, CURLOPT_CAINFO, a->ca_file);
    return e;
}

static void easy_put(pusher_apns_t *a, CURL *e)
{
    if (a->npool == a->pool_cap) {
        a->pool_cap = a->pool_cap ? a->pool_cap * 2 : 64;
        a->pool = pusher_xrealloc(a->pool, a->pool_cap, sizeof(*a->pool));
    }
    a->pool[a->npool++] = e;
}

static void start(pusher_apns_t *a, request_t *r)
{
    topic_t *t = &a->topics[r->push->topic];
    r->easy = easy_get(a);
    r->body_len = 0;
    r->errbuf[0] = '\0';
    snprintf(r->url, sizeof(r->url), "%s/3/device/%s", a->base_url, r->push->token);
    curl_easy_setopt(r->easy, CURLOPT_URL, r->url);
    curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, t->headers);
    curl_easy_setopt(r->easy, CURLOPT_SSLCERT_BLOB, &t->cert_blob);
    curl_easy_setopt(r->easy, CURLOPT_SSLKEY_BLOB, &t->key_blob);
    curl_easy_setopt(r->easy, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(r->easy, CURLOPT_PRIVATE, r);
    curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
    if (curl_multi_add_handle(a->multi, r->easy) != CURLM_OK)
        abort();
}

static void release(pusher_apns_t *a, request_t *r)
{
    curl_multi_remove_handle(a->multi, r->easy);
    curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, NULL);
    easy_put(a, r->easy);
    r->easy = NULL;
}

/* A transport error as a reason: curl's detailed message, quotes removed so it fits a logfmt value. */
static void transport_reason(const request_t *r, CURLcode res, char *out, size_t size)
{
    const char *msg = r->errbuf[0] ? r->errbuf : curl_easy_strerror(res);
    size_t n = strnlen(msg, size - 1);
    memcpy(out, msg, n);
    out[n] = '\0';
    for (char *p = out; *p; p++)
        if (*p == '"' || *p == '\n' || *p == '\\')
            *p = '\'';
}

/* Reads the answer of a finished transfer into the push; returns what it means. */
static enum pusher_outcome read_answer(pusher_apns_t *a, request_t *r, CURLcode res)
{
    pusher_push_t *p = r->push;
    long status = 0, version = 0;
    p->attempts++;
    if (res == CURLE_OK) {
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(r->easy, CURLINFO_HTTP_VERSION, &version);
    }
    if (status != 0 && version != CURL_HTTP_VERSION_2_0) {
        if (!a->not_h2_logged) {
            CM_LOG(CM_LOG_ERROR,
                   "event=apns_not_http2 url=\"%s\" status=%ld reason=\"APNs must answer over HTTP/2\"",
                   a->base_url, status);
            a->not_h2_logged = 1;
        }
        status = 0;
        snprintf(p->reason, sizeof(p->reason), "not HTTP/2");
    } else if (status == 0) {
        transport_reason(r, res, p->reason, sizeof(p->reason));
    } else {
        pusher_outcome_reason(r->body, r->body_len, p->reason, sizeof(p->reason));
    }
    p->status = status;
    return pusher_outcome_classify(status, p->reason);
}

static void log_final(pusher_apns_t *a, const pusher_push_t *p, enum pusher_outcome outcome)
{
    char tok[9];
    topic_t *t = &a->topics[p->topic];
    pusher_outcome_token_prefix(p->token, tok);
    switch (outcome) {
    case PUSHER_OUTCOME_OK:
        t->cert_refused_logged = 0; /* log again if the certificate is refused later */
        break;
    case PUSHER_OUTCOME_CERT:
        if (!t->cert_refused_logged) {
            CM_LOG(CM_LOG_ERROR,
                   "event=apns_certificate_refused ptid=%s status=%ld reason=%s note=\"logged once per "
                   "certificate\"",
                   t->identity->pass_type_id, p->status, p->reason);
            t->cert_refused_logged = 1;
        }
        break;
    case PUSHER_OUTCOME_REJECTED:
        CM_LOG(CM_LOG_WARN, "event=push_rejected ptid=%s token=%s status=%ld reason=%s",
               t->identity->pass_type_id, tok, p->status, p->reason);
        break;
    case PUSHER_OUTCOME_ABANDONED:
        CM_LOG(CM_LOG_ERROR, "event=push_abandoned ptid=%s token=%s attempts=%d status=%ld reason=\"%s\"",
               t->identity->pass_type_id, tok, p->attempts, p->status, p->reason);
        break;
    default:
        break;
    }
}

int pusher_apns_run(pusher_apns_t *a, pusher_push_t *pushes, size_t n, const pusher_apns_hooks_t *hooks,
                    void *ctx)
{
    request_t *reqs = pusher_xcalloc(n, sizeof(*reqs));
    size_t *ready = pusher_xcalloc(n, sizeof(*ready)); /* ring of request indexes */
    size_t *retry = pusher_xcalloc(n, sizeof(*retry));
    size_t ready_head = 0, ready_count = n, nretry = 0, inflight = 0, remaining = n;
    uint64_t last_tick = pusher_now_ms();
    int rc = 0;

    for (size_t i = 0; i < n; i++) {
        reqs[i].push = &pushes[i];
        ready[i] = i;
    }
    while (remaining > 0) {
        if (hooks->should_abort(ctx)) {
            rc = -1;
            break;
        }
        uint64_t now = pusher_now_ms();
        for (size_t j = 0; j < nretry;) {
            if (reqs[retry[j]].due_ms <= now) {
                ready[(ready_head + ready_count++) % n] = retry[j];
                retry[j] = retry[--nretry];
            } else {
                j++;
            }
        }
        while (inflight < APNS_MAX_INFLIGHT && ready_count > 0) {
            start(a, &reqs[ready[ready_head]]);
            ready_head = (ready_head + 1) % n;
            ready_count--;
            inflight++;
        }

        int running = 0, finished = 0;
        curl_multi_perform(a->multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(a->multi, &left)) != NULL) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            char *priv = NULL;
            CURLcode res = msg->data.result;
            curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
            request_t *r = (request_t *)priv;
            enum pusher_outcome outcome = read_answer(a, r, res);
            release(a, r);
            inflight--;
            finished++;
            if (outcome == PUSHER_OUTCOME_RETRY) {
                if (r->push->attempts < a->max_attempts) {
                    uint64_t delay = pusher_outcome_backoff_ms(r->push->attempts, next_random(a));
                    r->due_ms = pusher_now_ms() + delay;
                    retry[nretry++] = (size_t)(r - reqs);
                    hooks->on_retry(ctx, r->push, delay);
                    continue;
                }
                outcome = PUSHER_OUTCOME_ABANDONED;
            }
            log_final(a, r->push, outcome);
            remaining--;
            hooks->on_done(ctx, r->push, outcome);
        }

        now = pusher_now_ms();
        if (finished > 0 || now - last_tick >= APNS_TICK_MS) {
            hooks->on_tick(ctx);
            last_tick = now;
        }
        if (remaining == 0)
            break;
        int timeout = APNS_TICK_MS;
        if (ready_count > 0 && inflight < APNS_MAX_INFLIGHT)
            timeout = 0;
        for (size_t j = 0; j < nretry; j++) {
            uint64_t due = reqs[retry[j]].due_ms;
            int wait = due <= now ? 0 : (int)(due - now);
            if (wait < timeout)
                timeout = wait;
        }
        if (timeout > 0)
            curl_multi_poll(a->multi, NULL, 0, timeout, NULL);
    }

    for (size_t i = 0; i < n; i++)
        if (reqs[i].easy != NULL)
            release(a, &reqs[i]);
    free(retry);
    free(ready);
    free(reqs);
    return rc;
}
