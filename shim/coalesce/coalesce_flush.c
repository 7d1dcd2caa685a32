/* Write coalescing: flushing. One call's work on a connection under its
 * slot lock (co_enter .. co_leave), sending what is buffered (co_send),
 * blocking and non-blocking flushes, flush_error, the cork release, and
 * the timer's flushes. Design notes at the top of coalesce.c.
 *
 * Locking: the slot lock (nt_conn_lock) guards a connection's buffer and
 * flags and is held only for short work, never across a wait. When a send
 * must wait for room (a blocking socket, or a flush that must complete),
 * the thread marks the connection busy (co_busy), unlocks, polls, and locks
 * again; meanwhile other program threads wait for it to finish (order, and
 * no interleaving inside one call's bytes) and the timer and other
 * threads' waits leave the connection alone.
 *
 * Signal handlers: a handler's write on a coalescing socket is coalesced
 * like any other, unless it interrupted its own thread while that held the
 * connection's slot lock (a few instructions around a copy or a send) or
 * one of the global spin locks: then the state may be half-changed, and
 * the handler's call goes straight to the kernel, so its bytes can land
 * ahead of bytes buffered just before (the one ordering exception). A
 * handler that interrupts its thread's wait for room in a send is not
 * stopped by that thread's busy mark, just as a write from a handler gets
 * in between the parts of an interrupted blocking send in the kernel.
 * Waits and exits from such a handler skip what they cannot lock.
 *
 * Non-blocking sockets: flushes never block the program unless it has to
 * (shutdown, dup, fork, exec, exit, where a bounded wait follows:
 * write_timeout if set, else NT_CO_LINGER on a non-blocking socket). If the
 * kernel refuses buffered bytes (EAGAIN), they stay buffered (the program
 * was told they were written) and the connection is "stuck"; each wait
 * retries it, and the timer retries it every 1 ms backing off to 16 ms, so
 * the bytes reach the peer even if the program only waits for input. A
 * blocking socket's flush is a blocking send of everything, bounded by
 * write_timeout like any blocking write.
 *   The library never acknowledges bytes the kernel would refuse: once the
 * kernel has said "no room" on a connection (EAGAIN or a short send, to a
 * flush or to a write that went straight to it), it is "full" (co_full),
 * and a non-blocking write is not buffered: it goes to the kernel, after
 * whatever is held, and gets the kernel's answer (EAGAIN while bytes are
 * still held). It ends when the kernel takes one of the program's writes
 * whole and reports the socket writable (POLLOUT: the queue has drained to
 * the point where the kernel would wake a writer); a flush of held bytes
 * alone does not end it, as it says nothing about room for more.
 *
 * Closing: close() never waits longer than the kernel's own close. What
 * the kernel takes at once is sent; what is left goes on a private
 * duplicate of the socket (F_DUPFD_CLOEXEC, near the top of the fd limit)
 * that the timer keeps flushing, as the kernel keeps sending its own queue
 * after a close; it is closed (the peer then gets the FIN) when the bytes
 * are out, or after write_timeout (default CO_ORPHAN_LINGER) without
 * progress, the bytes then reported lost (flush_error). SO_LINGER keeps its
 * meaning: {1, 0} discards (flush_error, ECONNABORTED); {1, N} on a
 * blocking socket waits up to N s first, as the kernel's close would.
 * close_range/closefrom wait (bounded) instead: the duplicate could be in
 * the range being closed. A fork child closes the duplicates it inherits.
 *
 * Errors: a flush that fails for good (EPIPE, ECONNRESET, a deadline that
 * expired the connection or a write_timeout) drops the buffered bytes,
 * logs flush_error with lost_bytes and the errno, and makes the program's
 * next call on the socket fail with that errno once: a write without
 * MSG_NOSIGNAL gets SIGPIPE for EPIPE, as from the kernel (unless
 * sigpipe = ignore). If the failing flush is part of the program's own
 * call (a write that did not fit, a read), that call fails instead.
 */
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/uio.h>

#include "coalesce/coalesce_internal.h"
#include "deadline/deadline.h"
#include "audit/event.h"
#include "core/io.h"
#include "core/process.h"
#include "core/real.h"
#include "deadline/timer.h"

