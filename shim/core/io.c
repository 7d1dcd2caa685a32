/* The I/O engine: accounting, the connection's story, EPIPE/SIGPIPE, stale
 * slots, and deadlines for blocking calls. See io.h. */
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/uio.h>

#include "coalesce/coalesce.h"
#include "audit/event.h"
#include "core/io.h"
#include "core/real.h"
#include "deadline/timer.h"

size_t nt_iov_total(const struct iovec *iov, int n)
{
    size_t t = 0;
    for (int i = 0; i < n; i++)
        t += iov[i].iov_len;
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

static inline void account(struct nt_conn *c, int fd, int dir, size_t n)
{
    if (dir == NT_IN)
        c->bytes_in += n;
    else
        c->bytes_out += n;
    if (c->dl_active)
        nt_deadline_progress(c, fd, dir);
}

/* The kernel would have sent SIGPIPE; the library asked it not to, so the
 * event could be written first. Now deliver it the same way: to this
 * thread, so a handler, SIG_IGN or a blocked mask behave as without us. */
static void deliver_sigpipe(void)
{
    const struct nt_global *g = nt_g.global;
    if (!g || !g->sigpipe_ignore)
        raise(SIGPIPE);
}

/* A call that did not move bytes: report, heal stale slots, and decide.
 * Out of line: the success path stays short. */
__attribute__((noinline, cold)) static ssize_t failed(struct nt_conn *c, int fd, const struct nt_op *op,
                      int extra)
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
            nt_deadline_waiting(c, fd, op->dir);
        break;
    case ENOTSOCK:
        /* The fd was closed and reopened behind our back (raw syscall,
         * fclose of an fdopen'ed socket): it is not a socket any more.
         * Make the call the program made, as it made it. */
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
        /* mmsg calls count messages; their bytes are not summed here */
        account(c, fd, op->dir, op->msgs ? 0 : (size_t)r);
        return r;
    }
    if (r == 0) {
        if (op->dir == NT_IN && op->total > 0 && !op->msgs)
            c->peer_closed = 1;
        return 0;
    }
    return failed(c, fd, op, extra);
}

/* The program's fd is about to be waited on. Returns the fd to wait and
 * retry on: a private duplicate, so that if another thread closes the
 * program's fd (and the number is reused) the call goes on with the socket
 * it started on, as the kernel's blocking call would. */
static int private_fd(int fd)
{
    int d = real.fcntl(fd, F_DUPFD_CLOEXEC, 0);
    return d >= 0 ? d : fd;
}

/* O_NONBLOCK belongs to the open file, which a dup'ed fd of the program
 * may have changed: look before waiting. */
static int became_nonblocking(struct nt_conn *c, int fd)
{
    int fl = real.fcntl(fd, F_GETFL);
    if (fl < 0 || !(fl & O_NONBLOCK))
        return 0;
    c->nonblock = 1;
    return 1;
}

#define NT_NOT_TRIED (-2)

/* A blocking call the library waits for itself, so that it ends at its
 * deadline. Writes (and MSG_WAITALL reads) continue until done, as the
 * kernel's blocking call would. Only the slow path (the call would block)
 * costs syscalls: F_GETFL, a private dup, the wait, the retry. */
