/* Confirmed defects from the review of the connection-model change
 * (tests/core/core_regress.c runs each with and without the library). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>
#include <time.h>
/* connected TCP loopback pair: *cli (outbound), *srv (inbound) */
static inline void tcp_pair(int *cli, int *srv)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    if (bind(l, (void *)&a, sizeof a) || listen(l, 4) || getsockname(l, (void *)&a, &len)) { perror("setup"); exit(2); }
    *cli = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(*cli, (void *)&a, sizeof a)) { perror("connect"); exit(2); }
    *srv = accept(l, NULL, NULL);
    close(l);
}
/* the same with small buffers (client SO_SNDBUF, server SO_RCVBUF set
 * before the connection, so the kernel fills up after a few KiB) */
static inline void tcp_pair_small(int *cli, int *srv, int size)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    setsockopt(l, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
    if (bind(l, (void *)&a, sizeof a) || listen(l, 4) || getsockname(l, (void *)&a, &len)) { perror("setup"); exit(2); }
    *cli = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(*cli, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
    if (connect(*cli, (void *)&a, sizeof a)) { perror("connect"); exit(2); }
    *srv = accept(l, NULL, NULL);
    close(l);
}
/* the peer end s in a child that starts reading only after `secs` and
 * drains it; the parent keeps c (and must close s) */
static inline pid_t slow_reader(int c, int s, unsigned secs)
{
    pid_t p = fork();
    if (p == 0) {
        close(c);
        sleep(secs);
        char b[65536];
        while (read(s, b, sizeof b) > 0)
            ;
        _exit(0);
    }
    return p;
}
/* writes 100-byte pieces until the kernel refuses one; prints its errno */
static inline void write_until_refused(int c)
{
    char buf[100];
    memset(buf, 'x', sizeof buf);
    while (write(c, buf, sizeof buf) > 0)
        ;
    printf("acknowledged some bytes, then %s\n", strerror(errno));
    fflush(stdout);
}
static inline double now_s(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
