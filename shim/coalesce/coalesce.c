/* Write coalescing (shared/SPEC.md section 6).
 *
 * Files: this one decides per connection and handles the program's calls
 * and the hooks' close, dup, fdopen and setsockopt. coalesce_flush.c sends
 * what is held, and has the timer's flushes and the notes on Locking,
 * Signal handlers, Non-blocking sockets and Errors; coalesce_pending.c the
 * set of connections with something to flush (waits, exit, fork) and
 * Stale slots; coalesce_pool.c the buffers, spin locks and Memory.
 * coalesce_internal.h is what they share.
 *
 * Modes
 *   buffer: a plain output call (write, send, sendto without an address,
 *   writev, sendmsg without name or control data; flags at most
 *   MSG_NOSIGNAL) on a coalescing connection copies its bytes into the
 *   connection's buffer of `coalesce` bytes and returns their count. A call
 *   that does not fit sends the buffered bytes and its own in one sendmsg
 *   (two or more iovecs); a call of `coalesce` bytes or more with nothing
 *   buffered goes straight to the kernel.
 *   cork: plain output calls go to the kernel at once with MSG_MORE, which
 *   keeps a partial segment back like TCP_CORK. A zero-length send does not
 *   release it (tcp_sendmsg pushes only when it copied bytes); setting
 *   TCP_NODELAY does, with TCP_NAGLE_PUSH, so no Nagle/delayed-ACK wait
 *   follows. The release is setsockopt(TCP_NODELAY, 1), then back to 0
 *   unless the program itself asked for TCP_NODELAY. Measured on loopback,
 *   2,000 8-byte sends per response (Nagle on), OutSegs per exchange:
 *   9 without MSG_MORE (and up to 48 ms Nagle stalls), 26 and 220 ms
 *   stalls with MSG_MORE and no release (the 200 ms cork ceiling), 26 with
 *   a zero-length send as the release, 2.5 with TCP_CORK 0 as the release
 *   (still subject to Nagle), 2 with the TCP_NODELAY release (the response
 *   and the next request). In buffer mode a connection's first bytes go
 *   to the kernel as written (first_bytes(): the peer's ACK pacing).
 *
 * Unix stream sockets are never coalesced. Each write is one skb there,
 * charged (its truesize) to the sender until the peer reads it, and
 * poll's POLLOUT, EAGAIN, SIOCOUTQ and where a blocking write sleeps all
 * follow that charge: merged writes are fewer skbs, so the program would
 * see a socket more writable than without the library
 * (repro/buffer-unix-merged-writes-poll-writable). No merge keeps that
 * accounting, and there are no segments or Nagle to gain from; they also
 * ignore MSG_MORE.
 *
 * Flush points (both modes; in cork mode a flush is the release): the
 * buffer is full; coalesce_delay has passed since the first byte (the
 * timer thread, nt_coalesce_due); any input call on the connection; any
 * wait of the program's (poll/select/epoll, whatever the fds); shutdown,
 * close, close_range/closefrom, dup2/dup3 over the fd, dup of it; fork,
 * exec, posix_spawn, exit, _exit (nt_coalesce_flush_all); an output call
 * that cannot be coalesced (other flags such as MSG_OOB or MSG_MORE,
 * sendfile, splice, sendmmsg, control data); the program changing
 * TCP_CORK; dup or fdopen of the socket (and coalescing stops there).
 * Writes after the program's own shutdown(SHUT_WR) go straight through,
 * so their EPIPE is immediate; writes on an outbound socket that is not
 * yet connected too (the kernel's EAGAIN/ECONNREFUSED is the program's).
 *   Health: nothing is acknowledged that the kernel would refuse. Before
 * the first byte of a buffer or of our cork, co_health() asks the kernel
 * (TCP_INFO: ESTABLISHED); otherwise the write goes to the kernel as
 * made. A
 * zero-length write is never held: the kernel answers it. On a
 * non-blocking socket a buffer also holds no more than the send buffer is
 * sure to take (nt_send_room(), core/io.c): what does not fit gets the
 * kernel's answer.
 * Bytes appended to an open buffer (within coalesce_delay) are not
 * re-checked for health: a reset arriving then is a flush_error, as for a
 * kernel write whose segments meet the reset.
 *   Other channels: while anything is held, a read that would block on a
 * descriptor the library does not govern (a pipe to a helper), and any
 * write to a pipe or ungoverned socket (a message to another process that
 * may act on the peer at once), flush first (coalesce_pending.c).
 *
 * Sharing: once another descriptor refers to the socket (dup, dup2,
 * F_DUPFD) or the program wraps it in a FILE* (fdopen: stdio writes with
 * glibc's internal calls, which no hook sees), the connection is flushed
 * and coalescing stops on both, so no byte written through one can
 * overtake bytes buffered for the other. Across fork both processes keep coalescing their own
 * writes: the fork is a flush point, and bytes a fork child would inherit
 * in a buffer (only if the pre-fork flush could not complete) belong to the
 * parent: the child drops them (buffers carry the fork epoch), so nothing
 * is sent twice. Ordering between processes writing to one socket is
 * guaranteed at the flush points only (fork, exit, exec, waits).
 *
 * Writers no hook sees (LESSONS 24): dprintf and its kin are formatted by
 * the library and written through nt_io_call (hooks/stdio.c); system,
 * popen, wordexp and vfork flush everything first (hooks/spawn.c); an
 * inherited socket that is also stdout or stderr is never coalesced
 * (stdio_socket below).
 *
 * Pass-through: a connection whose flushes each carry a single write of
 * the program's gains nothing (one syscall either way) and pays a copy,
 * two pool/pending-set locks, a timer arm and, in cork mode, one or two
 * setsockopt per flush. After CO_SINGLE_MAX such flushes in a row it goes
 * NT_CO_PASS: writes go straight to the kernel with no lock and no state
 * (nt_coalesce_io's first branch); CO_PASS_WRITES writes later it tries
 * coalescing again, so a connection whose pattern changes is not lost.
 *
 * Limits: a program's bad buffer pointer crashes in the copy instead of
 * failing with EFAULT; SO_SNDTIMEO is not applied to flushes (the program
 * was told the bytes were written); a flush at exit, fork, exec, dup or
 * shutdown on a blocking socket with no write_timeout waits as long as a
 * blocking write would (close does not: see "Closing" in
 * coalesce_flush.c).
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/stat.h>

#include "coalesce/coalesce_internal.h"
#include "deadline/deadline.h"
#include "audit/event.h"
#include "core/io.h"
#include "core/real.h"
#include "deadline/timer.h"

/* ---- deciding, and the calls of the program ---------------------------- */

