/*
 * Registrations, as the pusher needs them (data model: common/keys.h).
 *
 * Lookup is two pipelined round trips for a whole batch: HGET of the pass's current version for every
 * item (an item older than it is superseded by a later event and skipped) and SMEMBERS
 * pk:regs:{ptid}:{serial} for every event (a fan-out chunk carries its own devices), then MGET
 * pk:devtoken:{dli}:{ptid} for every (item, device) pair. An event with more devices than the chunk
 * size is not pushed here: it is split into pk:fanout chunks that all pushers share. Pairs are coalesced into
 * one push per (pass type, push token): a device holds one token per pass type, however many of its
 * passes changed, and two device library ids may even share a token.
 *
 * Removal of a dead token is a Lua script so that "is this still the token that failed?" and the
 * deletes happen atomically: a device that re-registered with a new token meanwhile keeps it.
 */
#include "pusher.h"

#include "common/keys.h"
#include "common/log.h"

#include <hiredis/hiredis.h>
#include <stdio.h>

#define MGET_CHUNK 512

/* KEYS[1] pk:devtoken:{dli}:{ptid}, KEYS[2] pk:devpasses:{dli}:{ptid};
 * ARGV[1] the token that failed, ARGV[2] dli, ARGV[3] "pk:regs:{ptid}:" (the serial completes the key). */
static const char remove_script[] =
    "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end\n"
    "local serials = redis.call('SMEMBERS', KEYS[2])\n"
    "for _, s in ipairs(serials) do redis.call('SREM', ARGV[3] .. s, ARGV[2]) end\n"
    "redis.call('DEL', KEYS[1], KEYS[2])\n"
    "return 1\n";

static char remove_sha[41];

typedef struct pair {
    size_t event;
    char *dli;
} pair_t;

static void free_pairs(pair_t *pairs, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(pairs[i].dli);
    free(pairs);
}

static void append_argv(redisContext *c, int argc, const char **argv)
{
    size_t lens[8];
    for (int i = 0; i < argc && i < 8; i++)
        lens[i] = strlen(argv[i]);
    redisAppendCommandArgv(c, argc, argv, lens);
}

static redisReply *command_argv(redisContext *c, int argc, const char **argv)
{
    size_t lens[8];
    for (int i = 0; i < argc && i < 8; i++)
        lens[i] = strlen(argv[i]);
    return redisCommandArgv(c, argc, argv, lens);
}

static redisReply *get_reply(redisContext *c, char *err, size_t err_size)
{
    void *r = NULL;
    if (redisGetReply(c, &r) != REDIS_OK || r == NULL) {
        snprintf(err, err_size, "redis: %s", c->errstr[0] ? c->errstr : "connection lost");
        return NULL;
    }
    return r;
}

static void add_pair(pair_t **pairs, size_t *n, size_t *cap, size_t event, const char *dli, size_t len)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        *pairs = pusher_xrealloc(*pairs, *cap, sizeof(**pairs));
    }
    (*pairs)[*n].event = event;
    (*pairs)[*n].dli = pusher_xcalloc(len + 1, 1);
    memcpy((*pairs)[*n].dli, dli, len);
    (*n)++;
}

/* The item's version is older than the pass's current one: a later event exists and will push the
 * same devices (it is written by the same script that changed the pass), so this one needs no push. */
static int is_superseded(const pusher_event_t *ev, const redisReply *current)
{
    if (ev->version[0] == '\0' || current->type != REDIS_REPLY_STRING)
        return 0;
    char *end = NULL;
    unsigned long long mine = strtoull(ev->version, &end, 10);
    if (*end != '\0')
        return 0;
    unsigned long long now = strtoull(current->str, &end, 10);
    return *end == '\0' && now > mine;
}

/* An event with more devices than the chunk size: written to pk:fanout in chunks (and acknowledged,
 * in the same transaction) so that every pusher takes a share. */