#define NT_CO_LINGER (5 * 1000000000LL)      /* see "Non-blocking sockets" */
#define CO_ORPHAN_LINGER (30 * 1000000000LL) /* see "Closing" */
#define CO_RETRY_MIN (1000000LL)             /* timer retry of a stuck flush */
#define CO_RETRY_SHIFT_MAX 4                 /* ... backing off to 16 ms */

/* ---- one call's work on a connection ---------------------------------- */

static void release_buf(struct co_call *x);

/* Lock the slot for coalescing work. 0: not here: a signal handler
 * interrupted this thread while it held the slot (inside the coalescing
 * code, or in close) or a global spin lock; the caller does without (see
 * "Signal handlers" above). */
static int enter(struct co_call *x, struct nt_conn *c, int fd,
                 const char *op, void *caller, int try)
{
    if (co_spin)
        return 0;
    *x = (struct co_call){ .c = c, .fd = fd, .op = op, .caller = caller };
    x->taken = try ? nt_conn_trylock(c) : nt_conn_lock(c);
    if (x->taken <= 0)
        return 0;
    x->gen = c->gen;
    struct co_buf *b = c->cbuf;
    if (b && b->epoch != nt_fork_epoch) {
        /* A fork child: these bytes are the parent's to send. */
        release_buf(x);
    }
    return 1;
}

int co_enter(struct co_call *x, struct nt_conn *c, int fd,
             const char *op, void *caller)
{
    return enter(x, c, fd, op, caller, 0);
}

/* As co_enter, but 0 also when another thread holds the slot: it is at
 * work on the connection (writing to it, or the timer flushing it), and
 * its own wait or the timer flushes what it holds (see flush_shard). */
int co_enter_try(struct co_call *x, struct nt_conn *c, int fd,
                 const char *op, void *caller)
{
    return enter(x, c, fd, op, caller, 1);
}

void co_report_lost(const struct co_call *x)
{
    struct nt_event ev = {
        .kind = NT_EV_FLUSH_ERROR, .fd = x->fd, .op = x->op, .conn = x->c,
        .err = x->lost_err, .lost_bytes = x->lost, .caller = x->caller,
    };
    nt_event_emit(&ev);
}

/* Another thread is sending with the slot unlocked. (This thread's own
 * mark means a signal handler interrupted that send: the handler goes on,
 * as a write from a handler interrupts a blocking send in the kernel.) */
int co_busy_other(const struct nt_conn *c)
{
    uint64_t b = __atomic_load_n(&c->co_busy, __ATOMIC_RELAXED);
    return co_id_live(b) && b != co_self_id();
}

/* Wait while another thread sends on the connection. 0: the slot was
 * closed or reused meanwhile. */
int co_wait_idle_slow(struct co_call *x)
{
    for (int round = 0; co_busy_other(x->c); round++) {
        nt_conn_unlock(x->c, 1);
        co_backoff(round);
        nt_conn_lock(x->c);
        if (x->c->gen != x->gen)
            return 0;
    }
    return 1;
}

/* The buffer is empty, or its bytes are lost: give it back. */
static void release_buf(struct co_call *x)
{
    struct nt_conn *c = x->c;
    struct co_buf *b = co_pend_del(c, x->fd);
    if (c->co_flags & CO_ORPHAN)
        x->retire = 1; /* nothing left to send: the duplicate goes */
    c->cbuf = NULL;
    c->clen = 0;
    c->co_nwr = 0;
    c->co_flags &= (uint8_t)~CO_STUCK;
    c->t_cflush = 0;
    c->co_retry = 0;
    if (b)
        co_buf_put(b);
}

/* A flush failed for good: the buffered bytes cannot be delivered. */
void co_lose(struct co_call *x, int err)
{
    struct nt_conn *c = x->c;
    uint64_t n = co_held(c->cbuf);
    if (n) {
        x->lost_err = err;
        x->lost += n;
    }
    release_buf(x);
    if (err == ECONNRESET)
        c->peer_closed = 1;
    if (err == ENOTSOCK || err == EBADF) {
        /* closed (and reopened) behind our back: those bytes cannot be
         * delivered, and the descriptor is no longer this connection */
        nt_fd_forget(x->fd);
    } else if (x->defer && n) {
        c->flush_err = err;
    }
}

static void sent(struct co_call *x, size_t n)
{
    x->c->bytes_out += n;
    if (x->c->dl_active)
        nt_deadline_report(x->c, NT_OUT, NT_MOVED, n);
}