static int tcp_opt(int fd, int opt)
{
    int v = 0;
    socklen_t len = sizeof v;
    return real.getsockopt(fd, IPPROTO_TCP, opt, &v, &len) == 0 && v;
}

/* An inherited socket that is also the process's stdout or stderr (inetd,
 * systemd StandardOutput=socket): stdio, perror, assert and glibc's own
 * messages write to it through glibc's internal calls, which no hook sees.
 * Bytes buffered here would be overtaken: such a socket is not coalesced.
 * (A socket dup2'ed onto 1 or 2 later stops coalescing at the dup2.) */
static int stdio_socket(const struct nt_conn *c, int fd)
{
    if (fd == 1 || fd == 2)
        return 1;
    struct stat me, st;
    if (fstat(fd, &me) != 0)
        return 0;
    for (int std = 1; std <= 2; std++)
        if (fstat(std, &st) == 0 && S_ISSOCK(st.st_mode) &&
            st.st_ino == me.st_ino && st.st_dev == me.st_dev)
            return 1;
    (void)c;
    return 0;
}

static void decide(struct nt_conn *c, int fd)
{
    const struct nt_settings *s = c->set;
    uint8_t mode = NT_CO_OFF, flags = 0;
    /* TCP only: see "Unix stream sockets" above */
    int tcp = c->family == AF_INET || c->family == AF_INET6;
    if (s && s->coalesce > 0 && !c->dup_shared && tcp)
        mode = s->coalesce_mode == NT_COALESCE_CORK ? NT_CO_CORK : NT_CO_BUFFER;
    if (mode != NT_CO_OFF && c->role == NT_ROLE_INHERITED) {
        int saved = errno;
        if (stdio_socket(c, fd))
            mode = NT_CO_OFF;
        errno = saved;
    }
    if (mode == NT_CO_CORK && c->role == NT_ROLE_INHERITED) {
        /* The process that passed the socket (a system() or popen()
         * parent, a spawner) holds it too and writes to it with Nagle:
         * a shared socket, as after dup ("Sharing"). Corked, our bytes
         * meet Nagle later than the program's write did (at the release,
         * after the ACK they would have waited for, or past Nagle): the
         * peer sees them ahead of the other writers' or before a close
         * it made without them (repro/cork-program-tcp-cork-dprintf-
         * after-peer-close), and their quick ACK leaves the other
         * writers' next small writes behind Nagle
         * (repro/cork-fork-child-write-after-sendfile-late). */
        mode = NT_CO_OFF;
    }
    if (mode == NT_CO_OFF) {
        /* the common case: nothing to set up, and from now on nt_io()'s
         * single branch keeps the connection on the fast path */
        __atomic_store_n(&c->co_mode, NT_CO_OFF, __ATOMIC_RELAXED);
        return;
    }
    int saved = errno, ready = c->role != NT_ROLE_OUTBOUND;
    if (tcp) {
        if (tcp_opt(fd, TCP_CORK))
            flags |= CO_PROG_CORK;
        if (mode == NT_CO_CORK && tcp_opt(fd, TCP_NODELAY))
            flags |= CO_PROG_NODELAY; /* what the release restores */
    }
    if (!ready) {
        /* Bytes are buffered only on an established connection: before,
         * the kernel's answer (EAGAIN, ECONNREFUSED) is the program's. */
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        ready = getpeername(fd, (struct sockaddr *)&ss, &len) == 0;
    }
    errno = saved;
    int taken = nt_conn_lock(c);
    if (c->co_mode == NT_CO_UNDECIDED) {
        c->co_flags |= flags;
        c->co_ready = (uint8_t)ready;
        c->co_mode = mode;
    }
    nt_conn_unlock(c, taken);
}

