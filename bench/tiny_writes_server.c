/* tiny_writes_server: answers each request with a response written in many
 * tiny pieces (default 2,000 writes of 8 bytes), the pattern write
 * coalescing is for. Thread per connection, blocking sockets, loopback.
 *
 *   tiny_writes_server [--cork] [--nagle] [--writes N] [--size B]
 *
 * A request is whatever one read returns (the client sends one small
 * request and waits for the whole answer). Piece i of a response is
 * "%07u\n" of i (size 8), so order errors show in the client's check.
 * --cork   TCP_CORK on before the pieces, off after (coalescing by hand).
 * --nagle  leave Nagle on; by default the server sets TCP_NODELAY, as
 *          servers that write in small pieces usually do to avoid the
 *          Nagle/delayed-ACK stall.
 *
 * Prints "port=P pid=PID" on stdout at start. On SIGTERM/SIGINT it waits
 * (at most 2 s) for open connections to end and prints
 * "responses=R conns=C segs_out=S data_segs_out=D" (TCP_INFO counters of
 * its own sockets, summed as each connection ends), then exits.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <linux/tcp.h> /* struct tcp_info with tcpi_segs_out */
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int opt_cork, opt_nagle;
static unsigned opt_writes = 2000, opt_size = 8;
static char *response;

static volatile sig_atomic_t stop;
static unsigned long n_responses, n_conns, n_active;
static unsigned long long segs_out, data_segs_out;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t r = write(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static void *serve(void *arg)
{
    int fd = (int)(long)arg;
    int one = 1, zero = 0;
    if (!opt_nagle)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    char req[256];
    unsigned long done = 0;
    for (;;) {
        ssize_t r = read(fd, req, sizeof req);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        if (opt_cork)
            setsockopt(fd, IPPROTO_TCP, TCP_CORK, &one, sizeof one);
        int bad = 0;
        for (unsigned i = 0; i < opt_writes && !bad; i++)
            bad = write_all(fd, response + (size_t)i * opt_size, opt_size);
        if (opt_cork)
            setsockopt(fd, IPPROTO_TCP, TCP_CORK, &zero, sizeof zero);
        if (bad)
            break;
        done++;
    }
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    memset(&ti, 0, sizeof ti);
    getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len);
    close(fd);
    pthread_mutex_lock(&mu);
    n_responses += done;
    segs_out += ti.tcpi_segs_out;
    data_segs_out += ti.tcpi_data_segs_out;
    n_active--;
    pthread_mutex_unlock(&mu);
    return NULL;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--cork"))
            opt_cork = 1;
        else if (!strcmp(argv[i], "--nagle"))
            opt_nagle = 1;
        else if (!strcmp(argv[i], "--writes") && i + 1 < argc)
            opt_writes = (unsigned)atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc)
            opt_size = (unsigned)atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: tiny_writes_server [--cork] [--nagle] "
                            "[--writes N] [--size B]\n");
            return 2;
        }
    }
    if (!opt_writes || opt_size < 2 || opt_size > 64)
        return 2;
    response = malloc((size_t)opt_writes * opt_size);
    for (unsigned i = 0; i < opt_writes; i++) {
        char piece[80];
        snprintf(piece, sizeof piece, "%0*u\n", (int)opt_size - 1,
                 i % 10000000u);
        memcpy(response + (size_t)i * opt_size, piece, opt_size);
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int l = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t alen = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 512) ||
        getsockname(l, (struct sockaddr *)&a, &alen)) {
        perror("listen");
        return 2;
    }
    printf("port=%u pid=%d\n", ntohs(a.sin_port), (int)getpid());
    fflush(stdout);

    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&at, 256 * 1024);
    while (!stop) {
        struct pollfd p = { .fd = l, .events = POLLIN };
        if (poll(&p, 1, 200) <= 0)
            continue;
        int fd = accept(l, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_t t;
        pthread_mutex_lock(&mu);
        n_conns++;
        n_active++;
        pthread_mutex_unlock(&mu);
        if (pthread_create(&t, &at, serve, (void *)(long)fd) != 0) {
            close(fd);
            pthread_mutex_lock(&mu);
            n_active--;
            pthread_mutex_unlock(&mu);
        }
    }
    for (int i = 0; i < 200; i++) { /* 2 s for connections to end */
        pthread_mutex_lock(&mu);
        unsigned long act = n_active;
        pthread_mutex_unlock(&mu);
        if (!act)
            break;
        struct timespec ts = { 0, 10 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    pthread_mutex_lock(&mu);
    printf("responses=%lu conns=%lu active=%lu segs_out=%llu "
           "data_segs_out=%llu\n",
           n_responses, n_conns, n_active, segs_out, data_segs_out);
    pthread_mutex_unlock(&mu);
    fflush(stdout);
    close(l);
    exit(0);
}
