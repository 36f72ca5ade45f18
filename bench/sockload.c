/*
 * sockload: a closed-loop socketmap (netstring) load generator.
 *
 * Opens C TCP connections to HOST:PORT, then on every connection: send one
 * request "<map> <key>" as a netstring, wait for the complete netstring reply,
 * record the latency, send the next request.  One thread, epoll, non-blocking
 * sockets, TCP_NODELAY.  Keys are taken round-robin from KEYFILE (one per line)
 * through one shared counter, so with -n equal to the number of keys every key
 * is asked exactly once.
 *
 * Bounded by count and time: no request is sent after -n requests or after -d
 * seconds; the run ends when every sent request is answered or at the deadline
 * (-d plus -g grace seconds), or when nothing is answered for -t seconds.
 *
 * Output: one JSON object on stdout; the latency of every completed request as
 * native uint64 nanoseconds to -o FILE.
 *
 *   sockload -h 127.0.0.1 -p 8461 -c 50 -d 5 -n 10000000 -k keys.txt -o lat.bin
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RBUF 8192
#define MAX_CONNS 4096

struct conn {
    int fd;
    int busy;           /* a request is outstanding */
    uint64_t sent_at;   /* ns */
    size_t rlen;
    char rbuf[RBUF];
};

struct counts {
    uint64_t ok, notfound, temp, perm, other;
};

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
           ru.ru_stime.tv_usec / 1e6;
}

static void die(const char *what) {
    fprintf(stderr, "sockload: %s: %s\n", what, strerror(errno));
    exit(2);
}

static void usage(void) {
    fprintf(stderr,
            "usage: sockload -h HOST -p PORT -c CONNS -d SECONDS -n MAX_REQUESTS -k KEYFILE\n"
            "                -o LATFILE [-m MAP] [-t IO_TIMEOUT] [-g GRACE]\n");
    exit(2);
}

/* Pre-framed requests, one per key. */
static char **requests;
static size_t *request_lens;
static size_t nkeys;

static void load_keys(const char *path, const char *map) {
    FILE *f = fopen(path, "r");
    if (!f) die(path);
    size_t cap = 1024;
    requests = malloc(cap * sizeof *requests);
    request_lens = malloc(cap * sizeof *request_lens);
    char line[1200];
    while (fgets(line, sizeof line, f)) {
        size_t len = strcspn(line, "\r\n");
        line[len] = 0;
        if (len == 0) continue;
        if (nkeys == cap) {
            cap *= 2;
            requests = realloc(requests, cap * sizeof *requests);
            request_lens = realloc(request_lens, cap * sizeof *request_lens);
        }
        size_t payload = strlen(map) + 1 + len;
        char *req = malloc(payload + 16);
        int n = snprintf(req, payload + 16, "%zu:%s %s,", payload, map, line);
        requests[nkeys] = req;
        request_lens[nkeys] = (size_t)n;
        nkeys++;
    }
    fclose(f);
    if (nkeys == 0) {
        fprintf(stderr, "sockload: no keys in %s\n", path);
        exit(2);
    }
}

static int connect_one(const char *host, int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) die("socket");
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "sockload: bad IPv4 address %s\n", host);
        exit(2);
    }
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* Parse one complete netstring at the start of buf: returns total frame length,
 * 0 if incomplete, -1 if malformed.  Sets *payload / *plen. */
static long parse_netstring(const char *buf, size_t len, const char **payload, size_t *plen) {
    size_t i = 0, n = 0;
    while (i < len && buf[i] >= '0' && buf[i] <= '9') {
        n = n * 10 + (size_t)(buf[i] - '0');
        if (++i > 9) return -1;
    }
    if (i == len) return 0;
    if (i == 0 || buf[i] != ':') return -1;
    size_t end = i + 1 + n;
    if (end >= len) return end + 1 > RBUF ? -1 : 0;
    if (buf[end] != ',') return -1;
    *payload = buf + i + 1;
    *plen = n;
    return (long)(end + 1);
}