static int shared(const struct nt_conn *c)
{
    return c->dup_shared || (c->co_flags & CO_SHARED);
}

/* May this output call be coalesced (its bytes copied and sent later)?
 * Not from a NULL buffer: the kernel answers EFAULT (an unreadable
 * non-NULL one is a limit: see "Limits" above). */
static int plain(const struct nt_op *op)
{
    if (!op->iov || op->flagless || op->iovcnt < 0 || op->iovcnt > CO_IOV ||
        (op->flags & ~MSG_NOSIGNAL))
        return 0;
    for (int i = 0; i < op->iovcnt; i++)
        if (!op->iov[i].iov_base && op->iov[i].iov_len)
            return 0;
    return 1;
}

/* The program's call fails with an error that belongs to it (a flush
 * inside it failed, or an earlier flush's error is reported now). */
static ssize_t fail_out(struct nt_conn *c, int fd, const struct nt_op *op,
                        int e)
{
    if (e == EPIPE || e == ECONNRESET) {
        nt_in_lib++;
        nt_event_io_error(c, fd, op->name, e, op->caller);
        nt_in_lib--;
    }
    if (e == EPIPE && !(op->flags & MSG_NOSIGNAL)) {
        const struct nt_global *g = nt_g.global;
        if (!g || !g->sigpipe_ignore) {
            nt_coalesce_before_sigpipe();
            raise(SIGPIPE); /* what the kernel would have done */
        }
    }
    errno = e;
    return -1;
}

