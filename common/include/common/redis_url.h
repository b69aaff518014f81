/*
 * REDIS_URL handling: redis://[[user]:password@]host[:port][/db]. Parsed with libcurl's URL API.
 * Also a blocking connect for code that runs off the event loop (worker threads, the pusher's own
 * loop, start-up), which authenticates and selects the database.
 */
#ifndef COMMON_REDIS_URL_H
#define COMMON_REDIS_URL_H

#include <stddef.h>

struct redisContext;

typedef struct cm_redis_url {
    char host[256];
    int port;           /* default 6379 */
    int db;             /* default 0 */
    char user[128];     /* empty: none */
    char password[256]; /* empty: no AUTH */
} cm_redis_url_t;

/* Parses url into *out. Returns 0, or -1 with a reason in err. */
int cm_redis_url_parse(const char *url, cm_redis_url_t *out, char *err, size_t err_size);

/* Connects (timeout_ms for connect and for every later command), AUTHs and SELECTs. Returns 0 and
 * *out (free with redisFree), or -1 with a reason in err. Blocking: never call on an event loop.
 * Connects to the address the host name had at the last connect when it is recent enough, without
 * a DNS lookup (common/redis_addr.h). */
int cm_redis_connect_sync(const cm_redis_url_t *url, int timeout_ms, struct redisContext **out, char *err,
                          size_t err_size);

#endif
