/* A server with no timeouts of its own, the kind nettimeo is for.
 *
 *   dl_server MODE [DELAY_MS]
 *
 * Listens on 127.0.0.1 port 0 and prints the port, then serves line
 * requests ("...\n" -> "ok\n") in one of these ways:
 *   threads   a thread per connection, blocking reads (DELAY_MS before
 *             each answer: a slow handler)
 *   epoll     one thread, non-blocking sockets, epoll (like nginx)
 * Every connection it closes is reported on stdout as "closed N REASON"
 * (REASON: eof, or the errno name of the failed read/write), so a test
 * can see that a connection came back. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "common.h"

static int delay_ms;
static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static int closed_count;

static void report_closed(int fd, int err)
{
    pthread_mutex_lock(&out_lock);
    closed_count++;
    printf("closed %d %s\n", closed_count, err ? strerrorname_np(err) : "eof");
    fflush(stdout);
    pthread_mutex_unlock(&out_lock);
    close(fd);
}

/* Blocking: read until a newline, answer, repeat. */
static void *serve_blocking(void *arg)
{
    int fd = (int)(long)arg;
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) {
            report_closed(fd, n < 0 ? errno : 0);
            return NULL;
        }
        if (!memchr(buf, '\n', (size_t)n))
            continue; /* request not complete yet */
        if (delay_ms)
            usleep((useconds_t)delay_ms * 1000);
        if (write(fd, "ok\n", 3) != 3) {
            report_closed(fd, errno);
            return NULL;
        }
    }
}

static void run_threads(int lfd)
{
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_t t;
        pthread_create(&t, NULL, serve_blocking, (void *)(long)fd);
        pthread_detach(t);
    }
}

/* Non-blocking: read until EAGAIN, answer complete requests. */
static void serve_ready(int ep, int fd)
{
    char buf[4096];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n > 0) {
            if (memchr(buf, '\n', (size_t)n) && write(fd, "ok\n", 3) != 3) {
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                report_closed(fd, errno);
                return;
            }
            continue;
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
        report_closed(fd, n < 0 ? errno : 0);
        return;
    }
}

static void run_epoll(int lfd)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd };
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    for (;;) {
        struct epoll_event got[64];
        int n = epoll_wait(ep, got, 64, -1);
        for (int i = 0; i < n; i++) {
            int fd = got[i].data.fd;
            if (fd != lfd) {
                serve_ready(ep, fd);
                continue;
            }
            int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
            if (c < 0)
                continue;
            struct epoll_event cev = { .events = EPOLLIN | EPOLLRDHUP,
                                       .data.fd = c };
            epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
            serve_ready(ep, c); /* like nginx: try reading at once */
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 2)
        pc_die("usage: dl_server threads|epoll [DELAY_MS]");
    delay_ms = argc > 2 ? atoi(argv[2]) : 0;
    char shown[128];
    int lfd = pc_listen("127.0.0.1:0", 128, shown, sizeof shown);
    printf("%s\n", shown);
    fflush(stdout);
    if (strcmp(argv[1], "threads") == 0)
        run_threads(lfd);
    else if (strcmp(argv[1], "epoll") == 0)
        run_epoll(lfd);
    else
        pc_die("unknown mode %s", argv[1]);
    return 0;
}
