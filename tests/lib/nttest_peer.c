/* Peers: misbehaving (or well-behaved) servers on a background thread of
 * the test process, one poll loop for the listener and all connections.
 * The test process is not preloaded, so these are plain kernel sockets. */
#define _GNU_SOURCE
#include "nttest.h"
#include "nttest_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#define MAXCONN 64
#define MAXFILL 8

struct peer_conn {
    int fd;
    bool got_data;
    int64_t close_at;           /* FIN/RST: when to close; 0 = not yet armed */
    size_t len, off;            /* ECHO: pending bytes in buf[off..len) */
    unsigned char buf[16384];
};

struct nt_peer {
    enum nt_peer_kind kind;
    struct nt_peer_opts o;
    struct nt_addr addr;
    int lfd, stop[2];
    int fill[MAXFILL], nfill;   /* NOACCEPT: connections filling the queue */
    struct peer_conn *c[MAXCONN];
    int accepted;
    uint64_t bytes_in;
    pthread_t thread;
};

static void conn_close(struct nt_peer *p, int i, bool reset)
{
    if (reset) {
        struct linger l = {1, 0};
        setsockopt(p->c[i]->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    }
    close(p->c[i]->fd);
    free(p->c[i]);
    p->c[i] = NULL;
}

static void arm_close(struct nt_peer *p, struct peer_conn *c)
{
    c->close_at = nt_now_ms() + p->o.delay_ms;
}

static void on_accept(struct nt_peer *p)
{
    int fd = accept4(p->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK), i;
    if (fd < 0)
        return;
    __atomic_add_fetch(&p->accepted, 1, __ATOMIC_SEQ_CST);
    for (i = 0; i < MAXCONN && p->c[i]; i++)
        ;
    if (i == MAXCONN) {
        close(fd);
        return;
    }
    p->c[i] = calloc(1, sizeof *p->c[i]);
    p->c[i]->fd = fd;
    if ((p->kind == NT_PEER_FIN || p->kind == NT_PEER_RST) && !p->o.read_first)
        arm_close(p, p->c[i]);
}

/* Readable or writable connection: returns false when it should go. */
static bool on_ready(struct nt_peer *p, struct peer_conn *c)
{
    ssize_t n;
    if (p->kind == NT_PEER_ECHO && c->off < c->len) {
        n = send(c->fd, c->buf + c->off, c->len - c->off, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0)
            c->off += n;
        return n >= 0 || errno == EAGAIN;
    }
    n = recv(c->fd, c->buf, sizeof c->buf, MSG_DONTWAIT);
    if (n <= 0)
        return n < 0 && errno == EAGAIN;
    __atomic_add_fetch(&p->bytes_in, n, __ATOMIC_SEQ_CST);
    if (p->kind == NT_PEER_ECHO) {
        c->len = n;
        c->off = 0;
    } else if (!c->got_data && (p->kind == NT_PEER_FIN || p->kind == NT_PEER_RST)) {
        arm_close(p, c);
    }
    c->got_data = true;
    return true;
}

static short interest(const struct nt_peer *p, const struct peer_conn *c)
{
    switch (p->kind) {
    case NT_PEER_ECHO: return c->off < c->len ? POLLOUT : POLLIN;
    case NT_PEER_SILENT: return POLLIN;
    case NT_PEER_FIN:
    case NT_PEER_RST: return c->got_data || !p->o.read_first ? 0 : POLLIN;
    default: return 0;          /* NOREAD: never read */
    }
}

static void *peer_main(void *arg)
{
    struct nt_peer *p = arg;
    struct pollfd fds[MAXCONN + 2];
    int idx[MAXCONN + 2];
    for (;;) {
        int n = 0, timeout = -1;
        int64_t now = nt_now_ms();
        fds[n++] = (struct pollfd){p->stop[0], POLLIN, 0};
        fds[n++] = (struct pollfd){p->kind == NT_PEER_NOACCEPT ? -1 : p->lfd, POLLIN, 0};
        for (int i = 0; i < MAXCONN; i++) {
            struct peer_conn *c = p->c[i];
            if (!c)
                continue;
            if (c->close_at && c->close_at <= now) {
                conn_close(p, i, p->kind == NT_PEER_RST);
                continue;
            }
            if (c->close_at && (timeout < 0 || c->close_at - now < timeout))
                timeout = (int)(c->close_at - now);
            /* events 0 still reports POLLHUP; NOREAD must ignore it */
            fds[n] = (struct pollfd){interest(p, c) ? c->fd : -1, interest(p, c), 0};
            idx[n++] = i;
        }
        if (poll(fds, n, timeout) < 0 && errno != EINTR)
            break;
        if (fds[0].revents)
            break;
        for (int k = 2; k < n; k++)
            if (fds[k].revents && !on_ready(p, p->c[idx[k]]))
                conn_close(p, idx[k], false);
        if (fds[1].revents)
            on_accept(p);
    }
    return NULL;
}

/* Connect until the accept queue is full: the next connect hangs. */
static void fill_queue(struct nt_peer *p)
{
    while (p->nfill < MAXFILL) {
        int fd = socket(p->addr.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        struct pollfd pf = {fd, POLLOUT, 0};
        if (fd < 0)
            return;
        if (connect(fd, (struct sockaddr *)&p->addr.ss, p->addr.len) < 0) {
            if (errno != EINPROGRESS) {      /* unix: EAGAIN once full */
                close(fd);
                return;
            }
            if (poll(&pf, 1, 50) == 0) {     /* SYN dropped: full */
                p->fill[p->nfill++] = fd;
                return;
            }
        }
        p->fill[p->nfill++] = fd;
    }
}

struct nt_peer *nt_peer_start(enum nt_peer_kind kind, enum nt_family f,
                              const struct nt_peer_opts *o)
{
    struct nt_peer *p = calloc(1, sizeof *p);
    int backlog = kind == NT_PEER_NOACCEPT ? 0 : 64;
    p->kind = kind;
    if (o)
        p->o = *o;
    if (kind == NT_PEER_NOREAD && !p->o.rcvbuf)
        p->o.rcvbuf = 4096;
    p->lfd = nt_listen_opts(f, backlog, p->o.rcvbuf, p->o.sndbuf, SOCK_NONBLOCK, &p->addr);
    if (p->lfd < 0 || pipe2(p->stop, O_CLOEXEC) < 0) {
        if (p->lfd >= 0)
            close(p->lfd);
        free(p);
        return NULL;
    }
    if (kind == NT_PEER_NOACCEPT)
        fill_queue(p);
    pthread_create(&p->thread, NULL, peer_main, p);
    return p;
}

const struct nt_addr *nt_peer_addr(const struct nt_peer *p)
{
    return &p->addr;
}

int nt_peer_accepted(struct nt_peer *p)
{
    return __atomic_load_n(&p->accepted, __ATOMIC_SEQ_CST);
}

uint64_t nt_peer_bytes_in(struct nt_peer *p)
{
    return __atomic_load_n(&p->bytes_in, __ATOMIC_SEQ_CST);
}

int nt_peer_wait_accepted(struct nt_peer *p, int n, int timeout_ms)
{
    int64_t deadline = nt_now_ms() + timeout_ms;
    while (nt_peer_accepted(p) < n) {
        if (nt_now_ms() >= deadline)
            return -1;
        nt_sleep_ms(5);
    }
    return 0;
}

void nt_peer_stop(struct nt_peer *p)
{
    if (!p)
        return;
    if (write(p->stop[1], "x", 1) == 1)
        pthread_join(p->thread, NULL);
    for (int i = 0; i < MAXCONN; i++)
        if (p->c[i])
            conn_close(p, i, false);
    for (int i = 0; i < p->nfill; i++)
        close(p->fill[i]);
    close(p->lfd);
    close(p->stop[0]);
    close(p->stop[1]);
    if (p->addr.fam == NT_UNIX)
        unlink(p->addr.str);
    free(p);
}