static int take_err(struct nt_conn *c)
{
    int e = c->flush_err;
    c->flush_err = 0;
    return e;
}

/* A flush inside the program's own output call did not complete. */
static ssize_t out_failed(struct co_call *x, const struct nt_op *op)
{
    int e = errno;
    if (e == EAGAIN && x->c->dl_active)
        nt_deadline_report(x->c, NT_OUT, NT_BLOCKED, 0);
    co_leave(x);
    if (e == ENOTSOCK) /* not our socket any more: the call as made */
        return op->attempt(x->fd, op, op->flags, 0);
    if (e == EAGAIN || e == EINTR || e == EBADF) {
        errno = e;
        return -1;
    }
    return fail_out(x->c, x->fd, op, e);
}

static ssize_t input(struct nt_conn *c, int fd, const struct nt_op *op)
{
    struct co_call x;
    if ((c->cbuf || (c->co_flags & CO_CORKED) || c->flush_err) &&
        co_enter(&x, c, fd, op->name, op->caller)) {
        int e = 0;
        if (!co_wait_idle(&x)) {
            e = 0; /* closed meanwhile: the kernel says so */
        } else if (c->flush_err) {
            e = take_err(c);
        } else {
            int how = c->nonblock || (op->flags & MSG_DONTWAIT) ? CO_TRY
                                                                : CO_BLOCK;
            /* EAGAIN: read anyway; the bytes stay and are retried */
            if (co_flush(&x, how) < 0 && errno != EAGAIN && errno != EBADF)
                e = errno;
        }
        co_leave(&x);
        if (e) {
            errno = e;
            return -1;
        }
    }
    ssize_t r = nt_io_direct(c, fd, op);
    if (r > 0 && !c->co_ready)
        c->co_ready = 1;
    return r;
}

/* The first byte is held: the timer flushes it within coalesce_delay. */
static void arm_delay(struct co_call *x)
{
    nt_ns delay = x->c->set->coalesce_delay;
    x->c->t_cflush = nt_now() + (delay > 0 ? delay : 0);
    x->c->co_retry = 0;
    nt_timer_arm(x->c, x->c->t_cflush);
}

static int co_health(int fd);

/* The connection's first bytes go to the kernel as the program wrote
 * them (buffer mode). The peer's TCP sizes its quick-ACK budget from the
 * first data segment it gets (tcp_incr_quickack: rcv_wnd / (2 * rcv_mss),
 * at most 16): a small first write leaves it 16 immediate ACKs, a first
 * segment the library merged (1 + 20000 bytes) only 1 or 2. From then on
 * the peer delays its ACKs (40 ms), and the program's later small writes
 * (after a dup stopped coalescing, another process's, a flushed tail) meet
 * Nagle behind an unACKed segment and wait for that delayed ACK, where
 * without the library the peer had ACKed at once: a Nagle/delayed-ACK
 * stall (SPEC 6) that a peer window or an exit's reset turns into bytes
 * missing (repro/buffer-merged-first-segment-delays-peer-acks). One
 * syscall more per connection. (bytes_out is read as a hint: two threads
 * writing first at once both go straight, in order of their calls.)
 *   Not in cork mode: there the release pushes what follows the first
 * segment at once, where without the library Nagle held it for that
 * segment's ACK and sent it with the next small write; a first segment
 * of its own spends the peer's quick ACK on itself (65483 / (2 * 20000)
 * = 1), so that next write waited for the delayed ACK of the pushed
 * segment (repro/cork-first-bytes-alone-then-release-delays-tail). The
 * cork's merged first segment leaves the peer 2 quick ACKs. */
static inline int first_bytes(const struct nt_conn *c)
{
    return __atomic_load_n(&c->bytes_out, __ATOMIC_RELAXED) == 0;
}