/* A non-blocking socket (or no write_timeout) must still end a wait that
 * cannot be avoided (fork, exit): see "Non-blocking sockets". */
static int linger_wait(struct nt_conn *c, int fd, nt_ns start, nt_ns limit)
{
    if (!limit)
        limit = c->set && c->set->write_timeout > 0 ? c->set->write_timeout
              : c->nonblock ? NT_CO_LINGER : 0;
    struct pollfd p = { .fd = fd, .events = POLLOUT };
    for (;;) {
        struct timespec ts, *tsp = NULL;
        if (limit) {
            nt_ns left = start + limit - nt_now();
            if (left <= 0) {
                errno = ETIMEDOUT;
                return 0;
            }
            ts.tv_sec = left / 1000000000;
            ts.tv_nsec = left % 1000000000;
            tsp = &ts;
        }
        int r = real.ppoll(&p, 1, tsp, NULL);
        if (r > 0 || (r < 0 && errno != EINTR))
            return 1; /* ready, or let the send report the problem */
    }
}

/* Wait for room with the slot unlocked and the connection marked busy.
 * 1 ready; 0 deadline passed (errno says which); -1 EINTR that the
 * kernel would not have restarted (never after `moved` bytes of the
 * program's call went: the kernel returns the partial count on any
 * handled signal then); -2 the fd was closed meanwhile. */
static int wait_room(struct co_call *x, int how, nt_ns start, size_t moved)
{
    struct nt_conn *c = x->c;
    int w;
    uint64_t prev = c->co_busy; /* a handler's send keeps its thread's mark */
    __atomic_store_n(&c->co_busy, co_self_id(), __ATOMIC_RELAXED);
    nt_conn_unlock(c, 1);
    if (how == CO_BLOCK) {
        w = nt_io_wait(c, x->fd, NT_OUT, start, moved, x->op, x->caller);
    } else {
        w = linger_wait(c, x->fd, start, x->limit);
    }
    int e = errno;
    nt_conn_lock(c);
    __atomic_store_n(&c->co_busy, prev, __ATOMIC_RELAXED);
    if (c->gen != x->gen) {
        errno = EBADF;
        return -2;
    }
    errno = e;
    return w;
}

/* Send the buffered bytes, then iov (the program's own; may be empty), in
 * order, in as few sendmsg calls as the kernel allows. Slot locked on entry
 * and return. Returns the bytes of iov sent (>= 0), the buffer then being
 * empty; or -1 with errno: EAGAIN (CO_TRY: the kernel has no room; bytes
 * kept, connection stuck), EINTR (kept), EBADF (closed meanwhile: nothing
 * touched), or a hard error (the buffered bytes were lost). */
