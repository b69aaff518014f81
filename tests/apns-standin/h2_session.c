/*
 * The HTTP/2 side of one connection: an nghttp2 server session driven through its memory
 * interface (mem_recv / mem_send), so conn.c alone deals with TLS and the socket.
 *
 * Each request stream gets a struct stream when its HEADERS begin: it copies the header fields
 * (at most STANDIN_MAX_HEADERS, STANDIN_MAX_HEADER_LIST bytes; more resets the stream) into one
 * buffer and the first STANDIN_MAX_PAYLOAD body bytes while counting all of them. Small requests
 * (all of APNs') fit in the struct itself: one allocation per request.
 *
 * When a request ends (END_STREAM) it is "received": counted for --goaway-after and
 * --drop-after, then answered at once or, with --delay-ms, put on the connection's delay queue.
 * Every request waits equally long, so that queue is in due order. The verdict (validation and
 * --rule) is taken when the answer is submitted, and the record is written when the answer's
 * HEADERS frame goes out (on_frame_send). A request that never gets an answer out is recorded
 * when its stream closes, or by standin_h2_free() when the connection goes, with the reason;
 * a counted rule it had taken is given back, so only answers actually sent use rules up.
 *
 * --goaway-after: nghttp2 itself refuses (closes with REFUSED_STREAM) the streams above the
 * GOAWAY's last_stream_id once the GOAWAY is sent, and ignores HEADERS of new streams after that
 * without any callback but on_begin_frame; both kinds are recorded as "refused (goaway)".
 *
 * nghttp2 itself enforces HTTP/2 framing and HTTP messaging (pseudo-headers, content-length,
 * field syntax), flow control, our SETTINGS_MAX_CONCURRENT_STREAMS and its rapid-reset limit.
 */
#include "standin.h"

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define INLINE_FIELD_BYTES 512 /* header bytes kept inside struct stream */
#define INLINE_BODY_BYTES  64  /* body bytes kept inside struct stream */
#define SPARE_STREAMS      32  /* freed streams a connection keeps for reuse */
#define GOAWAY_REFUSED     "refused (goaway)"

struct field {
    uint32_t off, name_len, value_len; /* name at fbuf + off, value right after it */
};

/* Everything before `fields` is zeroed for a new stream; the arrays after it are not. */
struct stream {
    struct stream *prev, *next;   /* every stream of the connection (or the spare list) */
    struct stream *wprev, *wnext; /* the delay queue, while waiting */
    struct standin_h2 *h2;
    int32_t id;
    bool received;     /* END_STREAM seen */
    bool waiting;      /* on the delay queue */
    bool answered;     /* answer submitted */
    bool recorded;     /* record written */
    const char *error; /* why we reset the stream, static string */
    int64_t due_ms;
    standin_rule_t *rule; /* the --rule behind the verdict, NULL if none */
    size_t n_fields;
    size_t field_bytes; /* RFC 9113 accounting: name + value + 32 per field */
    char *fbuf;         /* field bytes: finline or heap */
    size_t flen, fcap;
    char *body; /* binline or a STANDIN_MAX_PAYLOAD heap buffer */
    size_t body_len;
    size_t resp_len, resp_off;
    struct field fields[STANDIN_MAX_HEADERS];
    standin_verdict_t verdict;
    char apns_id[37];
    char resp[160];
    char finline[INLINE_FIELD_BYTES];
    char binline[INLINE_BODY_BYTES];
};

struct standin_h2 {
    nghttp2_session *session;
    standin_server_t *server;
    unsigned conn_id;
    char *client_uid;
    struct stream *streams;
    struct stream *spare; /* at most SPARE_STREAMS, linked by next */
    size_t n_spare;
    struct stream *wait_head, *wait_tail;
    unsigned answered;
    unsigned open, max_open;
    long received;           /* requests received in full */
    int32_t max_received_id; /* the highest stream id among them */
    int32_t max_seen_id;     /* the highest request stream id seen (HEADERS begun or refused) */
    int32_t goaway_last_id;  /* last_stream_id of the --goaway-after GOAWAY; -1 before */
    bool goaway_sent;        /* ... and it has gone out */
    bool dropping;           /* --drop-after fired */
};