static ssize_t output_cork(struct nt_conn *c, int fd, const struct nt_op *op)
{
    /* Nothing to cork: the kernel answers the call exactly as made (a
     * zero-length writev touches no socket state; our MSG_MORE would make
     * it a sendmsg that reports a reset). */
    if (op->total == 0)
        return nt_io_direct(c, fd, op);
    /* The program's own MSG_MORE is its cork, not ours: what we hold is
     * released first, and its call goes to the kernel as made, so the
     * kernel keeps its bytes back until the program's next send (a flush
     * point of ours must not push them). */
    int corkable = !op->flagless && !shared(c) &&
                   !(op->flags & ~(MSG_NOSIGNAL | MSG_DONTWAIT));
    struct co_call x;
    if ((c->flush_err || !corkable || (c->co_flags & CO_PROG_CORK)) &&
        co_enter(&x, c, fd, op->name, op->caller)) {
        int e = c->flush_err ? take_err(c) : 0;
        if (!e && (!corkable || (c->co_flags & CO_PROG_CORK)))
            co_release(&x, 1); /* OOB, sendfile, ...: after what is held */
        if (shared(c) && !(c->co_flags & CO_CORKED))
            c->co_mode = NT_CO_OFF;
        co_leave(&x);
        if (e)
            return fail_out(c, fd, op, e);
    }
    if (!corkable || (c->co_flags & CO_PROG_CORK))
        return nt_io_direct(c, fd, op);
    if (!(c->co_flags & CO_CORKED) && co_health(fd)) /* a cork starts */
        return nt_io_direct(c, fd, op);
    struct nt_op more = *op;
    more.flags |= MSG_MORE;
    ssize_t r = nt_io_direct(c, fd, &more);
    if (r > 0) { /* writes under one cork (no lock: a hint, see co_pass) */
        uint16_t n = __atomic_load_n(&c->co_nwr, __ATOMIC_RELAXED);
        if (n < UINT16_MAX)
            __atomic_store_n(&c->co_nwr, (uint16_t)(n + 1), __ATOMIC_RELAXED);
    }
    if (r > 0 && !(c->co_flags & CO_CORKED)) {
        int e = errno;
        if (!co_enter(&x, c, fd, op->name, op->caller)) {
            /* a signal handler: no timer will see these bytes */
            if (!(c->co_flags & (CO_CORKED | CO_PROG_CORK)))
                co_push(c, fd);
        } else {
            __atomic_store_n(&c->co_writer, (uint32_t)co_self_id(),
                             __ATOMIC_RELAXED);
            if (!(c->co_flags & CO_CORKED) && co_pend_add(c, fd, NULL)) {
                c->co_flags |= CO_CORKED;
                arm_delay(&x);
            } else if (!(c->co_flags & (CO_CORKED | CO_PROG_CORK))) {
                /* cannot track it: push now (co_release would return at
                 * once, as nothing is marked corked) */
                co_push(c, fd);
            }
            co_leave(&x);
        }
        errno = e;
    }
    return r;
}

/* The bytes of a plain call go into the buffer. */
static inline void copy_in(struct co_buf *b, const struct nt_op *op)
{
    if (op->iovcnt == 1) { /* write, send */
        memcpy(b->data + b->len, op->iov[0].iov_base, op->iov[0].iov_len);
        b->len += (uint32_t)op->iov[0].iov_len;
        return;
    }
    for (int i = 0; i < op->iovcnt; i++) {
        memcpy(b->data + b->len, op->iov[i].iov_base, op->iov[i].iov_len);
        b->len += (uint32_t)op->iov[i].iov_len;
    }
}

/* May bytes be held back on this connection now (a buffer or our cork
 * starts)? 0: yes. -1: no, the write goes to the kernel as made and gets
 * its exact answer. TCP says it in one call: ESTABLISHED means no reset,
 * no FIN from the peer and no shutdown of ours (made here, in another
 * process or before an exec). A peer that has sent FIN resets what
 * arrives, and on loopback the program's next write already sees the
 * reset: holding bytes would move that to a later call (or spare the
 * program a SIGPIPE). A peer closing while bytes are held stays a
 * flush_error (SPEC 6). */
