/* timer_prog MODE
 *
 * The timer as the program sees it (deadline/timer.c): a single-threaded
 * program (no pthread; an alarm(20) watchdog) that arms deadlines on
 * loopback pairs and checks that the library's timer is invisible to it
 * and to glibc. Prints one line "key=value ..." and exits 0, or exits 1
 * with "FAIL ..." on stdout. Config: idle_timeout (the tests use 200ms).
 *
 *   single      glibc still believes the process single-threaded once a
 *               deadline is armed; the timer is one task; a parked
 *               connection is cut while the program sleeps (unhooked)
 *   fork        fork children while the parent's timer fires: a child
 *               has no timer until it arms, then its own deadline fires
 *   exec        re-exec after arming: the new image has no timer task
 *   exit        children exit (exit, _exit, exit_group) while their timer
 *               fires 64 deadlines: status kept, no hang
 *   signals     a process-directed signal storm while the timer fires:
 *               every handler runs in the program's thread; a signal the
 *               program blocks stays pending (nobody else takes it);
 *               SA_RESTART read restarts, a handler without it gets EINTR
 *   errno       the program's errno never changes while the timer fires
 *   heap        malloc, free, stdio and localtime in a loop (glibc's
 *               unlocked single-threaded paths) while the timer fires
 *               and logs: nothing corrupted (glibc's own heap checks)
 *   vfork       a vfork child calls setuid and execs; the parent's timer
 *               still fires
 *   seccomp     a filter installed by the only thread: the timer is
 *               stopped before it, and none is started under it
 *   setuid ARG  (root) drop privileges with ARG = setuid | setresuid |
 *               syscall | groups: every task of the process has the new
 *               uid, and the deadline still fires
 *   capset ARG  (root) drop every capability, keeping uid 0, with
 *               ARG = libc | syscall: no task keeps one
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/single_threaded.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FAIL(...)                                                            \
    do {                                                                     \
        printf("FAIL " __VA_ARGS__);                                         \
        printf("\n");                                                        \
        fflush(stdout);                                                      \
        _exit(1);                                                            \
    } while (0)

static int listener = -1;
static struct sockaddr_in laddr;

static void listen_once(void)
{
    listener = socket(AF_INET, SOCK_STREAM, 0);
    laddr = (struct sockaddr_in){ .sin_family = AF_INET,
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    socklen_t n = sizeof laddr;
    if (bind(listener, (void *)&laddr, n) || listen(listener, 512) ||
        getsockname(listener, (void *)&laddr, &n))
        FAIL("listen: %s", strerror(errno));
}

/* A connected pair with a byte moved (the idle clocks run); the accepted
 * end in *srv. */
static int pair(int *srv)
{
    int c = socket(AF_INET, SOCK_STREAM, 0);
    if (c < 0 || connect(c, (void *)&laddr, sizeof laddr))
        FAIL("connect: %s", strerror(errno));
    int s = accept(listener, NULL, NULL);
    char b;
    if (s < 0 || write(c, "x", 1) != 1 || read(s, &b, 1) != 1)
        FAIL("pair: %s", strerror(errno));
    *srv = s;
    return c;
}

/* Raw nanosleep: no hook, no errno change on success. */
static void nap_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (syscall(SYS_nanosleep, &ts, &ts) != 0 && errno == EINTR)
        ;
}

static int count_tasks(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)))
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* The connection was cut by the timer: it reads EOF (shutdown) soon. */
static int cut_within(int fd, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    if (poll(&p, 1, ms) != 1)
        return 0;
    char b;
    return read(fd, &b, 1) <= 0;
}

static void mode_single(void)
{
    int s, c = pair(&s);
    int single = __libc_single_threaded, tasks = count_tasks();
    nap_ms(600); /* unhooked: only the timer can act */
    int cut = cut_within(s, 0) && cut_within(c, 0);
    printf("single=%d tasks=%d cut=%d\n", single, tasks, cut);
}

