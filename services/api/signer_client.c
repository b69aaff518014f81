/*
 * libcurl multi on libuv (curl's socket-action API): curl tells us which sockets to watch
 * (CURLMOPT_SOCKETFUNCTION) and when to time out (CURLMOPT_TIMERFUNCTION); uv_poll and uv_timer
 * report back through curl_multi_socket_action. See signer_client.h for the contract.
 */
#include "signer_client.h"
#include "common/ids.h"
#include "common/log.h"
#include "common/metrics.h"

#include <openssl/crypto.h>

#include <curl/curl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define MAX_BUNDLE_BYTES (64u << 20)

struct api_signer {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    char *base_url;
    long timeout_ms;
    api_metrics_t *metrics;
    struct curl_slist *headers; /* Authorization, when a token is configured */
    struct transfer *transfers; /* every transfer not yet finished */
};

struct transfer {
    struct transfer *next, *prev;
    api_signer_t *signer;
    CURL *easy;
    api_signer_cb cb;
    void *data;
    char *body;
    size_t len, cap;
    int is_probe;
    uint64_t started_ns;
    char curl_error[CURL_ERROR_SIZE]; /* libcurl's detailed message ("Resolving timed out after ...") */
    api_signer_result_t result;
};

struct poll_ctx {
    uv_poll_t poll;
    curl_socket_t fd;
    api_signer_t *signer;
};

/* The signer's {"error": "..."} text of an answer other than 200, else the start of its body. */
static void error_text(struct transfer *t)
{
    json_t *body = t->body != NULL ? json_loadb(t->body, t->len, 0, NULL) : NULL;
    const char *text = json_string_value(json_object_get(body, "error"));
    if (text != NULL)
        snprintf(t->result.error, sizeof(t->result.error), "%s", text);
    else
        snprintf(t->result.error, sizeof(t->result.error), "%.*s", (int)(t->len < 255 ? t->len : 255),
                 t->body != NULL ? t->body : "");
    json_decref(body);
}

static void finish(struct transfer *t, CURLcode code)
{
    if (code != CURLE_OK) {
        t->result.status = 0;
        snprintf(t->result.error, sizeof(t->result.error), "%s",
                 t->curl_error[0] != '\0' ? t->curl_error : curl_easy_strerror(code));
    } else {
        long status = 0;
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
        t->result.status = (int)status;
        if (status != 200)
            error_text(t);
    }
    t->result.body = t->body;
    t->result.len = t->len;
    if (!t->is_probe) {
        char status[16];
        snprintf(status, sizeof(status), "%d", t->result.status);
        cm_metric_add(t->signer->metrics->signer_requests, 1, (const char *const[]){status});
        cm_metric_observe(t->signer->metrics->signer_seconds, (double)(uv_hrtime() - t->started_ns) / 1e9,
                          NULL);
    }
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        t->signer->transfers = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    curl_multi_remove_handle(t->signer->multi, t->easy);
    curl_easy_cleanup(t->easy);
    t->cb(&t->result, t->data);
    free(t->body);
    free(t);
}

static void check_done(api_signer_t *s)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(s->multi, &left)) != NULL) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct transfer *t;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        finish(t, msg->data.result);
    }
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    struct poll_ctx *pc = handle->data;
    int flags = 0;
    if (status < 0)
        flags = CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    int running;
    api_signer_t *s = pc->signer;
    curl_multi_socket_action(s->multi, pc->fd, flags, &running);
    check_done(s);
}

static void on_timeout(uv_timer_t *timer)
{
    api_signer_t *s = timer->data;
    int running;
    curl_multi_socket_action(s->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_done(s);
}

static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    api_signer_t *s = userp;
    if (timeout_ms < 0)
        uv_timer_stop(&s->timer);
    else
        uv_timer_start(&s->timer, on_timeout, (uint64_t)timeout_ms, 0);
    return 0;
}

static void on_poll_closed(uv_handle_t *h)
{
    free(h->data);
}

static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    api_signer_t *s = userp;
    struct poll_ctx *pc = socketp;
    if (what == CURL_POLL_REMOVE) {
        if (pc != NULL) {
            uv_poll_stop(&pc->poll);
            uv_close((uv_handle_t *)&pc->poll, on_poll_closed);
            curl_multi_assign(s->multi, fd, NULL);
        }
        return 0;
    }
    if (pc == NULL) {
        pc = calloc(1, sizeof(*pc));
        if (pc == NULL)
            abort();
        pc->fd = fd;
        pc->signer = s;
        uv_poll_init_socket(s->loop, &pc->poll, fd);
        pc->poll.data = pc;
        curl_multi_assign(s->multi, fd, pc);
    }
    int events = 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    uv_poll_start(&pc->poll, events, on_poll);
    return 0;
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userp)
{
    struct transfer *t = userp;
    size_t n = size * nmemb;
    if (t->len + n > MAX_BUNDLE_BYTES)
        return 0; /* aborts the transfer: CURLE_WRITE_ERROR */
    if (t->len + n > t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 65536;
        while (cap < t->len + n)
            cap *= 2;
        t->body = realloc(t->body, cap);
        if (t->body == NULL)
            abort();
        t->cap = cap;
    }
    memcpy(t->body + t->len, ptr, n);
    t->len += n;
    return n;
}

