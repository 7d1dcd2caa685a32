/* Deadlines: per-connection clocks, exchange tracking for request_timeout,
 * the wait of a blocking call, and what happens when a deadline fires.
 * See deadline.h for the model. */
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include "coalesce/coalesce.h"
#include "deadline/deadline.h"
#include "audit/event.h"
#include "core/real.h"
#include "deadline/timer.h"

#define BIT(k) (1u << (k))
#define NT_NEVER INT64_MAX

/* Exchange phases for request_timeout (see README "Exchanges"). */
enum { PH_PARKED = 0, PH_REQUEST, PH_ANSWERED };

const char *nt_deadline_name(int kind)
{
    static const char *const names[] = {
        [NT_DL_NONE] = "none",
        [NT_DL_CONNECT] = "connect_timeout",
        [NT_DL_READ] = "read_timeout",
        [NT_DL_WRITE] = "write_timeout",
        [NT_DL_IDLE] = "idle_timeout",
        [NT_DL_REQUEST] = "request_timeout",
        [NT_DL_LIFETIME] = "max_lifetime",
    };
    return kind >= 0 && kind <= NT_DL_LIFETIME ? names[kind] : "none";
}

static nt_ns limit_of(const struct nt_settings *s, int kind)
{
    switch (kind) {
    case NT_DL_CONNECT: return s->connect_timeout;
    case NT_DL_READ: return s->read_timeout;
    case NT_DL_WRITE: return s->write_timeout;
    case NT_DL_IDLE: return s->idle_timeout;
    case NT_DL_REQUEST: return s->request_timeout;
    case NT_DL_LIFETIME: return s->max_lifetime;
    }
    return 0;
}

static uint8_t active_bits(const struct nt_settings *s)
{
    uint8_t bits = 0;
    for (int k = NT_DL_CONNECT; k <= NT_DL_LIFETIME; k++)
        if (limit_of(s, k) > 0)
            bits |= (uint8_t)BIT(k);
    return bits;
}

/* The identity that later asynchronous actions are checked against. */
static void capture_identity(struct nt_conn *c, int fd)
{
    struct stat st;
    if (!c->ino && fstat(fd, &st) == 0)
        c->ino = st.st_ino;
}

static int same_socket(const struct nt_conn *c, int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) && st.st_ino == c->ino;
}

static void consider(nt_ns *best, int *kind, int k, nt_ns since, nt_ns limit)
{
    if (since && limit > 0 && since + limit < *best) {
        *best = since + limit;
        *kind = k;
    }
}

/* The earliest deadline of the connection that must fire by itself. */
static nt_ns next_due(const struct nt_conn *c, int *kind)
{
    const struct nt_settings *s = c->set;
    nt_ns best = NT_NEVER;
    *kind = NT_DL_NONE;
    if (c->t_connect) {
        consider(&best, kind, NT_DL_CONNECT, c->t_connect, s->connect_timeout);
        return best;
    }
    consider(&best, kind, NT_DL_IDLE, c->t_last, s->idle_timeout);
    consider(&best, kind, NT_DL_LIFETIME, c->t_open, s->max_lifetime);
    consider(&best, kind, NT_DL_REQUEST, c->t_req, s->request_timeout);
    consider(&best, kind, NT_DL_READ, c->t_wait_rd, s->read_timeout);
    consider(&best, kind, NT_DL_WRITE, c->t_wait_wr, s->write_timeout);
    return best;
}

static void arm(struct nt_conn *c, int fd)
{
    int kind;
    nt_ns due = next_due(c, &kind);
    if (due == NT_NEVER)
        return;
    capture_identity(c, fd);
    nt_timer_arm(c, fd, due);
}

/* The fast path's way to arm: a deadline that starts `now` comes due at
 * `due`. Nothing to do when the connection is already filed at or before
 * that, and comfortably in the future: the timer cannot be popping that
 * entry while we look, and when it does pop it, it sees the new clock. */
#define NT_ARM_MARGIN 20000000LL /* 20 ms: more than the coarse clock lags */
static inline void arm_for(struct nt_conn *c, int fd, nt_ns now, nt_ns due)
{
    if (c->heap_idx && c->heap_due <= due && c->heap_due > now + NT_ARM_MARGIN)
        return;
    arm(c, fd);
}

void nt_deadline_open(struct nt_conn *c, int fd)
{
    if (!c->set)
        return;
    c->dl_active = active_bits(c->set);
    if (!c->dl_active)
        return;
    capture_identity(c, fd); /* at setup, so no call pays for it later */
    if (c->dl_active & (BIT(NT_DL_IDLE) | BIT(NT_DL_LIFETIME)))
        arm(c, fd);
}