__attribute__((noinline)) static ssize_t
controlled(struct nt_conn *c, int fd, const struct nt_op *op, int extra,
           ssize_t first, int saved_errno)
{
    int want_all = !op->msgs && !op->flagless &&
                   (op->dir == NT_OUT || (op->flags & MSG_WAITALL));
    int flags = (op->flags | extra | MSG_DONTWAIT) & ~MSG_WAITALL;
    uint32_t gen = c->gen;
    int wfd = fd; /* becomes a private duplicate once we wait */
    size_t done = 0;
    nt_ns start = 0;
    ssize_t result;
    if (op->flagless) {
        /* sendfile/splice take no MSG_DONTWAIT: wait first, then call */
        start = nt_now();
        if (nt_deadline_wait(c, fd, op->dir, start, op->name, op->caller) <= 0)
            return -1;
        return finish(c, fd, op, op->attempt(fd, op, 0, 0), extra);
    }
    for (;;) {
        if (first == NT_NOT_TRIED && unlikely(nt_sandboxed())) { result = nt_sb_resume(fd, op, done, saved_errno); break; } /* sandbox: TSYNC from another thread */
        /* `first` is the caller's attempt, when it made one */
        ssize_t r = first != NT_NOT_TRIED ? first
                                          : op->attempt(wfd, op, flags, done);
        first = NT_NOT_TRIED;
        int closed = c->gen != gen; /* the program closed fd meanwhile */
        if (r > 0) {
            if (!closed)
                account(c, fd, op->dir, op->msgs ? 0 : (size_t)r);
            done += (size_t)r;
            if (!want_all || done >= op->total) {
                errno = saved_errno;
                result = (ssize_t)done;
                break;
            }
            start = 0; /* the peer drained: the write deadline restarts */
            continue;
        }
        if (closed && r < 0 && errno == EAGAIN) /* block as the kernel would, */
            r = op->attempt(wfd, op, flags & ~MSG_DONTWAIT, done); /* on the socket */
        if (r == 0 || errno != EAGAIN || closed) {
            if (done) {
                errno = saved_errno;
                result = (ssize_t)done;
            } else if (closed) {
                if (r >= 0)
                    errno = saved_errno;
                result = r;
            } else {
                result = finish(c, fd, op, r, extra);
            }
            break;
        }
        if (unlikely(nt_sandboxed())) { result = nt_sb_resume(fd, op, done, saved_errno); break; } /* sandbox: */
        if (wfd == fd && became_nonblocking(c, fd)) {
            nt_deadline_waiting(c, fd, op->dir);
            errno = EAGAIN;
            result = done ? (ssize_t)done : -1;
            break;
        }
        nt_deadline_waiting(c, fd, op->dir);
        if (wfd == fd)
            wfd = private_fd(fd);
        if (!start)
            start = nt_now();
        int w = nt_deadline_wait(c, wfd, op->dir, start, op->name, op->caller);
        if (c->gen == gen && c->expired) {
            errno = nt_deadline_errno(c);
            w = 0;
        }
        if (w <= 0) {
            result = done ? (ssize_t)done : -1;
            break;
        }
    }
    if (wfd != fd)
        NT_KEEP_ERRNO(real.close(wfd));
    return result;
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
    if (op->dir == NT_OUT && !op->flagless && !(op->flags & MSG_NOSIGNAL))
        extra = MSG_NOSIGNAL;
    if (unlikely(c->dl_active) && !c->nonblock && !(op->flags & MSG_DONTWAIT) &&
        nt_deadline_controls(c, op->dir)) {
        if (op->flagless || (op->flags & MSG_WAITALL))
            return controlled(c, fd, op, extra, NT_NOT_TRIED, errno);
        /* Try without blocking first: when the data or the buffer space is
         * there, as it mostly is, that is the whole call. */
        int saved_errno = errno;
        ssize_t r = op->attempt(fd, op, op->flags | extra | MSG_DONTWAIT, 0);
        if (likely(r > 0) &&
            (op->dir == NT_IN || op->msgs || (size_t)r >= op->total))
            return finish(c, fd, op, r, extra);
        return controlled(c, fd, op, extra, r, saved_errno);
    }
    ssize_t r = op->attempt(fd, op, op->flags | extra, 0);
    return finish(c, fd, op, r, extra);
}

/* Coalescing's way back into the engine, for what it does not buffer. */
ssize_t nt_io_direct(struct nt_conn *c, int fd, const struct nt_op *op)
{
    return io_direct(c, fd, op);
}

ssize_t nt_io_call(int fd, const struct nt_op *op)
{
    struct nt_conn *c = nt_conn_get(fd);
    if (!c)
        return op->attempt(fd, op, op->flags, 0);
    nt_timer_check_fork();
    if (unlikely(c->co_mode != NT_CO_OFF))
        return nt_coalesce_io(c, fd, op); /* may come back to nt_io_direct */
    return io_direct(c, fd, op);
}