static void mode_fork(void)
{
    int s0, c0 = pair(&s0);
    (void)c0;
    if (count_tasks() != 2)
        FAIL("parent tasks=%d before fork", count_tasks());
    /* Many connections coming due from 200 ms on: the timer is firing
     * while the children are made. */
    for (int i = 0; i < 60; i++) {
        int s;
        pair(&s);
    }
    nap_ms(190);
    enum { N = 40 };
    pid_t kids[N];
    for (int i = 0; i < N; i++) {
        kids[i] = fork();
        if (kids[i] < 0)
            FAIL("fork: %s", strerror(errno));
        if (kids[i] == 0) {
            int before = count_tasks();
            listen_once(); /* its own: no accepting a sibling's connection */
            int s, c = pair(&s); /* arms: takes the timer lock */
            int after = count_tasks();
            int cut = cut_within(s, 3000) && cut_within(c, 1000);
            _exit(before == 1 && after == 2 && cut ? 0 : 10 + before * 3 + after);
        }
        nap_ms(2);
    }
    int bad = 0;
    for (int i = 0; i < N; i++) {
        int st;
        if (waitpid(kids[i], &st, 0) != kids[i] || !WIFEXITED(st) ||
            WEXITSTATUS(st) != 0) {
            printf("child %d status %#x\n", i, st);
            bad++;
        }
    }
    printf("forked=%d bad=%d parent_cut=%d\n", N, bad, cut_within(s0, 2000));
}

static void mode_exec(char *self)
{
    int s, c = pair(&s);
    (void)c;
    if (count_tasks() != 2)
        FAIL("tasks=%d before exec", count_tasks());
    execl(self, self, "after-exec", (char *)NULL);
    FAIL("exec: %s", strerror(errno));
}

static void mode_exit(void)
{
    int bad = 0;
    for (int round = 0; round < 24; round++) {
        pid_t k = fork();
        if (k == 0) {
            int s;
            for (int i = 0; i < 64; i++)
                pair(&s);
            nap_ms(200 + round % 6); /* the timer is cutting them now */
            switch (round % 3) {
            case 0: exit(3);
            case 1: _exit(3);
            default: syscall(SYS_exit_group, 3);
            }
        }
        int st;
        if (waitpid(k, &st, 0) != k || !WIFEXITED(st) || WEXITSTATUS(st) != 3) {
            printf("round %d status %#x\n", round, st);
            bad++;
        }
    }
    printf("exits=24 bad=%d\n", bad);
}

static volatile sig_atomic_t handled, foreign;
static pid_t main_tid;

static void on_usr1(int sig)
{
    (void)sig;
    handled++;
    if ((pid_t)syscall(SYS_gettid) != main_tid)
        foreign++;
}

static void mode_signals(void)
{
    main_tid = (pid_t)syscall(SYS_gettid);
    for (int i = 0; i < 80; i++) {
        int s;
        pair(&s);
    }
    struct sigaction sa = { .sa_handler = on_usr1, .sa_flags = SA_RESTART };
    sigaction(SIGUSR1, &sa, NULL);
    /* 1. Blocked in the program: stays pending for the program. */
    sigset_t one;
    sigemptyset(&one);
    sigaddset(&one, SIGUSR1);
    sigprocmask(SIG_BLOCK, &one, NULL);
    kill(getpid(), SIGUSR1);
    nap_ms(300); /* the timer fires meanwhile */
    sigset_t pend;
    sigpending(&pend);
    int pending = sigismember(&pend, SIGUSR1);
    int early = handled;
    sigprocmask(SIG_UNBLOCK, &one, NULL);
    int after_unblock = handled;
    /* 2. A storm from another process while the program sits in read()
     * on a pipe with SA_RESTART: never EINTR, every handler here. */
    int p[2];
    if (pipe(p))
        FAIL("pipe");
    pid_t me = getpid();
    pid_t k = fork();
    if (k == 0) {
        for (int i = 0; i < 3000; i++) {
            kill(me, SIGUSR1);
            if (i % 100 == 0)
                nap_ms(1);
        }
        nap_ms(50);
        (void)!write(p[1], "y", 1);
        _exit(0);
    }
    char b;
    ssize_t r = read(p[0], &b, 1);
    int rerr = r < 0 ? errno : 0;
    waitpid(k, NULL, 0);
    /* 3. Without SA_RESTART the same read gets EINTR. */
    sa.sa_flags = 0;
    sigaction(SIGUSR1, &sa, NULL);
    k = fork();
    if (k == 0) {
        nap_ms(100);
        kill(me, SIGUSR1);
        nap_ms(500);
        (void)!write(p[1], "z", 1);
        _exit(0);
    }
    ssize_t r2 = read(p[0], &b, 1);
    int r2err = r2 < 0 ? errno : 0;
    waitpid(k, NULL, 0);
    printf("pending=%d early=%d unblocked=%d restart_read=%zd/%d "
           "norestart_read=%zd/%s handled_gt=%d foreign=%d\n",
           pending, early, after_unblock, r, rerr, r2,
           r2err == EINTR ? "EINTR" : strerror(r2err), handled > 1, foreign);
}

