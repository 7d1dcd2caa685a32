/* The program the audit tests run under the library. One binary, several
 * stories (argv[1]); the functions whose names the tests look for in
 * backtraces are noinline and named for what they do.
 *
 *   hangup fin|rst   server writes a large response to a client that hung
 *                    up (FIN, or RST with SO_LINGER {1,0}); prints
 *                    "write_response: ERRNO" for each failed write
 *   reader           the server resets the connection while the client
 *                    reads; prints "read_reply: ERRNO"
 *   flood N [DEPTH]  N writes that fail with EPIPE, from one call site
 *                    DEPTH frames deep, SIGPIPE ignored; prints
 *                    "epipes: N" and "ns per write: T"
 *   slow N MS        N writes that fail with EPIPE, MS apart
 *   idle MS          a connection left idle for MS, then read; prints
 *                    "idle read: ERRNO|EOF|N bytes"
 *   cloexec LOGPATH  prints "cloexec yes" if the library's log fd (found
 *                    by its path) is close-on-exec
 *   closefrom        closefrom(3), then the hangup fin story
 *   dup2 LOGPATH     dup2 /dev/null over the library's log fd (found by
 *                    its path), then the hangup fin story; prints
 *                    "fd N kept" if that fd still names /dev/null
 *   lifecycle tcp4|tcp6|unix   connect, 100 bytes up, 200 down, close
 *
 * Exit status 0 unless something unexpected failed (then 2). */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline))

static void die(const char *what)
{
    fprintf(stderr, "audit_prog: %s: %s\n", what, strerror(errno));
    exit(2);
}

static socklen_t listen_addr(const char *fam, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (strcmp(fam, "tcp6") == 0) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        return sizeof *a;
    }
    if (strcmp(fam, "unix") == 0) {
        struct sockaddr_un *a = (struct sockaddr_un *)ss;
        a->sun_family = AF_UNIX;
        snprintf(a->sun_path, sizeof a->sun_path, "/tmp/audit_prog.%d.sock",
                 (int)getpid());
        unlink(a->sun_path);
        return sizeof *a;
    }
    struct sockaddr_in *a = (struct sockaddr_in *)ss;
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return sizeof *a;
}

/* A connected pair in this process: *srv accepted, *cli connected. */
static void make_pair(const char *fam, int *srv, int *cli)
{
    struct sockaddr_storage ss;
    socklen_t len = listen_addr(fam, &ss);
    int l = socket(ss.ss_family, SOCK_STREAM, 0);
    if (l < 0 || bind(l, (struct sockaddr *)&ss, len) != 0 || listen(l, 4) != 0)
        die("listen");
    len = sizeof ss;
    getsockname(l, (struct sockaddr *)&ss, &len);
    *cli = socket(ss.ss_family, SOCK_STREAM, 0);
    if (*cli < 0 || connect(*cli, (struct sockaddr *)&ss, len) != 0)
        die("connect");
    *srv = accept(l, NULL, NULL);
    if (*srv < 0)
        die("accept");
    close(l);
    if (ss.ss_family == AF_UNIX)
        unlink(((struct sockaddr_un *)&ss)->sun_path);
}

static const char *errname(int e)
{
    return e == EPIPE ? "EPIPE" : e == ECONNRESET ? "ECONNRESET" : strerror(e);
}

static void hang_up(int fd, int rst)
{
    if (rst) {
        struct linger lg = { 1, 0 };
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(fd);
}

static void wait_hangup(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLRDHUP };
    poll(&p, 1, 2000);
}

/* The server's writing function: the event must name it. */
static NOINLINE int write_response(int fd)
{
    static char body[65536];
    memset(body, 'x', sizeof body);
    for (int i = 0; i < 64; i++)
        if (write(fd, body, sizeof body) < 0)
            return errno;
    return 0;
}

static int hangup_story(int rst)
{
    int srv, cli;
    char head[] = "HTTP/1.1 200 OK\r\n\r\n", buf[64];
    make_pair("tcp4", &srv, &cli);
    if (write(srv, head, sizeof head - 1) != (ssize_t)sizeof head - 1 ||
        read(cli, buf, sizeof buf) <= 0)
        die("header");
    hang_up(cli, rst);
    wait_hangup(srv);
    for (int tries = 0; tries < 3; tries++) {
        int e = write_response(srv);
        if (!e)
            continue;
        printf("write_response: %s\n", errname(e));
        fflush(stdout);
        if (e == EPIPE)
            break;
    }
    close(srv);
    return 0;
}

static NOINLINE int read_reply(int fd)
{
    char buf[256];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0)
            return errno;
        if (n == 0)
            return 0;
    }
}

static int reader_story(void)
{
    int srv, cli;
    make_pair("tcp4", &srv, &cli);
    if (write(srv, "hello", 5) != 5)
        die("write");
    struct pollfd p = { .fd = cli, .events = POLLIN };
    poll(&p, 1, 2000);
    hang_up(srv, 1);
    usleep(20000);
    int e = read_reply(cli);
    printf("read_reply: %s\n", e ? errname(e) : "EOF");
    close(cli);
    return 0;
}

