/*
 * The HTTP/2 side of one connection: an nghttp2 server session driven through its memory
 * interface (mem_recv / mem_send), so conn.c alone deals with TLS and the socket.
 *
 * Each request stream gets a struct stream when its HEADERS begin: it copies the header fields
 * (at most STANDIN_MAX_HEADERS, STANDIN_MAX_HEADER_LIST bytes; more resets the stream) and the
 * first STANDIN_MAX_PAYLOAD body bytes while counting all of them. When the request ends
 * (END_STREAM) it is validated, recorded and answered once. A stream is freed in
 * on_stream_close, or by standin_h2_free() for the streams still open when the connection
 * goes; either way a request that never got its answer is recorded with the reason.
 *
 * nghttp2 itself enforces HTTP/2 framing and HTTP messaging (pseudo-headers, content-length,
 * field syntax), flow control, our SETTINGS_MAX_CONCURRENT_STREAMS and its rapid-reset limit.
 */
#include "standin.h"

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <string.h>

struct header_copy {
    size_t name_len, value_len;
    char data[]; /* name, then value */
};

struct stream {
    struct stream *prev, *next;
    struct standin_h2 *h2;
    int32_t id;
    bool answered;
    const char *error; /* why the stream was reset by us, static string */
    struct header_copy *fields[STANDIN_MAX_HEADERS];
    size_t n_fields;
    size_t field_bytes;
    char *body; /* STANDIN_MAX_PAYLOAD bytes once data arrives */
    size_t body_len;
    char apns_id[37];
    char resp[160];
    size_t resp_len, resp_off;
};

struct standin_h2 {
    nghttp2_session *session;
    const standin_server_t *server;
    unsigned conn_id;
    char *client_uid;
    struct stream *streams;
    unsigned answered;
};

/* Fills *req from the stream; hdrs must hold STANDIN_MAX_HEADERS entries. */
static void build_request(const struct stream *s, standin_header_t *hdrs, standin_request_t *req)
{
    memset(req, 0, sizeof(*req));
    req->headers = hdrs;
    for (size_t i = 0; i < s->n_fields; i++) {
        const struct header_copy *f = s->fields[i];
        const char *name = f->data, *value = f->data + f->name_len;
        if (f->name_len > 0 && name[0] == ':') {
            if (f->name_len == 7 && memcmp(name, ":method", 7) == 0 && req->method == NULL) {
                req->method = value;
                req->method_len = f->value_len;
            } else if (f->name_len == 5 && memcmp(name, ":path", 5) == 0 && req->path == NULL) {
                req->path = value;
                req->path_len = f->value_len;
            }
            continue;
        }
        hdrs[req->n_headers++] = (standin_header_t){name, f->name_len, value, f->value_len};
    }
    req->body = s->body;
    req->body_len = s->body_len;
    req->client_uid = s->h2->client_uid;
}

static void record_stream(const struct stream *s, const standin_verdict_t *v, const char *error)
{
    standin_header_t hdrs[STANDIN_MAX_HEADERS];
    standin_request_t req;
    build_request(s, hdrs, &req);
    standin_record_entry_t e = {
        .conn_id = s->h2->conn_id,
        .stream_id = s->id,
        .req = &req,
        .apns_id = v != NULL ? s->apns_id : NULL,
        .status = v != NULL ? v->status : 0,
        .reason = v != NULL ? v->reason : NULL,
        .error = error,
    };
    standin_record_write(&e);
}

static void stream_free(struct stream *s)
{
    for (size_t i = 0; i < s->n_fields; i++)
        free(s->fields[i]);
    free(s->body);
    free(s);
}

static void stream_unlink(struct standin_h2 *h2, struct stream *s)
{
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        h2->streams = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
}

static ssize_t read_response(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                             uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
    struct stream *s = source->ptr;
    size_t n = s->resp_len - s->resp_off;
    if (n > length)
        n = length;
    memcpy(buf, s->resp + s->resp_off, n);
    s->resp_off += n;
    if (s->resp_off == s->resp_len)
        *data_flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

#define NV(n, v, vlen)                                                                                       \
    {                                                                                                        \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vlen), NGHTTP2_NV_FLAG_NONE                          \
    }

