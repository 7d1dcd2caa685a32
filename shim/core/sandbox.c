/* Seccomp sandboxes: knowing who is confined, and stepping back. See
 * sandbox.h for the rules, README "Sandboxed programs" for what a user
 * sees. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <pthread.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/single_threaded.h>
#include <time.h>
#include <unistd.h>

#include "audit/event.h"
#include "core/conn.h"
#include "core/process.h"
#include "core/real.h"
#include "core/sandbox.h"
#include "deadline/timer.h"

int nt_sb_any;
int nt_sb_all;
NT_TLS uint8_t nt_sb_self;
/* Some thread of this process installed a filter (hooks saw it). */
static int sb_seen;

/* NETTIMEO_SECCOMP=govern: the operator says the filter the process
 * started under allows the library's calls (docker's default profile,
 * systemd's @system-service); only filters installed after that count. */
static int govern_inherited;
static long base_filters = -1; /* Seccomp_filters at init; -1: unknown */
static int started_confined;   /* Seccomp: was not 0 at init */

/* NoNewPrivs is not asked for: a filter is inherited with or without it
 * (a root launcher needs none), so it says nothing the library can use. */
struct status {
    long seccomp, filters, threads; /* -1: line absent */
};

static long field(const char *text, const char *key)
{
    size_t klen = strlen(key);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : p)
        if (strncmp(p, key, klen) == 0 && p[klen] == ':')
            return strtol(p + klen + 1, NULL, 10);
    return -1;
}

/* One open/read/close, the calls (and flags) the dynamic loader itself
 * makes: any filter a dynamically linked program starts under allows
 * them. 0, or -errno. */
static int read_status(const char *path, struct status *st)
{
    char buf[4096];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = 0;
    for (;;) {
        ssize_t n = real.read(fd, buf + len, sizeof buf - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == sizeof buf - 1)
            break;
    }
    real.close(fd);
    buf[len] = 0;
    st->seccomp = field(buf, "Seccomp");
    st->filters = field(buf, "Seccomp_filters");
    st->threads = field(buf, "Threads");
    return st->seccomp < 0 ? -EIO : 0;
}

/* Is the calling thread under a filter the library must respect? 1, 0,
 * or -1 when it cannot tell now (out of fds: ask again later). */
static int thread_confined(void)
{
    if (!started_confined && !__atomic_load_n(&sb_seen, __ATOMIC_RELAXED)) {
        /* No filter anywhere in the process that the library knows of:
         * only one installed by inline assembly can be in force. One
         * cheap call (0.2 us; /proc costs 15 us) tells. */
        int m = prctl(PR_GET_SECCOMP, 0, 0, 0, 0);
        if (m == 0 || (m < 0 && errno == EINVAL))
            return 0;
        return 1; /* filtered, or a filter answered for the kernel */
    }
    struct status st;
    int r = read_status("/proc/thread-self/status", &st);
    if (r == 0) {
        if (st.seccomp == 0)
            return 0;
        if (govern_inherited)
            return st.filters >= 0 && base_filters >= 0 &&
                   st.filters > base_filters;
        return 1;
    }
    if (r == -ENOENT || r == -ENOTDIR) {
        /* No /proc here (a chroot): ask the kernel directly. */
        int m = prctl(PR_GET_SECCOMP, 0, 0, 0, 0);
        if (m >= 0)
            return m > 0 && !govern_inherited;
        return errno != EINVAL; /* EINVAL: no seccomp in this kernel */
    }
    if (r == -EMFILE || r == -ENFILE || r == -ENOMEM || r == -EINTR)
        /* Cannot tell (sshd's sandbox sets RLIMIT_NOFILE to 0): after a
         * filter was seen in this process, assume this thread is under it. */
        return __atomic_load_n(&sb_seen, __ATOMIC_RELAXED) ? 1 : -1;
    return 1; /* EACCES, EPERM...: a filter answered instead of the kernel */
}

int nt_sandbox_check_thread(void)
{
    int saved = errno;
    nt_sb_self = NT_SB_CONFINED; /* provisional: hooks reached from here
                                    pass straight through */
    int c = thread_confined();
    nt_sb_self = c < 0 ? NT_SB_UNKNOWN : c ? NT_SB_CONFINED : NT_SB_FREE;
    if (c > 0)
        __atomic_store_n(&nt_sb_any, 1, __ATOMIC_RELAXED);
    errno = saved;
    return c > 0 || __atomic_load_n(&nt_sb_all, __ATOMIC_RELAXED);
}

