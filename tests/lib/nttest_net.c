/* Addresses, listeners and connections in the (unpreloaded) test process. */
#define _GNU_SOURCE
#include "nttest.h"
#include "nttest_internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

static const int af[] = {AF_INET, AF_INET6, AF_UNIX};

const char *nt_family_name(enum nt_family f)
{
    static const char *names[] = {"tcp4", "tcp6", "unix"};
    return names[f];
}

/* Fill a->str and a->port from a->ss. */
static void addr_format(struct nt_addr *a)
{
    char host[INET6_ADDRSTRLEN];
    if (a->fam == NT_UNIX) {
        snprintf(a->str, sizeof a->str, "%s", ((struct sockaddr_un *)&a->ss)->sun_path);
        a->port = 0;
        return;
    }
    if (a->fam == NT_TCP4) {
        struct sockaddr_in *in = (struct sockaddr_in *)&a->ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        a->port = ntohs(in->sin_port);
        snprintf(a->str, sizeof a->str, "%s:%d", host, a->port);
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        a->port = ntohs(in6->sin6_port);
        snprintf(a->str, sizeof a->str, "[%s]:%d", host, a->port);
    }
}

/* Loopback with `port`, or the unix `path`. */
static void addr_set(enum nt_family f, int port, const char *path, struct nt_addr *a)
{
    memset(a, 0, sizeof *a);
    a->fam = f;
    a->ss.ss_family = af[f];
    if (f == NT_TCP4) {
        struct sockaddr_in *in = (struct sockaddr_in *)&a->ss;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        in->sin_port = htons(port);
        a->len = sizeof *in;
    } else if (f == NT_TCP6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a->ss;
        in6->sin6_addr = in6addr_loopback;
        in6->sin6_port = htons(port);
        a->len = sizeof *in6;
    } else {
        struct sockaddr_un *un = (struct sockaddr_un *)&a->ss;
        snprintf(un->sun_path, sizeof un->sun_path, "%s", path);
        a->len = sizeof *un;
    }
    addr_format(a);
}

void nt_addr_any(enum nt_family f, struct nt_addr *a)
{
    static int seq;
    char *path = NULL;
    if (f == NT_UNIX) {
        char name[32];
        snprintf(name, sizeof name, "s%d.sock", __atomic_fetch_add(&seq, 1, __ATOMIC_RELAXED));
        path = nt_path(name);
    }
    addr_set(f, 0, path, a);
    free(path);
}

void nt_addr_from_line(enum nt_family f, const char *line, struct nt_addr *a)
{
    addr_set(f, f == NT_UNIX ? 0 : atoi(line), line, a);
}

int nt_listen_opts(int fam, int backlog, int rcvbuf, int sndbuf, int type_flags,
                   struct nt_addr *a)
{
    enum nt_family f = fam;
    int one = 1, fd = socket(af[f], SOCK_STREAM | SOCK_CLOEXEC | type_flags, 0);
    nt_addr_any(f, a);
    if (fd < 0)
        return -1;
    if (f != NT_UNIX)
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    /* Inherited by accepted sockets; the window is fixed at the handshake. */
    if (rcvbuf)
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    if (sndbuf)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    if (bind(fd, (struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, backlog) < 0) {
        close(fd);
        return -1;
    }
    a->len = sizeof a->ss;
    getsockname(fd, (struct sockaddr *)&a->ss, &a->len);
    addr_format(a);
    return fd;
}

int nt_listen(enum nt_family f, int backlog, struct nt_addr *a)
{
    return nt_listen_opts(f, backlog, 0, 0, 0, a);
}

int nt_connect(const struct nt_addr *a, int timeout_ms)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int err = 0, rc;
    socklen_t len = sizeof err;
    struct pollfd p = {fd, POLLOUT, 0};
    int64_t deadline = nt_now_ms() + timeout_ms;
    if (fd < 0)
        return -1;
    /* unix: EAGAIN means the accept queue is full (a blocking connect would
     * wait for room): retry until the deadline. */
    while ((rc = connect(fd, (struct sockaddr *)&a->ss, a->len)) < 0 && errno == EAGAIN &&
           nt_now_ms() < deadline)
        nt_sleep_ms(5);
    if (rc < 0) {
        if (errno != EINPROGRESS || poll(&p, 1, timeout_ms) != 1 ||
            getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
            close(fd);
            return -1;
        }
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}

int nt_wait_listening(const struct nt_addr *a, int timeout_ms)
{
    int64_t deadline = nt_now_ms() + timeout_ms;
    do {
        int fd = nt_connect(a, 200);
        if (fd >= 0) {
            close(fd);
            return 0;
        }
        nt_sleep_ms(10);
    } while (nt_now_ms() < deadline);
    return -1;
}

int nt_free_port(enum nt_family f)
{
    struct nt_addr a;
    int fd = nt_listen(f, 1, &a);
    if (fd < 0)
        return -1;
    close(fd);
    return a.port;
}