static void answer(struct standin_h2 *h2, struct stream *s)
{
    standin_header_t hdrs[STANDIN_MAX_HEADERS];
    standin_request_t req;
    standin_verdict_t v;
    char status[4];

    s->answered = true;
    build_request(s, hdrs, &req);
    standin_rules_check(&req, h2->server->rules, &v);

    /* Echo a valid apns-id; anything else gets a fresh one, as APNs does. */
    standin_uuid_new(s->apns_id);
    for (size_t i = 0; i < req.n_headers; i++) {
        const standin_header_t *h = &req.headers[i];
        if (h->name_len == 7 && memcmp(h->name, "apns-id", 7) == 0 &&
            standin_is_uuid(h->value, h->value_len)) {
            memcpy(s->apns_id, h->value, 36);
            s->apns_id[36] = '\0';
            break;
        }
    }

    snprintf(status, sizeof(status), "%03d", v.status);
    if (v.status == 410)
        s->resp_len = (size_t)snprintf(s->resp, sizeof(s->resp), "{\"reason\":\"%s\",\"timestamp\":%lld}",
                                       v.reason, (long long)standin_now_ms());
    else if (v.reason[0] != '\0')
        s->resp_len = (size_t)snprintf(s->resp, sizeof(s->resp), "{\"reason\":\"%s\"}", v.reason);
    else
        s->resp_len = 0;

    nghttp2_nv nva[] = {
        NV(":status", status, 3),
        NV("apns-id", s->apns_id, 36),
        NV("content-type", "application/json", 16),
    };
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = read_response};
    int rv = nghttp2_submit_response(h2->session, s->id, nva, s->resp_len > 0 ? 3 : 2,
                                     s->resp_len > 0 ? &prd : NULL);

    record_stream(s, &v, NULL);
    h2->answered++;
    bool has_topic = false;
    for (size_t i = 0; i < req.n_headers; i++)
        has_topic |= req.headers[i].name_len == 10 && memcmp(req.headers[i].name, "apns-topic", 10) == 0;
    /* The token stays out of the log (house rule); the record has it. */
    int method_len = req.method == NULL ? 1 : req.method_len > 16 ? 16 : (int)req.method_len;
    standin_log(v.status == 200 ? STANDIN_LOG_INFO : STANDIN_LOG_WARN,
                "event=request conn=%u stream=%d method=%.*s status=%d reason=%s has_topic=%s body_bytes=%zu",
                h2->conn_id, (int)s->id, method_len, req.method != NULL ? req.method : "-", v.status,
                v.reason[0] != '\0' ? v.reason : "-", has_topic ? "yes" : "no", req.body_len);
    if (rv != 0)
        standin_log(STANDIN_LOG_WARN,
                    "event=submit_failed call=nghttp2_submit_response conn=%u stream=%d err=\"%s\"",
                    h2->conn_id, (int)s->id, nghttp2_strerror(rv));
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct standin_h2 *h2 = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct stream *s = standin_xcalloc(1, sizeof(*s));
    s->h2 = h2;
    s->id = frame->hd.stream_id;
    s->next = h2->streams;
    if (h2->streams != NULL)
        h2->streams->prev = s;
    h2->streams = s;
    nghttp2_session_set_stream_user_data(session, s->id, s);
    return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *user_data)
{
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers are not part of an APNs request: ignored */
    struct stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (s == NULL)
        return 0;
    s->field_bytes += namelen + valuelen + 32;
    if (s->n_fields >= STANDIN_MAX_HEADERS || s->field_bytes > STANDIN_MAX_HEADER_LIST) {
        s->error = "header_list_too_large";
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* nghttp2 resets the stream */
    }
    struct header_copy *f = standin_xcalloc(1, sizeof(*f) + namelen + valuelen);
    f->name_len = namelen;
    f->value_len = valuelen;
    memcpy(f->data, name, namelen);
    memcpy(f->data + namelen, value, valuelen);
    s->fields[s->n_fields++] = f;
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
                         size_t len, void *user_data)
{
    struct stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
    if (s == NULL || s->answered)
        return 0;
    if (s->body_len < STANDIN_MAX_PAYLOAD) {
        if (s->body == NULL)
            s->body = standin_xcalloc(STANDIN_MAX_PAYLOAD, 1);
        size_t room = STANDIN_MAX_PAYLOAD - s->body_len;
        memcpy(s->body + s->body_len, data, len < room ? len : room);
    }
    /* Count beyond the buffer (saturating) so 413 sees the real size. */
    s->body_len = s->body_len + len < s->body_len ? SIZE_MAX : s->body_len + len;
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (s != NULL && !s->answered)
        answer(user_data, s);
    return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct standin_h2 *h2 = user_data;
    if (frame->hd.type == NGHTTP2_GOAWAY)
        standin_log(frame->goaway.error_code == NGHTTP2_NO_ERROR ? STANDIN_LOG_INFO : STANDIN_LOG_WARN,
                    "event=goaway_sent conn=%u error=%s last_stream=%d", h2->conn_id,
                    nghttp2_http2_strerror(frame->goaway.error_code), (int)frame->goaway.last_stream_id);
    return 0;
}

