/*
 * The streams as seen by one consumer of the group "pushers": pk:events (one entry per change,
 * written by the api) and pk:fanout (chunks of large fan-outs, written by the pushers themselves).
 * Create the groups, read new entries, re-read this consumer's pending ones, claim those abandoned
 * by dead consumers, ack, split an event into chunks, and keep the streams trimmed.
 *
 * Entries are copied out of the hiredis replies into pusher_event_t records. An entry the pusher
 * cannot act on (unknown type, a field that is missing or not a valid identifier, an entry deleted
 * from the stream while pending) is still returned, as PUSHER_EVENT_SKIP, so that it gets
 * acknowledged instead of being delivered forever.
 */
#include "pusher.h"

#include "common/keys.h"
#include "common/log.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <sys/time.h>

static const char *const stream_keys[PUSHER_NSTREAMS] = {CM_KEY_EVENTS, CM_KEY_FANOUT};

const char *pusher_stream_key(enum pusher_stream stream)
{
    return stream_keys[stream];
}

static redisReply *command_argv(redisContext *c, int argc, const char **argv, char *err, size_t err_size)
{
    size_t *argvlen = pusher_xcalloc((size_t)argc, sizeof(*argvlen));
    for (int i = 0; i < argc; i++)
        argvlen[i] = strlen(argv[i]);
    redisReply *r = redisCommandArgv(c, argc, argv, argvlen);
    free(argvlen);
    if (r == NULL) {
        snprintf(err, err_size, "%s: %s", argv[0], c->errstr[0] ? c->errstr : "connection lost");
        return NULL;
    }
    if (r->type == REDIS_REPLY_ERROR) {
        snprintf(err, err_size, "%s: %s", argv[0], r->str);
        freeReplyObject(r);
        return NULL;
    }
    return r;
}

int pusher_events_create_groups(redisContext *c, char *err, size_t err_size)
{
    for (int s = 0; s < PUSHER_NSTREAMS; s++) {
        const char *argv[] = {"XGROUP", "CREATE", stream_keys[s], CM_EVENTS_GROUP, "0", "MKSTREAM"};
        size_t lens[6];
        for (int i = 0; i < 6; i++)
            lens[i] = strlen(argv[i]);
        redisReply *r = redisCommandArgv(c, 6, argv, lens);
        if (r == NULL) {
            snprintf(err, err_size, "XGROUP CREATE %s: %s", stream_keys[s],
                     c->errstr[0] ? c->errstr : "connection lost");
            return -1;
        }
        int bad = r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0;
        if (bad)
            snprintf(err, err_size, "XGROUP CREATE %s: %s", stream_keys[s], r->str);
        freeReplyObject(r);
        if (bad)
            return -1;
    }
    return 0;
}

void pusher_events_clear(pusher_event_t *events, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(events[i].devices);
        events[i].devices = NULL;
    }
}

static int copy_field(const redisReply *v, char *dst, size_t size)
{
    if (v->type != REDIS_REPLY_STRING || v->len >= size || memchr(v->str, '\0', v->len) != NULL)
        return -1;
    memcpy(dst, v->str, v->len);
    dst[v->len] = '\0';
    return 0;
}

static void skip(pusher_event_t *ev, const char *reason)
{
    ev->kind = PUSHER_EVENT_SKIP;
    ev->skip_reason = reason;
}

/* The space-separated device list of a chunk: every id plain, at most PUSHER_FANOUT_CHUNK_MAX. */
static int devices_are_valid(const char *s)
{
    size_t count = 0;
    while (*s != '\0') {
        const char *end = strchr(s, ' ');
        size_t len = end != NULL ? (size_t)(end - s) : strlen(s);
        if (!cm_id_is_plain(s, len) || ++count > PUSHER_FANOUT_CHUNK_MAX)
            return 0;
        s += len;
        if (*s == ' ')
            s++;
    }
    return count > 0;
}

