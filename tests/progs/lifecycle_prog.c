/* lifecycle_prog MODE [ARG]
 *
 * Process and descriptor patterns that must behave exactly as without the
 * library (or, where a deadline fires, as SPEC §4 says). Each mode prints
 * what the program observed on one line of stdout ("key=value ...") and
 * exits 0; a mode that hangs is stopped by a watchdog thread after 12 s
 * and prints "hung". The tests run modes with and without libnettimeo.so
 * and a config chosen for the mode.
 *
 *   vfork-close-range  vfork; the child close_range()s everything and
 *                      execs /bin/true (Python's subprocess); then a
 *                      blocking recv on a silent connection
 *   fork-idle          a fork child sleeps in poll() while the parent keeps
 *                      its connection busy for 3 s
 *   fork-threads       threads write (coalescing, request_timeout) while
 *                      the main thread forks 200 times
 *   signal-dup-close   a 1 ms SIGALRM handler dup()s and close()s a
 *                      governed socket while the main thread opens, uses
 *                      and closes connections for 2 s
 *   dup-idle           a busy connection with an unused dup for 3 s
 *   twins-exec         the socket on fds 3 and 4 across exec (inetd);
 *                      traffic on fd 3 only for 3 s, then writes on fd 4
 *   scm-reused         a connected socket received with SCM_RIGHTS lands on
 *                      the number a file had; blocking recv on it
 *   fclose-reused      an expired socket closed with fclose(fdopen());
 *                      a fresh socket received on its number is written to
 *   rlimit-threads     RLIMIT_NOFILE 40: how many connections a thread-per-
 *                      connection server (each thread blocked in recv)
 *                      accepts from clients in the same process
 *   spawn-env          what system() and popen() children see of LD_PRELOAD
 */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *errname(int e)
{
    switch (e) {
    case 0: return "0";
    case ETIMEDOUT: return "ETIMEDOUT";
    case EAGAIN: return "EAGAIN";
    case EPIPE: return "EPIPE";
    case ECONNRESET: return "ECONNRESET";
    case EBADF: return "EBADF";
    case EINTR: return "EINTR";
    case EMFILE: return "EMFILE";
    case ENOTSOCK: return "ENOTSOCK";
    }
    return "other";
}

static void *watchdog(void *arg)
{
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* the program's signals */
    long long end = pc_now_ms() + 12000;
    while (pc_now_ms() < end)
        sleep(1);
    printf("hung\n");
    fflush(stdout);
    _exit(3);
    return arg;
}

static void start_watchdog(void)
{
    pthread_t t;
    pthread_create(&t, NULL, watchdog, NULL);
    pthread_detach(t);
}

static void timed_recv(int fd)
{
    char b[16];
    long long t0 = pc_now_ms();
    ssize_t r = recv(fd, b, sizeof b, 0);
    int e = r < 0 ? errno : 0;
    printf("recv=%zd errno=%s elapsed_ms=%lld\n", r, errname(e),
           pc_now_ms() - t0);
}

