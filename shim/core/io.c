/* The I/O engine: a governed call goes hook -> connection -> policy (how
 * long may it wait? deadline.h) -> the real call -> policy (what
 * happened). The engine owns the waiting; the policy owns the clocks.
 * Also here: accounting, EPIPE/SIGPIPE, stale descriptors. See io.h. */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <linux/sock_diag.h>
#include <linux/sockios.h>

#include "audit/event.h"
#include "coalesce/coalesce.h"
#include "core/io.h"
#include "core/real.h"
#include "core/sandbox.h"
#include "core/signals.h"

/* How much a socket's send buffer is sure to take in one write now: its
 * free space (SO_MEMINFO: the limit and what is queued against it, TCP's
 * queue or a unix socket's skbs in flight), halved and less a slack for
 * the kernel's per-skb overhead. Conservative: a write of that size does
 * not block. Coalescing holds no more than this on a non-blocking socket,
 * so nothing is acknowledged that the kernel would refuse (EAGAIN) and
 * nothing acknowledged can be stranded at close (space only grows while
 * a buffer is open: the peer drains, and ours are the only writes that
 * pass the hooks); bounded_xfer() sends no more than this at a time. */
#define ROOM_SLACK 2048u
uint32_t nt_send_room(int fd, uint32_t cap)
{
    uint32_t mi[SK_MEMINFO_VARS];
    socklen_t len = sizeof mi;
    int saved = errno;
    int r = real.getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mi, &len);
    errno = saved;
    if (r != 0 || len < sizeof(uint32_t) * (SK_MEMINFO_WMEM_QUEUED + 1))
        return 0;
    uint32_t used = mi[SK_MEMINFO_WMEM_QUEUED] > mi[SK_MEMINFO_WMEM_ALLOC]
                        ? mi[SK_MEMINFO_WMEM_QUEUED]
                        : mi[SK_MEMINFO_WMEM_ALLOC];
    uint32_t limit = mi[SK_MEMINFO_SNDBUF];
    if (used >= limit || (limit - used) / 2 <= ROOM_SLACK)
        return 0;
    uint32_t room = (limit - used) / 2 - ROOM_SLACK;
    return room < cap ? room : cap;
}

size_t nt_iov_size(const struct iovec *iov, long n)
{
    if ((unsigned long)n > NT_UIO_MAXIOV || (!iov && n))
        return NT_IOV_REFUSED;
    size_t t = 0;
    for (long i = 0; i < n; i++) {
        if (iov[i].iov_len > SSIZE_MAX)
            return NT_IOV_REFUSED;
        t += iov[i].iov_len; /* both <= SSIZE_MAX: no wrap */
        if (t > SSIZE_MAX)
            t = SSIZE_MAX;
    }
    return t;
}

int nt_iov_skip(const struct iovec *iov, int n, size_t skip,
                struct iovec *out)
{
    int k = 0;
    for (int i = 0; i < n && k < NT_IOV_MAX; i++) {
        if (skip >= iov[i].iov_len) {
            skip -= iov[i].iov_len;
            continue;
        }
        out[k].iov_base = (char *)iov[i].iov_base + skip;
        out[k].iov_len = iov[i].iov_len - skip;
        skip = 0;
        k++;
    }
    return k;
}

static inline void account(struct nt_conn *c, int dir, size_t n)
{
    if (dir == NT_IN)
        c->bytes_in += n;
    else
        c->bytes_out += n;
    nt_deadline_moved(c, dir, n);
}

/* The kernel would have sent SIGPIPE; the library asked it not to, so the
 * event could be written first. Now deliver it the same way: to this
 * thread, so a handler, SIG_IGN or a blocked mask behave as without us. */
static void deliver_sigpipe(void)
{
    const struct nt_global *g = nt_g.global;
    if (!g || !g->sigpipe_ignore) {
        nt_coalesce_before_sigpipe(); /* it may kill: others' bytes first */
        raise(SIGPIPE);
    }
}