static void mode_errno(void)
{
    for (int i = 0; i < 80; i++) {
        int s;
        pair(&s);
    }
    errno = 4242;
    int changed = 0;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do { /* no call that may set errno, for 700 ms */
        if (*(volatile int *)&errno != 4242)
            changed++;
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < 700);
    int e = errno;
    printf("errno=%d changed=%d\n", e, changed);
}

static void mode_heap(void)
{
    for (int i = 0; i < 80; i++) {
        int s;
        pair(&s);
    }
    FILE *null = fopen("/dev/null", "w");
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    long rounds = 0;
    void *keep[64] = { 0 };
    do {
        for (int i = 0; i < 64; i++) {
            free(keep[i]);
            keep[i] = malloc((size_t)(16 + (rounds * 7 + i) % 3000));
            memset(keep[i], i, 16);
        }
        time_t now = time(NULL);
        struct tm tm;
        char when[64];
        strftime(when, sizeof when, "%Y-%m-%d %H:%M:%S %Z", localtime_r(&now, &tm));
        fprintf(null, "%ld %s\n", rounds, when);
        rounds++;
        clock_gettime(CLOCK_MONOTONIC, &t);
    } while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < 700);
    for (int i = 0; i < 64; i++)
        free(keep[i]);
    fclose(null);
    printf("heap_rounds_gt=%d\n", rounds > 100);
}

