/* The I/O engine every read/write-family hook goes through once it has
 * found a governed connection. A hook describes its call as a struct
 * nt_op: an `attempt` function that performs it once with given MSG_*
 * flags, starting `skip` bytes in (for resuming a partial blocking write).
 */
#ifndef NT_IO_H
#define NT_IO_H

#include <sys/types.h>
#include <sys/uio.h>

#include "coalesce/coalesce.h"
#include "core/conn.h"
#include "core/real.h"
#include "core/signals.h"
#include "deadline/deadline.h"

struct nt_op;
typedef ssize_t (*nt_attempt_fn)(int fd, const struct nt_op *op, int flags,
                                 size_t skip);

struct nt_op {
    const char *name;      /* "read", "sendmsg", ... (event `op`) */
    int dir;               /* NT_IN / NT_OUT */
    int flags;             /* the program's MSG_* flags */
    int flagless;          /* sendfile/splice: no MSG_* flags possible */
    size_t total;          /* bytes the call asks for */
    nt_attempt_fn attempt;
    const void *args;      /* the hook's own argument block */
    void *caller;          /* the program's call site */
    /* coalescing: the bytes of an output call that could be buffered
     * (no address, no control data); NULL otherwise */
    const struct iovec *iov;
    int iovcnt;
};

/* What a hook calls when fd is not known to pass through: looks the fd up
 * (initialising, classifying) and either governs the call or makes it as
 * the program asked. */
ssize_t nt_io_call(int fd, const struct nt_op *op);

/* Flags under which the kernel never blocks, or that change what a retry
 * would mean: made as the program made them. */
#define NT_ONE_SHOT (MSG_DONTWAIT | MSG_ERRQUEUE | MSG_OOB)

/* MSG_NOSIGNAL on the library's own write attempts: a SIGPIPE is raised
 * by the engine only when the program's own call would have raised it. */
static inline int nt_nosignal_for(int dir, int flags)
{
    return dir == NT_OUT && !(flags & MSG_NOSIGNAL) ? MSG_NOSIGNAL : 0;
}

/* ---- the fast path of the plain buffer calls --------------------------
 * read, recv, write, send (and the fortified forms; recvfrom/sendto
 * without an address) on a governed connection with nothing special
 * about it: no nt_op is built, the call is made once (a blocking call
 * with a deadline: without blocking first, as the engine would) and the
 * bookkeeping is inline. Anything else -- first use, a fork child's
 * connection, coalescing, an expired connection, a pending connect, zero
 * length, MSG_WAITALL under a deadline, a unix write marked for idle, a
 * call that failed, would block or wrote part -- goes to the engine,
 * with what was done so far (struct nt_resume). */

/* The call as the program made it, with the flags given (the hook's own
 * attempt without an offset). */
typedef ssize_t (*nt_plain_fn)(int fd, void *buf, size_t len, int flags);

/* read or write as the program called it, or recv or send once flags
 * are added (MSG_NOSIGNAL; MSG_DONTWAIT, which cannot block: real.h says
 * why that one is raw). The read and write hooks' attempt. */
static inline ssize_t nt_rw_plain(int out, int fd, void *buf, size_t len,
                                  int flags)
{
    if (!flags)
        return out ? real.write(fd, buf, len) : real.read(fd, buf, len);
    if (flags & MSG_DONTWAIT)
        return out ? nt_send_nowait(fd, buf, len, flags)
                   : nt_recv_nowait(fd, buf, len, flags);
    return out ? real.send(fd, buf, len, flags)
               : real.recv(fd, buf, len, flags);
}

/* The hook's own call, answered as nt_xfer_raw() answers: when another
 * preloaded library wraps the calls (no raw tries, real.h), it sees the
 * call the program made, not a send or recv in its place. */
static inline ssize_t nt_plain_try(nt_plain_fn plain, int fd, void *buf,
                                   size_t len, int flags)
{
    int e = errno;
    ssize_t r = plain(fd, buf, len, flags);
    if (r < 0) {
        r = -errno;
        errno = e;
    }
    return r;
}

/* c NULL: nothing was done, the engine starts afresh. Otherwise the
 * fast path made one attempt on c: r as nt_xfer_raw() returns it when
 * `controlled` (the engine waits for the rest), else the plain call's
 * result with errno as it left it. */
struct nt_resume {
    struct nt_conn *c;
    ssize_t r;
    int controlled;
};

/* The engine, for a call the fast path did not finish (res may be NULL:
 * not tried). */
ssize_t nt_io_resume(int fd, const struct nt_op *op,
                     const struct nt_resume *res);