static void classify(struct counts *c, const char *p, size_t n) {
    if (n >= 3 && memcmp(p, "OK ", 3) == 0) c->ok++;
    else if (n >= 8 && memcmp(p, "NOTFOUND", 8) == 0) c->notfound++;
    else if (n >= 4 && memcmp(p, "TEMP", 4) == 0) c->temp++;
    else if (n >= 4 && memcmp(p, "PERM", 4) == 0) c->perm++;
    else c->other++;
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1", *keyfile = NULL, *latfile = NULL, *map = "postfix";
    int port = 0, nconns = 1, opt;
    double duration = 1.0, io_timeout = 10.0, grace = 10.0;
    uint64_t max_requests = 1000000;
    while ((opt = getopt(argc, argv, "h:p:c:d:n:k:o:m:t:g:")) != -1) {
        switch (opt) {
        case 'h': host = optarg; break;
        case 'p': port = atoi(optarg); break;
        case 'c': nconns = atoi(optarg); break;
        case 'd': duration = atof(optarg); break;
        case 'n': max_requests = strtoull(optarg, NULL, 10); break;
        case 'k': keyfile = optarg; break;
        case 'o': latfile = optarg; break;
        case 'm': map = optarg; break;
        case 't': io_timeout = atof(optarg); break;
        case 'g': grace = atof(optarg); break;
        default: usage();
        }
    }
    if (!keyfile || !latfile || port <= 0 || nconns < 1 || nconns > MAX_CONNS || duration <= 0 ||
        max_requests == 0)
        usage();
    load_keys(keyfile, map);

    uint64_t *lat = malloc(max_requests * sizeof *lat);
    if (!lat) die("malloc latencies");
    struct conn *conns = calloc((size_t)nconns, sizeof *conns);
    int ep = epoll_create1(0);
    if (ep < 0) die("epoll_create1");
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = connect_one(host, port);
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, conns[i].fd, &ev) < 0) die("epoll_ctl");
    }

    struct counts counts = {0};
    uint64_t issued = 0, completed = 0, next_key = 0, errors = 0;
    int aborted = 0;
    const char *abort_reason = "";
    double cpu0 = cpu_seconds();
    uint64_t t0 = now_ns();
    uint64_t stop_issuing = t0 + (uint64_t)(duration * 1e9);
    uint64_t hard_end = stop_issuing + (uint64_t)(grace * 1e9);
    uint64_t last_progress = t0;

    /* First request on every connection, back to back. */
    for (int i = 0; i < nconns && issued < max_requests; i++) {
        size_t k = next_key++ % nkeys;
        conns[i].sent_at = now_ns();
        ssize_t w = write(conns[i].fd, requests[k], request_lens[k]);
        if (w != (ssize_t)request_lens[k]) die("write");
        conns[i].busy = 1;
        issued++;
    }

    struct epoll_event events[256];
    while (completed < issued) {
        uint64_t now = now_ns();
        if (now >= hard_end) {
            aborted = 1;
            abort_reason = "deadline with requests outstanding";
            break;
        }
        if ((double)(now - last_progress) / 1e9 > io_timeout) {
            aborted = 1;
            abort_reason = "no reply within io timeout";
            break;
        }
        int n = epoll_wait(ep, events, 256, 100);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int e = 0; e < n; e++) {
            struct conn *c = &conns[events[e].data.u32];
            ssize_t r = read(c->fd, c->rbuf + c->rlen, RBUF - c->rlen);
            if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (r <= 0) {
                /* server closed or failed: that request is lost */
                errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                close(c->fd);
                c->fd = -1;
                if (c->busy) {
                    c->busy = 0;
                    issued--; /* never completes; keep the loop condition honest */
                }
                continue;
            }
            c->rlen += (size_t)r;
            const char *payload;
            size_t plen;
            long frame = parse_netstring(c->rbuf, c->rlen, &payload, &plen);
            if (frame < 0) {
                fprintf(stderr, "sockload: malformed reply\n");
                exit(3);
            }
            if (frame == 0) continue;
            uint64_t done = now_ns();
            classify(&counts, payload, plen);
            if (completed < max_requests) lat[completed] = done - c->sent_at;
            completed++;
            last_progress = done;
            memmove(c->rbuf, c->rbuf + frame, c->rlen - (size_t)frame);
            c->rlen -= (size_t)frame;
            c->busy = 0;
            if (issued < max_requests && done < stop_issuing) {
                size_t k = next_key++ % nkeys;
                c->sent_at = now_ns();
                ssize_t w = write(c->fd, requests[k], request_lens[k]);
                if (w != (ssize_t)request_lens[k]) die("write");
                c->busy = 1;
                issued++;
            }
        }
    }
    uint64_t t1 = now_ns();
    double cpu = cpu_seconds() - cpu0;

    FILE *out = fopen(latfile, "wb");
    if (!out) die(latfile);
    if (fwrite(lat, sizeof *lat, completed, out) != completed) die("fwrite");
    fclose(out);
    printf("{\"completed\": %llu, \"issued\": %llu, \"errors\": %llu, \"elapsed\": %.6f, "
           "\"cpu_seconds\": %.6f, \"ok\": %llu, \"notfound\": %llu, \"temp\": %llu, "
           "\"perm\": %llu, \"other\": %llu, \"aborted\": %s, \"abort_reason\": \"%s\"}\n",
           (unsigned long long)completed, (unsigned long long)issued,
           (unsigned long long)errors, (double)(t1 - t0) / 1e9, cpu,
           (unsigned long long)counts.ok, (unsigned long long)counts.notfound,
           (unsigned long long)counts.temp, (unsigned long long)counts.perm,
           (unsigned long long)counts.other, aborted ? "true" : "false", abort_reason);
    for (int i = 0; i < nconns; i++)
        if (conns[i].fd >= 0) close(conns[i].fd);
    return aborted ? 1 : 0;
}
