/* Audit log sinks (see log_sink.h). */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "audit/log_sink.h"
#include "core/nt.h"
#include "core/fdtable.h"
#include "core/real.h"

enum sink_kind { SINK_STDERR, SINK_FILE, SINK_SYSLOG };

#define NT_RECHECK_NS 1000000000LL       /* rotation / reconnect: 1 s */
#define NT_LOCK_TRIES 200                /* then drop rather than wait */
#define NT_SYSLOG_PATH "/dev/log"
#define NT_SYSLOG_FACILITY (1 << 3)      /* LOG_USER */

static struct {
    int kind;                 /* enum sink_kind */
    int fd;                   /* file or syslog socket; -1: none */
    uint64_t dev, ino;        /* what fd was when we opened it */
    nt_ns next_check;         /* next rotation check / reconnect attempt */
    int lock;                 /* guards reopening and reconfiguring */
    int writers;              /* lines being written right now */
    uint64_t dropped;
    char path[512];
} sink = { .kind = SINK_STDERR, .fd = -1 };

/* ---- the lock: never waited on for long, never deadlocks ---- */

/* A bounded spin: a thread interrupted by a signal while holding the lock
 * must not make its own handler wait forever; the handler drops instead. */
static int sink_lock(void)
{
    for (int i = 0; i < NT_LOCK_TRIES; i++) {
        if (!__atomic_exchange_n(&sink.lock, 1, __ATOMIC_ACQUIRE))
            return 1;
        sched_yield();
    }
    return 0;
}

static void sink_unlock(void)
{
    __atomic_store_n(&sink.lock, 0, __ATOMIC_RELEASE);
}

/* ---- fds of our own ---- */

static void remember_identity(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        memset(&st, 0, sizeof st);
    __atomic_store_n(&sink.dev, (uint64_t)st.st_dev, __ATOMIC_RELAXED);
    __atomic_store_n(&sink.ino, (uint64_t)st.st_ino, __ATOMIC_RELAXED);
    __atomic_store_n(&sink.fd, fd, __ATOMIC_RELEASE);
}

/* Is fd still the file or socket we opened? The program may have closed
 * it or dup2'ed something else over it. */
static int still_ours(int fd)
{
    struct stat st;
    return fd >= 0 && fstat(fd, &st) == 0 &&
           (uint64_t)st.st_ino == __atomic_load_n(&sink.ino, __ATOMIC_RELAXED) &&
           (uint64_t)st.st_dev == __atomic_load_n(&sink.dev, __ATOMIC_RELAXED);
}

/* O_NONBLOCK: a FIFO with no reader fails at once instead of blocking. */
static int open_path(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW |
                          O_NOCTTY | O_NONBLOCK, 0600);
}

static int open_file(const char *path)
{
    int fd = open_path(path);
    return fd < 0 ? -1 : nt_fd_move_high(fd);
}

static int open_syslog(void)
{
    int fd = real.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    fd = nt_fd_move_high(fd);
    struct sockaddr_un a = { .sun_family = AF_UNIX, .sun_path = NT_SYSLOG_PATH };
    /* Not connected yet is fine: the next line retries. */
    (void)real.connect(fd, (struct sockaddr *)&a, sizeof a);
    return fd;
}

static int open_for(int kind)
{
    return kind == SINK_FILE ? open_file(sink.path) : open_syslog();
}

/* Under the lock: a fresh fd when ours is gone. The old number is not
 * ours any more, so it is left alone. */
static int reopen_lost_locked(int kind)
{
    int fd = __atomic_load_n(&sink.fd, __ATOMIC_ACQUIRE);
    if (still_ours(fd))
        return fd; /* another thread fixed it meanwhile */
    fd = open_for(kind);
    if (fd >= 0)
        remember_identity(fd);
    else
        __atomic_store_n(&sink.fd, -1, __ATOMIC_RELEASE);
    return fd;
}

/* Under the lock: logrotate moved the file away; open the path again and
 * put the new file on the same fd number, so no writer ever holds a
 * number that was closed. */