static int split(redisContext *c, pusher_event_t *ev, const redisReply *members, size_t chunk,
                 pusher_lookup_stats_t *stats, char *err, size_t err_size)
{
    char **dlis = pusher_xcalloc(members->elements, sizeof(*dlis));
    size_t n = 0, nchunks = 0;
    for (size_t j = 0; j < members->elements; j++) {
        const redisReply *d = members->element[j];
        if (d->type == REDIS_REPLY_STRING && cm_id_is_plain(d->str, d->len))
            dlis[n++] = d->str;
    }
    int rc = pusher_events_split(c, ev, dlis, n, chunk, &nchunks, err, err_size);
    free(dlis);
    if (rc != 0)
        return -1;
    ev->acked = 1;
    stats->split++;
    stats->chunks_written += nchunks;
    CM_LOG(CM_LOG_INFO, "event=fanout_split id=%s ptid=%s serial=%s version=%s devices=%zu chunks=%zu",
           ev->id, ev->ptid, ev->serial, ev->version, n, nchunks);
    return 0;
}

/* Round trip 1: for each PUSH item the pass's current version, and for events (not chunks) the
 * devices registered for the pass. Items found superseded become SKIP; large events are split. */
static int lookup_devices(redisContext *c, pusher_event_t *events, size_t nevents, size_t chunk, pair_t **out,
                          size_t *nout, pusher_lookup_stats_t *stats, char *err, size_t err_size)
{
    char key[CM_KEY_MAX];
    for (size_t i = 0; i < nevents; i++) {
        if (events[i].kind != PUSHER_EVENT_PUSH)
            continue;
        snprintf(key, sizeof(key), CM_KEY_PASS_FMT, events[i].ptid, events[i].serial);
        const char *hget[] = {"HGET", key, "version"};
        append_argv(c, 3, hget);
        if (events[i].stream == PUSHER_STREAM_EVENTS) {
            snprintf(key, sizeof(key), CM_KEY_REGS_FMT, events[i].ptid, events[i].serial);
            const char *smembers[] = {"SMEMBERS", key};
            append_argv(c, 2, smembers);
        }
    }
    /* Every reply is read before acting on any: a split sends a transaction of its own. */
    redisReply **versions = pusher_xcalloc(nevents, sizeof(*versions));
    redisReply **members = pusher_xcalloc(nevents, sizeof(*members));
    pair_t *pairs = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (size_t i = 0; i < nevents && rc == 0; i++) {
        if (events[i].kind != PUSHER_EVENT_PUSH)
            continue;
        if ((versions[i] = get_reply(c, err, err_size)) == NULL ||
            (events[i].stream == PUSHER_STREAM_EVENTS && (members[i] = get_reply(c, err, err_size)) == NULL))
            rc = -1; /* the connection is dead: the caller reconnects; nothing left to drain */
    }
    for (size_t i = 0; i < nevents && rc == 0; i++) {
        pusher_event_t *ev = &events[i];
        const redisReply *m = members[i];
        if (ev->kind != PUSHER_EVENT_PUSH)
            continue;
        if (is_superseded(ev, versions[i])) {
            ev->kind = PUSHER_EVENT_SKIP;
            ev->skip_reason = "superseded";
            stats->superseded++;
        } else if (ev->stream == PUSHER_STREAM_FANOUT) {
            for (const char *d = ev->devices; *d != '\0';) {
                size_t len = strcspn(d, " ");
                add_pair(&pairs, &n, &cap, i, d, len);
                d += len;
                d += *d == ' ';
            }
        } else if (m->type != REDIS_REPLY_ARRAY) {
            CM_LOG(CM_LOG_ERROR,
                   "event=registrations_unreadable ptid=%s serial=%s call=SMEMBERS error=\"%s\"", ev->ptid,
                   ev->serial, m->type == REDIS_REPLY_ERROR ? m->str : "not a set");
        } else if (m->elements > chunk) {
            rc = split(c, ev, m, chunk, stats, err, err_size);
        } else {
            for (size_t j = 0; j < m->elements; j++) {
                const redisReply *d = m->element[j];
                if (d->type != REDIS_REPLY_STRING || !cm_id_is_plain(d->str, d->len)) {
                    CM_LOG(CM_LOG_WARN,
                           "event=registration_invalid ptid=%s serial=%s reason=\"bad device id\"", ev->ptid,
                           ev->serial);
                    continue;
                }
                add_pair(&pairs, &n, &cap, i, d->str, d->len);
            }
        }
    }
    for (size_t i = 0; i < nevents; i++) {
        freeReplyObject(versions[i]);
        freeReplyObject(members[i]);
    }
    free(versions);
    free(members);
    if (rc != 0) {
        free_pairs(pairs, n);
        return -1;
    }
    *out = pairs;
    *nout = n;
    return 0;
}

