/* A program that confines itself with a seccomp filter, then does socket
 * I/O with plain read/write: what sshd's pre-authentication child, vsftpd
 * or a browser's network process do. The filter is built by hand (no
 * libseccomp): it allows read, write and what libc needs, answers openat
 * with EACCES (as sshd's does), and kills the process with SIGSYS for
 * anything else: sendto, recvfrom, ppoll, fcntl, getsockopt... the calls a
 * socket library would add.
 *
 *   sb_prog prctl          prctl(PR_SET_SECCOMP), single thread
 *   sb_prog seccomp        syscall(SYS_seccomp), single thread
 *   sb_prog tsync          syscall(SYS_seccomp, TSYNC) while 3 other
 *                          threads do socket I/O, before and after
 *   sb_prog thread         a filter on one thread (no TSYNC): that thread
 *                          and a thread it creates do I/O under it, an
 *                          unconfined thread keeps doing I/O
 *   sb_prog blocked        a thread blocked in read on a governed
 *                          connection while another thread installs a
 *                          filter on itself: the read returns the bytes
 *                          that arrive afterwards
 *   sb_prog launch         install a filter (NoNewPrivs), then exec
 *                          `sb_prog child FD`: a program started under an
 *                          inherited filter
 *   sb_prog launch-broad   the same with a filter that allows everything
 *
 * Each mode exchanges data with an echo peer (a forked child, unconfined),
 * checks every byte, prints "ok ..." and exits 0. Exit 2: setup failed. */
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

#if defined(__x86_64__)
#define SB_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define SB_ARCH AUDIT_ARCH_AARCH64
#else
#error "add this architecture's AUDIT_ARCH"
#endif

/* What a program that only reads and writes needs from libc afterwards:
 * exit, futex for threads and joins, madvise/munmap when a thread ends. */
static const int base_calls[] = {
    SYS_read, SYS_write, SYS_close, SYS_exit, SYS_exit_group, SYS_futex,
    SYS_madvise, SYS_munmap, SYS_rt_sigreturn, SYS_rt_sigprocmask,
    SYS_clock_gettime, SYS_sched_yield, SYS_getpid, SYS_gettid,
};
/* Creating a thread (mode thread). */
static const int thread_calls[] = {
    SYS_clone, SYS_clone3, SYS_mmap, SYS_mprotect, SYS_set_robust_list,
    SYS_rseq,
};
/* exec and the dynamic loader (mode launch), found with strace. */
static const int exec_calls[] = {
    SYS_execve, SYS_brk, SYS_mmap, SYS_mprotect, SYS_openat, SYS_pread64,
    SYS_newfstatat, SYS_fstat, SYS_access, SYS_set_tid_address,
    SYS_set_robust_list, SYS_rseq, SYS_prlimit64, SYS_getrandom,
    SYS_rt_sigaction,
#ifdef SYS_arch_prctl
    SYS_arch_prctl,
#endif
};

/* SB_ASAN=1 (the suite's sanitizer pass): the ASan runtime, preloaded
 * only because the library under test is an ASan build, makes calls of
 * its own at thread and process exit. */
static const int asan_calls[] = {
    SYS_sigaltstack, SYS_sched_getaffinity, SYS_getrlimit, SYS_prlimit64,
    SYS_mmap, SYS_mprotect,
    SYS_readlink, SYS_openat, SYS_newfstatat, SYS_getpid, SYS_gettid,
#ifdef SYS_open
    SYS_open,
#endif
};

#define MAXF 128
struct filter {
    struct sock_filter f[MAXF];
    unsigned short n;
};

static void add(struct filter *fl, struct sock_filter s)
{
    if (fl->n >= MAXF)
        pc_die("filter too long");
    fl->f[fl->n++] = s;
}

static void allow(struct filter *fl, const int *nr, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        add(fl, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
                                             (unsigned)nr[i], 0, 1));
        add(fl, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
                                             SECCOMP_RET_ALLOW));
    }
}

static void build(struct filter *fl, int threads, int exec)
{
    fl->n = 0;
    if (exec > 1) { /* allow everything: a broad filter (docker's, say) */
        add(fl, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
        return;
    }
    add(fl, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                         offsetof(struct seccomp_data, arch)));
    add(fl, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SB_ARCH, 1, 0));
    add(fl, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
    add(fl, (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
                                         offsetof(struct seccomp_data, nr)));
    allow(fl, base_calls, sizeof base_calls / sizeof *base_calls);
    const char *asan = getenv("SB_ASAN");
    if (asan && *asan == '1')
        allow(fl, asan_calls, sizeof asan_calls / sizeof *asan_calls);
    if (threads)
        allow(fl, thread_calls, sizeof thread_calls / sizeof *thread_calls);
    if (exec) {
        allow(fl, exec_calls, sizeof exec_calls / sizeof *exec_calls);
    } else {
        /* sshd's answer to open: EACCES, not death */
        add(fl, (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K,
                                             SYS_openat, 0, 1));
        add(fl, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K,
                                             SECCOMP_RET_ERRNO | EACCES));
    }
    add(fl, (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS));
}