/* A call that did not move bytes: report, heal stale slots, and decide.
 * Out of line: the success path stays short. */
__attribute__((noinline, cold)) static ssize_t
failed(struct nt_conn *c, int fd, const struct nt_op *op, int extra)
{
    int e = errno;
    if (c->expired && e != EAGAIN && e != EINTR) {
        /* The library cut this connection (a reset makes the kernel say
         * EPIPE or ECONNRESET): the program learns why, and the audit log
         * already has the timeout event. */
        errno = nt_deadline_errno(c);
        return -1;
    }
    switch (e) {
    case EAGAIN:
        if (c->dl_active)
            nt_deadline_report(c, op->dir, NT_BLOCKED, 0);
        break;
    case ENOTSOCK:
        /* The fd was closed and reopened behind our back (raw syscall):
         * it is not a socket any more. Make the call the program made,
         * as it made it. */
        nt_fd_forget(fd);
        return op->attempt(fd, op, op->flags, 0);
    case EPIPE:
    case ECONNRESET:
        nt_event_io_error(c, fd, op->name, e, op->caller);
        if (e == EPIPE && (extra & MSG_NOSIGNAL))
            deliver_sigpipe();
        break;
    }
    errno = e;
    return -1;
}

static inline ssize_t finish(struct nt_conn *c, int fd,
                             const struct nt_op *op, ssize_t r, int extra)
{
    if (likely(r > 0)) {
        account(c, op->dir, (size_t)r);
        return r;
    }
    if (r == 0) {
        /* EOF; after our own shutdown that is not the peer's doing */
        if (op->dir == NT_IN && op->total > 0 && !c->expired &&
            !(op->flags & MSG_PEEK))
            c->peer_closed = 1;
        return 0;
    }
    return failed(c, fd, op, extra);
}

/* ---- waiting for a blocking call --------------------------------------
 * The call is made with MSG_DONTWAIT and the engine waits in ppoll until
 * the socket is ready or the call's deadline passes. The program may
 * close its descriptor meanwhile (another thread): the kernel would let
 * the blocked call go on with the socket, and so does the engine, through
 * whatever descriptor still refers to the connection (conn.h: `fd`, or
 * the private alias the close left for us). Each attempt picks that
 * descriptor and makes the non-blocking call under the connection's lock,
 * so the number cannot be closed and reused in between. The wait itself
 * polls in slices of at most a second, so a number reused between picking
 * it and polling it is noticed. No descriptor is taken from the program
 * unless it closes its last one while we wait. */

#define SLICE 1000000000LL

static ssize_t attempt_locked(struct nt_conn *c, int fd, uint32_t gen,
                              const struct nt_op *op, int flags, size_t skip,
                              int *closed)
{
    int taken = nt_conn_lock(c);
    int use = nt_fd_conn(fd) == c ? fd : c->fd;
    *closed = use != fd;
    ssize_t r;
    if (c->gen != gen) {
        errno = EBADF;
        r = -1;
    } else {
        r = op->attempt(use, op, flags, skip);
    }
    nt_conn_unlock(c, taken);
    return r;
}

/* Raised by the faulting thread itself, never while it sleeps in a wait:
 * their handlers (a JVM's, ASan's) have no say in restarting it. */
static int is_fault_signal(int sig)
{
    return sig == SIGSEGV || sig == SIGBUS || sig == SIGFPE || sig == SIGILL ||
           sig == SIGTRAP || sig == SIGSYS;
}

/* Would the kernel have restarted a blocking call interrupted by the
 * signal that just ran? poll() never restarts, so the library decides:
 * by the handler that ran, when it was installed with sigaction()
 * (hooks/signal.c); otherwise it restarts unless a handler installed
 * without SA_RESTART could have run. */
