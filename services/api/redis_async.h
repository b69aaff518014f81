/*
 * The api's Redis connection: hiredis async on the uv loop, reconnecting by itself.
 *
 * api_redis_command either fails at once (returns -1, the callback is never called) when there is no
 * connection, or calls the callback exactly once on the loop thread: with the reply, or with NULL when
 * the connection failed before the reply arrived (also at shutdown). The reply is borrowed: it is
 * freed when the callback returns. Arguments are copied by hiredis before the call returns.
 */
#ifndef API_REDIS_ASYNC_H
#define API_REDIS_ASYNC_H

#include <stddef.h>
#include <uv.h>

#include "app.h"
#include "metrics.h"

struct redisReply;
typedef void (*api_redis_cb)(struct redisReply *reply, void *data);

/* Connects to url (reconnecting after every failure). A command not answered within timeout_ms drops the
 * connection, so its callback (and every other pending one) gets NULL. Failures count in
 * metrics->redis_errors (metrics must outlive the connection). */
int api_redis_new(uv_loop_t *loop, const char *url, long timeout_ms, api_metrics_t *metrics,
                  api_redis_t **out);
int api_redis_command(api_redis_t *redis, api_redis_cb cb, void *data, int argc, const char **argv,
                      const size_t *argvlen);
int api_redis_is_connected(const api_redis_t *redis);
/* Commands sent whose callback has not run yet (shutdown waits for 0). */
size_t api_redis_pending(const api_redis_t *redis);
/* Disconnects (pending callbacks get NULL) and stops reconnecting; the handle is freed once every
 * uv handle has closed. */
void api_redis_free(api_redis_t *redis);

#endif