static void copy_header_value(const char *line, size_t n, size_t name_len, char *dst, size_t size)
{
    const char *v = line + name_len;
    size_t vlen = n - name_len;
    while (vlen > 0 && (*v == ' ' || *v == '\t'))
        v++, vlen--;
    while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == '\n' || v[vlen - 1] == ' '))
        vlen--;
    if (vlen >= size)
        vlen = size - 1;
    memcpy(dst, v, vlen);
    dst[vlen] = '\0';
}

static size_t on_header(char *line, size_t size, size_t nmemb, void *userp)
{
    struct transfer *t = userp;
    size_t n = size * nmemb;
    if (n > 14 && strncasecmp(line, "last-modified:", 14) == 0)
        copy_header_value(line, n, 14, t->result.last_modified, sizeof(t->result.last_modified));
    else if (n > 15 && strncasecmp(line, "x-pass-version:", 15) == 0)
        copy_header_value(line, n, 15, t->result.version, sizeof(t->result.version));
    return n;
}

int api_signer_new(uv_loop_t *loop, const char *base_url, long timeout_ms, const char *token,
                   api_metrics_t *metrics, api_signer_t **out)
{
    api_signer_t *s = calloc(1, sizeof(*s));
    if (s == NULL)
        abort();
    s->loop = loop;
    s->metrics = metrics;
    s->base_url = strdup(base_url);
    size_t bl = strlen(s->base_url);
    while (bl > 0 && s->base_url[bl - 1] == '/')
        s->base_url[--bl] = '\0';
    s->timeout_ms = timeout_ms;
    if (token != NULL && token[0] != '\0') {
        char header[CM_AUTH_TOKEN_MAX + 32];
        snprintf(header, sizeof(header), "Authorization: Bearer %s", token);
        s->headers = curl_slist_append(NULL, header);
        OPENSSL_cleanse(header, sizeof(header));
        if (s->headers == NULL)
            abort();
    }
    s->multi = curl_multi_init();
    if (s->multi == NULL)
        abort();
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(s->multi, CURLMOPT_SOCKETDATA, s);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(s->multi, CURLMOPT_TIMERDATA, s);
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    *out = s;
    return 0;
}

/* Starts GET {base_url}{path}; cb runs once (see signer_client.h). */
static void start_transfer(api_signer_t *s, const char *path, long timeout_ms, int is_probe, api_signer_cb cb,
                           void *data)
{
    struct transfer *t = calloc(1, sizeof(*t));
    if (t == NULL)
        abort();
    t->signer = s;
    t->cb = cb;
    t->data = data;
    t->is_probe = is_probe;
    t->started_ns = uv_hrtime();
    t->easy = curl_easy_init();
    if (t->easy == NULL)
        abort();
    char url[1024];
    snprintf(url, sizeof(url), "%s%s", s->base_url, path);
    curl_easy_setopt(t->easy, CURLOPT_URL, url);
    curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
    curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->curl_error);
    curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms < 2000 ? timeout_ms : 2000);
    curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https");
    if (s->headers != NULL && !is_probe)
        curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, s->headers);
    t->next = s->transfers;
    if (t->next != NULL)
        t->next->prev = t;
    s->transfers = t;
    if (curl_multi_add_handle(s->multi, t->easy) != CURLM_OK)
        finish(t, CURLE_FAILED_INIT);
}

void api_signer_fetch(api_signer_t *s, const char *pass_type_id, const char *serial, api_signer_cb cb,
                      void *data)
{
    /* Identifiers were validated (common/ids.h): they need no escaping in a URL. */
    char path[2 * CM_ID_MAX + 32];
    snprintf(path, sizeof(path), "/v1/bundles/%s/%s", pass_type_id, serial);
    start_transfer(s, path, s->timeout_ms, 0, cb, data);
}

void api_signer_probe(api_signer_t *s, api_signer_cb cb, void *data)
{
    long timeout = s->timeout_ms < API_SIGNER_PROBE_TIMEOUT_MS ? s->timeout_ms : API_SIGNER_PROBE_TIMEOUT_MS;
    start_transfer(s, "/readyz", timeout, 1, cb, data);
}

static void on_timer_closed(uv_handle_t *h)
{
    api_signer_t *s = h->data;
    curl_multi_cleanup(s->multi);
    curl_slist_free_all(s->headers);
    free(s->base_url);
    free(s);
}

void api_signer_free(api_signer_t *s)
{
    if (s == NULL)
        return;
    while (s->transfers != NULL)
        finish(s->transfers, CURLE_ABORTED_BY_CALLBACK);
    uv_timer_stop(&s->timer);
    uv_close((uv_handle_t *)&s->timer, on_timer_closed);
}
