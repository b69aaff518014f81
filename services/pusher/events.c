/*
 * The pk:events stream as seen by one consumer of the group "pushers": create the group, read new
 * entries, re-read this consumer's pending ones, claim those abandoned by dead consumers, ack.
 *
 * Entries are copied out of the hiredis replies into fixed-size pusher_event_t records. An entry the
 * pusher cannot act on (unknown type, a field that is missing or not a valid identifier, an entry
 * deleted from the stream while pending) is still returned, as PUSHER_EVENT_SKIP, so that it gets
 * acknowledged instead of being delivered forever.
 */
#include "pusher.h"

#include "common/keys.h"

#include <hiredis/hiredis.h>
#include <stdio.h>
#include <sys/time.h>

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

int pusher_events_create_group(redisContext *c, char *err, size_t err_size)
{
    const char *argv[] = {"XGROUP", "CREATE", CM_KEY_EVENTS, CM_EVENTS_GROUP, "0", "MKSTREAM"};
    size_t lens[6];
    for (int i = 0; i < 6; i++)
        lens[i] = strlen(argv[i]);
    redisReply *r = redisCommandArgv(c, 6, argv, lens);
    if (r == NULL) {
        snprintf(err, err_size, "XGROUP CREATE: %s", c->errstr[0] ? c->errstr : "connection lost");
        return -1;
    }
    int rc = 0;
    if (r->type == REDIS_REPLY_ERROR && strncmp(r->str, "BUSYGROUP", 9) != 0) {
        snprintf(err, err_size, "XGROUP CREATE: %s", r->str);
        rc = -1;
    }
    freeReplyObject(r);
    return rc;
}

static int copy_field(const redisReply *v, char *dst, size_t size)
{
    if (v->type != REDIS_REPLY_STRING || v->len >= size)
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

/* One stream entry [id, [field, value, ...] | nil]. Returns -1 when the reply is not shaped like one. */
static int parse_entry(const redisReply *e, pusher_event_t *ev)
{
    memset(ev, 0, sizeof(*ev));
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
    if (too_long) {
        skip(ev, "field_too_long");
    } else if (have_type && strcmp(ev->type, "template.updated") == 0) {
        skip(ev, PUSHER_SKIP_NOTHING_TO_PUSH);
    } else if (!have_type || !have_ptid || !have_serial) {
        skip(ev, "missing_field");
    } else if (strcmp(ev->type, "pass.created") == 0 || strcmp(ev->type, "template.updated") == 0) {
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
    return 0;
}

static int parse_entries(const redisReply *entries, pusher_event_t *events, size_t cap, size_t *n, char *err,
                         size_t err_size)
{
    if (entries->type != REDIS_REPLY_ARRAY) {
        snprintf(err, err_size, "unexpected reply shape for %s entries", CM_KEY_EVENTS);
        return -1;
    }
    size_t count = 0;
    for (size_t i = 0; i < entries->elements && count < cap; i++) {
        if (parse_entry(entries->element[i], &events[count]) != 0) {
            snprintf(err, err_size, "unexpected reply shape for a %s entry", CM_KEY_EVENTS);
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

int pusher_events_read(redisContext *c, const char *consumer, const char *start, size_t count, long block_ms,
                       volatile sig_atomic_t *blocking_fd, pusher_event_t *events, size_t *n, char *err,
                       size_t err_size)
{
    char count_s[24], block_s[24];
    snprintf(count_s, sizeof(count_s), "%zu", count);
    snprintf(block_s, sizeof(block_s), "%ld", block_ms);
    int blocking = strcmp(start, ">") == 0 && block_ms > 0;
    const char *argv[11];
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
    argv[argc++] = CM_KEY_EVENTS;
    argv[argc++] = start;

    if (blocking) {
        set_timeout_ms(c, block_ms + PUSHER_REDIS_TIMEOUT_MS);
        *blocking_fd = c->fd;
    }
    redisReply *r = command_argv(c, argc, argv, err, err_size);
    if (blocking) {
        *blocking_fd = -1;
        set_timeout_ms(c, PUSHER_REDIS_TIMEOUT_MS);
    }
    if (r == NULL)
        return -1;

    int rc = -1;
    size_t got = 0;
    if (r->type == REDIS_REPLY_NIL) {
        rc = 0; /* BLOCK timed out */
    } else if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 && r->element[0]->type == REDIS_REPLY_ARRAY &&
               r->element[0]->elements == 2) {
        rc = parse_entries(r->element[0]->element[1], events, count, &got, err, err_size);
    } else {
        snprintf(err, err_size, "XREADGROUP: unexpected reply shape");
    }
    freeReplyObject(r);
    if (rc == 0)
        *n = got;
    return rc;
}

int pusher_events_autoclaim(redisContext *c, const char *consumer, long min_idle_ms,
                            char cursor[PUSHER_STREAM_ID_MAX], size_t count, pusher_event_t *events,
                            size_t *n, char *err, size_t err_size)
{
    char idle_s[24], count_s[24];
    snprintf(idle_s, sizeof(idle_s), "%ld", min_idle_ms);
    snprintf(count_s, sizeof(count_s), "%zu", count);
    const char *argv[] = {"XAUTOCLAIM", CM_KEY_EVENTS, CM_EVENTS_GROUP, consumer,
                          idle_s,       cursor,        "COUNT",         count_s};
    redisReply *r = command_argv(c, 8, argv, err, err_size);
    if (r == NULL)
        return -1;
    int rc = -1;
    size_t got = 0;
    /* Redis 6.2 answers [cursor, entries]; 7.0 adds [deleted ids] (already dropped from the PEL). */
    if (r->type == REDIS_REPLY_ARRAY && r->elements >= 2 && r->element[0]->type == REDIS_REPLY_STRING &&
        r->element[0]->len < PUSHER_STREAM_ID_MAX) {
        rc = parse_entries(r->element[1], events, count, &got, err, err_size);
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
    redisReply *r = command_argv(c, (int)argc, argv, err, err_size);
    free(argv);
    if (r == NULL)
        return -1;
    freeReplyObject(r);
    return 0;
}

int pusher_events_ack(redisContext *c, const char *const *ids, size_t n, char *err, size_t err_size)
{
    const char *head[] = {"XACK", CM_KEY_EVENTS, CM_EVENTS_GROUP};
    return ids_command(c, head, 3, ids, n, NULL, err, err_size);
}

int pusher_events_touch(redisContext *c, const char *consumer, const char *const *ids, size_t n, char *err,
                        size_t err_size)
{
    const char *head[] = {"XCLAIM", CM_KEY_EVENTS, CM_EVENTS_GROUP, consumer, "0"};
    return ids_command(c, head, 5, ids, n, "JUSTID", err, err_size);
}
