/* A client with no timeouts of its own.
 *
 *   dl_client ADDR read                  send "hello\n", wait for one answer
 *   dl_client ADDR connect               just connect (blocking)
 *   dl_client ADDR keepalive N GAP_MS    N requests on one connection, GAP_MS apart
 *   dl_client ADDR slowloris GAP_MS      one byte every GAP_MS, never a newline
 *   dl_client ADDR write BYTES           write BYTES in one call (peer never reads)
 *   dl_client ADDR writev BYTES          the same in one writev of three parts
 *   dl_client ADDR sendfile BYTES        the same in one sendfile from a memfd
 *   dl_client ADDR splice BYTES          fill the socket, then splice a full pipe (64 KiB)
 *   dl_client ADDR alarm MS restart|norestart
 *                                        blocking read, SIGALRM after MS
 *   dl_client ADDR reuse IDLE_MS         the close/reuse race (see below)
 *
 * Prints one line "result=ok|eof|ERRNO n=N elapsed_ms=T" and exits 0; a
 * setup failure exits 2. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/time.h>
#include <time.h>
#include <sys/uio.h>
#include <unistd.h>

#include "common.h"

static long long t0;

static int report(ssize_t r, long long n, int err)
{
    const char *what = r > 0 ? "ok" : r == 0 ? "eof" : strerrorname_np(err);
    printf("result=%s n=%lld elapsed_ms=%lld\n", what, n, pc_now_ms() - t0);
    return 0;
}

static int do_read(int fd)
{
    char buf[256];
    if (write(fd, "hello\n", 6) != 6)
        return report(-1, 0, errno);
    ssize_t r = read(fd, buf, sizeof buf);
    return report(r, r, errno);
}

static int do_keepalive(int fd, int count, int gap_ms)
{
    char buf[256];
    for (int i = 0; i < count; i++) {
        if (i)
            usleep((useconds_t)gap_ms * 1000);
        if (write(fd, "req\n", 4) != 4)
            return report(-1, i, errno);
        ssize_t r = read(fd, buf, sizeof buf);
        if (r <= 0)
            return report(r, i, errno);
    }
    return report(1, count, 0);
}

static int do_slowloris(int fd, int gap_ms)
{
    for (long long i = 0;; i++) {
        if (write(fd, "x", 1) != 1)
            return report(-1, i, errno);
        usleep((useconds_t)gap_ms * 1000);
    }
}

static int do_write(int fd, long bytes)
{
    char *buf = calloc(1, (size_t)bytes);
    ssize_t r = write(fd, buf, (size_t)bytes);
    return report(r, r, errno);
}

static int do_writev(int fd, long bytes)
{
    char *buf = calloc(1, (size_t)bytes);
    size_t third = (size_t)bytes / 3;
    struct iovec v[3] = { { buf, third }, { buf + third, third },
                          { buf + 2 * third, (size_t)bytes - 2 * third } };
    ssize_t r = writev(fd, v, 3);
    return report(r, r, errno);
}

static int memfd_of(long bytes)
{
    int m = memfd_create("dl", MFD_CLOEXEC);
    if (m < 0 || ftruncate(m, bytes) != 0)
        pc_die("memfd");
    return m;
}

static int do_sendfile(int fd, long bytes)
{
    int m = memfd_of(bytes);
    off_t off = 0;
    ssize_t r = sendfile(fd, m, &off, (size_t)bytes);
    return report(r, r, errno);
}

/* A pipe holds 64 KiB: the socket is filled first (non-blocking sends
 * until EAGAIN), then one splice of a full pipe waits for room. */
static int do_splice(int fd, long bytes)
{
    (void)bytes;
    static char buf[65536];
    int p[2];
    if (pipe(p) || write(p[1], buf, sizeof buf) != (ssize_t)sizeof buf)
        pc_die("pipe");
    while (send(fd, buf, sizeof buf, MSG_DONTWAIT) > 0)
        ;
    t0 = pc_now_ms();
    ssize_t r = splice(p[0], NULL, fd, NULL, sizeof buf, 0);
    return report(r, r, errno);
}

static void on_alarm(int sig)
{
    (void)sig;
}

static int do_alarm(int fd, int ms, int restart)
{
    struct sigaction sa = { .sa_handler = on_alarm };
    sa.sa_flags = restart ? SA_RESTART : 0;
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = { .it_value = { ms / 1000, (ms % 1000) * 1000 } };
    setitimer(ITIMER_REAL, &it, NULL);
    char buf[64];
    ssize_t r = read(fd, buf, sizeof buf);
    return report(r, r, errno);
}

/* Connection A is closed just before its idle deadline and a new
 * connection B takes the same fd number; B must live its own idle time,
 * not die at A's deadline. */
static int do_reuse(const char *addr, int idle_ms)
{
    int a = pc_connect_or_die(addr);
    usleep((useconds_t)idle_ms * 800);
    close(a);
    int b = pc_connect_or_die(addr);
    if (b != a)
        pc_die("fd not reused (%d then %d)", a, b);
    long long b_open = pc_now_ms();
    usleep((useconds_t)idle_ms * 500); /* past A's deadline */
    char buf[64];
    if (write(b, "req\n", 4) != 4)
        return report(-1, pc_now_ms() - b_open, errno);
    ssize_t r = read(b, buf, sizeof buf);
    return report(r, pc_now_ms() - b_open, errno);
}

int main(int argc, char **argv)
{
    if (argc < 3)
        pc_die("usage: dl_client ADDR MODE [ARGS]");
    const char *addr = argv[1], *mode = argv[2];
    t0 = pc_now_ms();
    if (strcmp(mode, "reuse") == 0 && argc > 3)
        return do_reuse(addr, atoi(argv[3]));
    signal(SIGPIPE, SIG_IGN); /* report EPIPE rather than die of it */
    if (strcmp(mode, "connect") == 0) {
        int c = pc_connect(addr);
        return report(c >= 0 ? 1 : -1, 0, errno);
    }
    int fd = pc_connect_or_die(addr);
    if (strcmp(mode, "read") == 0)
        return do_read(fd);
    if (strcmp(mode, "keepalive") == 0 && argc > 4)
        return do_keepalive(fd, atoi(argv[3]), atoi(argv[4]));
    if (strcmp(mode, "slowloris") == 0 && argc > 3)
        return do_slowloris(fd, atoi(argv[3]));
    if (strcmp(mode, "write") == 0 && argc > 3)
        return do_write(fd, pc_num(argv[3]));
    if (strcmp(mode, "writev") == 0 && argc > 3)
        return do_writev(fd, pc_num(argv[3]));
    if (strcmp(mode, "sendfile") == 0 && argc > 3)
        return do_sendfile(fd, pc_num(argv[3]));
    if (strcmp(mode, "splice") == 0 && argc > 3)
        return do_splice(fd, pc_num(argv[3]));
    if (strcmp(mode, "alarm") == 0 && argc > 4)
        return do_alarm(fd, atoi(argv[3]), strcmp(argv[4], "restart") == 0);
    pc_die("bad mode or arguments");
}