static void follow_rotation_locked(void)
{
    int fd = __atomic_load_n(&sink.fd, __ATOMIC_ACQUIRE);
    struct stat st;
    if (fd < 0 || (stat(sink.path, &st) == 0 &&
                   (uint64_t)st.st_ino == sink.ino &&
                   (uint64_t)st.st_dev == sink.dev))
        return;
    int fresh = open_path(sink.path);
    if (fresh < 0)
        return;
    if (real.dup3(fresh, fd, O_CLOEXEC) == fd)
        remember_identity(fd);
    real.close(fresh);
}

static int time_to_check(void)
{
    nt_ns now = nt_now();
    nt_ns due = __atomic_load_n(&sink.next_check, __ATOMIC_RELAXED);
    return now >= due &&
           __atomic_compare_exchange_n(&sink.next_check, &due,
                                       now + NT_RECHECK_NS, 0,
                                       __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

/* The fd to write to, repaired if the program took it from us. */
static int current_fd(int kind)
{
    int fd = __atomic_load_n(&sink.fd, __ATOMIC_ACQUIRE);
    int lost = !still_ours(fd);
    int rotate = kind == SINK_FILE && !lost && time_to_check();
    if (!lost && !rotate)
        return fd;
    if (!sink_lock())
        return lost ? -1 : fd;
    if (lost)
        fd = reopen_lost_locked(kind);
    else
        follow_rotation_locked();
    fd = __atomic_load_n(&sink.fd, __ATOMIC_ACQUIRE);
    sink_unlock();
    return fd;
}

/* ---- writing ---- */

static ssize_t write_once(int fd, const char *line, size_t len)
{
    ssize_t r;
    do
        r = real.write(fd, line, len);
    while (r < 0 && errno == EINTR);
    return r;
}

/* A full pipe or socket on fd 2 drops the line instead of blocking. */
static int write_stderr(const char *line, size_t len)
{
    struct pollfd p = { .fd = 2, .events = POLLOUT };
    if (real.poll(&p, 1, 0) != 1 || !(p.revents & POLLOUT))
        return -1;
    return write_once(2, line, len) == (ssize_t)len ? 0 : -1;
}

/* A log that reached the program's RLIMIT_FSIZE (sshd sets it to 0
 * before its sandbox) must not raise SIGXFSZ in the program: the line is
 * dropped instead, and a SIGXFSZ our write caused is taken back. */
static int write_file(const char *line, size_t len)
{
    int fd = current_fd(SINK_FILE);
    if (fd < 0)
        return -1;
    sigset_t xfsz, old;
    sigemptyset(&xfsz);
    sigaddset(&xfsz, SIGXFSZ);
    pthread_sigmask(SIG_BLOCK, &xfsz, &old);
    ssize_t r = write_once(fd, line, len);
    if (r < 0 && errno == EFBIG && !sigismember(&old, SIGXFSZ)) {
        struct timespec zero = { 0, 0 };
        sigtimedwait(&xfsz, NULL, &zero); /* ours: consume it */
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r == (ssize_t)len ? 0 : -1;
}

static ssize_t send_syslog(int fd, const char *line, size_t len, int level)
{
    char head[64];
    int n = snprintf(head, sizeof head, "<%d>nettimeo[%d]: ",
                     NT_SYSLOG_FACILITY | level, (int)getpid());
    struct iovec iov[2] = { { head, (size_t)n },
                            { (void *)line, len - (len && line[len - 1] == '\n') } };
    struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
    return real.sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
}

/* syslogd restarts leave the socket unconnected: reconnect, at most once a
 * second, and try again once. */
static int write_syslog(const char *line, size_t len, int level)
{
    int fd = current_fd(SINK_SYSLOG);
    if (fd < 0)
        return -1;
    if (send_syslog(fd, line, len, level) >= 0)
        return 0;
    if ((errno != ENOTCONN && errno != ECONNREFUSED && errno != EDESTADDRREQ) ||
        !time_to_check())
        return -1;
    struct sockaddr_un a = { .sun_family = AF_UNIX, .sun_path = NT_SYSLOG_PATH };
    if (real.connect(fd, (struct sockaddr *)&a, sizeof a) != 0)
        return -1;
    return send_syslog(fd, line, len, level) >= 0 ? 0 : -1;
}

int nt_sink_write(const char *line, size_t len, int level)
{
    int saved = errno;
    __atomic_add_fetch(&sink.writers, 1, __ATOMIC_ACQUIRE);
    int r;
    switch (__atomic_load_n(&sink.kind, __ATOMIC_ACQUIRE)) {
    case SINK_FILE:
        r = write_file(line, len);
        break;
    case SINK_SYSLOG:
        r = write_syslog(line, len, level);
        break;
    default:
        r = write_stderr(line, len);
    }
    __atomic_sub_fetch(&sink.writers, 1, __ATOMIC_RELEASE);
    if (r < 0)
        __atomic_add_fetch(&sink.dropped, 1, __ATOMIC_RELAXED);
    errno = saved;
    return r;
}

uint64_t nt_sink_take_dropped(void)
{
    if (!__atomic_load_n(&sink.dropped, __ATOMIC_RELAXED))
        return 0;
    return __atomic_exchange_n(&sink.dropped, 0, __ATOMIC_RELAXED);
}

void nt_sink_add_dropped(uint64_t n)
{
    __atomic_add_fetch(&sink.dropped, n, __ATOMIC_RELAXED);
}

/* ---- configuration ---- */

static void say_fallback(const char *path, int err)
{
    char msg[700];
    int n = snprintf(msg, sizeof msg,
                     "nettimeo: cannot open log %s (%s); logging to stderr\n",
                     path, strerror(err));
    if (n > 0)
        (void)!write_once(2, msg, (size_t)n < sizeof msg ? (size_t)n
                                                           : sizeof msg - 1);
}

static int kind_of(const char *log, int secure)
{
    if (!log || !*log || strcmp(log, "stderr") == 0)
        return SINK_STDERR;
    if (strcmp(log, "syslog") == 0)
        return SINK_SYSLOG;
    if (secure && log[0] != '/')
        return SINK_STDERR; /* a relative path depends on the invoker's cwd */
    return SINK_FILE;
}

/* The old fd may still be in a writer's hands: wait (briefly) for writers
 * to finish before closing it; if they do not, leave it open. */
static void retire_fd(int fd)
{
    if (fd < 0)
        return;
    for (int i = 0; i < NT_LOCK_TRIES; i++) {
        if (!__atomic_load_n(&sink.writers, __ATOMIC_ACQUIRE)) {
            real.close(fd);
            return;
        }
        sched_yield();
    }
}

static int same_sink(int kind, const char *log)
{
    return kind == sink.kind &&
           (kind != SINK_FILE || strcmp(sink.path, log) == 0);
}

void nt_sink_configure(const char *log, int secure)
{
    int kind = kind_of(log, secure);
    if (!sink_lock())
        return;
    if (same_sink(kind, log)) {
        sink_unlock();
        return;
    }
    int old = __atomic_load_n(&sink.fd, __ATOMIC_ACQUIRE);
    if (!still_ours(old))
        old = -1; /* the program's now: not ours to close */
    int fd = -1;
    if (kind == SINK_FILE) {
        snprintf(sink.path, sizeof sink.path, "%s", log);
        fd = open_file(sink.path);
        if (fd < 0) {
            say_fallback(log, errno);
            kind = SINK_STDERR;
        }
    } else if (kind == SINK_SYSLOG) {
        fd = open_syslog();
    }
    if (fd >= 0)
        remember_identity(fd);
    else
        __atomic_store_n(&sink.fd, -1, __ATOMIC_RELEASE);
    __atomic_store_n(&sink.next_check, nt_now() + NT_RECHECK_NS,
                     __ATOMIC_RELAXED);
    __atomic_store_n(&sink.kind, kind, __ATOMIC_RELEASE);
    retire_fd(old);
    sink_unlock();
}

void nt_sink_atfork_child(void)
{
    __atomic_store_n(&sink.lock, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&sink.writers, 0, __ATOMIC_RELAXED);
}