void nt_deadline_connect_start(struct nt_conn *c, int fd)
{
    if (!(c->dl_active & BIT(NT_DL_CONNECT)))
        return;
    c->t_connect = nt_now();
    arm(c, fd);
}

static int connected(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    return getpeername(fd, (struct sockaddr *)&ss, &len) == 0;
}

void nt_deadline_connect_check(struct nt_conn *c, int fd)
{
    if (c->t_connect && connected(fd))
        c->t_connect = 0;
}

int nt_deadline_connect_done(struct nt_conn *c)
{
    c->t_connect = 0;
    c->t_open = c->t_last = nt_now();
    return c->expired && c->expired_kind == NT_DL_CONNECT;
}

NT_NO_CANARY void nt_deadline_progress(struct nt_conn *c, int fd, int dir)
{
    uint8_t a = c->dl_active;
    if (unlikely(c->t_connect))
        c->t_connect = 0; /* bytes moved: the connect is long done */
    if (dir == NT_IN)
        c->t_wait_rd = 0;
    else
        c->t_wait_wr = 0;
    if (!(a & (BIT(NT_DL_IDLE) | BIT(NT_DL_REQUEST))))
        return;
    nt_ns now = nt_now_coarse(); /* one clock read per call, no syscall */
    c->t_last = now;
    if (!(a & BIT(NT_DL_REQUEST)))
        return;
    /* Inbound: reading starts a request, writing answers it. Outbound:
     * writing starts a request, reading is the answer. */
    int starts = c->role == NT_ROLE_OUTBOUND ? dir == NT_OUT : dir == NT_IN;
    if (starts && c->req_phase != PH_REQUEST) {
        c->req_phase = PH_REQUEST;
        c->t_req = now;
        /* the handler may make no further call on it */
        arm_for(c, fd, now, now + c->set->request_timeout);
    } else if (!starts && c->req_phase == PH_REQUEST) {
        c->req_phase = PH_ANSWERED;
    }
}

void nt_deadline_waiting(struct nt_conn *c, int fd, int dir)
{
    uint8_t a = c->dl_active;
    if (!a)
        return;
    /* Inbound: an answered exchange ends when the program waits for the
     * next request. */
    if (dir == NT_IN && c->role != NT_ROLE_OUTBOUND &&
        c->req_phase == PH_ANSWERED) {
        c->req_phase = PH_PARKED;
        c->t_req = 0;
    }
    /* A non-blocking socket whose call would block: its event loop now
     * waits for it, so read/write deadlines must fire by themselves. */
    if (c->nonblock) {
        nt_ns *since = dir == NT_IN ? &c->t_wait_rd : &c->t_wait_wr;
        if (!*since) {
            nt_ns now = nt_now_coarse();
            *since = now;
            int k = dir == NT_IN ? NT_DL_READ : NT_DL_WRITE;
            if (a & BIT(k))
                arm_for(c, fd, now, now + limit_of(c->set, k));
        }
    }
}

void nt_deadline_polled_in(struct nt_conn *c, int fd)
{
    if (!(c->dl_active & BIT(NT_DL_READ)) || c->t_wait_rd)
        return;
    nt_ns now = nt_now_coarse();
    c->t_wait_rd = now;
    arm_for(c, fd, now, now + c->set->read_timeout);
}

/* Raised by the faulting thread itself, never while it sleeps in a wait:
 * their handlers (a JVM's, ASan's) have no say in restarting it. */
static int is_fault_signal(int sig)
{
    return sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL ||
           sig == SIGTRAP || sig == SIGSYS;
}

/* Would the kernel have restarted a blocking call interrupted by the
 * signal that just ran? poll() never restarts, so the library decides: it
 * restarts unless a handler installed without SA_RESTART could have run. */
static int kernel_would_restart(void)
{
    sigset_t blocked;
    if (pthread_sigmask(SIG_BLOCK, NULL, &blocked) != 0)
        return 0;
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;
        if (is_fault_signal(sig) || sigismember(&blocked, sig) == 1 ||
            sigaction(sig, NULL, &sa) != 0)
            continue;
        int has_handler = (sa.sa_flags & SA_SIGINFO) ||
                          (sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN);
        if (has_handler && !(sa.sa_flags & SA_RESTART))
            return 0;
    }
    return 1;
}

static void log_timeout(const struct nt_conn *c, int fd, int kind,
                        nt_ns elapsed, const char *op, const char *action,
                        void *caller)
{
    struct nt_event ev = {
        .kind = NT_EV_TIMEOUT, .fd = fd, .op = op, .conn = c,
        .err = c->set->timeout_errno, .timeout = nt_deadline_name(kind),
        .limit = limit_of(c->set, kind), .elapsed = elapsed,
        .action = action, .caller = caller,
    };
    nt_event_emit(&ev);
}

