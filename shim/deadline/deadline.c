/* Deadlines: per-connection clocks, the exchange state machine for
 * request_timeout, and what happens when a deadline fires. See
 * deadline.h for how the engine uses it.
 *
 * Exchanges. A connection is PARKED (between exchanges), in a REQUEST
 * (the request is under way, the answer is owed) or ANSWERED (the answer
 * is under way). The request direction is input for an inbound
 * connection, output for an outbound one; the other is the answer.
 *
 *   trigger                           PARKED     REQUEST    ANSWERED
 *   bytes in the request direction    REQUEST*   REQUEST    REQUEST*
 *   bytes in the answer direction     PARKED     ANSWERED   ANSWERED
 *   the program waits for input       PARKED     REQUEST    PARKED (inbound)
 *   request_timeout comes due         -          fires      see below
 *   close / shutdown of the owed      -          abandoned  -
 *     direction
 *   (* a new exchange: request_timeout starts now)
 *
 * "Waits for input": a blocking read that would block, a read that
 * returns EAGAIN, or poll/select asking POLLIN for it. In REQUEST when
 * request_timeout comes due, TCP_INFO says whether answer bytes moved
 * that no hook saw (stdio). In ANSWERED (answer_done): an outbound
 * exchange is over unless the program is blocked reading the rest; an
 * inbound one is over when the program went back to its event loop (any
 * poll, select or epoll_wait since the last answer bytes: which fds an
 * epoll set holds is not known) with nothing left to write, and fires
 * while the handler is still answering. A PARKED connection is never cut
 * by request_timeout.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/sockios.h>
#include <poll.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "audit/event.h"
#include "coalesce/coalesce.h"
#include "core/real.h"
#include "deadline/deadline.h"
#include "deadline/timer.h"

#define BIT(k) (1u << (k))
#define NT_NEVER INT64_MAX
#define MS 1000000LL


uint32_t nt_wait_seq;

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

static void consider(nt_ns *best, int *kind, int k, nt_ns since, nt_ns limit)
{
    if (since && limit > 0 && since + limit < *best) {
        *best = since + limit;
        *kind = k;
    }
}

/* The earliest deadline of the connection that must fire by itself. While
 * a connect is pending, connect_timeout runs instead of idle and lifetime
 * (they start when the connection is established, never earlier);
 * without one, the timer looks at their time whether the connect has
 * completed meanwhile, and starts them then. */
static nt_ns next_due(const struct nt_conn *c, int *kind)
{
    const struct nt_settings *s = c->set;
    nt_ns best = NT_NEVER;
    *kind = NT_DL_NONE;
    if (c->t_connect) {
        if (s->connect_timeout > 0) {
            consider(&best, kind, NT_DL_CONNECT, c->t_connect, s->connect_timeout);
            return best;
        }
        consider(&best, kind, NT_DL_CONNECT, c->t_connect, s->idle_timeout);
        consider(&best, kind, NT_DL_CONNECT, c->t_connect, s->max_lifetime);
    } else {
        consider(&best, kind, NT_DL_IDLE, c->t_last, s->idle_timeout);
        consider(&best, kind, NT_DL_LIFETIME, c->t_open, s->max_lifetime);
    }
    consider(&best, kind, NT_DL_REQUEST, c->t_req, s->request_timeout);
    consider(&best, kind, NT_DL_READ, c->t_wait_rd, s->read_timeout);
    consider(&best, kind, NT_DL_WRITE, c->t_wait_wr, s->write_timeout);
    return best;
}

static void arm(struct nt_conn *c)
{
    int kind;
    nt_ns due = next_due(c, &kind);
    if (due != NT_NEVER)
        nt_timer_arm(c, due);
}

void nt_deadline_rearm(struct nt_conn *c)
{
    arm(c);
}

/* The fast path's way to arm: a deadline that starts `now` comes due at
 * `due` (deadline.h: nt_deadline_filed_by). */
static inline void arm_for(struct nt_conn *c, nt_ns now, nt_ns due)
{
    if (!nt_deadline_filed_by(c, now, due))
        arm(c);
}