static void classify(pusher_event_t *ev, int have_type, int have_ptid, int have_serial, int too_long)
{
    if (too_long) {
        skip(ev, "field_too_long");
    } else if (ev->stream == PUSHER_STREAM_FANOUT) {
        if (!have_type || strcmp(ev->type, "fanout.chunk") != 0)
            skip(ev, "unknown_type");
        else if (!have_ptid || !have_serial || ev->devices == NULL)
            skip(ev, "missing_field");
        else if (!cm_id_is_pass_type(ev->ptid, strlen(ev->ptid)) ||
                 !cm_id_is_plain(ev->serial, strlen(ev->serial)) || !devices_are_valid(ev->devices))
            skip(ev, "invalid_identifier");
        else
            ev->kind = PUSHER_EVENT_PUSH;
    } else if (have_type && strcmp(ev->type, "template.updated") == 0) {
        skip(ev, PUSHER_SKIP_NOTHING_TO_PUSH);
    } else if (!have_type || !have_ptid || !have_serial) {
        skip(ev, "missing_field");
    } else if (strcmp(ev->type, "pass.created") == 0) {
        /* A new pass has no device that holds an older copy, and a template change alone changes no
         * issued pass: pushing would only make devices ask, find nothing, and log an error (spec 5.17). */
        skip(ev, PUSHER_SKIP_NOTHING_TO_PUSH);
    } else if (strcmp(ev->type, "pass.updated") != 0) {
        skip(ev, "unknown_type");
    } else if (!cm_id_is_pass_type(ev->ptid, strlen(ev->ptid)) ||
               !cm_id_is_plain(ev->serial, strlen(ev->serial))) {
        skip(ev, "invalid_identifier");
    } else {
        ev->kind = PUSHER_EVENT_PUSH;
    }
}

/* One stream entry [id, [field, value, ...] | nil]. Returns -1 when the reply is not shaped like one. */
static int parse_entry(const redisReply *e, enum pusher_stream stream, pusher_event_t *ev)
{
    memset(ev, 0, sizeof(*ev));
    ev->stream = stream;
    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        copy_field(e->element[0], ev->id, sizeof(ev->id)) != 0)
        return -1;
    const redisReply *fields = e->element[1];
    if (fields->type == REDIS_REPLY_NIL) {
        skip(ev, "deleted_from_stream");
        return 0;
    }
    if (fields->type != REDIS_REPLY_ARRAY || fields->elements % 2 != 0)
        return -1;
    int have_type = 0, have_ptid = 0, have_serial = 0, too_long = 0;
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i], *v = fields->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            return -1;
        char *dst = NULL;
        size_t size = 0;
        int *have = NULL;
        if (strcmp(k->str, "type") == 0) {
            dst = ev->type, size = sizeof(ev->type), have = &have_type;
        } else if (strcmp(k->str, "passTypeIdentifier") == 0) {
            dst = ev->ptid, size = sizeof(ev->ptid), have = &have_ptid;
        } else if (strcmp(k->str, "serialNumber") == 0) {
            dst = ev->serial, size = sizeof(ev->serial), have = &have_serial;
        } else if (strcmp(k->str, "version") == 0) {
            dst = ev->version, size = sizeof(ev->version);
        } else if (strcmp(k->str, "event") == 0 && stream == PUSHER_STREAM_FANOUT) {
            dst = ev->origin, size = sizeof(ev->origin);
        } else if (strcmp(k->str, "devices") == 0 && stream == PUSHER_STREAM_FANOUT) {
            if (ev->devices == NULL && v->len <= PUSHER_FANOUT_CHUNK_MAX * (CM_ID_MAX + 1) &&
                memchr(v->str, '\0', v->len) == NULL)
                ev->devices = pusher_xstrdup(v->str);
            else
                too_long = 1;
            continue;
        } else {
            continue;
        }
        if (copy_field(v, dst, size) != 0)
            too_long = 1;
        else if (have != NULL)
            *have = 1;
    }
    /* The type is logged when it is unknown: keep it to characters that cannot break a log line. */
    for (char *t = ev->type; *t; t++)
        if (!cm_id_char_is_plain(*t))
            *t = '?';
    for (char *t = ev->origin; *t; t++)
        if (!cm_id_char_is_plain(*t))
            *t = '?';
    classify(ev, have_type, have_ptid, have_serial, too_long);
    return 0;
}