static uint64_t push_hash(size_t topic, const char *token)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)topic;
    for (const char *p = token; *p; p++) {
        h ^= (unsigned char)*p;
        h *= 1099511628211ull;
    }
    return h;
}

static void append_event(pusher_push_t *p, pusher_event_t *events, size_t ev)
{
    /* Pairs arrive grouped by event, so a repeat is always the last one added. */
    if (p->nevents > 0 && p->events[p->nevents - 1] == ev)
        return;
    if (p->nevents == p->events_cap) {
        p->events_cap = p->events_cap ? p->events_cap * 2 : 2;
        p->events = pusher_xrealloc(p->events, p->events_cap, sizeof(*p->events));
    }
    p->events[p->nevents++] = ev;
    events[ev].pending++;
}

static void append_dli(pusher_push_t *p, const char *dli)
{
    for (size_t i = 0; i < p->ndlis; i++)
        if (strcmp(p->dlis[i], dli) == 0)
            return;
    if (p->ndlis == p->dlis_cap) {
        p->dlis_cap = p->dlis_cap ? p->dlis_cap * 2 : 1;
        p->dlis = pusher_xrealloc(p->dlis, p->dlis_cap, sizeof(*p->dlis));
    }
    p->dlis[p->ndlis++] = pusher_xstrdup(dli);
}

int pusher_regs_lookup(redisContext *c, pusher_event_t *events, const long *topics, size_t nevents,
                       size_t chunk, pusher_push_t **pushes_out, size_t *npushes_out,
                       pusher_lookup_stats_t *stats, char *err, size_t err_size)
{
    int rc = -1;
    pair_t *pairs = NULL;
    size_t npairs = 0, npushes = 0, table_size = 1;
    pusher_push_t *pushes = NULL;
    size_t *table = NULL; /* open addressing: push index + 1, 0 = empty */

    if (lookup_devices(c, events, nevents, chunk, &pairs, &npairs, stats, err, err_size) != 0)
        goto out;

    /* Round trip 2: the token of each (device, pass type), MGET in pipelined chunks. */
    size_t nchunks = (npairs + MGET_CHUNK - 1) / MGET_CHUNK;
    const char **argv = pusher_xcalloc(MGET_CHUNK + 1, sizeof(*argv));
    size_t *argvlen = pusher_xcalloc(MGET_CHUNK + 1, sizeof(*argvlen));
    char *keys = pusher_xcalloc(MGET_CHUNK, CM_KEY_MAX);
    for (size_t ch = 0; ch < nchunks; ch++) {
        size_t first = ch * MGET_CHUNK, count = npairs - first < MGET_CHUNK ? npairs - first : MGET_CHUNK;
        argv[0] = "MGET";
        argvlen[0] = 4;
        for (size_t j = 0; j < count; j++) {
            char *k = keys + j * CM_KEY_MAX;
            const pair_t *pr = &pairs[first + j];
            snprintf(k, CM_KEY_MAX, CM_KEY_DEVTOKEN_FMT, pr->dli, events[pr->event].ptid);
            argv[j + 1] = k;
            argvlen[j + 1] = strlen(k);
        }
        redisAppendCommandArgv(c, (int)count + 1, argv, argvlen);
    }
    free(argv);
    free(argvlen);
    free(keys);

    while (table_size < 2 * npairs + 2)
        table_size *= 2;
    table = pusher_xcalloc(table_size, sizeof(*table));
    pushes = pusher_xcalloc(npairs, sizeof(*pushes));

    for (size_t ch = 0; ch < nchunks; ch++) {
        size_t first = ch * MGET_CHUNK;
        redisReply *r = get_reply(c, err, err_size);
        if (r == NULL)
            goto out; /* the connection is dead: nothing left to drain */
        size_t count = npairs - first < MGET_CHUNK ? npairs - first : MGET_CHUNK;
        if (r->type != REDIS_REPLY_ARRAY || r->elements != count) {
            snprintf(err, err_size, "MGET %s: unexpected reply", "pk:devtoken");
            freeReplyObject(r);
            /* Drain the rest so the connection stays usable; the caller reconnects anyway. */
            for (size_t rest = ch + 1; rest < nchunks; rest++) {
                redisReply *x = get_reply(c, err, err_size);
                if (x == NULL)
                    break;
                freeReplyObject(x);
            }
            goto out;
        }
        for (size_t j = 0; j < count; j++) {
            const redisReply *t = r->element[j];
            const pair_t *pr = &pairs[first + j];
            if (t->type != REDIS_REPLY_STRING)
                continue; /* unregistered meanwhile */
            if (!cm_id_is_push_token(t->str, t->len)) {
                CM_LOG(CM_LOG_WARN,
                       "event=registration_invalid ptid=%s dli=%s reason=\"stored push token is not hex\"",
                       events[pr->event].ptid, pr->dli);
                continue;
            }
            size_t topic = (size_t)topics[pr->event];
            size_t slot = (size_t)push_hash(topic, t->str) & (table_size - 1);
            pusher_push_t *p = NULL;
            while (table[slot] != 0) {
                pusher_push_t *q = &pushes[table[slot] - 1];
                if (q->topic == topic && strcmp(q->token, t->str) == 0) {
                    p = q;
                    break;
                }
                slot = (slot + 1) & (table_size - 1);
            }
            if (p == NULL) {
                p = &pushes[npushes++];
                table[slot] = npushes;
                p->topic = topic;
                memcpy(p->token, t->str, t->len + 1);
            }
            append_event(p, events, pr->event);
            append_dli(p, pr->dli);
        }
        freeReplyObject(r);
    }
    *pushes_out = pushes;
    *npushes_out = npushes;
    pushes = NULL;
    rc = 0;
out:
    if (pushes != NULL)
        pusher_regs_free_pushes(pushes, npushes);
    free(table);
    free_pairs(pairs, npairs);
    return rc;
}