ssize_t co_send(struct co_call *x, const struct iovec *iov,
                int iovcnt, size_t total, int how)
{
    struct nt_conn *c = x->c;
    size_t done = 0;
    nt_ns start = 0;
    for (;;) {
        struct co_buf *b = c->cbuf;
        size_t have = co_held(b);
        if (!have && done == total)
            return (ssize_t)done;
        int err = 0;
        if (c->expired) {
            err = nt_deadline_errno(c);
        } else {
            struct iovec v[CO_IOV + 1]; /* iovcnt <= CO_IOV (plain()) */
            int n = 0;
            if (have)
                v[n++] = (struct iovec){ b->data + b->off, have };
            if (iovcnt > 0)
                n += nt_iov_skip(iov, iovcnt, done, v + n);
            size_t want = nt_iov_size(v, n);
            struct msghdr m = { .msg_iov = v, .msg_iovlen = (size_t)n };
            ssize_t r = real.sendmsg(x->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (r > 0) {
                sent(x, (size_t)r);
                size_t from_buf = (size_t)r < have ? (size_t)r : have;
                if (from_buf) {
                    b->off += (uint32_t)from_buf;
                    b->room -= (uint32_t)from_buf; /* they took theirs */
                    c->clen = (uint32_t)co_held(b);
                    if (b->off == b->len) {
                        co_note_flushed(c, c->co_nwr + (iovcnt > 0));
                        release_buf(x);
                    }
                }
                done += (size_t)r - from_buf;
                if ((size_t)r == want)
                    continue;
                /* a short send: the kernel is full, as EAGAIN would say */
            } else if (r < 0 && errno == EINTR) {
                continue;
            } else if (r < 0 && errno != EAGAIN) {
                err = errno;
            }
        }
        if (!err) {
            /* no room: nothing more is acknowledged until there is */
            __atomic_store_n(&c->co_full, 1, __ATOMIC_RELAXED);
            if (c->cbuf)
                c->co_flags |= CO_STUCK;
            if (how == CO_TRY) {
                if (c->cbuf) {
                    errno = EAGAIN;
                    return -1;
                }
                return (ssize_t)done;
            }
            if (!start)
                start = nt_now();
            int w = wait_room(x, how, start, done);
            if (w == -2)
                return -1;
            if (w > 0)
                continue;
            if (w < 0) { /* EINTR: a blocking send would return */
                if (c->cbuf || !done)
                    return -1;
                return (ssize_t)done;
            }
            err = errno; /* the deadline passed */
        }
        if (!c->cbuf && done)
            return (ssize_t)done; /* as the kernel: the error comes next */
        co_lose(x, err);
        errno = err;
        return -1;
    }
}

/* ---- cork mode -------------------------------------------------------- */

/* Push whatever MSG_MORE held back (see "Modes" atop coalesce.c). */
void co_release(struct co_call *x, int push)
{
    struct nt_conn *c = x->c;
    if (!(c->co_flags & CO_CORKED))
        return;
    c->co_flags &= (uint8_t)~CO_CORKED;
    c->t_cflush = 0;
    co_pend_del(c, x->fd);
    if (push)
        co_note_flushed(c, __atomic_load_n(&c->co_nwr, __ATOMIC_RELAXED));
    else
        c->co_nwr = 0;
    if (!push || (c->co_flags & CO_PROG_CORK))
        return; /* lost anyway (expired), or the program's cork is its own */
    if (__atomic_load_n(&c->co_mode, __ATOMIC_RELAXED) == NT_CO_PASS) {
        /* This release ends corking for CO_PASS_WRITES writes: from here
         * the program's writes meet Nagle as without the library, and so
         * does what we corked, as when a dup stops coalescing (see
         * stop_coalescing). Past Nagle, its quick ACK left the next small
         * writes behind Nagle waiting for a delayed ACK, where without the
         * library they went out with these bytes
         * (repro/cork-pass-switch-release-beats-nagle). */
        if (!co_other_cork(c, x->fd))
            co_uncork(x->fd);
        return;
    }
    co_push(c, x->fd);
}

/* The kernel sends what MSG_MORE held back, now. Also for bytes no timer
 * tracks (no room in the pending set, a signal handler that could not
 * lock the slot), so it needs no lock: co_flags is read as a hint. */
void co_push(const struct nt_conn *c, int fd)
{
    int one = 1, zero = 0, saved = errno;
    uint8_t flags = __atomic_load_n(&c->co_flags, __ATOMIC_RELAXED);
    /* A TCP_CORK set by another process sharing the socket (a fork
     * child's parent, or such a child) holds our bytes as the kernel's
     * would without the library: TCP_NODELAY would push its corked bytes
     * with ours, and a cork release would end its cork. This process's
     * own TCP_CORK is CO_PROG_CORK. */
    if (co_other_cork(c, fd)) {
        errno = saved;
        return;
    }
    real.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!(flags & CO_PROG_NODELAY))
        real.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &zero, sizeof zero);
    errno = saved;
}

/* This process has forked, or is a fork child: another process may hold
 * its sockets (see co_push). */
int co_forked;

/* TCP_CORK is set on the socket (by whoever holds it). */
static int co_sock_corked(int fd)
{
    int v = 0, saved = errno;
    socklen_t len = sizeof v;
    int r = real.getsockopt(fd, IPPROTO_TCP, TCP_CORK, &v, &len);
    errno = saved;
    return r == 0 && v;
}

/* Another process sharing the socket holds TCP_CORK on it (see co_push):
 * only asked where one may (after a fork; inherited sockets are not
 * corked, see decide()). */
int co_other_cork(const struct nt_conn *c, int fd)
{
    (void)c;
    return co_forked && co_sock_corked(fd);
}

/* Release what MSG_MORE held back as the kernel's own cork release does:
 * Nagle applies (unless the program set TCP_NODELAY), as it would have to
 * the program's writes. For a socket that stops coalescing for good. */