static int kernel_would_restart(void)
{
    if (nt_signal_seen)
        return nt_signal_seen == NT_SIG_RESTART;
    sigset_t blocked;
    if (pthread_sigmask(SIG_BLOCK, NULL, &blocked) != 0)
        return 0;
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;
        if (is_fault_signal(sig) || sigismember(&blocked, sig) == 1 ||
            nt_signal_action(sig, &sa) != 0)
            continue;
        int has_handler = (sa.sa_flags & SA_SIGINFO) ||
                          (sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN);
        if (has_handler && !(sa.sa_flags & SA_RESTART))
            return 0;
    }
    return 1;
}

/* Wait until the socket is ready in `dir` or `until` (0: no limit) passes.
 * 1 ready (or an error the next attempt reports), WAIT_SLICE a slice of
 * the wait ended with the socket not ready (look again: a number reused
 * meanwhile is noticed), 0 the limit passed, -1 EINTR that the kernel
 * would not have restarted (it never restarts a call that has `moved`
 * data: that call returns what it moved). */
#define WAIT_SLICE 2
static int wait_ready(struct nt_conn *c, int fd, int dir, nt_ns until,
                      size_t moved)
{
    for (;;) {
        int use = nt_fd_conn(fd) == c ? fd : c->fd;
        struct pollfd p = { .fd = use, .events = dir == NT_IN ? POLLIN : POLLOUT };
        nt_ns now = nt_now(), left = until ? until - now : SLICE;
        if (left <= 0)
            return 0;
        if (left > SLICE)
            left = SLICE;
        struct timespec ts = { left / 1000000000, left % 1000000000 };
        if (nt_signal_seen != NT_SIG_NONE) {
            /* A handler ran after the call began but before this wait (it
             * landed on one of our own system calls): the kernel's call
             * would have been interrupted all the same. */
            int restart = !moved && nt_signal_seen == NT_SIG_RESTART;
            nt_signal_seen = NT_SIG_NONE;
            if (!restart) {
                errno = EINTR;
                return -1;
            }
        }
        __atomic_add_fetch(&c->in_call[dir], 1, __ATOMIC_RELAXED);
        int r = real.ppoll(&p, 1, &ts, NULL);
        __atomic_sub_fetch(&c->in_call[dir], 1, __ATOMIC_RELAXED);
        if (r < 0 && errno != EINTR)
            return 1; /* let the real call report it */
        if (r < 0 || nt_signal_seen != NT_SIG_NONE) {
            /* Interrupted, or a handler ran as the socket became ready
             * (ppoll reports readiness first): the kernel's blocked call
             * checks for a signal when it wakes (unix sockets always, TCP
             * when nothing was queued yet), so it is EINTR unless the
             * handler asked for a restart. */
            int stop = moved || !kernel_would_restart();
            nt_signal_seen = NT_SIG_NONE;
            if (stop) {
                errno = EINTR;
                return -1;
            }
        }
        if (r > 0)
            return 1;
        if (r == 0 && (!until || nt_now() < until))
            return WAIT_SLICE;
    }
}