void pusher_regs_free_pushes(pusher_push_t *pushes, size_t n)
{
    if (pushes == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < pushes[i].ndlis; j++)
            free(pushes[i].dlis[j]);
        free(pushes[i].dlis);
        free(pushes[i].events);
    }
    free(pushes);
}

int pusher_regs_load_scripts(redisContext *c, char *err, size_t err_size)
{
    const char *argv[] = {"SCRIPT", "LOAD", remove_script};
    redisReply *r = command_argv(c, 3, argv);
    if (r == NULL) {
        snprintf(err, err_size, "SCRIPT LOAD: %s", c->errstr[0] ? c->errstr : "connection lost");
        return -1;
    }
    int rc = -1;
    if (r->type == REDIS_REPLY_STRING && r->len == 40) {
        memcpy(remove_sha, r->str, 41);
        rc = 0;
    } else {
        snprintf(err, err_size, "SCRIPT LOAD: %s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    }
    freeReplyObject(r);
    return rc;
}

int pusher_regs_remove(redisContext *c, const char *ptid, const char *dli, const char *token, int *removed,
                       char *err, size_t err_size)
{
    char tokkey[CM_KEY_MAX], passkey[CM_KEY_MAX], regs_prefix[CM_KEY_MAX];
    snprintf(tokkey, sizeof(tokkey), CM_KEY_DEVTOKEN_FMT, dli, ptid);
    snprintf(passkey, sizeof(passkey), CM_KEY_DEVPASSES_FMT, dli, ptid);
    /* CM_KEY_REGS_FMT ends with the serial: formatting it with "" gives the prefix. */
    snprintf(regs_prefix, sizeof(regs_prefix), CM_KEY_REGS_FMT, ptid, "");

    const char *argv[] = {"EVALSHA", remove_sha, "2", tokkey, passkey, token, dli, regs_prefix};
    redisReply *r = command_argv(c, 8, argv);
    if (r != NULL && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "NOSCRIPT", 8) == 0) {
        freeReplyObject(r);
        argv[0] = "EVAL";
        argv[1] = remove_script;
        r = command_argv(c, 8, argv);
    }
    if (r == NULL) {
        snprintf(err, err_size, "EVALSHA (remove registration): %s",
                 c->errstr[0] ? c->errstr : "connection lost");
        return -1;
    }
    int rc = -1;
    if (r->type == REDIS_REPLY_INTEGER) {
        *removed = r->integer == 1;
        rc = 0;
    } else {
        snprintf(err, err_size, "EVALSHA (remove registration): %s",
                 r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply");
    }
    freeReplyObject(r);
    return rc;
}