enum how { VIA_PRCTL, VIA_SYSCALL, VIA_TSYNC };

static void confine(enum how how, int threads, int exec)
{
    static struct filter fl;
    build(&fl, threads, exec);
    struct sock_fprog prog = { .len = fl.n, .filter = fl.f };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        pc_die("PR_SET_NO_NEW_PRIVS:");
    long r;
    if (how == VIA_PRCTL)
        r = prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0);
    else
        r = syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                    how == VIA_TSYNC ? SECCOMP_FILTER_FLAG_TSYNC : 0, &prog);
    if (r != 0)
        pc_die("install filter (%ld):", r);
}

/* A governed connection with an unconfined echo process at the far end. */
static int echo_conn(void)
{
    int c, s;
    pc_pair(AF_INET, &c, &s);
    pid_t pid = fork();
    if (pid < 0)
        pc_die("fork:");
    if (pid == 0) {
        /* Only its own end: a peer holding the program's other
         * connections would keep them alive (and govern them). */
        for (int fd = 3; fd < 64; fd++)
            if (fd != s)
                close(fd);
        pc_echo_blocking(s);
        _exit(0);
    }
    close(s);
    return c;
}

static void exchange(int fd, size_t total, const char *what)
{
    uint64_t fnv = PC_FNV_INIT;
    if (pc_echo_exchange(fd, total, 4096, &fnv) != 0) {
        dprintf(2, "%s: exchange failed\n", what);
        _exit(PC_EXIT_FAIL);
    }
}

static void say(const char *line)
{
    if (write(1, line, strlen(line)) < 0)
        _exit(PC_EXIT_FAIL);
}

/* --- single thread ---------------------------------------------------- */

/* What libseccomp 2.5 does before it loads a filter: probes that fail
 * and install nothing (the library must not log them). */
static void probes(void)
{
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_STRICT, 1, NULL) != -1 ||
        syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER,
                SECCOMP_FILTER_FLAG_TSYNC, NULL) != -1 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, NULL, 0, 0) != -1)
        pc_die("a probe succeeded");
}

static int single(enum how how)
{
    int fd = echo_conn();
    exchange(fd, 64 << 10, "before the filter");
    probes();
    confine(how, 0, 0);
    exchange(fd, 4 << 20, "under the filter");
    say("ok single\n");
    _exit(0);
}

/* --- TSYNC with busy threads ------------------------------------------- */

#define NWORK 3
static int work_fd[NWORK];
static long work_done[NWORK];
static int stop;