static int parse_entries(const redisReply *entries, enum pusher_stream stream, pusher_event_t *events,
                         size_t cap, size_t *n, char *err, size_t err_size)
{
    if (entries->type != REDIS_REPLY_ARRAY) {
        snprintf(err, err_size, "unexpected reply shape for %s entries", stream_keys[stream]);
        return -1;
    }
    size_t count = *n;
    for (size_t i = 0; i < entries->elements && count < cap; i++) {
        if (parse_entry(entries->element[i], stream, &events[count]) != 0) {
            pusher_events_clear(events, count + 1);
            snprintf(err, err_size, "unexpected reply shape for a %s entry", stream_keys[stream]);
            return -1;
        }
        count++;
    }
    *n = count;
    return 0;
}

static void set_timeout_ms(redisContext *c, long ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    redisSetTimeout(c, tv);
}

static int stream_of(const redisReply *name, enum pusher_stream *out)
{
    for (int s = 0; s < PUSHER_NSTREAMS; s++) {
        if (name->type == REDIS_REPLY_STRING && strcmp(name->str, stream_keys[s]) == 0) {
            *out = (enum pusher_stream)s;
            return 0;
        }
    }
    return -1;
}

int pusher_events_read(redisContext *c, const char *consumer, const char *const starts[PUSHER_NSTREAMS],
                       size_t count, long block_ms, volatile sig_atomic_t *blocking_fd,
                       const volatile sig_atomic_t *stop, pusher_event_t *events, size_t *n, char *err,
                       size_t err_size)
{
    char count_s[24], block_s[24];
    snprintf(count_s, sizeof(count_s), "%zu", count);
    snprintf(block_s, sizeof(block_s), "%ld", block_ms);
    int blocking = block_ms > 0;
    for (int st = 0; st < PUSHER_NSTREAMS; st++)
        if (starts[st] != NULL && strcmp(starts[st], ">") != 0)
            blocking = 0;
    const char *argv[9 + 2 * PUSHER_NSTREAMS];
    int argc = 0;
    argv[argc++] = "XREADGROUP";
    argv[argc++] = "GROUP";
    argv[argc++] = CM_EVENTS_GROUP;
    argv[argc++] = consumer;
    argv[argc++] = "COUNT";
    argv[argc++] = count_s;
    if (blocking) {
        argv[argc++] = "BLOCK";
        argv[argc++] = block_s;
    }
    argv[argc++] = "STREAMS";
    for (int s = 0; s < PUSHER_NSTREAMS; s++)
        if (starts[s] != NULL)
            argv[argc++] = stream_keys[s];
    for (int s = 0; s < PUSHER_NSTREAMS; s++)
        if (starts[s] != NULL)
            argv[argc++] = starts[s];

    if (blocking) {
        set_timeout_ms(c, block_ms + PUSHER_REDIS_TIMEOUT_MS);
        *blocking_fd = c->fd;
        /* A stop signal that came before the line above could not shut this socket down. */
        if (stop != NULL && *stop) {
            *blocking_fd = -1;
            set_timeout_ms(c, PUSHER_REDIS_TIMEOUT_MS);
            *n = 0;
            return 0;
        }
    }
    redisReply *r = command_argv(c, argc, argv, err, err_size);
    if (blocking) {
        *blocking_fd = -1;
        set_timeout_ms(c, PUSHER_REDIS_TIMEOUT_MS);
    }
    if (r == NULL)
        return -1;

    int rc = 0;
    size_t got = 0;
    if (r->type == REDIS_REPLY_ARRAY) { /* nil: BLOCK timed out */
        for (size_t i = 0; rc == 0 && i < r->elements; i++) {
            const redisReply *per = r->element[i];
            enum pusher_stream stream;
            if (per->type != REDIS_REPLY_ARRAY || per->elements != 2 ||
                stream_of(per->element[0], &stream) != 0) {
                pusher_events_clear(events, got);
                snprintf(err, err_size, "XREADGROUP: unexpected reply shape");
                rc = -1;
            } else {
                rc = parse_entries(per->element[1], stream, events, count * PUSHER_NSTREAMS, &got, err,
                                   err_size);
            }
        }
    } else if (r->type != REDIS_REPLY_NIL) {
        snprintf(err, err_size, "XREADGROUP: unexpected reply shape");
        rc = -1;
    }
    freeReplyObject(r);
    if (rc == 0)
        *n = got;
    return rc;
}