static int co_health(int fd)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    int saved = errno;
    int r = real.getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len);
    errno = saved;
    return r == 0 && ti.tcpi_state == TCP_ESTABLISHED ? 0 : -1;
}

static struct co_buf *start_buf(struct co_call *x, uint32_t cap, uint32_t room)
{
    struct co_buf *b = co_buf_get(cap);
    if (!b)
        return NULL;
    b->room = room;
    if (!co_pend_add(x->c, x->fd, b)) {
        co_buf_put(b);
        return NULL;
    }
    x->c->cbuf = b;
    arm_delay(x);
    return b;
}

/* A non-blocking write that went straight to the kernel: its answer says
 * whether the socket has room (see "Non-blocking sockets" in
 * coalesce_flush.c). */
static inline ssize_t direct_noted(struct nt_conn *c, int fd,
                                   const struct nt_op *op, int how)
{
    ssize_t r = nt_io_direct(c, fd, op);
    if (how != CO_TRY || op->flagless)
        return r;
    if (r >= 0 && (size_t)r >= op->total) {
        if (c->co_full) {
            int saved = errno;
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            if (real.poll(&p, 1, 0) == 1 && (p.revents & POLLOUT))
                __atomic_store_n(&c->co_full, 0, __ATOMIC_RELAXED);
            errno = saved;
        }
    } else if (r >= 0 || errno == EAGAIN) {
        __atomic_store_n(&c->co_full, 1, __ATOMIC_RELAXED);
    }
    return r;
}

static ssize_t output_buffer(struct nt_conn *c, int fd,
                             const struct nt_op *op)
{
    struct co_call x;
    if (!co_enter(&x, c, fd, op->name, op->caller))
        return nt_io_direct(c, fd, op); /* signal handler: write through */
    if (!co_wait_idle(&x)) {
        co_leave(&x);
        return nt_io_direct(c, fd, op);
    }
    if (c->flush_err) {
        int e = take_err(c);
        co_leave(&x);
        return fail_out(c, fd, op, e);
    }
    if (c->expired) {
        /* nt_io_direct fails the call with timeout_errno */
        if (c->cbuf)
            co_lose(&x, nt_deadline_errno(c));
        co_leave(&x);
        return nt_io_direct(c, fd, op);
    }
    int how = c->nonblock || (op->flags & MSG_DONTWAIT) ? CO_TRY : CO_BLOCK;
    if (!plain(op) || shared(c) || (c->co_flags & CO_PROG_CORK) ||
        !c->co_ready || c->self_closed || c->co_mode != NT_CO_BUFFER ||
        first_bytes(c) ||
        (how == CO_TRY && c->co_full)) {
        /* Not to be coalesced: after what is buffered, as it is. A full
         * socket's write gets the kernel's own answer: nothing is
         * acknowledged that the kernel would refuse. */
        if (co_flush(&x, how) < 0)
            return out_failed(&x, op);
        if (shared(c))
            c->co_mode = NT_CO_OFF;
        co_leave(&x);
        ssize_t r = direct_noted(c, fd, op, how);
        if (r > 0 && !c->co_ready)
            c->co_ready = 1;
        return r;
    }
    struct co_buf *b = c->cbuf;
    uint32_t cap = c->set->coalesce;
    size_t total = op->total;
    if (total == 0) {
        /* nothing to hold, and the kernel's answer may be an error */
        co_leave(&x);
        return nt_io_direct(c, fd, op);
    }
    /* a non-blocking write joins only a buffer sized for one (nt_send_room):
     * after O_NONBLOCK was set it goes with what is held to the kernel */
    uint32_t fits = !b ? cap : how == CO_TRY && b->blocking ? 0 : b->room;
    if (total < cap && co_held(b) + total <= fits) {
        if (!b) {
            /* never acknowledge what the kernel would refuse */
            int e = co_health(fd);
            uint32_t room = e || (how == CO_TRY && (c->co_flags & CO_PROG_LOWAT))
                                ? 0
                            : how == CO_TRY ? nt_send_room(fd, cap)
                                            : cap;
            if (total > room || !(b = start_buf(&x, cap, room))) {
                co_leave(&x);
                return direct_noted(c, fd, op, how); /* nothing buffered */
            }
            b->blocking = how == CO_BLOCK;
        }
        if (b->len + total > b->cap) {
            memmove(b->data, b->data + b->off, co_held(b));
            b->len -= b->off;
            b->off = 0;
        }
        copy_in(b, op);
        c->clen = (uint32_t)co_held(b);
        __atomic_store_n(&c->co_writer, (uint32_t)co_self_id(), __ATOMIC_RELAXED);
        if (c->co_nwr < UINT16_MAX)
            c->co_nwr++;
        co_leave(&x);
        return (ssize_t)total;
    }
    if (!b) {
        co_leave(&x);
        return direct_noted(c, fd, op, how); /* big, nothing buffered */
    }
    /* Does not fit: what is buffered and this call in one sendmsg. */
    ssize_t r = co_send(&x, op->iov, op->iovcnt, total, how);
    if (r < 0)
        return out_failed(&x, op);
    if (r == 0) { /* the kernel took the buffered bytes only */
        errno = EAGAIN;
        return out_failed(&x, op);
    }
    co_leave(&x);
    return r;
}

