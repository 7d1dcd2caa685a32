/* echo_server [-m thread|poll|select|epoll] [-n CONNS] ADDR
 *
 * Echoes every connection's bytes back until the client closes. Line 1 of
 * stdout is the port (or unix path) once listening, so ADDR may use port 0.
 * With -n it exits after CONNS connections have finished and prints
 * "conns N bytes M". thread: blocking accept + one thread per connection;
 * poll/select/epoll: one non-blocking event loop (each mode sets
 * O_NONBLOCK a different way: fcntl, ioctl(FIONBIO), accept4 flags). */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <unistd.h>

enum mode { M_THREAD, M_POLL, M_SELECT, M_EPOLL };

struct conn {
    int fd;                 /* -1: free slot */
    size_t len, off;        /* pending echo bytes in buf[off..len) */
    unsigned char buf[65536];
};

#define MAXCONN 512
static struct conn *conns[MAXCONN];
static long finished, limit;
static uint64_t total;

static void set_nonblock(int fd, enum mode m)
{
    int one = 1;
    if (m == M_SELECT)
        ioctl(fd, FIONBIO, &one);
    else if (m == M_POLL)
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    /* epoll: accept4(SOCK_NONBLOCK) already did it */
}

/* Accept every pending connection into a free slot; with ep >= 0 also
 * register it there (edge-triggered). */
static void accept_all(int lfd, enum mode m, int ep)
{
    for (;;) {
        int fd = m == M_EPOLL ? accept4(lfd, NULL, NULL, SOCK_NONBLOCK) : accept(lfd, NULL, NULL);
        int i;
        if (fd < 0)
            return;
        for (i = 0; i < MAXCONN && conns[i]; i++)
            ;
        if (i == MAXCONN || (m == M_SELECT && fd >= FD_SETSIZE)) {
            close(fd);
            continue;
        }
        set_nonblock(fd, m);
        conns[i] = calloc(1, sizeof **conns);
        conns[i]->fd = fd;
        if (ep >= 0) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.u32 = i};
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        }
    }
}

/* Move bytes for one connection; returns 0 to keep it, -1 when it ended. */
static int service(struct conn *c)
{
    for (;;) {
        ssize_t n;
        if (c->off < c->len) {
            n = write(c->fd, c->buf + c->off, c->len - c->off);
            if (n < 0)
                return errno == EAGAIN || errno == EINTR ? 0 : -1;
            c->off += n;
            continue;
        }
        n = read(c->fd, c->buf, sizeof c->buf);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        if (n == 0)
            return -1;
        total += n;
        c->len = n;
        c->off = 0;
    }
}

static void drop(int i)
{
    close(conns[i]->fd);
    free(conns[i]);
    conns[i] = NULL;
    finished++;
}

static int want_write(const struct conn *c)
{
    return c->off < c->len;
}

static void loop_poll(int lfd)
{
    struct pollfd p[MAXCONN + 1];
    int idx[MAXCONN + 1];
    while (!limit || finished < limit) {
        int n = 1;
        p[0] = (struct pollfd){.fd = lfd, .events = POLLIN};
        for (int i = 0; i < MAXCONN; i++)
            if (conns[i]) {
                p[n] = (struct pollfd){conns[i]->fd, want_write(conns[i]) ? POLLOUT : POLLIN, 0};
                idx[n++] = i;
            }
        if (poll(p, n, -1) < 0 && errno != EINTR)
            pc_die("poll:");
        for (int k = 1; k < n; k++)
            if (p[k].revents && service(conns[idx[k]]) < 0)
                drop(idx[k]);
        if (p[0].revents)
            accept_all(lfd, M_POLL, -1);
    }
}

static void loop_select(int lfd)
{
    while (!limit || finished < limit) {
        fd_set r, w;
        int maxfd = lfd;
        FD_ZERO(&r);
        FD_ZERO(&w);
        FD_SET(lfd, &r);
        for (int i = 0; i < MAXCONN; i++)
            if (conns[i]) {
                FD_SET(conns[i]->fd, want_write(conns[i]) ? &w : &r);
                if (conns[i]->fd > maxfd)
                    maxfd = conns[i]->fd;
            }
        if (select(maxfd + 1, &r, &w, NULL, NULL) < 0 && errno != EINTR)
            pc_die("select:");
        for (int i = 0; i < MAXCONN; i++)
            if (conns[i] && (FD_ISSET(conns[i]->fd, &r) || FD_ISSET(conns[i]->fd, &w))
                && service(conns[i]) < 0)
                drop(i);
        if (FD_ISSET(lfd, &r))
            accept_all(lfd, M_SELECT, -1);
    }
}

static void loop_epoll(int lfd)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN, .data.u32 = MAXCONN}, out[64];
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0)
        pc_die("epoll:");
    fcntl(lfd, F_SETFL, O_NONBLOCK);
    while (!limit || finished < limit) {
        int n = epoll_wait(ep, out, 64, -1);
        if (n < 0 && errno != EINTR)
            pc_die("epoll_wait:");
        for (int k = 0; k < n; k++) {
            uint32_t i = out[k].data.u32;
            if (i == MAXCONN)
                accept_all(lfd, M_EPOLL, ep);
            else if (conns[i] && service(conns[i]) < 0) {
                drop(i);   /* close() removes it from the epoll set */
            }
        }
    }
    close(ep);
}

struct tstate {
    pthread_t t;
    int fd;
    uint64_t bytes;
};

static void *thread_conn(void *arg)
{
    struct tstate *s = arg;
    s->bytes = pc_echo_blocking(s->fd);
    return NULL;
}

static void loop_thread(int lfd)
{
    struct tstate *ts = calloc(limit ? limit : 1, sizeof *ts);
    long n = 0;
    if (!limit) {       /* serve forever on detached threads */
        pc_start_echo_acceptor(lfd);
        pause();
    }
    while (n < limit) {
        ts[n].fd = accept(lfd, NULL, NULL);
        if (ts[n].fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            pc_die("accept:");
        }
        if (pthread_create(&ts[n].t, NULL, thread_conn, &ts[n]) != 0)
            pc_die("pthread_create failed");
        n++;
    }
    for (long i = 0; i < n; i++) {
        pthread_join(ts[i].t, NULL);
        total += ts[i].bytes;
        finished++;
    }
    free(ts);
}

int main(int argc, char **argv)
{
    static const char *names[] = {"thread", "poll", "select", "epoll"};
    enum mode m = M_THREAD;
    char shown[128];
    int opt, lfd;
    while ((opt = getopt(argc, argv, "m:n:")) != -1) {
        if (opt == 'n') {
            limit = pc_num(optarg);
            continue;
        }
        if (opt != 'm')
            pc_die("usage: echo_server [-m thread|poll|select|epoll] [-n CONNS] ADDR");
        for (m = 0; m < 4 && strcmp(optarg, names[m]); m++)
            ;
        if (m == 4)
            pc_die("bad mode '%s'", optarg);
    }
    if (optind != argc - 1)
        pc_die("usage: echo_server [-m thread|poll|select|epoll] [-n CONNS] ADDR");
    lfd = pc_listen(argv[optind], 128, shown, sizeof shown);
    if (m == M_POLL || m == M_SELECT)
        set_nonblock(lfd, m);
    printf("%s\n", shown);
    fflush(stdout);
    switch (m) {
    case M_THREAD: loop_thread(lfd); break;
    case M_POLL: loop_poll(lfd); break;
    case M_SELECT: loop_select(lfd); break;
    case M_EPOLL: loop_epoll(lfd); break;
    }
    printf("conns %ld bytes %llu\n", finished, (unsigned long long)total);
    return 0;
}