int pusher_events_autoclaim(redisContext *c, enum pusher_stream stream, const char *consumer,
                            long min_idle_ms, char cursor[PUSHER_STREAM_ID_MAX], size_t count,
                            pusher_event_t *events, size_t *n, char *err, size_t err_size)
{
    char idle_s[24], count_s[24];
    snprintf(idle_s, sizeof(idle_s), "%ld", min_idle_ms);
    snprintf(count_s, sizeof(count_s), "%zu", count);
    const char *argv[] = {
        "XAUTOCLAIM", stream_keys[stream], CM_EVENTS_GROUP, consumer, idle_s, cursor, "COUNT", count_s};
    redisReply *r = command_argv(c, 8, argv, err, err_size);
    if (r == NULL)
        return -1;
    int rc = -1;
    size_t got = 0;
    /* Redis 6.2 answers [cursor, entries]; 7.0 adds [deleted ids] (already dropped from the PEL). */
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 && r->element[0]->type == REDIS_REPLY_STRING &&
        r->element[0]->len < PUSHER_STREAM_ID_MAX) {
        rc = parse_entries(r->element[1], stream, events, count, &got, err, err_size);
        if (rc == 0) {
            memcpy(cursor, r->element[0]->str, r->element[0]->len);
            cursor[r->element[0]->len] = '\0';
            *n = got;
        }
    } else {
        snprintf(err, err_size, "XAUTOCLAIM: unexpected reply shape");
    }
    freeReplyObject(r);
    return rc;
}

/* Runs a command whose reply is not needed and frees argv (malloc'd, its strings borrowed). 0, or -1 with
 * err. */
static int command_argv_discard(redisContext *c, const char **argv, size_t argc, char *err, size_t err_size)
{
    redisReply *r = command_argv(c, (int)argc, argv, err, err_size);
    free(argv);
    if (r == NULL)
        return -1;
    freeReplyObject(r);
    return 0;
}

/* `head` fixed arguments followed by the ids. */
static int ids_command(redisContext *c, const char **head, int nhead, const char *const *ids, size_t n,
                       const char *tail, char *err, size_t err_size)
{
    if (n == 0)
        return 0;
    if (n > 1000000)
        abort();
    size_t argc = (size_t)nhead + n + (tail != NULL);
    const char **argv = pusher_xcalloc(argc, sizeof(*argv));
    for (int i = 0; i < nhead; i++)
        argv[i] = head[i];
    for (size_t i = 0; i < n; i++)
        argv[(size_t)nhead + i] = ids[i];
    if (tail != NULL)
        argv[argc - 1] = tail;
    return command_argv_discard(c, argv, argc, err, err_size);
}

int pusher_events_ack(redisContext *c, enum pusher_stream stream, const char *const *ids, size_t n, char *err,
                      size_t err_size)
{
    const char *head[] = {"XACK", stream_keys[stream], CM_EVENTS_GROUP};
    return ids_command(c, head, 3, ids, n, NULL, err, err_size);
}

