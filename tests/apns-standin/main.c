/*
 * apns-standin: a local stand-in for Apple's APNs HTTP/2 provider API, for integration tests
 * and the local development stack. It checks what it receives as strictly as APNs does and
 * records every request.
 *
 * Usage:
 *   apns-standin --listen HOST:PORT --cert server.pem --key server-key.pem --client-ca chain.pem
 *                --record requests.jsonl [--rule TOKEN=STATUS:REASON[*N] ...] [--max-streams N]
 *                [--goaway-after N] [--drop-after N] [--delay-ms N] [--batch-us N]
 *                [--stats-file F] [--log-requests] [--port-file F]
 *
 *   --listen HOST:PORT   address to listen on; PORT 0 picks a free port ([::1]:0 for IPv6)
 *   --cert, --key        the server's TLS certificate (chain) and key, PEM
 *   --client-ca FILE     PEM certificates a client certificate must chain to (required)
 *   --record FILE        every request is appended there as one JSON line (within 5 ms when
 *                        idle, 50 ms when busy)
 *   --rule T=S:R[*N]     answer status S with reason R for device token T (after validation),
 *                        the next N times only with *N; repeatable, e.g. --rule abcd=410:Unregistered
 *   --max-streams N      SETTINGS_MAX_CONCURRENT_STREAMS (default 500, as APNs)
 *   --goaway-after N     per connection: GOAWAY(NO_ERROR) once N requests were received
 *   --drop-after N       per connection: close abruptly once N requests were received
 *   --delay-ms N         answer every request N ms after it was received
 *   --batch-us N         read a multiplexing client at most every N µs (default 1000; 0: at once)
 *   --stats-file F       counters as JSON, rewritten every second and at exit
 *   --log-requests       one event=request log line per answer
 *   --port-file F        once listening, write the bound port to F (tmp file + rename)
 *
 * SIGTERM or SIGINT: GOAWAY to every client, free everything, exit 0. Exit 2 on bad arguments,
 * 1 when setup fails. See README.md for the exact semantics, the checks, their order and the
 * record format.
 *
 * Design: one thread, one ppoll() loop over the listening socket, a signalfd and every
 * connection (conn.c). Nothing blocks; a handshake must finish within 10 s; delayed answers,
 * --batch-us holds and the record/stats flushes are deadlines of the same loop, kept in µs
 * (ppoll). The record buffer is written when ppoll() finds nothing to do, but not more often
 * than every STANDIN_RECORD_IDLE_MS (a write per wakeup cost as much as the requests), and at
 * least every STANDIN_RECORD_FLUSH_MS while busy.
 */
#define _GNU_SOURCE /* accept4, ppoll */
#include "standin.h"
#include "common/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 1000

struct options {
    const char *listen;
    const char *cert;
    const char *key;
    const char *client_ca;
    const char *record;
    const char *port_file;
    const char *stats_file;
    long max_streams;
    long goaway_after;
    long drop_after;
    long delay_ms;
    long batch_us;
    int log_requests;
    standin_rules_t rules;
};

static void usage(FILE *f)
{
    fprintf(f, "usage: apns-standin --listen HOST:PORT --cert server.pem --key server-key.pem\n"
               "                    --client-ca chain.pem --record requests.jsonl\n"
               "                    [--rule TOKEN=STATUS:REASON[*N] ...] [--max-streams N]\n"
               "                    [--goaway-after N] [--drop-after N] [--delay-ms N]\n"
               "                    [--batch-us N] [--stats-file F] [--log-requests] [--port-file F]\n");
}

