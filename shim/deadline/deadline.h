/* Deadlines (shared/SPEC.md section 4): the policy.
 *
 * The I/O engine (core/io.c) asks the policy one question before a call
 * may wait — how long may it wait? (nt_deadline_limit) — and reports once
 * what the call did (nt_deadline_report). Deadlines that must fire by
 * themselves (idle, request, lifetime, connect, and read/write on sockets
 * that wait in an event loop) are filed with the timer thread (timer.c),
 * which calls nt_deadline_due() when one comes due.
 *
 * Exchanges (request_timeout) follow one state machine per connection,
 * written down in README "Exchanges" and in deadline.c.
 */
#ifndef NT_DEADLINE_H
#define NT_DEADLINE_H

#include "core/conn.h"

enum nt_deadline_kind {
    NT_DL_NONE = 0,
    NT_DL_CONNECT,
    NT_DL_READ,
    NT_DL_WRITE,
    NT_DL_IDLE,
    NT_DL_REQUEST,
    NT_DL_LIFETIME,
};
const char *nt_deadline_name(int kind);
/* In dl_active beside the deadlines' bits: exchanges are tracked (for
 * request_timeout, or for the `abandoned` event). */
#define NT_DL_TRACK 7

enum nt_dir_io { NT_IN = 0, NT_OUT = 1 };
_Static_assert(4u << NT_IN == 1u << NT_DL_READ && 4u << NT_OUT == 1u << NT_DL_WRITE,
               "nt_deadline_controls() derives a direction's bit from the direction");

/* What a call reported (nt_deadline_report). */
enum nt_dl_report {
    NT_MOVED,   /* bytes moved in the call's direction */
    NT_BLOCKED, /* it would block: the program now waits in that direction */
};

/* The connection is established (or accepted, or classified). */
void nt_deadline_open(struct nt_conn *c);
/* A fork child's first call on an inherited connection. */
void nt_deadline_wake(struct nt_conn *c);
/* connect() starts; it finished (either way): true when our deadline
 * aborted it; a non-blocking one may have finished (SO_ERROR, a call). */
void nt_deadline_connect_start(struct nt_conn *c);
int nt_deadline_connect_done(struct nt_conn *c);
void nt_deadline_connect_check(struct nt_conn *c);

/* Does a blocking call in direction `dir` need the library to wait for
 * it (a per-call deadline, or an exchange whose deadline may end it)? */
static inline int nt_deadline_controls(const struct nt_conn *c, int dir)
{
    /* bit READ (2) or WRITE (3), and REQUEST (5) */
    return (c->dl_active & ((1u << NT_DL_REQUEST) | (4u << dir))) != 0;
}
/* How long may a blocking call that started waiting at `start` wait?
 * The absolute time, or 0: no limit of its own (it still ends when a
 * deadline that fires by itself expires the connection). */
nt_ns nt_deadline_limit(const struct nt_conn *c, int dir, nt_ns start);
/* The limit passed with the call still waiting: logs the timeout and
 * returns the errno the call fails with. */
int nt_deadline_call_expired(struct nt_conn *c, int dir, nt_ns start,
                             const char *op, void *caller);
/* What a call did: n bytes moved (they are already counted in the
 * connection's story), or it would block (the program waits). */
void nt_deadline_report(struct nt_conn *c, int dir, int what, size_t n);

/* Exchange phases (deadline.c has the state machine). */
enum { NT_PH_PARKED = 0, NT_PH_REQUEST, NT_PH_ANSWERED };

/* Bumped by every wait of the program's (nt_deadline_program_waits). */
extern uint32_t nt_wait_seq;

/* Out of line parts of nt_deadline_moved(): bytes moved while a connect
 * was pending; (re)filing the connection with the timer. */
void nt_deadline_moved_slow(struct nt_conn *c, int dir, size_t n);
void nt_deadline_rearm(struct nt_conn *c);

/* An entry filed at or before `due`, comfortably in the future, needs no
 * timer call: the timer cannot be popping it while we look, and when it
 * does pop it, it sees the new clock and refiles (due times only move
 * later on the fast path). */
#define NT_ARM_MARGIN (20 * 1000000LL) /* more than the coarse clock lags */
static inline int nt_deadline_filed_by(const struct nt_conn *c, nt_ns now,
                                       nt_ns due)
{
    return c->heap_idx && c->heap_due <= due && c->heap_due > now + NT_ARM_MARGIN;
}