int pusher_events_release(redisContext *c, enum pusher_stream stream, const char *consumer,
                          const char *const *ids, size_t n, long idle_ms, char *err, size_t err_size)
{
    char idle_s[24];
    snprintf(idle_s, sizeof(idle_s), "%ld", idle_ms);
    /* XCLAIM ... <min-idle 0> id... IDLE <ms> JUSTID: stays ours, but looks idle that long already. */
    const char **argv = pusher_xcalloc(n + 8, sizeof(*argv));
    size_t argc = 0;
    argv[argc++] = "XCLAIM";
    argv[argc++] = stream_keys[stream];
    argv[argc++] = CM_EVENTS_GROUP;
    argv[argc++] = consumer;
    argv[argc++] = "0";
    for (size_t i = 0; i < n; i++)
        argv[argc++] = ids[i];
    argv[argc++] = "IDLE";
    argv[argc++] = idle_s;
    argv[argc++] = "JUSTID";
    redisReply *r = n > 0 ? command_argv(c, (int)argc, argv, err, err_size) : NULL;
    free(argv);
    if (n > 0 && r == NULL)
        return -1;
    freeReplyObject(r);
    return 0;
}

int pusher_events_touch(redisContext *c, enum pusher_stream stream, const char *consumer,
                        const char *const *ids, size_t n, char *err, size_t err_size)
{
    const char *head[] = {"XCLAIM", stream_keys[stream], CM_EVENTS_GROUP, consumer, "0"};
    return ids_command(c, head, 5, ids, n, "JUSTID", err, err_size);
}

/* Reads the reply of each pipelined command; -1 (with err) when any is missing or an error. */
static int drain_replies(redisContext *c, size_t n, const char *what, char *err, size_t err_size)
{
    int rc = 0;
    for (size_t i = 0; i < n; i++) {
        void *v = NULL;
        if (redisGetReply(c, &v) != REDIS_OK || v == NULL) {
            snprintf(err, err_size, "%s: %s", what, c->errstr[0] ? c->errstr : "connection lost");
            return -1;
        }
        redisReply *r = v;
        if (r->type == REDIS_REPLY_ERROR && rc == 0) {
            snprintf(err, err_size, "%s: %s", what, r->str);
            rc = -1;
        }
        /* EXEC answers nil when the transaction was aborted, and an array holding any failure. */
        if (r->type == REDIS_REPLY_ARRAY)
            for (size_t j = 0; j < r->elements && rc == 0; j++)
                if (r->element[j]->type == REDIS_REPLY_ERROR) {
                    snprintf(err, err_size, "%s: %s", what, r->element[j]->str);
                    rc = -1;
                }
        freeReplyObject(r);
    }
    return rc;
}

int pusher_events_split(redisContext *c, const pusher_event_t *ev, char **dlis, size_t ndlis, size_t chunk,
                        size_t *nchunks, char *err, size_t err_size)
{
    size_t parts = (ndlis + chunk - 1) / chunk;
    char *devices = pusher_xcalloc(chunk, CM_ID_MAX + 1);
    redisAppendCommand(c, "MULTI");
    for (size_t p = 0; p < parts; p++) {
        size_t first = p * chunk, last = first + chunk < ndlis ? first + chunk : ndlis, len = 0;
        for (size_t i = first; i < last; i++) {
            size_t l = strlen(dlis[i]);
            if (i > first)
                devices[len++] = ' ';
            memcpy(devices + len, dlis[i], l);
            len += l;
        }
        const char *argv[] = {
            "XADD",   CM_KEY_FANOUT,  "*",        "type",    "fanout.chunk", "passTypeIdentifier",
            ev->ptid, "serialNumber", ev->serial, "version", ev->version,    "event",
            ev->id,   "devices",      devices};
        size_t lens[15];
        for (int i = 0; i < 14; i++)
            lens[i] = strlen(argv[i]);
        lens[14] = len;
        redisAppendCommandArgv(c, 15, argv, lens);
    }
    redisAppendCommand(c, "XACK %s %s %s", CM_KEY_EVENTS, CM_EVENTS_GROUP, ev->id);
    redisAppendCommand(c, "EXEC");
    free(devices);
    if (drain_replies(c, parts + 3, "MULTI (fan-out split)", err, err_size) != 0)
        return -1;
    *nchunks = parts;
    return 0;
}