int nt_sandbox_init(void)
{
    const char *g = getenv("NETTIMEO_SECCOMP");
    govern_inherited = g && strcmp(g, "govern") == 0;
    nt_sb_self = NT_SB_CONFINED; /* provisional, as above */
    struct status st;
    int r = read_status("/proc/thread-self/status", &st);
    if (r == 0 && st.seccomp == 0) {
        base_filters = st.filters;
        nt_sb_self = NT_SB_FREE;
        return 0;
    }
    started_confined = r == 0;
    int c = r == 0 ? 1 : thread_confined();
    if (c != 0)
        __atomic_store_n(&nt_sb_any, 1, __ATOMIC_RELAXED);
    if (r == 0)
        base_filters = st.filters;
    if (c <= 0 || govern_inherited) {
        nt_sb_self = c < 0 ? NT_SB_UNKNOWN : NT_SB_FREE;
        return 0;
    }
    /* Started under a filter written for the program alone: the whole
     * process is confined, and the library makes no call of its own from
     * here on (no config read, no log opened, no thread). */
    __atomic_store_n(&nt_sb_all, 1, __ATOMIC_RELAXED);
    return 1;
}

/* --- the program installs a filter ------------------------------------ */

/* Does the process have threads other than the caller (and our timer)?
 * Only a filter installed by the program's one thread confines every
 * thread there will ever be. */
static int only_thread(void)
{
    struct status st;
    if (read_status("/proc/self/status", &st) != 0 || st.threads < 1)
        return __libc_single_threaded; /* no fd left (sshd): glibc knows
                                          whether a thread was ever made */
    long ours = nt_timer_running(); /* the timer thread is ours */
    return st.threads - ours <= 1;
}

/* Let go of every governed connection: a confined thread's traffic is
 * no longer seen, so clocks kept for it would be wrong. Each descriptor
 * leaves its connection (the last one retires it, its timer entry goes),
 * while this thread may still make the library's calls; after this the
 * timer has nothing of its own to do. */
static void release_one(int fd, struct nt_conn *c, void *arg)
{
    (void)c;
    (void)arg;
    nt_conn_detach(fd, NT_FD_UNKNOWN, NULL);
}

static void count_one(int fd, struct nt_conn *c, void *arg)
{
    (void)fd;
    (void)c;
    ++*(unsigned *)arg;
}

static void release_all(void)
{
    nt_fd_each_conn(release_one, NULL);
}

static unsigned count_conns(void)
{
    unsigned n = 0;
    nt_fd_each_conn(count_one, &n);
    return n;
}

void nt_sandbox_before(const char *op, int strict, int tsync, void *caller,
                       struct nt_sb_install *t)
{
    int saved = errno;
    int already = nt_sandboxed();
    t->prev_self = nt_sb_self;
    t->prev_all = nt_sb_all;
    int whole = tsync || nt_sb_all || (!already && only_thread());
    if (!already && nt_g.ready && !nt_g.disabled) {
        /* Last words while this thread may still make our calls: one
         * event, then whatever write coalescing holds goes out. */
        struct nt_event ev = {
            .kind = NT_EV_SANDBOXED, .fd = -1, .op = op,
            .count = count_conns(), .action = whole ? "process" : "thread",
            .message = strict
                ? "seccomp strict mode: nettimeo passes the calls of the "
                  "confined threads straight through"
                : "seccomp filter: nettimeo passes the calls of the "
                  "confined threads straight through",
            .caller = caller,
        };
        /* (sshd's pre-auth child sets RLIMIT_FSIZE to 0 just before: a
         * log file drops the line rather than raise SIGXFSZ, log_sink.c) */
        nt_event_emit(&ev);
        nt_process_flush();
    }
    nt_sb_self = NT_SB_CONFINED;
    __atomic_store_n(&sb_seen, 1, __ATOMIC_RELAXED);
    __atomic_store_n(&nt_sb_any, 1, __ATOMIC_RELAXED);
    if (whole)
        __atomic_store_n(&nt_sb_all, 1, __ATOMIC_RELAXED);
    if (!already && nt_g.ready && !nt_g.disabled) {
        nt_in_lib++;
        release_all();
        nt_in_lib--;
    }
    if (tsync) {
        /* Other threads may be a few instructions away from a call of
         * ours (they re-check the flag before each one, and after every
         * wait): let them get past it before the filter covers them. */
        struct timespec ts = { 0, 2 * 1000 * 1000 };
        nanosleep(&ts, NULL);
    }
    errno = saved;
}

void nt_sandbox_after(int ok, const struct nt_sb_install *t)
{
    if (ok)
        return;
    /* Refused (no NoNewPrivs, bad program, TSYNC blocked): nothing is
     * confined after all. The connections let go are classified again
     * on their next call. */
    nt_sb_self = t->prev_self;
    __atomic_store_n(&nt_sb_all, t->prev_all, __ATOMIC_RELAXED);
}
