/* hiredis async <-> libuv glue; see redis_uv.h for why it is not hiredis's own adapter. */
#include "redis_uv.h"

#include <hiredis/async.h>
#include <stdlib.h>

struct redis_uv {
    uv_poll_t poll;
    redisAsyncContext *ac; /* NULL once hiredis has cleaned up */
    int events;
};

static void on_poll(uv_poll_t *handle, int status, int events)
{
    struct redis_uv *p = handle->data;
    /* On an error, let hiredis try the operations it waits for: the read or write fails and hiredis
     * reports the error and disconnects (calling the callbacks of pending commands with NULL). */
    int ev = status < 0 ? p->events : events;
    if (p->ac != NULL && (ev & UV_READABLE))
        redisAsyncHandleRead(p->ac);
    if (p->ac != NULL && (ev & UV_WRITABLE))
        redisAsyncHandleWrite(p->ac);
}

static void update(struct redis_uv *p, int add, int remove)
{
    p->events = (p->events | add) & ~remove;
    if (p->events)
        uv_poll_start(&p->poll, p->events, on_poll);
    else
        uv_poll_stop(&p->poll);
}

static void add_read(void *data)
{
    update(data, UV_READABLE, 0);
}

static void del_read(void *data)
{
    update(data, 0, UV_READABLE);
}

static void add_write(void *data)
{
    update(data, UV_WRITABLE, 0);
}

static void del_write(void *data)
{
    update(data, 0, UV_WRITABLE);
}

static void on_closed(uv_handle_t *handle)
{
    free(handle->data);
}

static void cleanup(void *data)
{
    struct redis_uv *p = data;
    p->ac = NULL;
    uv_close((uv_handle_t *)&p->poll, on_closed);
}

int api_redis_uv_attach(redisAsyncContext *ac, uv_loop_t *loop)
{
    if (ac->ev.data != NULL)
        return -1;
    struct redis_uv *p = calloc(1, sizeof(*p));
    if (p == NULL)
        abort();
    if (uv_poll_init_socket(loop, &p->poll, ac->c.fd) != 0) {
        free(p);
        return -1;
    }
    p->poll.data = p;
    p->ac = ac;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    ac->ev.data = p;
    return 0;
}