int pusher_events_deadletter(redisContext *c, const char *const *fields, size_t nfields, char *err,
                             size_t err_size)
{
    const char **argv = pusher_xcalloc(nfields + 6, sizeof(*argv));
    size_t argc = 0;
    argv[argc++] = "XADD";
    argv[argc++] = CM_KEY_DEADLETTER;
    argv[argc++] = "MAXLEN";
    argv[argc++] = "~";
    argv[argc++] = PUSHER_DEADLETTER_MAXLEN_S;
    argv[argc++] = "*";
    for (size_t i = 0; i < nfields; i++)
        argv[argc++] = fields[i];
    return command_argv_discard(c, argv, argc, err, err_size);
}

/*
 * Maintenance, one script per stream so it sees one consistent state:
 *  - trims the stream below the oldest entry some group still needs: for each group, its oldest
 *    pending entry, or when nothing is pending, its last delivered one (entries after it were never
 *    delivered). No group: nothing is trimmed (nobody has read anything yet).
 *  - deletes consumers that hold nothing and were idle longer than ARGV[2] ms (each restart of a
 *    pusher without a fixed name leaves one behind);
 *  - answers {trimmed, pending of ARGV[1]'s group, lag of ARGV[1]'s group (-1 unknown), consumers deleted}.
 */
static const char maintain_script[] =
    "local key, group, idle_max = KEYS[1], ARGV[1], tonumber(ARGV[2])\n"
    "if redis.call('EXISTS', key) == 0 then return {0, 0, 0, 0} end\n"
    "local function map(flat) local t = {} for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end return t end\n"
    "local function parse(id) local ms, seq = string.match(id, '^(%d+)-(%d+)$')\n"
    "  return tonumber(ms), tonumber(seq) end\n"
    "local function less(a, b) local am, as = parse(a) local bm, bs = parse(b)\n"
    "  return am < bm or (am == bm and as < bs) end\n"
    "local bound, pending, lag, deleted = nil, 0, -1, 0\n"
    "for _, flat in ipairs(redis.call('XINFO', 'GROUPS', key)) do\n"
    "  local g = map(flat)\n"
    "  local need = g['last-delivered-id']\n"
    "  if g['pending'] > 0 then need = redis.call('XPENDING', key, g['name'])[2] end\n"
    "  if bound == nil or less(need, bound) then bound = need end\n"
    "  if g['name'] == group then\n"
    "    pending = g['pending']\n"
    "    if type(g['lag']) == 'number' then lag = g['lag'] end\n"
    "    for _, cflat in ipairs(redis.call('XINFO', 'CONSUMERS', key, group)) do\n"
    "      local c = map(cflat)\n"
    "      if c['pending'] == 0 and c['idle'] > idle_max then\n"
    "        redis.call('XGROUP', 'DELCONSUMER', key, group, c['name'])\n"
    "        deleted = deleted + 1\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local trimmed = 0\n"
    "if bound ~= nil and bound ~= '0-0' then trimmed = redis.call('XTRIM', key, 'MINID', bound) end\n"
    "return {trimmed, pending, lag, deleted}\n";

int pusher_events_maintain(redisContext *c, enum pusher_stream stream, long consumer_idle_max_ms,
                           pusher_stream_state_t *out, char *err, size_t err_size)
{
    char idle_s[24];
    snprintf(idle_s, sizeof(idle_s), "%ld", consumer_idle_max_ms);
    const char *argv[] = {"EVAL", maintain_script, "1", stream_keys[stream], CM_EVENTS_GROUP, idle_s};
    redisReply *r = command_argv(c, 6, argv, err, err_size);
    if (r == NULL)
        return -1;
    int rc = -1;
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 4) {
        long long v[4];
        rc = 0;
        for (int i = 0; i < 4; i++) {
            if (r->element[i]->type != REDIS_REPLY_INTEGER)
                rc = -1;
            else
                v[i] = r->element[i]->integer;
        }
        if (rc == 0) {
            out->trimmed = v[0];
            out->pending = v[1];
            out->lag = v[2];
            out->consumers_deleted = v[3];
        }
    }
    if (rc != 0)
        snprintf(err, err_size, "EVAL (maintain %s): unexpected reply", stream_keys[stream]);
    freeReplyObject(r);
    return rc;
}
