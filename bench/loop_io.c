/* loop_io MODE N: N iterations of tiny I/O, for measuring what the library
 * adds per call (callgrind slope of two N, strace -c counts).
 *
 * Modes (calls per iteration in brackets; every call is a hooked one):
 *   pipe      write 1 byte into a pipe, read it back                 [2]
 *   pipe-armed  the same, in a process that first opens a governed TCP
 *             pair (with deadlines configured, the library's timer
 *             thread then exists: the process is multi-threaded)       [2]
 *   devnull   read 1 byte from /dev/zero, write it to /dev/null      [2]
 *   socket    connected TCP pair over loopback made in-process
 *             (listen/connect/accept, so both ends are governed),
 *             blocking, ping-pong: write(c) read(s) write(s) read(c)  [4]
 *   socket-poll  same pair, non-blocking, each read preceded by a poll:
 *             write(c) poll(s) read(s) write(s) poll(c) read(c)       [6]
 *
 * Setup (socket creation, connect, accept) is outside the loop and cancels
 * out in the slope. Prints "calls_per_iter=K" on stdout.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void die(const char *what)
{
    perror(what);
    exit(2);
}

static void must(ssize_t r, const char *what)
{
    if (r != 1)
        die(what);
}

static void tcp_pair(int *cl, int *sv, int nonblock)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    if (l < 0)
        die("socket");
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t len = sizeof a;
    if (bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 1) ||
        getsockname(l, (struct sockaddr *)&a, &len))
        die("listen");
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a))
        die("connect");
    int s = accept(l, NULL, NULL);
    if (s < 0)
        die("accept");
    close(l);
    int one = 1;
    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (nonblock) {
        fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
        fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);
    }
    *cl = c;
    *sv = s;
}

static void wait_in(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    if (poll(&p, 1, 5000) != 1)
        die("poll");
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: loop_io pipe|pipe-armed|devnull|socket|socket-poll N\n");
        return 2;
    }
    const char *mode = argv[1];
    long n = atol(argv[2]);
    char b = 'x';
    if (!strcmp(mode, "pipe") || !strcmp(mode, "pipe-armed")) {
        int p[2];
        int c = -1, s = -1;
        if (!strcmp(mode, "pipe-armed"))
            tcp_pair(&c, &s, 0);
        if (pipe(p))
            die("pipe");
        printf("calls_per_iter=2\n");
        fflush(stdout);
        for (long i = 0; i < n; i++) {
            must(write(p[1], &b, 1), "write");
            must(read(p[0], &b, 1), "read");
        }
        if (c >= 0) {
            close(c);
            close(s);
        }
    } else if (!strcmp(mode, "devnull")) {
        int in = open("/dev/zero", O_RDONLY), out = open("/dev/null", O_WRONLY);
        if (in < 0 || out < 0)
            die("open");
        printf("calls_per_iter=2\n");
        fflush(stdout);
        for (long i = 0; i < n; i++) {
            must(read(in, &b, 1), "read");
            must(write(out, &b, 1), "write");
        }
    } else if (!strcmp(mode, "socket") || !strcmp(mode, "socket-poll")) {
        int np = !strcmp(mode, "socket-poll");
        int c, s;
        tcp_pair(&c, &s, np);
        printf("calls_per_iter=%d\n", np ? 6 : 4);
        fflush(stdout);
        for (long i = 0; i < n; i++) {
            must(write(c, &b, 1), "write c");
            if (np)
                wait_in(s);
            must(read(s, &b, 1), "read s");
            must(write(s, &b, 1), "write s");
            if (np)
                wait_in(c);
            must(read(c, &b, 1), "read c");
        }
        close(c);
        close(s);
    } else {
        fprintf(stderr, "loop_io: unknown mode %s\n", mode);
        return 2;
    }
    return 0;
}