/* A pass-through connection that still holds something from before the
 * switch (another thread's write raced it): that goes first. */
static ssize_t pass_held(struct nt_conn *c, int fd, const struct nt_op *op)
{
    struct co_call x;
    if (co_enter(&x, c, fd, op->name, op->caller)) {
        int how = c->nonblock || (op->flags & MSG_DONTWAIT) ? CO_TRY
                                                            : CO_BLOCK;
        int e = c->flush_err ? take_err(c) : 0;
        if (!e && co_wait_idle(&x) && co_flush(&x, how) < 0)
            return out_failed(&x, op);
        co_leave(&x);
        if (e)
            return fail_out(c, fd, op, e);
    }
    return nt_io_direct(c, fd, op);
}

ssize_t nt_coalesce_io(struct nt_conn *c, int fd, const struct nt_op *op)
{
    if (unlikely(c->co_mode == NT_CO_UNDECIDED))
        decide(c, fd);
    uint8_t mode = __atomic_load_n(&c->co_mode, __ATOMIC_RELAXED);
    if (mode == NT_CO_PASS) {
        /* Coalescing did not pay here (co_note_flushed): no lock, no
         * copy, no timer; CO_PASS_WRITES writes later it is tried again.
         * The count is a hint: threads racing on it only move the probe. */
        if (unlikely(c->cbuf || c->co_pidx || c->flush_err))
            return op->dir == NT_IN ? input(c, fd, op) : pass_held(c, fd, op);
        if (op->dir == NT_OUT) {
            uint16_t n = c->co_pass;
            if (n > 1) {
                c->co_pass = (uint16_t)(n - 1);
            } else if (c->set) {
                __atomic_store_n(&c->co_mode,
                                 c->set->coalesce_mode == NT_COALESCE_CORK
                                     ? NT_CO_CORK : NT_CO_BUFFER,
                                 __ATOMIC_RELAXED);
            }
        }
        return nt_io_direct(c, fd, op);
    }
    if (mode == NT_CO_OFF)
        return nt_io_direct(c, fd, op);
    if (op->dir == NT_IN)
        return input(c, fd, op);
    if (c->co_mode == NT_CO_CORK)
        return output_cork(c, fd, op);
    return output_buffer(c, fd, op);
}

/* ---- closing, sharing, socket options --------------------------------- */