/* Parses a decimal flag value in [min, max] into *out; reports and returns -1 otherwise. */
static int parse_long(const char *flag, const char *arg, long min, long max, long *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(arg, &end, 10);
    if (errno != 0 || end == arg || *end != '\0' || v < min || v > max) {
        fprintf(stderr, "apns-standin: %s %s: expected %ld..%ld\n", flag, arg, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

/* Parses argv into *o, reporting every bad argument. Returns 0, 1 for --help, or -1. */
static int parse_args(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, 'l'},
        {"cert", required_argument, NULL, 'c'},
        {"key", required_argument, NULL, 'k'},
        {"client-ca", required_argument, NULL, 'a'},
        {"record", required_argument, NULL, 'r'},
        {"rule", required_argument, NULL, 'R'},
        {"max-streams", required_argument, NULL, 'm'},
        {"port-file", required_argument, NULL, 'p'},
        {"goaway-after", required_argument, NULL, 'g'},
        {"drop-after", required_argument, NULL, 'd'},
        {"delay-ms", required_argument, NULL, 'D'},
        {"batch-us", required_argument, NULL, 'b'},
        {"stats-file", required_argument, NULL, 's'},
        {"log-requests", no_argument, NULL, 'L'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int bad = 0, opt;
    o->max_streams = 500;
    o->batch_us = 1000;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        const char *err = NULL;
        switch (opt) {
        case 'l':
            o->listen = optarg;
            break;
        case 'c':
            o->cert = optarg;
            break;
        case 'k':
            o->key = optarg;
            break;
        case 'a':
            o->client_ca = optarg;
            break;
        case 'r':
            o->record = optarg;
            break;
        case 'p':
            o->port_file = optarg;
            break;
        case 'R':
            if (standin_rules_add(&o->rules, optarg, &err) != 0) {
                fprintf(stderr, "apns-standin: --rule %s: %s\n", optarg, err);
                bad = 1;
            }
            break;
        case 'm':
            bad |= parse_long("--max-streams", optarg, 1, 1000000, &o->max_streams) != 0;
            break;
        case 'g':
            bad |= parse_long("--goaway-after", optarg, 1, STANDIN_MAX_COUNT, &o->goaway_after) != 0;
            break;
        case 'd':
            bad |= parse_long("--drop-after", optarg, 1, STANDIN_MAX_COUNT, &o->drop_after) != 0;
            break;
        case 'D':
            bad |= parse_long("--delay-ms", optarg, 0, STANDIN_MAX_DELAY_MS, &o->delay_ms) != 0;
            break;
        case 'b':
            bad |= parse_long("--batch-us", optarg, 0, 100000, &o->batch_us) != 0;
            break;
        case 's':
            o->stats_file = optarg;
            break;
        case 'L':
            o->log_requests = 1;
            break;
        case 'h':
            usage(stdout);
            return 1;
        default:
            bad = 1;
            break;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "apns-standin: unexpected argument %s\n", argv[optind]);
        bad = 1;
    }
    const struct {
        const char *value, *name;
    } required[] = {
        {o->listen, "--listen"},       {o->cert, "--cert"},     {o->key, "--key"},
        {o->client_ca, "--client-ca"}, {o->record, "--record"},
    };
    for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
        if (required[i].value == NULL) {
            fprintf(stderr, "apns-standin: %s is required\n", required[i].name);
            bad = 1;
        }
    }
    if (bad)
        usage(stderr);
    return bad ? -1 : 0;
}

/* Binds and listens on "host:port" or "[v6]:port". Returns the socket and *port, or -1. */
static int listen_on(const char *spec, unsigned *port)
{
    char host[256];
    const char *colon = strrchr(spec, ':');
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    int fd = -1, one = 1;

    if (colon == NULL || colon == spec || (size_t)(colon - spec) >= sizeof(host) || colon[1] == '\0') {
        standin_log(STANDIN_LOG_ERROR, "event=bad_listen listen=\"%s\" err=\"expected HOST:PORT\"", spec);
        goto out;
    }
    size_t hlen = (size_t)(colon - spec);
    memcpy(host, spec, hlen);
    host[hlen] = '\0';
    if (host[0] == '[' && hlen >= 2 && host[hlen - 1] == ']') {
        memmove(host, host + 1, hlen - 2);
        host[hlen - 2] = '\0';
    }
    int gai = getaddrinfo(host, colon + 1, &hints, &res);
    if (gai != 0) {
        standin_log(STANDIN_LOG_ERROR, "event=bad_listen call=getaddrinfo listen=\"%s\" err=\"%s\"", spec,
                    gai_strerror(gai));
        goto out;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 512) != 0) {
        standin_log(STANDIN_LOG_ERROR, "event=listen_failed listen=\"%s\" err=\"%s\"", spec, strerror(errno));
        goto fail;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        standin_log(STANDIN_LOG_ERROR, "event=listen_failed call=getsockname err=\"%s\"", strerror(errno));
        goto fail;
    }
    *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                           : ((struct sockaddr_in *)&ss)->sin_port);
    goto out;
