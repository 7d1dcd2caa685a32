/* errno_check [-f tcp4|tcp6|unix]
 *
 * Sets errno to a sentinel before each of a long list of socket (and some
 * non-socket) calls that succeed, and checks errno still holds the sentinel
 * afterwards: a successful call must not touch errno (SPEC §7). Prints
 * "violation CALL (line N) errno=NAME" or "failed CALL (line N): NAME" per
 * problem, then
 * "checked N violations V failed F"; the exit status is V + F. */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <netinet/in.h>
#include <unistd.h>

#define SENTINEL 4242
static int checked, violations, failed;

/* Evaluate CALL with errno = SENTINEL; a negative result is a failure. */
#define CHECK(name, call)                                                      \
    do {                                                                       \
        long r_;                                                               \
        errno = SENTINEL;                                                      \
        r_ = (long)(call);                                                     \
        checked++;                                                             \
        if (r_ < 0) {                                                          \
            printf("failed %s (line %d): %s\n", name, __LINE__,                \
                   strerrorname_np(errno) ?: "?");                             \
            failed++;                                                          \
        } else if (errno != SENTINEL) {                                        \
            printf("violation %s (line %d) errno=%s\n", name, __LINE__,        \
                   strerrorname_np(errno) ?: "?");                             \
            violations++;                                                      \
        }                                                                      \
    } while (0)

/* A child writes one byte to fd a little later: a blocking read of the
 * other end finds nothing at first, waits (the library's own wait when a
 * read_timeout governs it) and then succeeds, errno as it was. */
static pid_t write_later(int fd, const char *what)
{
    pid_t pid = fork();
    if (pid == 0) {
        struct timespec d = {0, 100 * 1000000};
        nanosleep(&d, NULL);
        _exit(write(fd, what, 1) == 1 ? 0 : 1);
    }
    return pid;
}