int nt_deadline_wait(struct nt_conn *c, int fd, int dir, nt_ns start,
                     const char *op, void *caller)
{
    int kind = dir == NT_IN ? NT_DL_READ : NT_DL_WRITE;
    nt_ns limit = limit_of(c->set, kind);
    struct pollfd p = { .fd = fd, .events = dir == NT_IN ? POLLIN : POLLOUT };
    for (;;) {
        struct timespec ts, *tsp = NULL;
        nt_ns now = nt_now();
        if (limit > 0) {
            nt_ns left = start + limit - now;
            if (left <= 0) {
                log_timeout(c, fd, kind, now - start, op, "error", caller);
                errno = c->set->timeout_errno;
                return 0;
            }
            ts.tv_sec = left / 1000000000;
            ts.tv_nsec = left % 1000000000;
            tsp = &ts;
        }
        __atomic_add_fetch(&c->in_call, 1, __ATOMIC_RELAXED);
        int r = real.ppoll(&p, 1, tsp, NULL);
        __atomic_sub_fetch(&c->in_call, 1, __ATOMIC_RELAXED);
        if (r > 0)
            return 1; /* ready, or an error the next attempt will report */
        if (r < 0 && errno == EINTR && !kernel_would_restart())
            return -1;
        if (r < 0 && errno != EINTR)
            return 1; /* let the real call report it */
    }
}

int nt_deadline_errno(const struct nt_conn *c)
{
    return c->set ? c->set->timeout_errno : ETIMEDOUT;
}

/* request_timeout at its due time: is the exchange still owed, or has it
 * quietly ended? Inbound: t_req is cleared as soon as the program waits for
 * the next request, so a pending request is always owed. Outbound: owed
 * while the program waits for the answer, or while no answer has come. */
static int request_still_open(const struct nt_conn *c, int fd)
{
    if (c->role != NT_ROLE_OUTBOUND || c->in_call || c->t_wait_rd)
        return 1;
    int queued = 0;
    if (ioctl(fd, FIONREAD, &queued) != 0)
        return 1;
    return c->req_phase == PH_REQUEST && queued == 0;
}


static const char *apply_action(struct nt_conn *c, int fd, int kind)
{
    if (kind == NT_DL_CONNECT) {
        c->connect_err = ETIMEDOUT;
        shutdown(fd, SHUT_RDWR); /* aborts the pending connect */
        return "abort";
    }
    if (c->set->expire_action == NT_EXPIRE_RESET && c->family != AF_UNIX) {
        struct sockaddr sa = { .sa_family = AF_UNSPEC };
        if (real.connect(fd, &sa, sizeof sa) == 0)
            return "reset"; /* sends RST, leaves no TIME_WAIT */
    }
    shutdown(fd, SHUT_RDWR);
    return "shutdown";
}

nt_ns nt_deadline_due(int fd, uint32_t gen, nt_ns now)
{
    struct nt_conn *c = nt_fd_conn(fd);
    if (!c)
        return 0;
    /* >>> coalescing: the coalesce_delay flush shares this timer entry */
    nt_ns co_due = nt_coalesce_due(fd, gen, now);
    /* <<< coalescing */
    int taken = nt_conn_lock(c);
    nt_ns refile = 0;
    int kind = NT_DL_NONE;
    const char *action = NULL;
    nt_ns elapsed = 0;
    if (c->gen != gen || nt_fd_kind(fd) != NT_FD_CONN || c->expired ||
        !c->set)
        goto out;
    for (;;) {
        nt_ns due = next_due(c, &kind);
        if (due == NT_NEVER)
            goto out;
        if (due > now) {
            refile = due;
            goto out;
        }
        if (kind == NT_DL_REQUEST && !request_still_open(c, fd)) {
            c->t_req = 0;
            c->req_phase = PH_PARKED;
            continue;
        }
        if (kind == NT_DL_CONNECT && connected(fd)) {
            c->t_connect = 0;
            continue;
        }
        break;
    }
    if (!same_socket(c, fd))
        goto out; /* closed and reused behind our back: never act */
    elapsed = now + limit_of(c->set, kind) - next_due(c, &kind);
    c->expired = 1;
    c->expired_kind = (uint8_t)kind;
    action = apply_action(c, fd, kind);
out:
    nt_conn_unlock(c, taken);
    if (action)
        log_timeout(c, fd, kind, elapsed, "timer", action, NULL);
    /* >>> coalescing: bytes still buffered for an expired connection are
     * lost (flush_error); otherwise look again at the earlier due time */
    if (action)
        nt_coalesce_expired(c, fd);
    if (co_due && (!refile || co_due < refile))
        refile = co_due;
    /* <<< coalescing */
    return refile;
}