/* Will more input ever come? Not after the peer's FIN or an error. */
static int no_more_input(struct nt_conn *c, int fd)
{
    struct pollfd p = { .fd = nt_fd_conn(fd) == c ? fd : c->fd,
                        .events = POLLIN | POLLRDHUP };
    return real.poll(&p, 1, 0) == 1 &&
           (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* O_NONBLOCK belongs to the open file, which another descriptor of the
 * program may have changed: look before waiting. */
static int became_nonblocking(struct nt_conn *c, int fd)
{
    int fl = real.fcntl(fd, F_GETFL);
    if (fl < 0 || !(fl & O_NONBLOCK))
        return 0;
    c->nonblock = 1;
    return 1;
}

/* Has the socket an error (a reset) that a call which already moved bytes
 * must leave for the next call? The kernel's blocking call returns what it
 * moved and keeps the error (tcp_recvmsg/tcp_sendmsg break on sk_err once
 * they copied something); a retry of ours would consume it, and the
 * program's next call would see EOF or EPIPE instead of ECONNRESET. Input
 * still queued before the error is read first, as the kernel does. */
int nt_io_error_pending(struct nt_conn *c, int fd, int dir)
{
    int use = nt_fd_conn(fd) == c ? fd : c->fd;
    struct pollfd p = { .fd = use, .events = 0 };
    if (real.poll(&p, 1, 0) != 1 || !(p.revents & POLLERR))
        return 0;
    if (c->family != AF_UNIX) {
        /* POLLERR also means a non-empty error queue (TX timestamps,
         * zerocopy completions), which stops no call: a reset has closed
         * the connection. */
        struct tcp_info ti;
        socklen_t len = sizeof ti;
        if (real.getsockopt(use, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0 ||
            ti.tcpi_state != TCP_CLOSE)
            return 0;
    }
    int queued = 0;
    return dir != NT_IN || real.ioctl(use, FIONREAD, &queued) != 0 ||
           queued <= 0;
}

#define NT_NOT_TRIED (-2)

/* The kernel moves at most this much in one call (MAX_RW_COUNT): a call
 * the engine makes in parts stops there too. */
#define NT_MAX_RW ((size_t)0x7ffff000)

/* How much the socket holds in `dir`: its send queue (SIOCOUTQ: written,
 * not yet taken by the peer) or its receive queue; -1 unknown. */
static int queued(int fd, int dir)
{
    int q = -1, saved = errno;
    if (real.ioctl(fd, dir == NT_IN ? FIONREAD : SIOCOUTQ, &q) != 0)
        q = -1;
    errno = saved;
    return q;
}

/* A call that takes no MSG_DONTWAIT (sendfile, splice) is bounded by its
 * deadline as controlled() bounds the others, without ever letting the
 * kernel block. Output moves no more than the send buffer is sure to take
 * (nt_send_room) at a time: at once while there is room (a unix socket
 * reports POLLOUT only below a quarter of its buffer, though it takes
 * more: repro/unix-blocking-sendfile-hangs-on-busy-buffer), else once the
 * socket is ready or a wait's slice ends. Input is made at once when
 * bytes are queued (POLLIN waits for SO_RCVLOWAT, splice does not), else
 * once the socket is readable. Before each wait, the deadline restarts if
 * the peer has drained since the last one (the send queue is shorter than
 * it was then plus what we moved since), not for a move into room the
 * kernel had all along (a few bytes each second kept a deadline from ever
 * firing) and not only on POLLOUT, which TCP reports at a third of the
 * buffer free (a steady slow reader was cut). A part
 * that moved less than asked (the input's end, a pipe with less) or
 * nothing (attempt_xfer: an empty pipe) ends the call, as it would the
 * kernel's. No socket option changes: another thread, a handler or a
 * process sharing the socket sees the program's own. Limit: the room does
 * not know TCP_NOTSENT_LOWAT, so with it set the kernel may block. */
static ssize_t bounded_xfer(struct nt_conn *c, int fd, const struct nt_op *op,
                            int extra, nt_ns start, int saved_errno)
{
    size_t total = op->total < NT_MAX_RW ? op->total : NT_MAX_RW, done = 0;
    ssize_t r = 0;
    int ours = 1;    /* the outcome is the library's (the deadline, EINTR) */
    long base_q = -1; /* the send queue at the last wait, plus what we moved */
    for (;;) {
        struct nt_op part = *op; /* attempt_xfer moves up to part.total */
        part.total = total;
        size_t want = total - done;
        uint32_t cap = want > UINT32_MAX ? UINT32_MAX : (uint32_t)want;
        int now_ok = op->dir == NT_OUT ? (part.total = done + nt_send_room(fd, cap)) > done
                                       : queued(fd, NT_IN) > 0;
        if (!now_ok) {
            if (op->dir == NT_OUT) {
                long q = queued(fd, NT_OUT);
                if (q >= 0 && q < base_q) /* the peer drained: it restarts */
                    start = nt_now();
                base_q = q;
            }
            int w = wait_ready(c, fd, op->dir, nt_deadline_limit(c, op->dir, start),
                               done);
            if (w == 0)
                errno = nt_deadline_call_expired(c, op->dir, start, op->name,
                                                 op->caller);
            if (w <= 0)
                break;
            if (w == WAIT_SLICE)
                continue; /* not ready: look at the queues again */
            if (op->dir == NT_OUT) { /* writable: it takes a page at least */
                uint32_t room = nt_send_room(fd, cap);
                part.total = done + (room ? room : cap < 4096 ? cap : 4096);
            }
        }
        errno = saved_errno;
        r = op->attempt(fd, &part, 0, done);
        if (r > 0) {
            account(c, op->dir, (size_t)r);
            done += (size_t)r;
            if (done >= total || op->dir == NT_IN || done < part.total)
                break;
            if (base_q >= 0)
                base_q += r;
            continue;
        }
        ours = 0; /* the kernel's answer */
        break;
    }
    if (done) {
        errno = saved_errno;
        return (ssize_t)done;
    }
    return ours ? -1 : finish(c, fd, op, r, extra);
}

/* A blocking call the library waits for itself, so that it ends at its
 * deadline. Writes (and MSG_WAITALL reads) continue until done, as the
 * kernel's blocking call would; MSG_PEEK|MSG_WAITALL peeks again from the
 * start until it sees enough. Only the slow path (the call would block)
 * costs system calls: F_GETFL, the wait, the retry. */
__attribute__((noinline)) static ssize_t
controlled(struct nt_conn *c, int fd, const struct nt_op *op, int extra,
           ssize_t first, int saved_errno)
{
    int peek = (op->flags & MSG_PEEK) != 0;
    int want_all = !op->flagless &&
                   (op->dir == NT_OUT || (op->flags & MSG_WAITALL));
    size_t total = op->total < NT_MAX_RW ? op->total : NT_MAX_RW;
    int flags = (op->flags | extra | MSG_DONTWAIT) & ~MSG_WAITALL;
    uint32_t gen = c->gen;
    uint64_t ino = c->ino;
    size_t done = 0;
    nt_ns start = nt_now();
    ssize_t result;
    __atomic_add_fetch(&c->waiters, 1, __ATOMIC_ACQ_REL);
    if (op->flagless) {
        result = bounded_xfer(c, fd, op, extra, start, saved_errno);
        NT_KEEP_ERRNO(nt_conn_unwait(c));
        return result;
    }
    for (;;) {
        int closed = 0, short_peek = 0;
        if (first == NT_NOT_TRIED && unlikely(nt_sandboxed())) { /* sandbox: */
            result = nt_sb_resume(fd, op, done, saved_errno); /* TSYNC */
            break;
        }
        if (done && !peek && first == NT_NOT_TRIED && c->family != AF_UNIX &&
            nt_io_error_pending(c, fd, op->dir)) {
            /* (a unix socket's read consumes its error with the partial
             * count, and its writes never look at it: retry as it does) */
            errno = saved_errno;
            result = (ssize_t)done;
            break;
        }
        /* `first` is the caller's attempt, when it made one */
        ssize_t r = first != NT_NOT_TRIED
                        ? first
                        : attempt_locked(c, fd, gen, op, flags,
                                         peek ? 0 : done, &closed);
        first = NT_NOT_TRIED;
        if (r < 0 && c->gen != gen) {
            /* The connection was let go while we waited (a seccomp filter
             * on another thread made the library stand back, or the slot
             * went stale): the call goes on as the program made it, on
             * its descriptor, instead of failing with EBADF -- if that
             * number still names the same socket (a close we did not see
             * may have given it to another one, whose bytes are not
             * this call's). */
            struct stat st;
            if (fstat(fd, &st) == 0 && (uint64_t)st.st_ino == ino) {
                result = nt_sb_resume(fd, op, done, saved_errno);
            } else {
                errno = done ? saved_errno : EBADF;
                result = done ? (ssize_t)done : -1;
            }
            break;
        }
        if (peek && r > 0) {
            /* TCP waits for all of it; a unix socket's peek returns what
             * is there (the kernel's own semantics, per family) */
            if ((size_t)r >= total || !want_all || c->family == AF_UNIX ||
                no_more_input(c, fd)) {
                errno = saved_errno;
                result = r;
                break;
            }
            short_peek = 1; /* not enough yet: wait for more, peek again */
            r = -1;
            errno = EAGAIN;
        } else if (r > 0) {
            if (!closed)
                account(c, op->dir, (size_t)r);
            done += (size_t)r;
            if (!want_all || done >= total) {
                errno = saved_errno;
                result = (ssize_t)done;
                break;
            }
            start = nt_now(); /* the peer drained: the deadline restarts */
            continue;
        }
        if (r == 0 || errno != EAGAIN) {
            if (done) {
                errno = saved_errno;
                result = (ssize_t)done;
            } else if (closed) {
                result = r;
            } else {
                result = finish(c, fd, op, r, extra);
            }
            break;
        }
        if (unlikely(nt_sandboxed())) { /* sandbox: */
            result = nt_sb_resume(fd, op, done, saved_errno);
            break;
        }
        if (!closed && became_nonblocking(c, fd)) {
            nt_deadline_report(c, op->dir, NT_BLOCKED, 0);
            errno = EAGAIN;
            result = done ? (ssize_t)done : -1;
            break;
        }
        nt_deadline_report(c, op->dir, NT_BLOCKED, 0);
        int w;
        if (short_peek) {
            /* Data is there but not enough: readiness says nothing. */
            struct timespec ts = { 0, 5000000 };
            real.ppoll(NULL, 0, &ts, NULL);
            nt_ns until = nt_deadline_limit(c, op->dir, start);
            w = until && nt_now() >= until ? 0 : 1;
        } else {
            w = wait_ready(c, fd, op->dir, nt_deadline_limit(c, op->dir, start),
                           done);
        }
        if (c->gen == gen && c->expired) {
            errno = nt_deadline_errno(c);
            w = -1;
        } else if (w == 0) {
            errno = nt_deadline_call_expired(c, op->dir, start, op->name,
                                             op->caller);
        }
        if (w <= 0) {
            if (done)
                errno = saved_errno;
            result = done ? (ssize_t)done : -1;
            break;
        }
    }
    NT_KEEP_ERRNO(nt_conn_unwait(c));
    return result;
}

/* A write the kernel may block in for long, on a socket whose idle
 * clock has no kernel record to consult (unix): seen in progress. */
__attribute__((noinline)) static ssize_t
marked_write(struct nt_conn *c, int fd, const struct nt_op *op, int extra)
{
    __atomic_add_fetch(&c->in_call[NT_OUT], 1, __ATOMIC_RELAXED);
    ssize_t r = op->attempt(fd, op, op->flags | extra, 0);
    NT_KEEP_ERRNO(__atomic_sub_fetch(&c->in_call[NT_OUT], 1, __ATOMIC_RELAXED));
    return r;
}

/* The engine's body: a governed call made once, with the library's own
 * flags, or waited for when a blocking call has a deadline. Inlined into
 * both entry points. */
static inline __attribute__((always_inline)) ssize_t
io_direct(struct nt_conn *c, int fd, const struct nt_op *op)
{
    int extra = 0;
    if (unlikely(c->expired) && op->dir == NT_OUT) {
        /* A deadline cut this connection: writes fail with timeout_errno,
         * never with a SIGPIPE the library caused. */
        errno = nt_deadline_errno(c);
        return -1;
    }
    if (unlikely(!op->total)) { /* zero length: exactly the program's call */
        /* so no MSG_NOSIGNAL: on a reset socket the kernel's SIGPIPE may
         * kill before what other connections hold leaves, which without
         * the library was in the kernel already
         * (repro/buffer-zero-length-send-sigpipe-loses-other-connection) */
        if (op->dir == NT_OUT && !(op->flags & MSG_NOSIGNAL) &&
            nt_coalesce_held())
            nt_coalesce_guard_sigpipe(fd);
        return finish(c, fd, op, op->attempt(fd, op, op->flags, 0), 0);
    }
    if (!op->flagless)
        extra = nt_nosignal_for(op->dir, op->flags);
    if (unlikely(nt_deadline_controls(c, op->dir)) && !c->nonblock &&
        !(op->flags & NT_ONE_SHOT)) {
        nt_signal_seen = NT_SIG_NONE; /* signals from here on interrupt it */
        if (op->flagless || (op->flags & MSG_WAITALL))
            return controlled(c, fd, op, extra, NT_NOT_TRIED, errno);
        /* Try without blocking first: when the data or the buffer space is
         * there, as it mostly is, that is the whole call. */
        int saved_errno = errno;
        ssize_t r = op->attempt(fd, op, op->flags | extra | MSG_DONTWAIT, 0);
        if (likely(r > 0) && (op->dir == NT_IN || (size_t)r >= op->total))
            return finish(c, fd, op, r, extra);
        return controlled(c, fd, op, extra, r, saved_errno);
    }
    if (unlikely(c->mark_writes) && op->dir == NT_OUT)
        return finish(c, fd, op, marked_write(c, fd, op, extra), extra);
    ssize_t r = op->attempt(fd, op, op->flags | extra, 0);
    return finish(c, fd, op, r, extra);
}

/* A descriptor the library does not govern, seen for the first time (its
 * slot was unknown, so the hook's pass-through check could not flush)
 * while coalesced bytes are held: a pipe or another socket gets what was
 * coalesced first, as on every later call (hooks/write.c, read.c). */
__attribute__((noinline, cold)) static ssize_t
pass_held(int fd, const struct nt_op *op)
{
    if (op->dir == NT_OUT)
        nt_coalesce_flush_for_send(fd);
    else if (!(op->flags & MSG_DONTWAIT))
        nt_coalesce_flush_for_read(fd);
    return op->attempt(fd, op, op->flags, 0);
}

/* Coalescing's way back into the engine, for what it does not buffer.
 * This and nt_io_call() keep no arrays on the stack (a timespec and
 * scalars): no canary, which costs every governed call a TLS load and a
 * check. */
NT_NO_CANARY ssize_t nt_io_direct(struct nt_conn *c, int fd, const struct nt_op *op)
{
    return io_direct(c, fd, op);
}

NT_NO_CANARY ssize_t nt_io_call(int fd, const struct nt_op *op)
{
    struct nt_conn *c = nt_conn_get(fd);
    if (!c) {
        if (unlikely(nt_coalesce_held()))
            return pass_held(fd, op);
        return op->attempt(fd, op, op->flags, 0);
    }
    if (unlikely(c->co_mode != NT_CO_OFF))
        return nt_coalesce_io(c, fd, op); /* may come back to nt_io_direct */
    return io_direct(c, fd, op);
}

NT_NO_CANARY ssize_t nt_io_resume(int fd, const struct nt_op *op,
                                  const struct nt_resume *res)
{
    if (!res || !res->c)
        return nt_io_call(fd, op);
    struct nt_conn *c = res->c;
    int extra = nt_nosignal_for(op->dir, op->flags);
    if (!res->controlled)
        return finish(c, fd, op, res->r, extra);
    /* the try left errno alone: the program's errno is still there */
    int saved_errno = errno;
    ssize_t r = res->r;
    if (r < 0) {
        errno = (int)-r;
        r = -1;
    }
    return controlled(c, fd, op, extra, r, saved_errno);
}

int nt_io_wait(struct nt_conn *c, int fd, int dir, nt_ns start,
               size_t moved, const char *op, void *caller)
{
    nt_signal_seen = NT_SIG_NONE;
    int w = wait_ready(c, fd, dir, nt_deadline_limit(c, dir, start), moved);
    if (w == 0)
        errno = nt_deadline_call_expired(c, dir, start, op, caller);
    return w;
}