static socklen_t bind_addr(int family, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    ss->ss_family = family;
    if (family == AF_INET) {
        ((struct sockaddr_in *)ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return sizeof(struct sockaddr_in);
    }
    if (family == AF_INET6) {
        ((struct sockaddr_in6 *)ss)->sin6_addr = in6addr_loopback;
        return sizeof(struct sockaddr_in6);
    }
    return sizeof(sa_family_t);        /* unix: autobind to an abstract name */
}

int main(int argc, char **argv)
{
    int family = argc == 3 && !strcmp(argv[1], "-f") ? pc_family(argv[2]) : AF_INET;
    struct sockaddr_storage ss, peer;
    socklen_t len = bind_addr(family, &ss), plen = sizeof peer;
    int lfd, c, s, c2, s2, d, ep, one = 1, zero = 0, pfd[2], mfd, avail;
    char buf[64] = "0123456789abcdef", in[64];
    struct iovec iov[2] = {{buf, 3}, {buf + 3, 5}}, riov[2] = {{in, 3}, {in + 3, 5}};
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = 2}, rmsg = {.msg_iov = riov, .msg_iovlen = 2};
    struct mmsghdr mm = {.msg_hdr = msg}, rmm = {.msg_hdr = rmsg};
    struct pollfd p;
    struct timespec ts = {1, 0};
    struct timeval tv = {1, 0};
    struct epoll_event ev = {.events = EPOLLIN}, evs[2];
    fd_set rs;
    sigset_t mask;
    off_t off = 0;

    CHECK("socket", lfd = socket(family, SOCK_STREAM, 0));
    CHECK("bind", bind(lfd, (struct sockaddr *)&ss, len));
    CHECK("listen", listen(lfd, 8));
    len = sizeof ss;
    CHECK("getsockname", getsockname(lfd, (struct sockaddr *)&ss, &len));
    CHECK("socket", c = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    CHECK("connect", connect(c, (struct sockaddr *)&ss, len));
    CHECK("accept", s = accept(lfd, (struct sockaddr *)&peer, &plen));
    CHECK("socket", c2 = socket(family, SOCK_STREAM, 0));
    CHECK("connect", connect(c2, (struct sockaddr *)&ss, len));
    CHECK("accept4", s2 = accept4(lfd, NULL, NULL, SOCK_CLOEXEC));
    if (family != AF_UNIX)
        CHECK("setsockopt", setsockopt(c, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one));

    CHECK("write", write(c, buf, 8));
    CHECK("read", read(s, in, 8));
    CHECK("send", send(s, buf, 8, 0));
    CHECK("recv", recv(c, in, 8, 0));
    CHECK("sendto", sendto(c, buf, 8, 0, NULL, 0));
    CHECK("recvfrom", recvfrom(s, in, 8, 0, NULL, NULL));
    CHECK("writev", writev(s, iov, 2));
    CHECK("readv", readv(c, riov, 2));
    CHECK("sendmsg", sendmsg(c, &msg, 0));
    CHECK("recvmsg", recvmsg(s, &rmsg, 0));
    CHECK("sendmmsg", sendmmsg(s, &mm, 1, 0));
    CHECK("recvmmsg", recvmmsg(c, &rmm, 1, 0, NULL));

    p = (struct pollfd){c, POLLOUT, 0};
    CHECK("poll", poll(&p, 1, 1000));
    CHECK("ppoll", ppoll(&p, 1, &ts, NULL));
    CHECK("write", write(s, buf, 1));
    FD_ZERO(&rs);
    FD_SET(c, &rs);
    CHECK("select", select(c + 1, &rs, NULL, NULL, &tv));
    sigemptyset(&mask);
    CHECK("pselect", pselect(c + 1, &rs, NULL, NULL, &ts, &mask));
    CHECK("epoll_create1", ep = epoll_create1(EPOLL_CLOEXEC));
    ev.data.fd = c;
    CHECK("epoll_ctl", epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev));
    CHECK("epoll_wait", epoll_wait(ep, evs, 2, 1000));
    CHECK("epoll_pwait", epoll_pwait(ep, evs, 2, 1000, &mask));
    CHECK("ioctl FIONREAD", ioctl(c, FIONREAD, &avail));
    CHECK("read", read(c, in, 1));

    CHECK("dup", d = dup(c));
    CHECK("dup2", dup2(c, d));
    CHECK("dup3", dup3(c, d, O_CLOEXEC));
    CHECK("close", close(d));
    CHECK("fcntl F_DUPFD", d = fcntl(c, F_DUPFD, 50));
    CHECK("close", close(d));
    CHECK("fcntl F_DUPFD_CLOEXEC", d = fcntl(c, F_DUPFD_CLOEXEC, 50));
    CHECK("close", close(d));
    CHECK("fcntl F_GETFL", fcntl(c, F_GETFL));
    CHECK("fcntl F_SETFL", fcntl(c, F_SETFL, O_NONBLOCK));
    CHECK("fcntl F_SETFL", fcntl(c, F_SETFL, 0));
    CHECK("ioctl FIONBIO", ioctl(c, FIONBIO, &one));
    CHECK("ioctl FIONBIO", ioctl(c, FIONBIO, &zero));

    /* sendfile and splice, and the non-socket fds they involve */
    CHECK("memfd_create", mfd = memfd_create("errno_check", MFD_CLOEXEC));
    CHECK("write file", write(mfd, buf, 16));
    CHECK("sendfile", sendfile(c, mfd, &off, 16));
    CHECK("pipe", pipe(pfd));
    CHECK("splice", splice(s, NULL, pfd[1], NULL, 16, 0));
    CHECK("read pipe", read(pfd[0], in, 16));
    CHECK("write pipe", write(pfd[1], buf, 4));
    CHECK("splice", splice(pfd[0], NULL, c, NULL, 4, 0));
    CHECK("read", read(s, in, 4));
    CHECK("lseek", lseek(mfd, 0, SEEK_SET));
    CHECK("read file", read(mfd, in, 16));

    /* twice: a connection's first call takes the library's slow path */
    pid_t kid;
    for (int round = 0; round < 2; round++) {
        kid = write_later(c2, "w");
        CHECK("read after a wait", read(s2, in, 1));
        waitpid(kid, NULL, 0);
        kid = write_later(s2, "w");
        CHECK("recv after a wait", recv(c2, in, 1, 0));
        waitpid(kid, NULL, 0);
    }
    kid = write_later(c2, "w");
    CHECK("recvfrom after a wait", recvfrom(s2, in, 1, 0, NULL, NULL));
    waitpid(kid, NULL, 0);

    CHECK("shutdown", shutdown(c2, SHUT_WR));
    CHECK("read", read(s2, in, 1));       /* EOF: 0 is success */
    CHECK("close", close(c2));
    CHECK("close", close(s2));
    CHECK("close", close(ep));
    CHECK("close", close(c));
    CHECK("close", close(s));
    CHECK("close", close(lfd));
    CHECK("close", close(pfd[0]));
    CHECK("close", close(pfd[1]));
    CHECK("close", close(mfd));
    printf("checked %d violations %d failed %d\n", checked, violations, failed);
    return violations + failed;
}