/* The report of bytes moved, inline: this is every successful call's
 * bookkeeping. At most one clock read (coarse), no atomic read-modify-
 * write, no timer call unless a new exchange's deadline comes due before
 * the connection's filed entry. The clock is read only when a deadline
 * that restarts with traffic is set (idle, request): with exchanges
 * tracked for `abandoned` alone, an exchange's age comes from the kernel
 * at close (deadline.c). */
/* When an exchange starts: `now` if the call read the clock; else 0 for
 * TCP, whose `abandoned` event takes the exchange's age from the kernel
 * (TCP_INFO), but a read of the clock for a unix socket, which has no
 * such record. */
static inline nt_ns nt_exchange_clock(const struct nt_conn *c, nt_ns now)
{
    return now || c->family != AF_UNIX ? now : nt_now_coarse();
}

/* nt_deadline_moved() once the connection is known to be established
 * (no connect pending) and to have some deadline or exchange tracking
 * (dl_active): the I/O fast path (io.h) checked both already. */
static inline void nt_deadline_moved_est(struct nt_conn *c, int dir, size_t n)
{
    uint8_t a = c->dl_active;
    c->t_wait[dir] = 0; /* only read/write/request deadlines set it */
    nt_ns now = 0;
    if (a & ((1u << NT_DL_IDLE) | (1u << NT_DL_REQUEST)))
        c->t_last = now = nt_now_coarse();
    if (!(a & ((1u << NT_DL_REQUEST) | (1u << NT_DL_TRACK))))
        return;
    if (dir == c->req_dir) {
        if (c->req_phase != NT_PH_REQUEST) {
            /* a new exchange: request_timeout starts now */
            c->req_phase = NT_PH_REQUEST;
            c->t_req = nt_exchange_clock(c, now);
            c->x0[NT_IN] = c->bytes[NT_IN];
            c->x0[NT_OUT] = c->bytes[NT_OUT];
            c->x0[dir] -= n;
            /* the handler may make no further call on it */
            if ((a & (1u << NT_DL_REQUEST)) &&
                !nt_deadline_filed_by(c, now, now + c->set->request_timeout))
                nt_deadline_rearm(c);
        }
    } else {
        if (c->req_phase == NT_PH_REQUEST)
            c->req_phase = NT_PH_ANSWERED;
        /* (read by request_timeout's answer_done() only) */
        c->ans_seq = __atomic_load_n(&nt_wait_seq, __ATOMIC_RELAXED);
    }
}

static inline void nt_deadline_moved(struct nt_conn *c, int dir, size_t n)
{
    if (!c->dl_active)
        return;
    if (unlikely(c->t_connect)) {
        nt_deadline_moved_slow(c, dir, n); /* the connect is long done */
        return;
    }
    nt_deadline_moved_est(c, dir, n);
}

/* The program waits for input on this connection in poll/select: an
 * answered inbound exchange is over, and read_timeout starts unless it
 * runs already. Inline: every poll of a governed socket comes here. */
static inline void nt_deadline_polled_in(struct nt_conn *c)
{
    if (c->req_phase == NT_PH_ANSWERED && c->req_dir == NT_IN) {
        c->req_phase = NT_PH_PARKED;
        c->t_req = 0;
    }
    if (!(c->dl_active & (1u << NT_DL_READ)) || c->t_wait_rd)
        return;
    nt_ns now = nt_now_coarse();
    c->t_wait_rd = now;
    if (!nt_deadline_filed_by(c, now, now + c->set->read_timeout))
        NT_KEEP_ERRNO(nt_deadline_rearm(c));
}

/* Any wait of the program's (poll, select, epoll): ends exchanges that
 * were answered (see deadline.c). */
static inline void nt_deadline_program_waits(void)
{
    __atomic_store_n(&nt_wait_seq,
                     __atomic_load_n(&nt_wait_seq, __ATOMIC_RELAXED) + 1,
                     __ATOMIC_RELAXED);
}
/* The program closes its last descriptor of c, or shuts it down: an
 * exchange it leaves in the middle is logged as `abandoned`. */
void nt_deadline_closing(struct nt_conn *c, int fd, const char *op,
                         void *caller);

/* The connection was expired by a deadline: errno for the failing call. */
int nt_deadline_errno(const struct nt_conn *c);

/* Timer thread (timer.c): re-check and maybe fire. Returns the next due
 * time to refile under, or 0 to drop the entry. */
nt_ns nt_deadline_due(struct nt_conn *c, uint32_t gen, nt_ns now);

#endif
