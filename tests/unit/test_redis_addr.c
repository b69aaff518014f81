/* The remembered Redis address (common/redis_addr.h) and cm_redis_connect_sync's use of it, over real
 * loopback sockets: a listener stands in for Redis (no password and database 0 send no command). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/redis_addr.h"
#include "common/redis_url.h"

/* A listening socket on ip:port (port 0: any) with that accept backlog; *port_out gets its port. */
static int listen_with_backlog(const char *ip, int port, int backlog, int *port_out)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int one = 1, fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    assert_int_equal(inet_pton(AF_INET, ip, &a.sin_addr), 1);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fd, backlog), 0);
    socklen_t len = sizeof(a);
    getsockname(fd, (struct sockaddr *)&a, &len);
    *port_out = ntohs(a.sin_port);
    return fd;
}

static int listen_on(const char *ip, int port, int *port_out)
{
    return listen_with_backlog(ip, port, 8, port_out);
}

static int connect_to(const char *ip, int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(inet_pton(AF_INET, ip, &a.sin_addr), 1);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static void remembers_until_the_ttl(void **state)
{
    (void)state;
    int port, ls = listen_on("127.0.0.1", 0, &port);
    int fd = connect_to("127.0.0.1", port);
    char ip[CM_REDIS_ADDR_SIZE];

    assert_int_equal(cm_redis_addr_lookup("redis.example", port, 1000, ip), 0);
    cm_redis_addr_remember("redis.example", port, fd, 1000);
    assert_int_equal(cm_redis_addr_lookup("redis.example", port, 1000 + CM_REDIS_ADDR_TTL_MS - 1, ip), 1);
    assert_string_equal(ip, "127.0.0.1");
    assert_int_equal(cm_redis_addr_lookup("redis.example", port, 1000 + CM_REDIS_ADDR_TTL_MS, ip), 0);
    assert_int_equal(cm_redis_addr_lookup("other.example", port, 1000, ip), 0);
    assert_int_equal(cm_redis_addr_lookup("redis.example", port + 1, 1000, ip), 0);

    cm_redis_addr_forget("other.example", port); /* not the entry: kept */
    assert_int_equal(cm_redis_addr_lookup("redis.example", port, 1000, ip), 1);
    cm_redis_addr_forget("redis.example", port);
    assert_int_equal(cm_redis_addr_lookup("redis.example", port, 1000, ip), 0);
    close(fd);
    close(ls);
}

static void ignores_what_has_no_ip_address(void **state)
{
    (void)state;
    int sv[2];
    char ip[CM_REDIS_ADDR_SIZE];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    cm_redis_addr_remember("redis.example", 6379, sv[0], 1000);
    assert_int_equal(cm_redis_addr_lookup("redis.example", 6379, 1000, ip), 0);
    cm_redis_addr_remember("redis.example", 6379, -1, 1000); /* not a socket */
    assert_int_equal(cm_redis_addr_lookup("redis.example", 6379, 1000, ip), 0);
    close(sv[0]);
    close(sv[1]);
}

static cm_redis_url_t url_of(const char *host, int port)
{
    cm_redis_url_t u;
    memset(&u, 0, sizeof(u));
    snprintf(u.host, sizeof(u.host), "%s", host);
    u.port = port;
    return u;
}

/* A name that cannot resolve (.invalid, RFC 2606) connects while its remembered address is fresh:
 * no DNS lookup was made. */
static void connects_without_a_lookup(void **state)
{
    (void)state;
    int port, ls = listen_on("127.0.0.1", 0, &port);
    int fd = connect_to("127.0.0.1", port);
    cm_redis_addr_remember("redis.invalid", port, fd, cm_redis_addr_now_ms());
    close(fd);

    cm_redis_url_t url = url_of("redis.invalid", port);
    struct redisContext *c = NULL;
    char err[256] = "";
    assert_int_equal(cm_redis_connect_sync(&url, 2000, &c, err, sizeof(err)), 0);
    redisFree(c);

    /* once forgotten, the name is looked up, and fails with a reason naming it */
    cm_redis_addr_forget("redis.invalid", port);
    assert_int_equal(cm_redis_connect_sync(&url, 2000, &c, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "redis.invalid"));
    close(ls);
}

/* Redis moved: the remembered 127.0.0.2 refuses, so the name (localhost) is looked up again, the
 * connect succeeds at 127.0.0.1, and that is what is remembered now. */
static void looks_the_name_up_again_when_the_address_fails(void **state)
{
    (void)state;
    int port, old_ls = listen_on("127.0.0.2", 0, &port);
    int fd = connect_to("127.0.0.2", port);
    cm_redis_addr_remember("localhost", port, fd, cm_redis_addr_now_ms());
    close(fd);
    close(old_ls);
    int new_port, ls = listen_on("127.0.0.1", port, &new_port);
    assert_int_equal(new_port, port);

    cm_redis_url_t url = url_of("localhost", port);
    struct redisContext *c = NULL;
    char err[256] = "", ip[CM_REDIS_ADDR_SIZE];
    assert_int_equal(cm_redis_connect_sync(&url, 2000, &c, err, sizeof(err)), 0);
    redisFree(c);
    assert_int_equal(cm_redis_addr_lookup("localhost", port, cm_redis_addr_now_ms(), ip), 1);
    assert_string_equal(ip, "127.0.0.1");
    close(ls);
}

/* Redis recreated elsewhere, its old address silent (here: a listener whose only backlog slot is
 * taken, so the kernel drops further SYNs): the connect to the remembered address gives up after
 * CM_REDIS_ADDR_CONNECT_MS, not after the caller's whole timeout, and the name is looked up. */
static void gives_up_on_a_silent_remembered_address_early(void **state)
{
    (void)state;
    int port, silent_ls = listen_with_backlog("127.0.0.2", 0, 0, &port);
    int filler = connect_to("127.0.0.2", port);
    cm_redis_addr_remember("localhost", port, filler, cm_redis_addr_now_ms());
    int new_port, ls = listen_on("127.0.0.1", port, &new_port);
    assert_int_equal(new_port, port);

    cm_redis_url_t url = url_of("localhost", port);
    struct redisContext *c = NULL;
    char err[256] = "", ip[CM_REDIS_ADDR_SIZE];
    uint64_t started = cm_redis_addr_now_ms();
    assert_int_equal(cm_redis_connect_sync(&url, 5000, &c, err, sizeof(err)), 0);
    uint64_t took = cm_redis_addr_now_ms() - started;
    redisFree(c);
    assert_true(took >= CM_REDIS_ADDR_CONNECT_MS - 50);
    assert_true(took < 4000); /* the caller's 5 s would have been spent on the silent address */
    assert_int_equal(cm_redis_addr_lookup("localhost", port, cm_redis_addr_now_ms(), ip), 1);
    assert_string_equal(ip, "127.0.0.1");
    close(ls);
    close(filler);
    close(silent_ls);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(remembers_until_the_ttl),
        cmocka_unit_test(ignores_what_has_no_ip_address),
        cmocka_unit_test(connects_without_a_lookup),
        cmocka_unit_test(looks_the_name_up_again_when_the_address_fails),
        cmocka_unit_test(gives_up_on_a_silent_remembered_address_early),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