void co_uncork(int fd)
{
    int one = 1, zero = 0, saved = errno;
    real.setsockopt(fd, IPPROTO_TCP, TCP_CORK, &one, sizeof one);
    real.setsockopt(fd, IPPROTO_TCP, TCP_CORK, &zero, sizeof zero);
    errno = saved;
}

/* ---- flushing ---------------------------------------------------------- */

/* Whatever the connection holds goes out (cork: is released). 0, or -1
 * with errno as co_send. */
int co_flush(struct co_call *x, int how)
{
    if (x->c->co_flags & CO_CORKED) /* cork mode (or just left it) */
        co_release(x, 1);
    if (!x->c->cbuf)
        return 0;
    return co_send(x, NULL, 0, 0, how) < 0 ? -1 : 0;
}

/* A flush no program call on this connection is waiting for (a wait, the
 * timer, close, fork, ...): a failure is remembered for its next call.
 * Returns 0 or the failure's errno; errno itself is left alone. */
int co_flush_deferred(struct co_call *x, int how)
{
    x->defer = 1;
    int saved = errno;
    int e = co_flush(x, how) < 0 ? errno : 0;
    errno = saved;
    return e;
}

/* ---- closing ------------------------------------------------------------ */

/* Writes through the pass-through check: see CO_SINGLE_MAX. A flush (or
 * a cork release) that carried a single write of the program's saved
 * nothing; after CO_SINGLE_MAX of them in a row the connection stops
 * coalescing for CO_PASS_WRITES writes, then tries again. Slot locked. */
void co_note_flushed(struct nt_conn *c, unsigned writes)
{
    __atomic_store_n(&c->co_nwr, 0, __ATOMIC_RELAXED);
    if (writes > 1 || (c->co_flags & CO_ORPHAN)) {
        c->co_single = 0;
        return;
    }
    if (++c->co_single < CO_SINGLE_MAX)
        return;
    c->co_single = 0;
    c->co_pass = CO_PASS_WRITES;
    __atomic_store_n(&c->co_mode, NT_CO_PASS, __ATOMIC_RELAXED);
}

/* The lowest fd number for a duplicate: near the top of the limit, away
 * from the numbers the program gets from the bottom. */
static int orphan_fd_min(void)
{
    struct rlimit rl;
    rlim_t top = NT_FD_MAX;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < top)
        top = rl.rlim_cur;
    return (int)(top > 256 ? top - 64 : top / 2);
}

/* The program closes a connection whose bytes the kernel cannot take yet:
 * the connection lives on through a private duplicate of the socket, the
 * library's own descriptor, which the timer flushes (see "Closing");
 * core/conn.c keeps an orphan when the program's last descriptor goes.
 * 0, or the errno of why not (the bytes are then lost). Slot locked. */
static int orphan(struct co_call *x)
{
    struct nt_conn *c = x->c;
    int saved = errno;
    int d = c->alias_fd; /* a blocked call's alias serves as well */
    if (d < 0)
        d = real.fcntl(x->fd, F_DUPFD_CLOEXEC, orphan_fd_min());
    int e = errno;
    errno = saved;
    if (d < 0)
        return e;
    c->alias_fd = d;
    c->fd = d;
    c->nonblock = 1; /* nobody waits on it any more */
    c->co_flags |= CO_ORPHAN;
    nt_ns now = nt_now();
    c->t_orphan = now;
    c->t_cflush = now + CO_RETRY_MIN;
    nt_timer_arm(c, c->t_cflush);
    errno = saved;
    return 0;
}

/* An orphan's bytes are out (or lost): its duplicate goes. Slot locked. */
void co_retire(struct co_call *x)
{
    struct nt_conn *c = x->c;
    x->retire = 0;
    if (c->gen != x->gen || !(c->co_flags & CO_ORPHAN))
        return;
    c->co_flags &= (uint8_t)~CO_ORPHAN;
    nt_conn_orphan_done(c);
}

/* The fd goes away: nothing may stay buffered for it, and the close takes
 * no longer than the kernel's own (see "Closing"). may_orphan: 0 for
 * close_range/closefrom. */