/* A HEADERS frame nghttp2 refused before any stream existed for it (over
 * SETTINGS_MAX_CONCURRENT_STREAMS, a stream id going backwards, ...): still a request attempt,
 * so it is recorded, with nothing but the reason. */
static int on_invalid_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, int lib_error_code,
                                 void *user_data)
{
    struct standin_h2 *h2 = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS ||
        nghttp2_session_get_stream_user_data(session, frame->hd.stream_id))
        return 0;
    char why[96];
    snprintf(why, sizeof(why), "refused (%s)", nghttp2_strerror(lib_error_code));
    standin_request_t req = {.client_uid = h2->client_uid};
    standin_record_entry_t e = {
        .conn_id = h2->conn_id, .stream_id = frame->hd.stream_id, .req = &req, .error = why};
    standin_record_write(&e);
    standin_log(STANDIN_LOG_WARN, "event=request_refused conn=%u stream=%d error=\"%s\"", h2->conn_id,
                (int)frame->hd.stream_id, why);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data)
{
    struct standin_h2 *h2 = user_data;
    struct stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
    if (s == NULL)
        return 0;
    if (!s->answered) {
        char why[96];
        snprintf(why, sizeof(why), "%s (%s)", s->error != NULL ? s->error : "stream_reset",
                 nghttp2_http2_strerror(error_code));
        record_stream(s, NULL, why);
        standin_log(STANDIN_LOG_WARN, "event=request_unanswered conn=%u stream=%d error=\"%s\"", h2->conn_id,
                    (int)stream_id, why);
    }
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    stream_unlink(h2, s);
    stream_free(s);
    return 0;
}

standin_h2_t *standin_h2_new(const standin_server_t *server, unsigned conn_id, const char *client_uid)
{
    nghttp2_session_callbacks *cbs = NULL;
    struct standin_h2 *h2 = standin_xcalloc(1, sizeof(*h2));
    h2->server = server;
    h2->conn_id = conn_id;
    if (client_uid != NULL) {
        h2->client_uid = standin_xcalloc(strlen(client_uid) + 1, 1);
        memcpy(h2->client_uid, client_uid, strlen(client_uid));
    }
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        abort();
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, on_invalid_frame_recv);
    if (nghttp2_session_server_new(&h2->session, cbs, h2) != 0)
        abort();
    nghttp2_session_callbacks_del(cbs);

    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, server->max_streams},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, STANDIN_MAX_HEADER_LIST},
    };
    if (nghttp2_submit_settings(h2->session, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0])) != 0)
        abort();
    return h2;
}

int standin_h2_recv(standin_h2_t *h2, const uint8_t *data, size_t len)
{
    ssize_t n = nghttp2_session_mem_recv(h2->session, data, len);
    if (n < 0) {
        standin_log(STANDIN_LOG_WARN, "event=h2_error call=nghttp2_session_mem_recv conn=%u err=\"%s\"",
                    h2->conn_id, nghttp2_strerror((int)n));
        return -1;
    }
    return 0;
}

ssize_t standin_h2_pending(standin_h2_t *h2, const uint8_t **data)
{
    ssize_t n = nghttp2_session_mem_send(h2->session, data);
    if (n < 0) {
        standin_log(STANDIN_LOG_WARN, "event=h2_error call=nghttp2_session_mem_send conn=%u err=\"%s\"",
                    h2->conn_id, nghttp2_strerror((int)n));
        return -1;
    }
    return n;
}

int standin_h2_is_done(const standin_h2_t *h2)
{
    return !nghttp2_session_want_read(h2->session) && !nghttp2_session_want_write(h2->session);
}

void standin_h2_terminate(standin_h2_t *h2)
{
    nghttp2_session_terminate_session(h2->session, NGHTTP2_NO_ERROR);
}

unsigned standin_h2_answered(const standin_h2_t *h2)
{
    return h2->answered;
}

void standin_h2_free(standin_h2_t *h2, const char *why)
{
    if (h2 == NULL)
        return;
    /* nghttp2_session_del() calls no callbacks: the streams still open are ours to finish. */
    nghttp2_session_del(h2->session);
    struct stream *s = h2->streams;
    while (s != NULL) {
        struct stream *next = s->next;
        if (!s->answered) {
            char error[96];
            snprintf(error, sizeof(error), "connection_closed (%s)", why);
            record_stream(s, NULL, error);
            standin_log(STANDIN_LOG_WARN, "event=request_unanswered conn=%u stream=%d error=\"%s\"",
                        h2->conn_id, (int)s->id, error);
        }
        stream_free(s);
        s = next;
    }
    free(h2->client_uid);
    free(h2);
}
