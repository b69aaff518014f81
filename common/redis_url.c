/* REDIS_URL parsing with libcurl's URL API and a blocking connect; see common/redis_url.h. */
#include "common/redis_url.h"
#include "common/redis_addr.h"

#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int copy_part(CURLU *u, CURLUPart part, char *dst, size_t size)
{
    char *v = NULL;
    dst[0] = '\0';
    if (curl_url_get(u, part, &v, CURLU_URLDECODE) != CURLUE_OK)
        return 0;
    size_t n = strlen(v);
    int ok = n < size;
    if (ok)
        memcpy(dst, v, n + 1);
    curl_free(v);
    return ok ? 0 : -1;
}

int cm_redis_url_parse(const char *url, cm_redis_url_t *out, char *err, size_t err_size)
{
    int rc = -1;
    char *scheme = NULL, *port = NULL, *path = NULL;
    cm_redis_url_t r;
    memset(&r, 0, sizeof(r));
    CURLU *u = curl_url();
    if (u == NULL)
        abort();
    if (curl_url_set(u, CURLUPART_URL, url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK) {
        snprintf(err, err_size, "REDIS_URL is not a URL (expected redis://host:port/db)");
        goto out;
    }
    if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK || strcmp(scheme, "redis") != 0) {
        snprintf(err, err_size, "REDIS_URL must use the redis:// scheme (TLS is not supported)");
        goto out;
    }
    if (copy_part(u, CURLUPART_HOST, r.host, sizeof(r.host)) != 0 || r.host[0] == '\0' ||
        copy_part(u, CURLUPART_USER, r.user, sizeof(r.user)) != 0 ||
        copy_part(u, CURLUPART_PASSWORD, r.password, sizeof(r.password)) != 0) {
        snprintf(err, err_size, "REDIS_URL has no host, or a part that is too long");
        goto out;
    }
    /* curl keeps IPv6 brackets in the host; hiredis wants the bare address. */
    size_t hl = strlen(r.host);
    if (hl > 2 && r.host[0] == '[' && r.host[hl - 1] == ']') {
        memmove(r.host, r.host + 1, hl - 2);
        r.host[hl - 2] = '\0';
    }
    r.port = 6379;
    if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK)
        r.port = atoi(port);
    if (curl_url_get(u, CURLUPART_PATH, &path, 0) == CURLUE_OK && strcmp(path, "/") != 0) {
        char *end;
        long db = strtol(path + 1, &end, 10);
        if (*end != '\0' || db < 0 || db > 15) {
            snprintf(err, err_size, "REDIS_URL: the path must be a database number 0-15");
            goto out;
        }
        r.db = (int)db;
    }
    *out = r;
    rc = 0;
out:
    curl_free(scheme);
    curl_free(port);
    curl_free(path);
    curl_url_cleanup(u);
    return rc;
}

int cm_redis_connect_sync(const cm_redis_url_t *url, int timeout_ms, struct redisContext **out, char *err,
                          size_t err_size)
{
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisReply *reply = NULL;
    char ip[CM_REDIS_ADDR_SIZE];
    redisContext *c = NULL;
    if (cm_redis_addr_lookup(url->host, url->port, cm_redis_addr_now_ms(), ip)) {
        long short_ms = cm_redis_addr_connect_ms(timeout_ms);
        struct timeval short_tv = {short_ms / 1000, (short_ms % 1000) * 1000};
        c = redisConnectWithTimeout(ip, url->port, short_tv);
        if (c == NULL)
            abort();
        if (c->err) { /* moved, or down: look the name up again */
            cm_redis_addr_forget(url->host, url->port);
            redisFree(c);
            c = NULL;
        }
    }
    if (c == NULL) {
        c = redisConnectWithTimeout(url->host, url->port, tv);
        if (c == NULL)
            abort();
        if (c->err) {
            snprintf(err, err_size, "connect to redis %s:%d: %s", url->host, url->port, c->errstr);
            goto fail;
        }
        cm_redis_addr_remember(url->host, url->port, c->fd, cm_redis_addr_now_ms());
    }
    redisSetTimeout(c, tv);
    if (url->password[0] != '\0') {
        if (url->user[0] != '\0')
            reply = redisCommand(c, "AUTH %s %s", url->user, url->password);
        else
            reply = redisCommand(c, "AUTH %s", url->password);
        if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
            snprintf(err, err_size, "redis AUTH failed: %s", reply ? reply->str : c->errstr);
            goto fail;
        }
        freeReplyObject(reply);
        reply = NULL;
    }
    if (url->db != 0) {
        reply = redisCommand(c, "SELECT %d", url->db);
        if (reply == NULL || reply->type == REDIS_REPLY_ERROR) {
            snprintf(err, err_size, "redis SELECT %d failed: %s", url->db, reply ? reply->str : c->errstr);
            goto fail;
        }
        freeReplyObject(reply);
    }
    *out = c;
    return 0;
fail:
    if (reply != NULL)
        freeReplyObject(reply);
    redisFree(c);
    return -1;
}