void co_flush_closing(struct co_call *x, int may_orphan)
{
    struct nt_conn *c = x->c;
    /* The release pushes: a close pushes nothing while another descriptor
     * (a fork child's, a parent's) keeps the socket open, and a close with
     * unread input resets the connection, discarding what is unsent. */
    if (c->co_flags & CO_CORKED)
        co_release(x, 1);
    if (!c->cbuf) {
        c->flush_err = 0;
        return;
    }
    int e = co_flush_deferred(x, CO_TRY);
    if (e == EAGAIN || e == EINTR)
        e = 0; /* the bytes are still held: see below */
    if (c->gen != x->gen)
        return;
    if (c->cbuf && !e && (c->co_flags & CO_ORPHAN)) {
        e = co_flush_deferred(x, CO_LINGER); /* close_range over it */
    } else if (c->cbuf && !e) {
        struct linger lg = { 0, 0 };
        socklen_t len = sizeof lg;
        int saved = errno;
        if (real.getsockopt(x->fd, SOL_SOCKET, SO_LINGER, &lg, &len) != 0)
            lg.l_onoff = 0;
        errno = saved;
        if (lg.l_onoff && lg.l_linger == 0) {
            e = ECONNABORTED; /* an abortive close discards what is unsent */
        } else if (lg.l_onoff && !c->nonblock) {
            x->limit = (nt_ns)lg.l_linger * 1000000000LL;
            e = co_flush_deferred(x, CO_LINGER);
            x->limit = 0;
        } else if (!may_orphan) {
            e = co_flush_deferred(x, CO_LINGER);
        }
        if (c->gen != x->gen)
            return;
        if (c->cbuf && !e && may_orphan) {
            e = orphan(x);
            if (!e) { /* the timer sends the rest through the duplicate */
                c->flush_err = 0;
                return;
            }
        }
    }
    if (c->cbuf)
        co_lose(x, e ? e : EIO);
    c->flush_err = 0;
}

/* ---- the timer -------------------------------------------------------- */

static nt_ns retry_interval(struct nt_conn *c)
{
    int n = c->co_retry < CO_RETRY_SHIFT_MAX ? c->co_retry
                                             : CO_RETRY_SHIFT_MAX;
    if (c->co_retry < 255)
        c->co_retry++;
    return CO_RETRY_MIN << n;
}

nt_ns nt_coalesce_due(struct nt_conn *c, uint32_t gen, nt_ns now)
{
    struct co_call x;
    if (!__atomic_load_n(&c->t_cflush, __ATOMIC_RELAXED) ||
        !co_enter(&x, c, c->fd, "timer", NULL))
        return 0;
    nt_ns next = 0;
    if (c->gen == gen && (c->refs || (c->co_flags & CO_ORPHAN)) && c->t_cflush) {
        if (c->t_cflush > now) {
            next = c->t_cflush;
        } else if (co_busy_other(c)) {
            next = now + CO_RETRY_MIN; /* its sender is at it */
        } else {
            uint32_t before = c->clen;
            co_flush_deferred(&x, CO_TRY);
            if (c->cbuf && (c->co_flags & CO_ORPHAN)) {
                nt_ns limit = c->set && c->set->write_timeout > 0
                                  ? c->set->write_timeout
                                  : CO_ORPHAN_LINGER;
                if (c->clen != before) {
                    c->t_orphan = now;
                    c->co_retry = 0;
                } else if (now - c->t_orphan >= limit) {
                    co_lose(&x, ETIMEDOUT); /* closes the duplicate */
                }
            }
            if (c->cbuf) /* stuck: try again soon, backing off */
                next = c->t_cflush = now + retry_interval(c);
        }
    }
    co_leave(&x);
    return next;
}

void nt_coalesce_expired(struct nt_conn *c, int fd)
{
    struct co_call x;
    if (c->co_mode <= NT_CO_OFF || !co_enter(&x, c, fd, "timer", NULL))
        return;
    x.defer = 1;
    co_release(&x, 0);
    if (c->cbuf)
        co_lose(&x, nt_deadline_errno(c));
    co_leave(&x);
}

/* Connection lock held by the caller (core/conn.c retires it). */
void nt_coalesce_release(struct nt_conn *c)
{
    if (!c->cbuf && !c->co_pidx)
        return;
    struct co_call x = { .c = c, .fd = -1, .gen = c->gen, .op = "close" };
    struct co_buf *b = c->cbuf;
    uint64_t lost = b && b->epoch == nt_fork_epoch ? co_held(b) : 0;
    release_buf(&x);
    c->co_flags &= (uint8_t)~CO_CORKED;
    if (lost) {
        x.lost = lost;
        x.lost_err = EBADF;
        co_report_lost(&x);
    }
}
