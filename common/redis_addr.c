/* The remembered address of the Redis host name; see common/redis_addr.h. */
#include "common/redis_addr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
    char host[256]; /* empty: nothing remembered */
    int port;
    char ip[CM_REDIS_ADDR_SIZE];
    uint64_t looked_up_ms;
} entry;

uint64_t cm_redis_addr_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int is_entry(const char *host, int port)
{
    return entry.host[0] != '\0' && entry.port == port && strcmp(entry.host, host) == 0;
}

int cm_redis_addr_lookup(const char *host, int port, uint64_t now_ms, char *ip)
{
    int found = 0;
    pthread_mutex_lock(&lock);
    if (is_entry(host, port) && now_ms - entry.looked_up_ms < CM_REDIS_ADDR_TTL_MS) {
        memcpy(ip, entry.ip, sizeof(entry.ip));
        found = 1;
    }
    pthread_mutex_unlock(&lock);
    return found;
}

void cm_redis_addr_remember(const char *host, int port, int fd, uint64_t now_ms)
{
    struct sockaddr_storage peer;
    socklen_t len = sizeof(peer);
    char ip[CM_REDIS_ADDR_SIZE];
    const void *addr;
    if (strlen(host) >= sizeof(entry.host) || getpeername(fd, (struct sockaddr *)&peer, &len) != 0)
        return;
    if (peer.ss_family == AF_INET)
        addr = &((const struct sockaddr_in *)&peer)->sin_addr;
    else if (peer.ss_family == AF_INET6)
        addr = &((const struct sockaddr_in6 *)&peer)->sin6_addr;
    else
        return;
    if (inet_ntop(peer.ss_family, addr, ip, sizeof(ip)) == NULL)
        return;
    pthread_mutex_lock(&lock);
    strcpy(entry.host, host);
    entry.port = port;
    memcpy(entry.ip, ip, sizeof(ip));
    entry.looked_up_ms = now_ms;
    pthread_mutex_unlock(&lock);
}

void cm_redis_addr_forget(const char *host, int port)
{
    pthread_mutex_lock(&lock);
    if (is_entry(host, port))
        entry.host[0] = '\0';
    pthread_mutex_unlock(&lock);
}
