/* dl_scale MODE N SECONDS [pairs]: many idle loopback TCP connections.
 *
 * By default the client ends (N sockets, all governed when run under the
 * library: N armed deadlines) are in this process and the server ends are
 * held by a helper: this program re-executed with LD_PRELOAD removed from
 * its environment, so the helper is never governed. With `pairs`, both ends
 * live in this process (2N governed sockets, 2N fds: needs RLIMIT_NOFILE
 * above 2N).
 *
 *   fire N IDLE   run with idle_timeout=IDLE (seconds, may be fractional):
 *                 open N pairs, record each end's open time, wait in epoll
 *                 for each end to see EOF (the library shuts it down), and
 *                 report lateness = EOF time - (open time + IDLE), in ms.
 *                 Gives up at IDLE + 20 s.
 *   idle N SECS   open N pairs, then sit SECS seconds with nothing due;
 *                 report VmRSS growth from opening them and the process's
 *                 CPU time (all threads) while sitting.
 *
 * Output: one line of key=value pairs on stdout. Every socket is closed
 * with SO_LINGER {1,0} at the end (no TIME_WAIT left behind by `idle`).
 * The helper exits when this process's end of a pipe closes.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru); /* every thread of the process */
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

static long vmrss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmRSS:", 6))
            kb = atol(line + 6);
    if (f)
        fclose(f);
    return kb;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double pct(const double *sorted, long n, double p)
{
    if (n <= 0)
        return 0;
    long i = (long)(p / 100.0 * (double)(n - 1) + 0.5);
    return sorted[i < n ? i : n - 1];
}

/* Raise RLIMIT_NOFILE to `want` fds if allowed; return what we got. */
static long fd_budget(long want)
{
    struct rlimit rl = { .rlim_cur = (rlim_t)want, .rlim_max = (rlim_t)want };
    if (setrlimit(RLIMIT_NOFILE, &rl) == 0)
        return want;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    return (long)rl.rlim_cur;
}

static int listener(struct sockaddr_in *a)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    socklen_t alen = sizeof *a;
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (l < 0 || bind(l, (struct sockaddr *)a, sizeof *a) || listen(l, 4096) ||
        getsockname(l, (struct sockaddr *)a, &alen)) {
        perror("listen");
        exit(2);
    }
    return l;
}