static long long now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

static NOINLINE long flood_writes(int fd, long n, int gap_ms)
{
    long epipes = 0;
    for (long i = 0; i < n; i++) {
        if (send(fd, "x", 1, 0) < 0 && errno == EPIPE)
            epipes++;
        if (gap_ms && i + 1 < n)
            usleep((useconds_t)gap_ms * 1000);
    }
    return epipes;
}

/* `depth` more frames between main and the failing call. */
static NOINLINE long nested_flood(int fd, long n, int gap_ms, int depth)
{
    if (depth > 0) {
        long r = nested_flood(fd, n, gap_ms, depth - 1);
        __asm__ volatile("" ::: "memory"); /* a real frame, not a jump */
        return r;
    }
    return flood_writes(fd, n, gap_ms);
}

/* A server socket whose peer is gone: every write now fails with EPIPE. */
static int broken_pipe(void)
{
    int srv, cli;
    signal(SIGPIPE, SIG_IGN);
    make_pair("tcp4", &srv, &cli);
    hang_up(cli, 0);
    wait_hangup(srv);
    if (write(srv, "x", 1) != 1) /* answered by RST: then EPIPE */
        die("first write");
    usleep(50000);
    return srv;
}

static int flood_story(long n, int depth, int gap_ms)
{
    int fd = broken_pipe();
    long long t0 = now_ns();
    long epipes = nested_flood(fd, n, gap_ms, depth);
    long long t1 = now_ns();
    printf("epipes: %ld\nns per write: %lld\n", epipes, n ? (t1 - t0) / n : 0);
    return 0;
}

static int idle_story(int ms)
{
    int srv, cli;
    char buf[64];
    make_pair("tcp4", &srv, &cli);
    usleep((useconds_t)ms * 1000);
    ssize_t r = read(srv, buf, sizeof buf);
    if (r < 0)
        printf("idle read: %s\n", strerror(errno));
    else
        printf("idle read: %zd bytes\n", r);
    return 0;
}

/* The fd this process has open on `path`, or -1. */
static int fd_of(const char *path)
{
    DIR *d = opendir("/proc/self/fd");
    int found = -1;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char link[300], target[PATH_MAX];
        snprintf(link, sizeof link, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(link, target, sizeof target - 1);
        if (n > 0 && (target[n] = 0, strcmp(target, path) == 0))
            found = atoi(e->d_name);
    }
    if (d)
        closedir(d);
    return found;
}

static int dup2_story(const char *logpath)
{
    int logfd = fd_of(logpath);
    if (logfd < 0)
        die("log fd not found");
    int null = open("/dev/null", O_WRONLY);
    if (null < 0 || dup2(null, logfd) != logfd)
        die("dup2");
    close(null);
    hangup_story(0);
    char link[64], target[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", logfd);
    ssize_t n = readlink(link, target, sizeof target - 1);
    target[n > 0 ? n : 0] = 0;
    printf("fd %d %s\n", logfd, strcmp(target, "/dev/null") ? "lost" : "kept");
    return 0;
}

static int lifecycle_story(const char *fam)
{
    int srv, cli;
    char up[100], down[200];
    memset(up, 'u', sizeof up);
    memset(down, 'd', sizeof down);
    make_pair(fam, &srv, &cli);
    if (write(cli, up, sizeof up) != sizeof up ||
        recv(srv, up, sizeof up, MSG_WAITALL) != sizeof up ||
        send(srv, down, sizeof down, 0) != sizeof down ||
        recv(cli, down, sizeof down, MSG_WAITALL) != sizeof down)
        die("exchange");
    close(cli);
    close(srv);
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    const char *arg = argc > 2 ? argv[2] : "";
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(mode, "hangup") == 0)
        return hangup_story(strcmp(arg, "rst") == 0);
    if (strcmp(mode, "reader") == 0)
        return reader_story();
    if (strcmp(mode, "flood") == 0)
        return flood_story(atol(arg), argc > 3 ? atoi(argv[3]) : 0, 0);
    if (strcmp(mode, "slow") == 0)
        return flood_story(atol(arg), 0, argc > 3 ? atoi(argv[3]) : 100);
    if (strcmp(mode, "idle") == 0)
        return idle_story(atoi(arg));
    if (strcmp(mode, "cloexec") == 0) {
        int fd = fd_of(arg);
        printf("cloexec %s\n", fd >= 0 && (fcntl(fd, F_GETFD) & FD_CLOEXEC)
                                   ? "yes" : "no");
        return 0;
    }
    if (strcmp(mode, "closefrom") == 0) {
        closefrom(3);
        return hangup_story(0);
    }
    if (strcmp(mode, "dup2") == 0)
        return dup2_story(arg);
    if (strcmp(mode, "lifecycle") == 0)
        return lifecycle_story(*arg ? arg : "tcp4");
    fprintf(stderr, "usage: audit_prog MODE ... (see the comment at the top)\n");
    return 2;
}