/* Fills *req from the stream; hdrs must hold STANDIN_MAX_HEADERS entries. */
static void build_request(const struct stream *s, standin_header_t *hdrs, standin_request_t *req)
{
    memset(req, 0, sizeof(*req));
    req->headers = hdrs;
    for (size_t i = 0; i < s->n_fields; i++) {
        const struct field *f = &s->fields[i];
        const char *name = s->fbuf + f->off, *value = name + f->name_len;
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

/* Writes the stream's one record: its answer (v) or, with v NULL, why there was none. */
static void record_stream(struct stream *s, const standin_verdict_t *v, const char *error)
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
    s->recorded = true;
}

/* Records a request that got no answer out, and gives back the counted rule it had taken. */
static void record_unanswered(struct stream *s, const char *error)
{
    if (s->recorded)
        return;
    if (s->answered && s->rule != NULL && s->rule->count > 0)
        s->rule->left++;
    record_stream(s, NULL, error);
    standin_log(STANDIN_LOG_WARN, "event=request_%s conn=%u stream=%d error=\"%s\"",
                strncmp(error, "refused", 7) == 0 ? "refused" : "unanswered", s->h2->conn_id, (int)s->id,
                error);
}

static void wait_unlink(struct standin_h2 *h2, struct stream *s)
{
    if (!s->waiting)
        return;
    if (s->wprev != NULL)
        s->wprev->wnext = s->wnext;
    else
        h2->wait_head = s->wnext;
    if (s->wnext != NULL)
        s->wnext->wprev = s->wprev;
    else
        h2->wait_tail = s->wprev;
    s->wprev = s->wnext = NULL;
    s->waiting = false;
}

static void wait_append(struct standin_h2 *h2, struct stream *s, int64_t due)
{
    s->due_ms = due;
    s->waiting = true;
    s->wnext = NULL;
    s->wprev = h2->wait_tail;
    if (h2->wait_tail != NULL)
        h2->wait_tail->wnext = s;
    else
        h2->wait_head = s;
    h2->wait_tail = s;
}

/* Frees what the stream holds; the struct goes to the spare list while there is room. */
static void stream_free(struct standin_h2 *h2, struct stream *s)
{
    if (s->fbuf != s->finline)
        free(s->fbuf);
    if (s->body != s->binline)
        free(s->body);
    if (h2 != NULL && h2->n_spare < SPARE_STREAMS) {
        s->next = h2->spare;
        h2->spare = s;
        h2->n_spare++;
        return;
    }
    free(s);
}

static void stream_unlink(struct standin_h2 *h2, struct stream *s)
{
    wait_unlink(h2, s);
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

#define NV(n, v, vlen, flags)                                                                                \
    {                                                                                                        \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vlen), (flags)                                       \
    }

/* Takes the verdict and submits the answer; the record follows when it is sent. */
static void answer(struct standin_h2 *h2, struct stream *s)
{
    standin_header_t hdrs[STANDIN_MAX_HEADERS];
    standin_request_t req;
    standin_verdict_t *v = &s->verdict;
    char status[4];

    s->answered = true;
    build_request(s, hdrs, &req);
    standin_rules_check(&req, h2->server->rules, v, &s->rule);

    /* Echo a valid apns-id; anything else gets a fresh one, as APNs does. */
    bool echoed = false;
    for (size_t i = 0; i < req.n_headers && !echoed; i++) {
        const standin_header_t *h = &req.headers[i];
        if (h->name_len == 7 && memcmp(h->name, "apns-id", 7) == 0 &&
            standin_is_uuid(h->value, h->value_len)) {
            memcpy(s->apns_id, h->value, 36);
            s->apns_id[36] = '\0';
            echoed = true;
        }
    }
    if (!echoed)
        standin_uuid_new(s->apns_id);

    status[0] = (char)('0' + v->status / 100);
    status[1] = (char)('0' + v->status / 10 % 10);
    status[2] = (char)('0' + v->status % 10);
    status[3] = '\0';
    if (v->status == 410)
        s->resp_len = (size_t)snprintf(s->resp, sizeof(s->resp), "{\"reason\":\"%s\",\"timestamp\":%lld}",
                                       v->reason, (long long)standin_now_ms());
    else if (v->reason[0] != '\0')
        s->resp_len = (size_t)snprintf(s->resp, sizeof(s->resp), "{\"reason\":\"%s\"}", v->reason);
    else
        s->resp_len = 0;

    /* Every apns-id is new: indexing them would only churn the HPACK table. */
    nghttp2_nv nva[] = {
        NV(":status", status, 3, NGHTTP2_NV_FLAG_NONE),
        NV("apns-id", s->apns_id, 36, NGHTTP2_NV_FLAG_NO_INDEX),
        NV("content-type", "application/json", 16, NGHTTP2_NV_FLAG_NONE),
    };
    nghttp2_data_provider prd = {.source.ptr = s, .read_callback = read_response};
    int rv = nghttp2_submit_response(h2->session, s->id, nva, s->resp_len > 0 ? 3 : 2,
                                     s->resp_len > 0 ? &prd : NULL);
    if (rv != 0)
        standin_log(STANDIN_LOG_WARN,
                    "event=submit_failed call=nghttp2_submit_response conn=%u stream=%d err=\"%s\"",
                    h2->conn_id, (int)s->id, nghttp2_strerror(rv));
}

/* The answer's HEADERS went out: the request is answered. */
static void answer_sent(struct standin_h2 *h2, struct stream *s)
{
    const standin_verdict_t *v = &s->verdict;
    record_stream(s, v, NULL);
    h2->answered++;
    if (v->status >= 0 && v->status < 600)
        h2->server->stats->answered_by_status[v->status]++;
    if (!h2->server->log_requests)
        return;
    standin_header_t hdrs[STANDIN_MAX_HEADERS];
    standin_request_t req;
    build_request(s, hdrs, &req);
    bool has_topic = false;
    for (size_t i = 0; i < req.n_headers; i++)
        has_topic |= req.headers[i].name_len == 10 && memcmp(req.headers[i].name, "apns-topic", 10) == 0;
    /* The token stays out of the log (house rule); the record has it. */
    int method_len = req.method == NULL ? 1 : req.method_len > 16 ? 16 : (int)req.method_len;
    standin_log(v->status == 200 ? STANDIN_LOG_INFO : STANDIN_LOG_WARN,
                "event=request conn=%u stream=%d method=%.*s status=%d reason=%s has_topic=%s body_bytes=%zu",
                h2->conn_id, (int)s->id, method_len, req.method != NULL ? req.method : "-", v->status,
                v->reason[0] != '\0' ? v->reason : "-", has_topic ? "yes" : "no", req.body_len);
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct standin_h2 *h2 = user_data;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    struct stream *s = h2->spare;
    if (s != NULL) {
        h2->spare = s->next;
        h2->n_spare--;
    } else {
        s = standin_xrealloc(NULL, sizeof(*s));
    }
    memset(s, 0, offsetof(struct stream, fields));
    s->h2 = h2;
    s->id = frame->hd.stream_id;
    s->fbuf = s->finline;
    s->fcap = sizeof(s->finline);
    s->body = s->binline;
    s->next = h2->streams;
    if (h2->streams != NULL)
        h2->streams->prev = s;
    h2->streams = s;
    if (s->id > h2->max_seen_id)
        h2->max_seen_id = s->id;
    if (++h2->open > h2->max_open) {
        h2->max_open = h2->open;
        if (h2->max_open > h2->server->stats->max_open_streams)
            h2->server->stats->max_open_streams = h2->max_open;
    }
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
    /* field_bytes bounds flen: the buffer never grows past STANDIN_MAX_HEADER_LIST. */
    size_t need = namelen + valuelen;
    if (s->flen + need > s->fcap) {
        size_t cap = s->fcap * 2 > s->flen + need ? s->fcap * 2 : s->flen + need;
        if (s->fbuf == s->finline) {
            s->fbuf = standin_xrealloc(NULL, cap);
            memcpy(s->fbuf, s->finline, s->flen);
        } else {
            s->fbuf = standin_xrealloc(s->fbuf, cap);
        }
        s->fcap = cap;
    }
    s->fields[s->n_fields++] = (struct field){
        .off = (uint32_t)s->flen, .name_len = (uint32_t)namelen, .value_len = (uint32_t)valuelen};
    memcpy(s->fbuf + s->flen, name, namelen);
    memcpy(s->fbuf + s->flen + namelen, value, valuelen);
    s->flen += need;
    return 0;
}

static int on_data_chunk(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
                         size_t len, void *user_data)
{
    struct stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
    if (s == NULL || s->received)
        return 0;
    if (s->body_len < STANDIN_MAX_PAYLOAD) {
        size_t room = STANDIN_MAX_PAYLOAD - s->body_len, n = len < room ? len : room;
        if (s->body == s->binline && s->body_len + n > sizeof(s->binline)) {
            s->body = standin_xrealloc(NULL, STANDIN_MAX_PAYLOAD);
            memcpy(s->body, s->binline, s->body_len);
        }
        memcpy(s->body + s->body_len, data, n);
    }
    /* Count beyond the buffer (saturating) so 413 sees the real size. */
    s->body_len = s->body_len + len < s->body_len ? SIZE_MAX : s->body_len + len;
    return 0;
}

static void submit_goaway_after(struct standin_h2 *h2)
{
    h2->goaway_last_id = h2->max_received_id;
    int rv =
        nghttp2_submit_goaway(h2->session, NGHTTP2_FLAG_NONE, h2->goaway_last_id, NGHTTP2_NO_ERROR, NULL, 0);
    if (rv != 0)
        standin_log(STANDIN_LOG_WARN, "event=submit_failed call=nghttp2_submit_goaway conn=%u err=\"%s\"",
                    h2->conn_id, nghttp2_strerror(rv));
}

/* A request ended: the order of the checks below is what README.md promises. */
static int on_request_received(struct standin_h2 *h2, struct stream *s)
{
    const standin_server_t *server = h2->server;
    s->received = true;
    if (h2->goaway_last_id >= 0 && s->id > h2->goaway_last_id)
        return 0; /* after our GOAWAY: nghttp2 refuses it when the GOAWAY goes out */
    h2->received++;
    if (s->id > h2->max_received_id)
        h2->max_received_id = s->id;
    if (server->drop_after > 0 && h2->received >= server->drop_after) {
        h2->dropping = true;
        return NGHTTP2_ERR_CALLBACK_FAILURE; /* stops nghttp2 at once; standin_h2_recv() says DROP */
    }
    if (server->delay_ms > 0)
        wait_append(h2, s, standin_mono_ms() + server->delay_ms);
    else
        answer(h2, s);
    if (server->goaway_after > 0 && h2->received == server->goaway_after)
        submit_goaway_after(h2);
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (s == NULL || s->received)
        return 0;
    return on_request_received(user_data, s);
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user_data)
{
    struct standin_h2 *h2 = user_data;
    if (frame->hd.type == NGHTTP2_HEADERS) {
        struct stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
        if (s != NULL && s->answered && !s->recorded)
            answer_sent(h2, s);
    } else if (frame->hd.type == NGHTTP2_GOAWAY) {
        h2->server->stats->goaways_sent++;
        if (h2->goaway_last_id >= 0 && frame->goaway.error_code == NGHTTP2_NO_ERROR)
            h2->goaway_sent = true;
        standin_log(frame->goaway.error_code == NGHTTP2_NO_ERROR ? STANDIN_LOG_INFO : STANDIN_LOG_WARN,
                    "event=goaway_sent conn=%u error=%s last_stream=%d", h2->conn_id,
                    nghttp2_http2_strerror(frame->goaway.error_code), (int)frame->goaway.last_stream_id);
    }
    return 0;
}

/* Records a request stream refused before any of its headers were read. */
static void record_refused(struct standin_h2 *h2, int32_t stream_id, const char *why)
{
    standin_request_t req = {.client_uid = h2->client_uid};
    standin_record_entry_t e = {.conn_id = h2->conn_id, .stream_id = stream_id, .req = &req, .error = why};
    standin_record_write(&e);
    if (stream_id > h2->max_seen_id)
        h2->max_seen_id = stream_id;
    standin_log(STANDIN_LOG_WARN, "event=request_refused conn=%u stream=%d error=\"%s\"", h2->conn_id,
                (int)stream_id, why);
}

/* After our --goaway-after GOAWAY has gone out, nghttp2 drops the HEADERS of new streams without
 * a word; the frame header is all we see of them. */
static int on_begin_frame(nghttp2_session *session, const nghttp2_frame_hd *hd, void *user_data)
{
    struct standin_h2 *h2 = user_data;
    if (h2->goaway_sent && hd->type == NGHTTP2_HEADERS && (hd->stream_id & 1) &&
        hd->stream_id > h2->goaway_last_id && hd->stream_id > h2->max_seen_id)
        record_refused(h2, hd->stream_id, GOAWAY_REFUSED);
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
    record_refused(h2, frame->hd.stream_id, why);
    return 0;
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user_data)
{
    struct standin_h2 *h2 = user_data;
    struct stream *s = nghttp2_session_get_stream_user_data(session, stream_id);
    if (s == NULL)
        return 0;
    if (!s->recorded) {
        char why[96];
        if (error_code == NGHTTP2_REFUSED_STREAM && h2->goaway_last_id >= 0 && s->id > h2->goaway_last_id)
            snprintf(why, sizeof(why), "%s", GOAWAY_REFUSED);
        else
            snprintf(why, sizeof(why), "%s (%s)", s->error != NULL ? s->error : "stream_reset",
                     nghttp2_http2_strerror(error_code));
        record_unanswered(s, why);
    }
    h2->open--;
    nghttp2_session_set_stream_user_data(session, stream_id, NULL);
    stream_unlink(h2, s);
    stream_free(h2, s);
    return 0;
}

standin_h2_t *standin_h2_new(standin_server_t *server, unsigned conn_id, const char *client_uid)
{
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    struct standin_h2 *h2 = standin_xcalloc(1, sizeof(*h2));
    h2->server = server;
    h2->conn_id = conn_id;
    h2->goaway_last_id = -1;
    if (client_uid != NULL) {
        h2->client_uid = standin_xcalloc(strlen(client_uid) + 1, 1);
        memcpy(h2->client_uid, client_uid, strlen(client_uid));
    }
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        abort();
    nghttp2_session_callbacks_set_on_begin_frame_callback(cbs, on_begin_frame);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cbs, on_invalid_frame_recv);
    if (nghttp2_option_new(&opt) != 0)
        abort();
    nghttp2_option_set_no_closed_streams(opt, 1); /* nothing here uses them; saves work per stream */
    if (nghttp2_session_server_new2(&h2->session, cbs, h2, opt) != 0)
        abort();
    nghttp2_option_del(opt);
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
    if (h2->dropping)
        return STANDIN_H2_DROP;
    if (n < 0) {
        standin_log(STANDIN_LOG_WARN, "event=h2_error call=nghttp2_session_mem_recv conn=%u err=\"%s\"",
                    h2->conn_id, nghttp2_strerror((int)n));
        return STANDIN_H2_FATAL;
    }
    return 0;
}

int64_t standin_h2_next_due(const standin_h2_t *h2)
{
    return h2->wait_head != NULL ? h2->wait_head->due_ms : 0;
}

void standin_h2_run_due(standin_h2_t *h2, int64_t now)
{
    while (h2->wait_head != NULL && h2->wait_head->due_ms <= now) {
        struct stream *s = h2->wait_head;
        wait_unlink(h2, s);
        answer(h2, s);
    }
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

unsigned standin_h2_max_open(const standin_h2_t *h2)
{
    return h2->max_open;
}

void standin_h2_free(standin_h2_t *h2, const char *why)
{
    if (h2 == NULL)
        return;
    /* nghttp2_session_del() calls no callbacks: the streams still open are ours to finish. */
    nghttp2_session_del(h2->session);
    char error[96];
    snprintf(error, sizeof(error), "connection_closed (%s)", why);
    struct stream *s = h2->streams;
    while (s != NULL) {
        struct stream *next = s->next;
        record_unanswered(s, error);
        stream_free(NULL, s);
        s = next;
    }
    while (h2->spare != NULL) {
        struct stream *next = h2->spare->next;
        free(h2->spare);
        h2->spare = next;
    }
    free(h2->client_uid);
    free(h2);
}