fail:
    if (fd >= 0)
        close(fd);
    fd = -1;
out:
    if (res != NULL)
        freeaddrinfo(res);
    return fd;
}

static int write_port_file(const char *path, unsigned port)
{
    char tmp[4096];
    int rc = -1;
    FILE *f = NULL;
    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof(tmp))
        goto out;
    f = fopen(tmp, "w");
    if (f == NULL || fprintf(f, "%u\n", port) < 0)
        goto out;
    if (fclose(f) != 0) {
        f = NULL;
        goto out;
    }
    f = NULL;
    if (rename(tmp, path) != 0)
        goto out;
    rc = 0;
out:
    if (f != NULL)
        fclose(f);
    if (rc != 0) {
        standin_log(STANDIN_LOG_ERROR, "event=port_file_failed file=\"%s\" err=\"%s\"", path,
                    strerror(errno));
        unlink(tmp);
    }
    return rc;
}

static void peer_name(const struct sockaddr_storage *ss, char *out, size_t size)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        snprintf(out, size, "[%s]:%u", host, (unsigned)ntohs(in6->sin6_port));
        return;
    }
    snprintf(out, size, "%s:%u", host, port);
}

/* Accepts every pending connection. Returns 1 when out of descriptors (pause accepting). */
static int accept_all(int lfd, SSL_CTX *ctx, standin_server_t *server, standin_conn_t **conns,
                      size_t *n_conns, unsigned *next_id)
{
    for (;;) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE) {
                standin_log(STANDIN_LOG_WARN, "event=accept_failed err=\"%s\"", strerror(errno));
                return 1;
            }
            return 0; /* EAGAIN and the rest: wait for the next poll() */
        }
        char peer[64];
        peer_name(&ss, peer, sizeof(peer));
        if (*n_conns >= MAX_CONNS) {
            standin_log(STANDIN_LOG_WARN, "event=conn_refused peer=%s err=\"%d connections open\"", peer,
                        MAX_CONNS);
            close(fd);
            continue;
        }
        conns[(*n_conns)++] = standin_conn_new(ctx, server, fd, (*next_id)++, peer);
    }
}

