/* For the unit tests of the HTTP servers: a blocking TCP connection to 127.0.0.1. Usable from any
 * thread (it asserts nothing). */
#ifndef TESTS_UNIT_LOOPBACK_CLIENT_H
#define TESTS_UNIT_LOOPBACK_CLIENT_H

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* A socket connected to 127.0.0.1:port whose reads time out after 5 s (a hung server fails the test
 * instead of hanging it), or -errno (-ECONNREFUSED once nothing listens there). */
static inline int loopback_connect(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -errno;
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    struct sockaddr_in sin;
    memset(&sin, 0, sizeof(sin));
    sin.sin_family = AF_INET;
    sin.sin_port = htons((uint16_t)port);
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sin, sizeof(sin)) != 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    return fd;
}

#endif