static void close_all(int *fds, long n)
{
    struct linger lg = { 1, 0 };
    for (long i = 0; i < n; i++) {
        if (fds[i] < 0)
            continue;
        setsockopt(fds[i], SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(fds[i]);
    }
}

/* The helper: accept n connections on the listener given as fd 3, report
 * "ready" on fd 4 (a pipe), hold them until fd 4 reads EOF. */
static int helper(long n)
{
    fd_budget(n + 64);
    int l = 3, ctl = 4;
    int *fds = calloc((size_t)n, sizeof *fds);
    long got = 0;
    struct pollfd p[2] = { { .fd = l, .events = POLLIN },
                           { .fd = ctl, .events = POLLIN } };
    while (got < n) {
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        if (p[1].revents)
            break; /* the parent gave up or died */
        if (p[0].revents) {
            int s = accept(l, NULL, NULL);
            if (s >= 0)
                fds[got++] = s;
            else if (errno == EMFILE || errno == ENFILE)
                break;
        }
    }
    char buf[16];
    while (read(ctl, buf, sizeof buf) > 0) /* until the parent closes it */
        ;
    close_all(fds, got);
    return 0;
}

static pid_t start_helper(int l, long n, int *ctl, char **argv)
{
    int p[2];
    if (pipe(p))
        exit(2);
    pid_t pid = fork();
    if (pid < 0)
        exit(2);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        dup2(l, 3);
        dup2(p[0], 4);
        for (int fd = 5; fd < 64; fd++)
            close(fd);
        unsetenv("LD_PRELOAD");
        char nbuf[32];
        snprintf(nbuf, sizeof nbuf, "%ld", n);
        char *args[] = { argv[0], "helper", nbuf, "1", NULL };
        execv("/proc/self/exe", args);
        _exit(127);
    }
    close(p[0]);
    *ctl = p[1];
    return pid;
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: dl_scale fire|idle N SECONDS [pairs]\n");
        return 2;
    }
    long n = atol(argv[2]);
    if (!strcmp(argv[1], "helper"))
        return helper(n);
    int fire = !strcmp(argv[1], "fire");
    int pairs = argc > 4 && !strcmp(argv[4], "pairs");
    double secs = atof(argv[3]);
    if (n <= 0 || secs <= 0 || (!fire && strcmp(argv[1], "idle"))) {
        fprintf(stderr, "dl_scale: bad arguments\n");
        return 2;
    }
    long per = pairs ? 2 : 1; /* sockets in this process per connection */
    long budget = fd_budget(per * n + 64);
    if ((budget - 64) / per < n) {
        n = (budget - 64) / per;
        fprintf(stderr, "dl_scale: RLIMIT_NOFILE allows only %ld\n", n);
    }
    long nsock = per * n;
    int *fds = calloc((size_t)nsock, sizeof *fds);
    double *t_open = calloc((size_t)nsock, sizeof *t_open);
    double *late = calloc((size_t)nsock, sizeof *late);
    char *seen = calloc((size_t)nsock, 1);
    struct epoll_event *evs = calloc(4096, sizeof *evs);
    if (!fds || !t_open || !late || !seen || !evs)
        return 2;
    memset(fds, -1, (size_t)nsock * sizeof *fds);

    struct sockaddr_in a;
    int l = listener(&a);
    int ctl = -1;
    pid_t hp = 0;
    if (!pairs) {
        hp = start_helper(l, n, &ctl, argv);
        close(l);
        l = -1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    long rss0 = vmrss_kb();

    double t0 = now_s();
    long opened = 0;
    for (long i = 0; i < n; i++) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (c < 0 || connect(c, (struct sockaddr *)&a, sizeof a) != 0) {
            perror("connect");
            if (c >= 0)
                close(c);
            break;
        }
        t_open[per * i] = now_s();
        fds[per * i] = c;
        if (pairs) {
            int s = accept(l, NULL, NULL);
            if (s < 0) {
                perror("accept");
                break;
            }
            t_open[per * i + 1] = now_s();
            fds[per * i + 1] = s;
        }
        opened++;
    }
    double t_opened = now_s() - t0;
    long rss1 = vmrss_kb();
    long nfd = per * opened;
    for (long i = 0; i < nfd; i++) {
        struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP | EPOLLONESHOT,
                                  .data.u64 = (uint64_t)i };
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }

    if (fire) {
        long got = 0;
        double give_up = now_s() + secs + 20;
        while (got < nfd) {
            double left = give_up - now_s();
            if (left <= 0)
                break;
            int k = epoll_wait(ep, evs, 4096, (int)(left * 1000) + 1);
            double t = now_s();
            for (int j = 0; j < k; j++) {
                long i = (long)evs[j].data.u64;
                if (seen[i])
                    continue;
                seen[i] = 1;
                late[got++] = (t - (t_open[i] + secs)) * 1000.0;
            }
        }
        qsort(late, (size_t)got, sizeof *late, cmp_double);
        printf("mode=fire conns=%ld governed_sockets=%ld open_s=%.3f "
               "fired=%ld late_p50_ms=%.3f late_p99_ms=%.3f "
               "late_max_ms=%.3f late_min_ms=%.3f\n",
               opened, nfd, t_opened, got, pct(late, got, 50),
               pct(late, got, 99), got ? late[got - 1] : 0,
               got ? late[0] : 0);
    } else {
        /* Let the library's own setup finish before the window opens. */
        struct timespec settle = { 0, 200 * 1000 * 1000 };
        nanosleep(&settle, NULL);
        double c0 = cpu_s(), w0 = now_s();
        double end = w0 + secs;
        long events = 0;
        for (;;) {
            double left = end - now_s();
            if (left <= 0)
                break;
            int k = epoll_wait(ep, evs, 4096, (int)(left * 1000) + 1);
            if (k > 0)
                events += k; /* something fired early: a bug */
        }
        double cpu = cpu_s() - c0, wall = now_s() - w0;
        printf("mode=idle conns=%ld sockets=%ld open_s=%.3f rss_before_kb=%ld "
               "rss_after_kb=%ld rss_delta_kb=%ld idle_wall_s=%.3f "
               "idle_cpu_ms=%.3f early_events=%ld\n",
               opened, nfd, t_opened, rss0, rss1, rss1 - rss0, wall,
               cpu * 1000.0, events);
    }
    fflush(stdout);

    close_all(fds, nfd);
    if (l >= 0)
        close(l);
    close(ep);
    if (hp > 0) {
        close(ctl);
        waitpid(hp, NULL, 0);
    }
    return opened == n ? 0 : 1;
}