static int mode_vfork_close_range(void)
{
    int c, s;
    pc_pair(AF_INET, &c, &s);
    pid_t pid = vfork();
    if (pid == 0) {
        close_range(3, ~0U, 0);
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    timed_recv(c);
    return 0;
}

static int mode_fork_idle(void)
{
    int c, s;
    pc_pair(AF_INET, &c, &s);
    pid_t pid = fork();
    if (pid == 0) {
        poll(NULL, 0, 2500); /* a wait the library sees */
        _exit(0);
    }
    signal(SIGPIPE, SIG_IGN);
    int i, bad = 0;
    for (i = 0; i < 30 && !bad; i++) {
        char x = 'x';
        if (write(c, &x, 1) != 1 || read(s, &x, 1) != 1 ||
            write(s, &x, 1) != 1 || read(c, &x, 1) != 1)
            bad = errno ? errno : -1;
        poll(NULL, 0, 100);
    }
    int st;
    waitpid(pid, &st, 0);
    printf("rounds=%d errno=%s\n", i, bad > 0 ? errname(bad) : bad ? "eof" : "0");
    return 0;
}

static volatile int stop_writers;

static void *writer(void *arg)
{
    int fd = (int)(long)arg;
    char b[8] = "abcdefg";
    for (unsigned n = 1; !stop_writers; n++) {
        if (write(fd, b, sizeof b) < 0)
            break;
        if (n % 32 == 0)
            poll(NULL, 0, 1); /* a new buffer, and its timer, every 32 */
    }
    return NULL;
}

static void *drain(void *arg)
{
    int fd = (int)(long)arg;
    char b[4096];
    while (read(fd, b, sizeof b) > 0)
        ;
    return NULL;
}

static int mode_fork_threads(void)
{
    enum { N = 4 };
    int c[N], s[N];
    pthread_t w[N], d[N];
    for (int i = 0; i < N; i++) {
        pc_pair(AF_INET, &c[i], &s[i]);
        pthread_create(&d[i], NULL, drain, (void *)(long)s[i]);
        pthread_create(&w[i], NULL, writer, (void *)(long)c[i]);
    }
    int forks = 0;
    for (; forks < 200; forks++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(0);
        if (pid < 0)
            break;
        waitpid(pid, NULL, 0);
    }
    stop_writers = 1;
    for (int i = 0; i < N; i++) {
        pthread_join(w[i], NULL);
        shutdown(c[i], SHUT_WR);
        pthread_join(d[i], NULL);
    }
    printf("forks=%d\n", forks);
    return 0;
}

static int handler_fd = -1;
static volatile sig_atomic_t handled;

static void on_alarm(int sig)
{
    int e = errno;
    int d = dup(handler_fd);
    if (d >= 0)
        close(d);
    handled++;
    errno = e;
    (void)sig;
}

static int mode_signal_dup_close(void)
{
    int c, s;
    pc_pair(AF_INET, &c, &s);
    handler_fd = c;
    struct sigaction sa = { .sa_handler = on_alarm, .sa_flags = SA_RESTART };
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = { { 0, 1000 }, { 0, 1000 } };
    setitimer(ITIMER_REAL, &it, NULL);
    long long end = pc_now_ms() + 2000;
    int rounds = 0, bad = 0;
    while (pc_now_ms() < end) {
        int a, b;
        pc_pair(AF_INET, &a, &b);
        char x = 'y';
        if (write(a, &x, 1) != 1 || read(b, &x, 1) != 1)
            bad++;
        close(a);
        close(b);
        rounds++;
    }
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &off, NULL);
    printf("done bad=%d handled=%s\n", bad, handled > 10 ? "yes" : "no");
    (void)rounds;
    return 0;
}

/* Traffic both ways on c (peer s) every 200 ms for 3 s. */
static int busy(int c, int s, const char *what)
{
    signal(SIGPIPE, SIG_IGN);
    int i, bad = 0;
    for (i = 0; i < 15 && !bad; i++) {
        char x = 'z';
        if (write(c, &x, 1) != 1 || read(s, &x, 1) != 1 ||
            write(s, &x, 1) != 1 || read(c, &x, 1) != 1)
            bad = errno ? errno : -1;
        poll(NULL, 0, 200);
    }
    printf("%s rounds=%d errno=%s\n", what, i,
           bad > 0 ? errname(bad) : bad ? "eof" : "0");
    return 0;
}

static int mode_dup_idle(void)
{
    int c, s;
    pc_pair(AF_INET, &c, &s);
    int d = dup(c);
    busy(c, s, "dup");
    close(d);
    return 0;
}

static int mode_twins_exec(const char *self, const char *arg)
{
    if (arg && strcmp(arg, "child") == 0) {
        /* fds 3 and 4: one socket, both used (inetd's 0 and 1); fd 5:
         * its peer, which came across exec too */
        char y;
        if (write(4, "v", 1) != 1 || read(5, &y, 1) != 1)
            pc_die("first use of fd 4:");
        busy(3, 5, "twins");
        char x = 'w';
        ssize_t r = write(4, &x, 1);
        printf("fd4 write=%zd errno=%s\n", r, errname(r < 0 ? errno : 0));
        return 0;
    }
    int c, s;
    pc_pair(AF_INET, &c, &s);
    int hc = fcntl(c, F_DUPFD, 20), hs = fcntl(s, F_DUPFD, 20);
    close(c);
    close(s);
    if (dup2(hc, 3) < 0 || dup2(hc, 4) < 0 || dup2(hs, 5) < 0)
        pc_die("dup2:");
    close(hc);
    close(hs);
    execl(self, self, "twins-exec", "child", (char *)NULL);
    pc_die("exec:");
}

static int send_fd(int via, int fd)
{
    char dummy = 'f';
    struct iovec v = { &dummy, 1 };
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
    struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1,
                        .msg_control = u.buf, .msg_controllen = sizeof u.buf };
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    return sendmsg(via, &m, 0) == 1 ? 0 : -1;
}

