/*
 * Attaches a hiredis async context to a libuv loop.
 *
 * Written here instead of using hiredis 0.14's adapters/libuv.h, which drops poll errors
 * (uv_poll reports a refused connect or a reset as status < 0 and the adapter returns early), so a
 * failed reconnect or a dead server is never noticed and commands wait forever. This one hands every
 * poll event, errors included, to hiredis, which then reads the error and disconnects.
 */
#ifndef API_REDIS_UV_H
#define API_REDIS_UV_H

#include <uv.h>

struct redisAsyncContext;

/* Returns 0, or -1 when the context is already attached or uv_poll_init fails. */
int api_redis_uv_attach(struct redisAsyncContext *ac, uv_loop_t *loop);

#endif