void nt_deadline_open(struct nt_conn *c)
{
    if (!c->set)
        return;
    c->dl_active = active_bits(c->set);
    c->req_dir = c->role == NT_ROLE_OUTBOUND ? NT_OUT : NT_IN;
    if (nt_event_enabled(NT_EV_ABANDONED))
        c->dl_active |= BIT(NT_DL_TRACK);
    /* No kernel record of traffic for unix sockets: a long blocking write
     * must be seen in progress, or idle_timeout would cut it (io.c). */
    c->mark_writes = c->family == AF_UNIX && (c->dl_active & BIT(NT_DL_IDLE));
    if (c->dl_active & (BIT(NT_DL_IDLE) | BIT(NT_DL_LIFETIME)))
        arm(c);
}

void nt_deadline_wake(struct nt_conn *c)
{
    nt_ns now = nt_now();
    c->t_last = now;
    c->t_wait_rd = c->t_wait_wr = 0;
    if (c->t_req)
        c->t_req = now;
    if (c->t_connect)
        c->t_connect = now;
    if (c->dl_active)
        arm(c);
}

void nt_deadline_connect_start(struct nt_conn *c)
{
    if (!c->dl_active)
        return;
    c->t_connect = nt_now();
    arm(c);
}

static int connected(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    return getpeername(fd, (struct sockaddr *)&ss, &len) == 0;
}

/* The connection is established: idle and lifetime start now. */
static void established(struct nt_conn *c)
{
    c->t_connect = 0;
    c->t_open = c->t_last = nt_now();
}

int nt_deadline_connect_done(struct nt_conn *c)
{
    established(c);
    if (c->dl_active)
        arm(c);
    return c->expired && c->expired_kind == NT_DL_CONNECT;
}

void nt_deadline_connect_check(struct nt_conn *c)
{
    if (c->t_connect && connected(c->fd))
        nt_deadline_connect_done(c);
}

/* ---- what calls report ------------------------------------------------- */

static void park(struct nt_conn *c)
{
    c->req_phase = NT_PH_PARKED;
    c->t_req = 0;
}

/* The program waits for input: an answered inbound exchange is over
 * (the next request is awaited). Outbound, the wait may be for the rest
 * of the answer: answer_done() judges it when the deadline comes due. */
static inline void waits_for_input(struct nt_conn *c)
{
    if (c->req_phase == NT_PH_ANSWERED && c->req_dir == NT_IN)
        park(c);
}

/* Bytes moved while a connect was pending: it is long done. */
void nt_deadline_moved_slow(struct nt_conn *c, int dir, size_t n)
{
    established(c);
    nt_deadline_moved(c, dir, n);
}

static void blocked(struct nt_conn *c, int dir)
{
    if (dir == NT_IN)
        waits_for_input(c);
    /* A non-blocking socket whose call would block: its event loop now
     * waits for it, so read/write deadlines must fire by themselves. */
    int k = dir == NT_IN ? NT_DL_READ : NT_DL_WRITE;
    if (c->nonblock && (c->dl_active & (BIT(k) | BIT(NT_DL_REQUEST)))) {
        nt_ns *since = dir == NT_IN ? &c->t_wait_rd : &c->t_wait_wr;
        if (!*since) {
            nt_ns now = nt_now_coarse();
            *since = now;
            if (c->dl_active & BIT(k))
                arm_for(c, now, now + limit_of(c->set, k));
        }
    }
}

void nt_deadline_report(struct nt_conn *c, int dir, int what, size_t n)
{
    if (!c->dl_active)
        return;
    if (what == NT_MOVED)
        nt_deadline_moved(c, dir, n);
    else
        blocked(c, dir);
}

/* ---- a blocking call's own deadline ------------------------------------ */