static void *worker(void *arg)
{
    int i = (int)(long)arg;
    while (!__atomic_load_n(&stop, __ATOMIC_ACQUIRE)) {
        exchange(work_fd[i], 16 << 10, "worker");
        __atomic_add_fetch(&work_done[i], 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

static long done_of(int i)
{
    return __atomic_load_n(&work_done[i], __ATOMIC_ACQUIRE);
}

/* Spin (no system call) until every worker finished `more` exchanges
 * after `base`, and at least `ms` went by. */
static void wait_work(const long *base, long more, long long ms)
{
    long long end = pc_now_ms() + ms;
    for (;;) {
        int all = 1;
        for (int i = 0; i < NWORK; i++)
            all &= done_of(i) >= base[i] + more;
        if (all && pc_now_ms() >= end)
            return;
#if defined(__x86_64__)
        __builtin_ia32_pause();
#endif
    }
}

static int tsync(void)
{
    pthread_t t[NWORK];
    for (int i = 0; i < NWORK; i++)
        work_fd[i] = echo_conn();
    for (int i = 0; i < NWORK; i++)
        if (pthread_create(&t[i], NULL, worker, (void *)(long)i) != 0)
            pc_die("pthread_create");
    long base[NWORK] = { 0 };
    wait_work(base, 2, 0);
    confine(VIA_TSYNC, 0, 0);
    for (int i = 0; i < NWORK; i++)
        base[i] = done_of(i);
    /* Long enough for a 1 s idle_timeout's timer wake-up to come and go
     * under the filter. */
    wait_work(base, 20, 1500);
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < NWORK; i++)
        pthread_join(t[i], NULL);
    say("ok tsync\n");
    _exit(0);
}

/* --- a filter on one thread -------------------------------------------- */

static int conn_b, conn_c;

static void *grandchild(void *arg)
{
    exchange(conn_c, 1 << 20, "thread created under the filter");
    return arg;
}

static void *confined(void *arg)
{
    long base[NWORK] = { 0 };
    wait_work(base, 2, 0); /* the unconfined worker is busy */
    confine(VIA_PRCTL, 1, 0);
    exchange(conn_b, 1 << 20, "confined thread");
    pthread_t t;
    if (pthread_create(&t, NULL, grandchild, NULL) != 0)
        _exit(PC_EXIT_FAIL);
    pthread_join(t, NULL);
    return arg;
}

static int one_thread(void)
{
    /* work_fd[0] is the unconfined worker's; the others only satisfy
     * wait_work's loop. */
    work_fd[0] = echo_conn();
    conn_b = echo_conn();
    conn_c = echo_conn();
    work_done[1] = work_done[2] = 1L << 40;
    pthread_t w, b;
    if (pthread_create(&w, NULL, worker, (void *)0L) != 0 ||
        pthread_create(&b, NULL, confined, NULL) != 0)
        pc_die("pthread_create");
    pthread_join(b, NULL);
    long base[NWORK] = { done_of(0), 0, 0 };
    wait_work(base, 5, 0); /* still busy, still governed */
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    pthread_join(w, NULL);
    close(work_fd[0]); /* events = all: a `close` event from this thread */
    say("ok thread\n");
    exit(0);
}

/* --- a filter while another thread is blocked in a call ------------- */

static int blocked_fd;
static int reader_in;

static void *blocked_reader(void *arg)
{
    char b[4];
    __atomic_store_n(&reader_in, 1, __ATOMIC_RELEASE);
    ssize_t n = read(blocked_fd, b, 4);
    if (n != 4 || memcmp(b, "late", 4) != 0) {
        dprintf(2, "blocked read: got %zd (%s)\n", n, n < 0 ? strerror(errno) : "");
        _exit(PC_EXIT_FAIL);
    }
    return arg;
}

static void *confine_self(void *arg)
{
    confine(VIA_PRCTL, 0, 0);
    return arg;
}

static int blocked(void)
{
    int c, s;
    pc_pair(AF_INET, &c, &s);
    blocked_fd = s;
    pthread_t r, f;
    if (pthread_create(&r, NULL, blocked_reader, NULL) != 0)
        pc_die("pthread_create");
    while (!__atomic_load_n(&reader_in, __ATOMIC_ACQUIRE))
        ;
    usleep(200 * 1000); /* the reader waits in its read by now */
    if (pthread_create(&f, NULL, confine_self, NULL) != 0)
        pc_die("pthread_create");
    pthread_join(f, NULL);
    usleep(200 * 1000);
    if (write(c, "late", 4) != 4)
        pc_die("write:");
    pthread_join(r, NULL);
    say("ok blocked\n");
    exit(0);
}

/* --- inherited --------------------------------------------------------- */

static int launch(const char *self, int broad)
{
    int fd = echo_conn();
    char num[16];
    snprintf(num, sizeof num, "%d", fd);
    confine(VIA_PRCTL, 0, broad ? 2 : 1);
    execl(self, self, "child", num, (char *)NULL);
    _exit(127);
}

static int child(const char *num)
{
    int fd = atoi(num);
    exchange(fd, 4 << 20, "program started under the filter");
    close(fd); /* events = all: logged only where the library governs */
    say("ok child\n");
    _exit(0);
}

int main(int argc, char **argv)
{
    const char *m = argc > 1 ? argv[1] : "";
    if (!strcmp(m, "prctl"))
        return single(VIA_PRCTL);
    if (!strcmp(m, "seccomp"))
        return single(VIA_SYSCALL);
    if (!strcmp(m, "tsync"))
        return tsync();
    if (!strcmp(m, "thread"))
        return one_thread();
    if (!strcmp(m, "blocked"))
        return blocked();
    if (!strcmp(m, "launch"))
        return launch("/proc/self/exe", 0);
    if (!strcmp(m, "launch-broad"))
        return launch("/proc/self/exe", 1);
    if (!strcmp(m, "child") && argc > 2)
        return child(argv[2]);
    pc_die("usage: sb_prog prctl|seccomp|tsync|thread|blocked|launch");
}
