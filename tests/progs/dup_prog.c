/* dup_prog ADDR
 *
 * Copies a connected socket with dup, dup2, dup3, fcntl(F_DUPFD) and
 * fcntl(F_DUPFD_CLOEXEC), moves data through every copy, closes the
 * original and keeps going through the copies; dup2 over another live
 * socket; checks that O_NONBLOCK is shared by the copies (one open file
 * description). ADDR is an echo server. One line per step, "STEP ok" or
 * "STEP FAIL: why"; the exit status is the number of failed steps. */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int failures;

static void step(const char *name, int ok, const char *why)
{
    if (ok) {
        printf("%s ok\n", name);
    } else {
        printf("%s FAIL: %s (%s)\n", name, why, strerror(errno));
        failures++;
    }
}

/* A small echo exchange through fd. */
static int works(int fd)
{
    uint64_t fnv = PC_FNV_INIT;
    return fd >= 0 && pc_echo_exchange(fd, 3000, 1000, &fnv) == 0;
}

static int same_local(int a, int b)
{
    struct sockaddr_storage x, y;
    socklen_t lx = sizeof x, ly = sizeof y;
    return getsockname(a, (struct sockaddr *)&x, &lx) == 0 &&
           getsockname(b, (struct sockaddr *)&y, &ly) == 0 && lx == ly && !memcmp(&x, &y, lx);
}

int main(int argc, char **argv)
{
    int fd, d1, d2, d3, d4, d5, other, fl;
    char c;
    if (argc != 2)
        pc_die("usage: dup_prog ADDR");
    fd = pc_connect(argv[1]);
    if (fd < 0)
        pc_die("connect %s:", argv[1]);
    step("original", works(fd), "exchange");

    d1 = dup(fd);
    step("dup", works(d1), "exchange");
    d2 = dup2(fd, 100);
    step("dup2", d2 == 100 && works(d2), "exchange");
    d3 = dup3(fd, 101, O_CLOEXEC);
    step("dup3", d3 == 101 && (fcntl(d3, F_GETFD) & FD_CLOEXEC) && works(d3), "cloexec/exchange");
    d4 = fcntl(fd, F_DUPFD, 200);
    step("F_DUPFD", d4 >= 200 && works(d4), "exchange");
    d5 = fcntl(fd, F_DUPFD_CLOEXEC, 300);
    step("F_DUPFD_CLOEXEC", d5 >= 300 && (fcntl(d5, F_GETFD) & FD_CLOEXEC) && works(d5),
         "cloexec/exchange");
    step("dup2 same fd", dup2(d1, d1) == d1 && works(d1), "dup2(fd, fd)");

    /* One open file description: O_NONBLOCK set through a copy shows on
     * the original, and a read there now fails with EAGAIN. */
    fl = fcntl(d4, F_GETFL);
    fcntl(d4, F_SETFL, fl | O_NONBLOCK);
    step("shared O_NONBLOCK", (fcntl(fd, F_GETFL) & O_NONBLOCK) && read(fd, &c, 1) < 0 &&
         errno == EAGAIN, "flag not shared");
    fcntl(fd, F_SETFL, fl);

    close(fd);
    step("close original", works(d1) && works(d2) && works(d3), "copies broken");

    /* dup2 over a different live socket replaces (and closes) it. */
    other = pc_connect(argv[1]);
    step("second connection", works(other), "exchange");
    step("dup2 over live socket", dup2(d1, other) == other && same_local(other, d1) &&
         works(other), "not the first connection");

    close(d1);
    close(d2);
    close(d3);
    close(d4);
    step("last copy", works(d5), "exchange");
    step("close last copy", close(d5) == 0 && close(other) == 0, "close");
    step("closed fd", read(d5, &c, 1) < 0 && errno == EBADF, "fd still open");
    printf("failures %d\n", failures);
    return failures;
}