nt_ns nt_deadline_limit(const struct nt_conn *c, int dir, nt_ns start)
{
    nt_ns limit = limit_of(c->set, dir == NT_IN ? NT_DL_READ : NT_DL_WRITE);
    return limit > 0 ? start + limit : 0;
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

int nt_deadline_call_expired(struct nt_conn *c, int dir, nt_ns start,
                             const char *op, void *caller)
{
    int kind = dir == NT_IN ? NT_DL_READ : NT_DL_WRITE;
    log_timeout(c, c->fd, kind, nt_now() - start, op, "error", caller);
    return c->set->timeout_errno;
}

int nt_deadline_errno(const struct nt_conn *c)
{
    return c->set ? c->set->timeout_errno : ETIMEDOUT;
}

/* The kernel's record of the last data either way (TCP): milliseconds
 * since, or -1 when it cannot say. It counts in jiffies and our clocks
 * may come from the coarse clock: only a difference larger than both
 * lags says that traffic came later than we know. */
#define KERNEL_SLACK (50 * MS)
static int64_t kernel_idle_ms(const struct nt_conn *c, int dir_only, int dir)
{
    if (c->family != AF_INET && c->family != AF_INET6)
        return -1;
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (real.getsockopt(c->fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
        return -1;
    if (dir_only)
        return dir == NT_IN ? ti.tcpi_last_data_recv : ti.tcpi_last_data_sent;
    return ti.tcpi_last_data_recv < ti.tcpi_last_data_sent
               ? ti.tcpi_last_data_recv : ti.tcpi_last_data_sent;
}

/* ---- closing in the middle of an exchange ------------------------------ */

void nt_deadline_closing(struct nt_conn *c, int fd, const char *op,
                         void *caller)
{
    /* The peer that left first (as far as the program's reads said) was
     * not abandoned. No system call here: a close costs what it costs. */
    if (c->req_phase != NT_PH_REQUEST || c->expired || c->peer_closed ||
        !nt_event_enabled(NT_EV_ABANDONED))
        return;
    int out = c->role == NT_ROLE_OUTBOUND;
    uint64_t in = c->bytes_in - c->x_in0, sent = c->bytes_out - c->x_out0;
    /* Without request_timeout the clock is not read per exchange: the
     * kernel says how long ago the request's last bytes moved (TCP). */
    int64_t ms = c->t_req ? -1 : kernel_idle_ms(c, 1, out ? NT_OUT : NT_IN);
    nt_ns elapsed = c->t_req ? nt_now() - c->t_req : ms > 0 ? ms * MS : 0;
    struct nt_event ev = { .kind = NT_EV_ABANDONED, .fd = fd, .op = op,
                           .conn = c, .caller = caller, .elapsed = elapsed,
                           .request_bytes = out ? sent : in,
                           .answer_bytes = out ? in : sent };
    nt_event_emit(&ev);
    park(c);
}

/* ---- when the timer says a deadline is due ----------------------------- */

/* An exchange in ANSWERED when request_timeout comes due: is it over?
 * Outbound, the answer came and the program is not waiting for more (a
 * wait would have parked it): it left the connection idle. Inbound, the
 * program answered and went back to its event loop with nothing left to
 * write; a handler still writing (or computing between writes) owes it. */
static int answer_done(const struct nt_conn *c)
{
    if (c->req_dir == NT_OUT) /* blocked reading: the rest is owed */
        return !__atomic_load_n(&c->in_call[NT_IN], __ATOMIC_RELAXED);
    if (c->t_wait_wr || __atomic_load_n(&c->in_call[NT_OUT], __ATOMIC_RELAXED))
        return 0; /* still writing the answer */
    return __atomic_load_n(&c->in_call[NT_IN], __ATOMIC_RELAXED) ||
           __atomic_load_n(&nt_wait_seq, __ATOMIC_RELAXED) != c->ans_seq;
}

/* Is the deadline that came due still true? Adjusts the clocks that the
 * kernel (or the exchange state) proves moved on; 1 when it must fire. */
static int still_due(struct nt_conn *c, int kind, nt_ns now)
{
    int64_t ms;
    switch (kind) {
    case NT_DL_CONNECT:
        if (connected(c->fd)) {
            established(c);
            return 0;
        }
        if (c->set->connect_timeout > 0)
            return 1;
        c->t_connect = now; /* no connect_timeout: look again later */
        return 0;
    case NT_DL_IDLE:
        /* Traffic the library did not see (another process sharing the
         * socket, stdio on an fdopen'ed socket, a long call in progress)
         * keeps it alive. A unix socket has no such record: bytes queued
         * either way that changed since the last look are traffic. */
        if (c->family == AF_UNIX) {
            int out = 0, in = 0;
            real.ioctl(c->fd, SIOCOUTQ, &out);
            real.ioctl(c->fd, SIOCINQ, &in);
            uint32_t q = (uint32_t)out + (uint32_t)in;
            int moved = (q && q != c->ux_queued) ||
                        (out && __atomic_load_n(&c->in_call[NT_OUT], __ATOMIC_RELAXED));
            c->ux_queued = q;
            if (moved) {
                c->t_last = now;
                return 0;
            }
            return 1;
        }
        ms = kernel_idle_ms(c, 0, 0);
        if (ms >= 0 && now - ms * MS > c->t_last + KERNEL_SLACK) {
            c->t_last = now - ms * MS;
            return 0;
        }
        return 1;
    case NT_DL_READ:
        ms = kernel_idle_ms(c, 1, NT_IN);
        if (ms >= 0 && now - ms * MS > c->t_wait_rd + KERNEL_SLACK) {
            c->t_wait_rd = 0; /* data came: the wait is over */
            return 0;
        }
        return 1;
    case NT_DL_REQUEST:
        /* Answer bytes the library did not see (stdio on an fdopen'ed
         * socket, another process): the kernel's record says. */
        if (c->req_phase == NT_PH_REQUEST) {
            ms = kernel_idle_ms(c, 1, c->req_dir == NT_IN ? NT_OUT : NT_IN);
            if (ms >= 0 && now - ms * MS > c->t_req + KERNEL_SLACK)
                c->req_phase = NT_PH_ANSWERED;
        }
        if (c->req_phase == NT_PH_PARKED || (c->req_phase == NT_PH_ANSWERED &&
                                          answer_done(c))) {
            park(c);
            return 0;
        }
        return 1;
    }
    return 1;
}

/* Does c's descriptor still name the socket it was made for? */
static int same_socket(const struct nt_conn *c)
{
    struct stat st;
    return fstat(c->fd, &st) == 0 && S_ISSOCK(st.st_mode) &&
           (uint64_t)st.st_ino == c->ino;
}

static const char *apply_action(struct nt_conn *c, int kind)
{
    int fd = c->fd;
    if (kind == NT_DL_CONNECT) {
        c->connect_err = ETIMEDOUT;
        real.shutdown(fd, SHUT_RDWR); /* aborts the pending connect */
        return "abort";
    }
    if (c->set->expire_action == NT_EXPIRE_RESET && c->family != AF_UNIX) {
        struct sockaddr sa = { .sa_family = AF_UNSPEC };
        if (real.connect(fd, &sa, sizeof sa) == 0)
            return "reset"; /* sends RST, leaves no TIME_WAIT */
    }
    real.shutdown(fd, SHUT_RDWR);
    return "shutdown";
}

static const char *action_name(const struct nt_conn *c, int kind)
{
    if (kind == NT_DL_CONNECT)
        return "abort";
    return c->set->expire_action == NT_EXPIRE_RESET && c->family != AF_UNIX
               ? "reset" : "shutdown";
}

nt_ns nt_deadline_due(struct nt_conn *c, uint32_t gen, nt_ns now)
{
    /* >>> coalescing: the coalesce_delay flush shares this timer entry */
    nt_ns co_due = nt_coalesce_due(c, gen, now);
    /* <<< coalescing */
    int taken = nt_conn_lock(c);
    nt_ns refile = 0;
    int kind = NT_DL_NONE, fired = 0;
    if (c->gen != gen || !c->refs || c->expired || c->dormant || !c->set)
        goto out;
    nt_ns due;
    for (;;) {
        due = next_due(c, &kind);
        if (due == NT_NEVER)
            goto out;
        if (due > now) {
            refile = due;
            goto out;
        }
        if (!still_due(c, kind, now))
            continue;
        break;
    }
    if (!same_socket(c))
        goto out; /* closed and reused behind our back: never act */
    /* The event describes the connection as it was when the deadline
     * fired, and is written before the program can see the action. */
    log_timeout(c, c->fd, kind, now - (due - limit_of(c->set, kind)),
                "timer", action_name(c, kind), NULL);
    c->expired = 1;
    c->expired_kind = (uint8_t)kind;
    apply_action(c, kind);
    fired = 1;
out:
    nt_conn_unlock(c, taken);
    /* >>> coalescing: bytes still buffered for an expired connection are
     * lost (flush_error); otherwise look again at the earlier due time */
    if (fired)
        nt_coalesce_expired(c, c->fd);
    if (co_due && (!refile || co_due < refile))
        refile = co_due;
    /* <<< coalescing */
    return refile;
}