static void mode_vfork(void)
{
    int s, c = pair(&s);
    pid_t k = vfork();
    if (k == 0) {
        /* Hooks bypass the library here; the timer is the parent's. */
        if (setuid(getuid()) != 0)
            _exit(5);
        execl("/bin/true", "true", (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(k, &st, 0);
    int tasks = count_tasks();
    int cut = cut_within(s, 3000) && cut_within(c, 1000);
    printf("vfork_status=%d tasks=%d cut=%d\n", WIFEXITED(st) ? WEXITSTATUS(st) : -1,
           tasks, cut);
}

static void mode_seccomp(void)
{
    int s, c = pair(&s);
    (void)c;
    int before = count_tasks();
    struct sock_filter allow = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    struct sock_fprog prog = { .len = 1, .filter = &allow };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
        FAIL("seccomp: %s", strerror(errno));
    int after = count_tasks();
    int s2, c2 = pair(&s2);
    (void)c2;
    nap_ms(400);
    printf("before=%d after=%d later=%d\n", before, after, count_tasks());
}

/* How many tasks of the process fail `ok` on their status text; the
 * number of tasks in *tasks. */
static int tasks_failing(int (*ok)(const char *status, const void *arg),
                         const void *arg, int *tasks)
{
    int bad = 0, n = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char path[300], buf[4096];
        snprintf(path, sizeof path, "/proc/self/task/%s/status", e->d_name);
        int fd = open(path, O_RDONLY);
        ssize_t len = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
        if (fd >= 0)
            close(fd);
        buf[len > 0 ? len : 0] = 0;
        bad += len <= 0 || !ok(buf, arg);
        n++;
    }
    if (d)
        closedir(d);
    *tasks = n;
    return bad;
}

static int has_uid(const char *st, const void *arg)
{
    unsigned want = *(const uid_t *)arg, r, ef, sv, fs;
    const char *u = strstr(st, "\nUid:");
    return u && sscanf(u + 5, "%u %u %u %u", &r, &ef, &sv, &fs) == 4 && r == want &&
           ef == want && sv == want && fs == want;
}

static int task_uids(uid_t want, int *tasks)
{
    return tasks_failing(has_uid, &want, tasks);
}

static void mode_setuid(const char *how)
{
    if (getuid() != 0)
        FAIL("needs root");
    const uid_t to = 65534;
    int s, c = pair(&s);
    if (count_tasks() != 2)
        FAIL("tasks=%d before the drop", count_tasks());
    int r;
    if (strcmp(how, "setuid") == 0)
        r = setgid(to) || setuid(to);
    else if (strcmp(how, "setresuid") == 0)
        r = setresgid(to, to, to) || setresuid(to, to, to);
    else if (strcmp(how, "syscall") == 0)
        r = syscall(SYS_setresgid, to, to, to) || syscall(SYS_setresuid, to, to, to);
    else if (strcmp(how, "groups") == 0)
        r = setgroups(0, NULL) || initgroups("nobody", to) || setregid(to, to) ||
            setreuid(to, to);
    else
        FAIL("unknown %s", how);
    if (r)
        FAIL("drop: %s", strerror(errno));
    int tasks, bad = task_uids(to, &tasks);
    int cut = cut_within(s, 3000) && cut_within(c, 1000);
    /* A connection made after the drop: the new timer governs it. */
    int s2, c2 = pair(&s2);
    int bad2 = task_uids(to, &tasks);
    int cut2 = cut_within(s2, 3000) && cut_within(c2, 1000);
    printf("how=%s tasks=%d bad_uid=%d cut=%d bad_uid_later=%d cut_later=%d\n", how,
           tasks, bad, cut, bad2, cut2);
}

/* Effective and permitted capabilities empty. */
static int no_caps(const char *st, const void *arg)
{
    (void)arg;
    const char *p = strstr(st, "\nCapPrm:"), *f = strstr(st, "\nCapEff:");
    return p && f && !strtoull(p + 9, NULL, 16) && !strtoull(f + 9, NULL, 16);
}

int capset(void *hdr, const void *data);

static void mode_capset(const char *how)
{
    if (getuid() != 0)
        FAIL("needs root");
    int s, c = pair(&s);
    if (count_tasks() != 2)
        FAIL("tasks=%d before the drop", count_tasks());
    struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
    struct __user_cap_data_struct none[2] = { { 0 } };
    long r = strcmp(how, "syscall") == 0 ? syscall(SYS_capset, &h, none) : capset(&h, none);
    if (r)
        FAIL("capset: %s", strerror(errno));
    int tasks, bad = tasks_failing(no_caps, NULL, &tasks);
    int cut = cut_within(s, 3000) && cut_within(c, 1000);
    printf("how=%s tasks=%d with_caps=%d cut=%d\n", how, tasks, bad, cut);
}

int main(int argc, char **argv)
{
    alarm(20);
    if (argc < 2)
        FAIL("usage");
    if (strcmp(argv[1], "after-exec") == 0) {
        printf("exec_tasks=%d\n", count_tasks());
        return 0;
    }
    listen_once();
    const char *m = argv[1];
    if (!strcmp(m, "single")) mode_single();
    else if (!strcmp(m, "fork")) mode_fork();
    else if (!strcmp(m, "exec")) mode_exec(argv[0]);
    else if (!strcmp(m, "exit")) mode_exit();
    else if (!strcmp(m, "signals")) mode_signals();
    else if (!strcmp(m, "errno")) mode_errno();
    else if (!strcmp(m, "vfork")) mode_vfork();
    else if (!strcmp(m, "heap")) mode_heap();
    else if (!strcmp(m, "seccomp")) mode_seccomp();
    else if (!strcmp(m, "setuid") && argc > 2) mode_setuid(argv[2]);
    else if (!strcmp(m, "capset") && argc > 2) mode_capset(argv[2]);
    else FAIL("unknown mode %s", m);
    return 0;
}
