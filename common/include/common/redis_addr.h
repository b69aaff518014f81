/*
 * The address REDIS_URL's host name resolved to, remembered by a process for every thread.
 *
 * Why: hiredis resolves the name again for every new connection (getaddrinfo, blocking), and the
 * resolver waits 5 s for each DNS packet that is lost. The signer makes one connection per worker
 * thread, on the request path, so one lost packet held a bundle request for 10 s (seen with podman's
 * DNS while containers joined the network; Kubernetes knows it as the conntrack race of parallel
 * A/AAAA queries). A connection now uses the numeric address of the last working connection, if it
 * was looked up less than CM_REDIS_ADDR_TTL_MS ago; a connect to it that fails forgets it, so a Redis
 * that moved is looked up by name again at once, and one that kept its old address reachable (a
 * managed Redis's failover) is followed within the TTL.
 *
 * One entry (a process has one REDIS_URL); thread-safe. Times are CLOCK_MONOTONIC milliseconds
 * (cm_redis_addr_now_ms), passed in so that the expiry can be tested.
 */
#ifndef COMMON_REDIS_ADDR_H
#define COMMON_REDIS_ADDR_H

#include <stddef.h>
#include <stdint.h>

#define CM_REDIS_ADDR_TTL_MS 30000
#define CM_REDIS_ADDR_SIZE   46 /* INET6_ADDRSTRLEN */
/* A connect to the remembered address not done within this (or the caller's own timeout, if shorter)
 * gives up on it: a Redis container recreated with a new address leaves the old one unanswered, and
 * the name is then looked up at once rather than after the caller's whole connect timeout. */
#define CM_REDIS_ADDR_CONNECT_MS 1000

/* How long a connect to the remembered address may take for a caller whose timeout is timeout_ms. */
static inline long cm_redis_addr_connect_ms(long timeout_ms)
{
    return timeout_ms < CM_REDIS_ADDR_CONNECT_MS ? timeout_ms : CM_REDIS_ADDR_CONNECT_MS;
}

uint64_t cm_redis_addr_now_ms(void);

/* Copies the remembered numeric address of host:port into ip (CM_REDIS_ADDR_SIZE bytes) and returns
 * 1 when there is one younger than CM_REDIS_ADDR_TTL_MS at now_ms; else returns 0. */
int cm_redis_addr_lookup(const char *host, int port, uint64_t now_ms, char *ip);

/* Remembers the peer address of fd, a socket connected to host:port after a lookup by name, as of
 * now_ms. Does nothing when fd is not an IPv4 or IPv6 socket, or host is too long. */
void cm_redis_addr_remember(const char *host, int port, int fd, uint64_t now_ms);

/* Forgets what host:port resolved to (a connect to it failed). */
void cm_redis_addr_forget(const char *host, int port);

#endif