/* 1: the call is done, its result in *out; 0: hand `res` and the call's
 * nt_op to nt_io_resume(). dir, flags' constant parts, `plain` and
 * `vector` are constants where it is inlined. `vector`: buf is the
 * hook's own argument block (an iovec array and its count) that only
 * `plain` reads, len the total, and no raw try stands in for the call. */
static inline __attribute__((always_inline)) int
nt_io_fast(int fd, int dir, void *buf, size_t len, int flags,
           nt_plain_fn plain, int vector, ssize_t *out,
           struct nt_resume *res)
{
    struct nt_conn *c;
    ssize_t r;
    int kind;
    if (unlikely(!__atomic_load_n(&nt_g.ready, __ATOMIC_ACQUIRE)) ||
        !(c = nt_conn_peek(fd, &kind)) || unlikely(c->expired) ||
        c->co_mode != NT_CO_OFF || unlikely(c->t_connect) || unlikely(!len))
        goto engine;
    int extra = nt_nosignal_for(dir, flags);
    if (nt_deadline_controls(c, dir) && !c->nonblock &&
        !(flags & NT_ONE_SHOT)) {
        if (flags & MSG_WAITALL)
            goto engine;
        nt_signal_seen = NT_SIG_NONE; /* signals from here on interrupt it */
        r = likely(nt_raw_nowait) && !vector
                ? nt_xfer_raw(dir == NT_OUT, fd, buf, len, flags | extra | MSG_DONTWAIT)
                : nt_plain_try(plain, fd, buf, len, flags | extra | MSG_DONTWAIT);
        if (unlikely(r <= 0) || (dir == NT_OUT && (size_t)r < len)) {
            res->controlled = 1;
            goto resume;
        }
    } else {
        if (dir == NT_OUT && unlikely(c->mark_writes))
            goto engine;
        r = plain(fd, buf, len, flags | extra);
        if (unlikely(r <= 0)) {
            res->controlled = 0;
            goto resume;
        }
    }
    c->bytes[dir] += (size_t)r;
    if (c->dl_active)
        nt_deadline_moved_est(c, dir, (size_t)r);
    *out = r;
    return 1;
resume:
    res->c = c;
    res->r = r;
    return 0;
engine:
    res->c = NULL;
    return 0;
}

/* A pending socket error with no input queued before it (dir NT_IN), or
 * any pending error (NT_OUT): what a call that moved bytes leaves for the
 * next call. */
int nt_io_error_pending(struct nt_conn *c, int fd, int dir);

/* Wait, as a blocking call of the program's would, until the socket is
 * ready in `dir` or the call's deadline (from `start`) passes: 1 ready,
 * 0 deadline passed (event logged, errno set), -1 errno (EINTR: also on
 * an SA_RESTART signal once the call has `moved` bytes of the program's,
 * as the kernel returns the partial count then). For coalescing's
 * flushes. */
int nt_io_wait(struct nt_conn *c, int fd, int dir, nt_ns start,
               size_t moved, const char *op, void *caller);

/* How much the socket's send buffer is sure to take in one write now,
 * at most `cap` (0: maybe nothing). See io.c. */
uint32_t nt_send_room(int fd, uint32_t cap);

/* The size of a vector as the kernel would import it (import_iovec,
 * copy_msghdr_from_user), or NT_IOV_REFUSED where it refuses the call
 * whole before moving a byte: more than UIO_MAXIOV entries (EINVAL, or
 * EMSGSIZE for a message), a NULL array (EFAULT), an entry longer than
 * SSIZE_MAX (EINVAL). A vectored hook hands such a call to the kernel as
 * made instead of sizing, and coalescing, a vector that is not one
 * (t38_bad_vectors). The sum saturates at SSIZE_MAX (the kernel moves at
 * most MAX_RW_COUNT per call anyway). It reads the program's array: a
 * non-NULL pointer to memory that is not readable is not caught (telling
 * would cost a system call). */
#define NT_UIO_MAXIOV 1024
#define NT_IOV_REFUSED SIZE_MAX
size_t nt_iov_size(const struct iovec *iov, long n);
static inline size_t nt_msg_size(const struct msghdr *m)
{
    if (!m || m->msg_iovlen > NT_UIO_MAXIOV)
        return NT_IOV_REFUSED;
    return nt_iov_size(m->msg_iov, (long)m->msg_iovlen);
}
/* Copy of iov (at most NT_IOV_MAX entries) with the first `skip` bytes
 * removed; returns the new count. */
#define NT_IOV_MAX 1024
int nt_iov_skip(const struct iovec *iov, int n, size_t skip,
                struct iovec *out);

#endif