void nt_coalesce_close(struct nt_conn *c, int fd, int how)
{
    struct co_call x;
    if ((c->co_mode <= NT_CO_OFF || c->co_mode == NT_CO_PASS) && !c->cbuf &&
        !c->co_pidx && !(c->co_flags & CO_CORKED))
        return;
    int saved = errno;
    if (!co_enter(&x, c, fd, how < 0 ? "close" : "shutdown",
                  __builtin_return_address(0))) {
        errno = saved;
        return;
    }
    /* Another thread is sending: it finds the fd gone and stops there. */
    if (!co_busy_other(c)) {
        if (how < 0) /* close_range/closefrom may close a duplicate too */
            co_flush_closing(&x, how == NT_CO_CLOSE);
        else
            co_flush_deferred(&x, CO_LINGER);
    }
    co_leave(&x);
    errno = saved;
}

/* Another writer now shares the socket (a dup'ed fd, a FILE*): what is
 * held goes out, and this descriptor stops coalescing (see "Sharing"). */
static void stop_coalescing(struct nt_conn *c, int fd, const char *op,
                            void *caller)
{
    struct co_call x;
    if (c->co_mode == NT_CO_OFF || !co_enter(&x, c, fd, op, caller))
        return;
    c->co_flags |= CO_SHARED;
    if (c->co_mode == NT_CO_UNDECIDED) {
        c->co_mode = NT_CO_OFF;
    } else if (co_wait_idle(&x)) {
        if ((c->co_flags & CO_CORKED) && !(c->co_flags & CO_PROG_CORK)) {
            /* From here the program's writes go out as without the
             * library, Nagle included: so does what we corked. The
             * TCP_NODELAY push sent it past Nagle, and the program's next
             * small writes then met Nagle behind it: the second waited
             * for the peer's delayed ACK (tens of ms), where without the
             * library Nagle had held the first write and sent them all in
             * one segment (repro/cork-sendmmsg-last-message-held). */
            co_release(&x, 0);
            if (!co_other_cork(c, x.fd)) /* whose cork holds ours too */
                co_uncork(x.fd);
        }
        co_flush_deferred(&x, CO_LINGER);
        if (!c->cbuf && !c->flush_err && !(c->co_flags & CO_CORKED))
            c->co_mode = NT_CO_OFF; /* else its next call reports, then off */
    }
    co_leave(&x);
}

void nt_coalesce_dup(struct nt_conn *c, int fd)
{
    stop_coalescing(c, fd, "dup", __builtin_return_address(0));
}

void nt_coalesce_fdopen(struct nt_conn *c, int fd)
{
    stop_coalescing(c, fd, "fdopen", __builtin_return_address(0));
}

int nt_coalesce_setsockopt(struct nt_conn *c, int fd, int opt,
                           const void *val, socklen_t len)
{
    if (c->co_mode == NT_CO_UNDECIDED)
        decide(c, fd);
    struct co_call x;
    if (c->co_mode == NT_CO_OFF ||
        !co_enter(&x, c, fd, "setsockopt", __builtin_return_address(0)))
        return real.setsockopt(fd, IPPROTO_TCP, opt, val, len);
    if (opt == TCP_CORK && co_wait_idle(&x))
        co_flush_deferred(&x, c->nonblock ? CO_TRY : CO_BLOCK);
    int r = real.setsockopt(fd, IPPROTO_TCP, opt, val, len);
    int e = errno;
    if (r == 0 && val && len >= (socklen_t)sizeof(int)) {
        uint8_t bit = opt == TCP_CORK       ? CO_PROG_CORK
                      : opt == TCP_NODELAY  ? CO_PROG_NODELAY
                                            : CO_PROG_LOWAT;
        if (opt == TCP_NOTSENT_LOWAT ? *(const int *)val != -1
                                     : *(const int *)val != 0)
            c->co_flags |= bit;
        else
            c->co_flags &= (uint8_t)~bit;
    }
    co_leave(&x);
    errno = e;
    return r;
}