static int recv_fd(int via)
{
    char dummy;
    struct iovec v = { &dummy, 1 };
    union { char buf[CMSG_SPACE(sizeof(int))]; struct cmsghdr align; } u;
    struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1,
                        .msg_control = u.buf, .msg_controllen = sizeof u.buf };
    if (recvmsg(via, &m, 0) != 1)
        return -1;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    int fd = -1;
    if (cm && cm->cmsg_type == SCM_RIGHTS)
        memcpy(&fd, CMSG_DATA(cm), sizeof fd);
    return fd;
}

static int mode_scm_reused(void)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        pc_die("socketpair:");
    int f = open("/dev/null", O_WRONLY); /* used, then closed */
    if (write(f, "x", 1) != 1)
        pc_die("write /dev/null:");
    int n = f;
    close(f);
    pid_t pid = fork();
    if (pid == 0) { /* another process makes the connection and passes it */
        int c, s;
        pc_pair(AF_INET, &c, &s);
        send_fd(sv[1], c);
        poll(NULL, 0, 6000); /* keeps the silent peer open */
        _exit(0);
    }
    int got = recv_fd(sv[0]);
    printf("landed=%s ", got == n ? "same" : "other");
    timed_recv(got);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return 0;
}

static int mode_fclose_reused(void)
{
    int c, s;
    pc_pair(AF_INET, &c, &s);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        pc_die("socketpair:");
    poll(NULL, 0, 1500); /* idle_timeout fires on c and s */
    int c2, s2;
    pc_pair(AF_INET, &c2, &s2); /* fresh: numbers above c's */
    FILE *f = fdopen(c, "w");
    int n = c;
    fclose(f);
    send_fd(sv[1], c2);
    close(c2);
    int got = recv_fd(sv[0]);
    char x = 'q';
    ssize_t r = write(got, &x, 1);
    int e = r < 0 ? errno : 0;
    ssize_t r2 = read(s2, &x, 1);
    printf("landed=%s write=%zd errno=%s peer_read=%zd\n",
           got == n ? "same" : "other", r, errname(e), r2);
    return 0;
}

static void *blocked_reader(void *arg)
{
    int fd = (int)(long)arg;
    char b[16];
    while (read(fd, b, sizeof b) > 0)
        ;
    return NULL;
}

static int mode_rlimit_threads(void)
{
    struct rlimit rl = { 40, 40 };
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0)
        pc_die("setrlimit:");
    char shown[64];
    int l = pc_listen("127.0.0.1:0", 64, shown, sizeof shown);
    char addr[80];
    snprintf(addr, sizeof addr, "127.0.0.1:%s", shown);
    int accepted = 0;
    for (;;) {
        int c = pc_connect(addr);
        if (c < 0)
            break;
        int s = accept(l, NULL, NULL);
        if (s < 0) {
            close(c);
            break;
        }
        accepted++;
        pthread_t t;
        pthread_create(&t, NULL, blocked_reader, (void *)(long)s);
        pthread_detach(t);
        poll(NULL, 0, 20); /* let the thread block in read */
    }
    printf("accepted=%d\n", accepted);
    return 0;
}

static int mode_spawn_env(void)
{
    fflush(stdout);
    /* (an ASan build preloads its runtime too: only ours counts) */
    int r = system("case \"$LD_PRELOAD\" in *libnettimeo*) echo system=preloaded;; "
                   "*) echo system=;; esac");
    FILE *p = popen("case \"$LD_PRELOAD\" in *libnettimeo*) echo popen=preloaded;; "
                    "*) echo popen=;; esac", "r");
    char line[128] = "";
    if (p && fgets(line, sizeof line, p))
        fputs(line, stdout);
    if (p)
        pclose(p);
    printf("status=%d\n", r);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        pc_die("usage: lifecycle_prog MODE [ARG]");
    setvbuf(stdout, NULL, _IOLBF, 0);
    start_watchdog();
    const char *m = argv[1];
    if (!strcmp(m, "vfork-close-range")) return mode_vfork_close_range();
    if (!strcmp(m, "fork-idle")) return mode_fork_idle();
    if (!strcmp(m, "fork-threads")) return mode_fork_threads();
    if (!strcmp(m, "signal-dup-close")) return mode_signal_dup_close();
    if (!strcmp(m, "dup-idle")) return mode_dup_idle();
    if (!strcmp(m, "twins-exec")) return mode_twins_exec(argv[0], argv[2]);
    if (!strcmp(m, "scm-reused")) return mode_scm_reused();
    if (!strcmp(m, "fclose-reused")) return mode_fclose_reused();
    if (!strcmp(m, "rlimit-threads")) return mode_rlimit_threads();
    if (!strcmp(m, "spawn-env")) return mode_spawn_env();
    pc_die("unknown mode %s", m);
}
