/* high_fd [-t FD] ADDR
 *
 * Raises RLIMIT_NOFILE (to 200000 when allowed, else soft = hard), moves a
 * connected socket to a very high fd with dup2 (FD, default the highest fd
 * the limit allows, at most 150000) and exchanges data through it with
 * read/write, poll and epoll; also connects a socket that was dup2'ed high
 * before connect(). ADDR is an echo server.
 *
 * Prints "limit L fd FD above65536 yes|no" then "bytes N fnv HEX".
 * Exit 0 on success, 1 on a failed exchange, 2 when no fd that high fits. */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <unistd.h>

static uint64_t fnv = PC_FNV_INIT, bytes;

static int exchange(int fd)
{
    if (pc_echo_exchange(fd, 65536, 8192, &fnv) < 0)
        return -1;
    bytes += 65536;
    return 0;
}

static int poll_exchange(int fd)
{
    struct pollfd p = {fd, POLLOUT, 0};
    char c = 'x';
    if (poll(&p, 1, 5000) != 1 || !(p.revents & POLLOUT) || write(fd, &c, 1) != 1)
        return -1;
    p.events = POLLIN;
    if (poll(&p, 1, 5000) != 1 || !(p.revents & POLLIN) || read(fd, &c, 1) != 1)
        return -1;
    return 0;
}

static int epoll_exchange(int fd)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    int ep = epoll_create1(EPOLL_CLOEXEC), rc = -1;
    char c = 'y';
    if (ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) == 0 && write(fd, &c, 1) == 1 &&
        epoll_wait(ep, &ev, 1, 5000) == 1 && ev.data.fd == fd && read(fd, &c, 1) == 1)
        rc = 0;
    close(ep);
    return rc;
}

int main(int argc, char **argv)
{
    struct rlimit rl = {200000, 200000};
    struct sockaddr_storage ss;
    socklen_t len;
    long target = -1;
    int fd, opt, ok;
    while ((opt = getopt(argc, argv, "t:")) != -1) {
        if (opt != 't')
            pc_die("usage: high_fd [-t FD] ADDR");
        target = pc_num(optarg);
    }
    if (optind != argc - 1 || pc_parse_addr(argv[optind], &ss, &len) < 0)
        pc_die("usage: high_fd [-t FD] ADDR");
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
        getrlimit(RLIMIT_NOFILE, &rl);
        rl.rlim_cur = rl.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            pc_die("setrlimit:");
    }
    if (target < 0)
        target = rl.rlim_cur - 1 < 150000 ? (long)rl.rlim_cur - 1 : 150000;
    printf("limit %llu fd %ld above65536 %s\n", (unsigned long long)rl.rlim_cur, target,
           target > 65536 ? "yes" : "no");
    fflush(stdout);
    if (target < 10)
        pc_die("fd limit too low");

    fd = pc_connect(argv[optind]);
    if (fd < 0 || dup2(fd, target) != target)
        pc_die("connect/dup2 to %ld:", target);
    close(fd);
    ok = exchange(target) == 0 && poll_exchange(target) == 0 && epoll_exchange(target) == 0;

    /* A socket moved high before connect: connect() itself sees the high fd. */
    fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0 || dup2(fd, target - 1) != target - 1)
        pc_die("socket/dup2:");
    close(fd);
    if (connect(target - 1, (struct sockaddr *)&ss, len) < 0)
        pc_die("connect on fd %ld:", target - 1);
    ok = ok && exchange(target - 1) == 0;
    close(target - 1);
    close(target);
    printf("bytes %llu fnv %016llx\n", (unsigned long long)bytes, (unsigned long long)fnv);
    return ok ? 0 : PC_EXIT_FAIL;
}