int main(int argc, char **argv)
{
    cm_log_init("apns-standin", "info");
    int rc = 1;
    struct options o = {0};
    static standin_stats_t stats;
    SSL_CTX *ctx = NULL;
    int lfd = -1, sfd = -1;
    static standin_conn_t *conns[MAX_CONNS];
    static struct pollfd pfds[MAX_CONNS + 2];
    size_t n_conns = 0;
    unsigned port = 0, next_id = 1;
    sigset_t sigs;

    int pr = parse_args(argc, argv, &o);
    if (pr != 0) {
        rc = pr > 0 ? 0 : 2;
        goto out;
    }
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    if (sigprocmask(SIG_BLOCK, &sigs, NULL) != 0 ||
        (sfd = signalfd(-1, &sigs, SFD_NONBLOCK | SFD_CLOEXEC)) < 0) {
        standin_log(STANDIN_LOG_ERROR, "event=setup_failed call=signalfd err=\"%s\"", strerror(errno));
        goto out;
    }
    if (standin_record_open(o.record) != 0) {
        standin_log(STANDIN_LOG_ERROR, "event=setup_failed call=fopen file=\"%s\" err=\"%s\"", o.record,
                    strerror(errno));
        goto out;
    }
    if (standin_tls_ctx_new(o.cert, o.key, o.client_ca, &ctx) != 0)
        goto out;
    if ((lfd = listen_on(o.listen, &port)) < 0)
        goto out;
    if (o.port_file != NULL && write_port_file(o.port_file, port) != 0)
        goto out;
    standin_server_t server = {
        .rules = &o.rules,
        .stats = &stats,
        .max_streams = (uint32_t)o.max_streams,
        .goaway_after = o.goaway_after,
        .drop_after = o.drop_after,
        .delay_ms = o.delay_ms,
        .batch_us = o.batch_us,
        .log_requests = o.log_requests,
    };
    standin_log(
        STANDIN_LOG_INFO,
        "event=listening listen=\"%s\" port=%u max_streams=%ld rules=%zu goaway_after=%ld drop_after=%ld "
        "delay_ms=%ld batch_us=%ld log_requests=%s record=\"%s\" stats_file=\"%s\"",
        o.listen, port, o.max_streams, o.rules.n, o.goaway_after, o.drop_after, o.delay_ms, o.batch_us,
        o.log_requests ? "yes" : "no", o.record, o.stats_file != NULL ? o.stats_file : "-");

    int64_t accept_paused_until = 0, last_flush = 0, next_stats = 0;
    for (;;) {
        int64_t now_us = standin_mono_us(), now = now_us / 1000, wake = now + 1000;
        size_t n = 0;
        if (o.stats_file != NULL && now >= next_stats) {
            standin_stats_write(&stats, o.stats_file);
            next_stats = now + 1000;
        }
        if (o.stats_file != NULL && next_stats < wake)
            wake = next_stats;
        if (standin_record_pending() > 0 && now - last_flush >= STANDIN_RECORD_FLUSH_MS) {
            standin_record_flush();
            last_flush = now;
        }
        if (standin_record_pending() > 0 && last_flush + STANDIN_RECORD_IDLE_MS < wake)
            wake = last_flush + STANDIN_RECORD_IDLE_MS;
        pfds[n++] = (struct pollfd){.fd = sfd, .events = POLLIN};
        pfds[n++] = (struct pollfd){.fd = now >= accept_paused_until ? lfd : -1, .events = POLLIN};
        if (accept_paused_until > now && accept_paused_until < wake)
            wake = accept_paused_until;
        int64_t wake_us = wake * 1000;
        for (size_t i = 0; i < n_conns; i++) {
            pfds[n++] = (struct pollfd){.fd = standin_conn_fd(conns[i]),
                                        .events = standin_conn_events(conns[i], now_us)};
            int64_t d = standin_conn_deadline(conns[i]), hold = standin_conn_hold_until(conns[i]);
            if (d != 0 && d * 1000 < wake_us)
                wake_us = d * 1000;
            if (hold > now_us && hold < wake_us)
                wake_us = hold;
        }
        int64_t wait_us = wake_us > now_us ? wake_us - now_us : 0;
        struct timespec timeout = {.tv_sec = wait_us / 1000000, .tv_nsec = (wait_us % 1000000) * 1000};
        int ready = ppoll(pfds, n, &timeout, NULL);
        /* Nothing to do, and the last flush is STANDIN_RECORD_IDLE_MS old: records go out. */
        if (ready == 0 && standin_record_pending() > 0 &&
            standin_mono_ms() - last_flush >= STANDIN_RECORD_IDLE_MS) {
            standin_record_flush();
            last_flush = standin_mono_ms();
        }
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            standin_log(STANDIN_LOG_ERROR, "event=poll_failed err=\"%s\"", strerror(errno));
            goto out;
        }
        if (pfds[0].revents) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                standin_log(STANDIN_LOG_INFO, "event=shutdown signal=%s connections=%zu",
                            si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT", n_conns);
                rc = 0;
                goto out;
            }
        }
        /* Connections first, in the order polled; the array is compacted as they close. */
        now = standin_mono_ms();
        size_t kept = 0;
        for (size_t i = 0; i < n_conns; i++) {
            standin_conn_t *c = conns[i];
            short rev = pfds[i + 2].revents;
            int64_t d = standin_conn_deadline(c);
            if ((d != 0 && now >= d && standin_conn_timer(c, now) != 0) ||
                (rev != 0 && standin_conn_io(c, rev) != 0)) {
                standin_conn_free(c, NULL);
                continue;
            }
            conns[kept++] = c;
        }
        n_conns = kept;
        if (pfds[1].revents && accept_all(lfd, ctx, &server, conns, &n_conns, &next_id))
            accept_paused_until = standin_mono_ms() + 100;
    }

out:
    for (size_t i = 0; i < n_conns; i++) {
        standin_conn_goaway(conns[i]);
        standin_conn_free(conns[i], "shutdown");
    }
    if (lfd >= 0)
        close(lfd);
    if (sfd >= 0)
        close(sfd);
    SSL_CTX_free(ctx);
    standin_record_close();
    if (o.stats_file != NULL && rc == 0 && standin_stats_write(&stats, o.stats_file) != 0)
        rc = 1;
    standin_rules_dispose(&o.rules);
    return rc;
}
