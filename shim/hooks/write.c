/* Output calls: write, writev, send, sendto, sendmsg, sendmmsg, sendfile
 * and splice. Same shape as hook_read.c. Governed sends carry
 * MSG_NOSIGNAL so an EPIPE can be logged before SIGPIPE is delivered
 * (io.c); sendfile and splice take no flags, so their SIGPIPE comes from
 * the kernel as usual (coalesced bytes go out first when the output has
 * hung up: xfer_guarded). */
#include <fcntl.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "coalesce/coalesce.h"
#include "core/io.h"
#include "core/real.h"

struct buf_args {
    const void *buf;
    size_t len;
    const struct sockaddr *to;
    socklen_t tolen;
};

static inline ssize_t write_plain(int fd, void *buf, size_t len, int flags)
{
    return nt_rw_plain(1, fd, buf, len, flags);
}

static ssize_t attempt_write(int fd, const struct nt_op *op, int flags,
                             size_t skip)
{
    const struct buf_args *a = op->args;
    return write_plain(fd, (char *)a->buf + skip, a->len - skip, flags);
}

static inline ssize_t send_plain(int fd, void *buf, size_t len, int flags)
{
    return real.sendto(fd, buf, len, flags, NULL, 0);
}

static ssize_t attempt_sendto(int fd, const struct nt_op *op, int flags,
                              size_t skip)
{
    const struct buf_args *a = op->args;
    return real.sendto(fd, (const char *)a->buf + skip, a->len - skip, flags,
                       a->to, a->tolen);
}

/* The governed path, out of line: the hooks' fast path keeps no locals
 * (no stack frame, no stack-protector canary). `res`: what io.h's fast
 * path did (NULL: not tried). */
__attribute__((noinline)) NT_NO_CANARY static ssize_t
write_buf(int fd, const char *name, nt_attempt_fn fn, const void *buf,
          size_t len, int flags, const struct sockaddr *to, socklen_t tolen,
          void *caller, const struct nt_resume *res)
{
    struct buf_args a = { buf, len, to, tolen };
    struct iovec v = { (void *)buf, len };
    struct nt_op op = { .name = name, .dir = NT_OUT, .flags = flags,
                        .total = len, .attempt = fn, .args = &a,
                        .caller = caller, .iov = to ? NULL : &v,
                        .iovcnt = 1 };
    return nt_io_resume(fd, &op, res);
}

/* write and send (sendto without an address): the fast path first. */
__attribute__((noinline)) NT_NO_CANARY static ssize_t
write_gov(int fd, const void *buf, size_t len, void *caller)
{
    ssize_t r;
    struct nt_resume res;
    if (nt_io_fast(fd, NT_OUT, (void *)buf, len, 0, write_plain, 0, &r, &res))
        return r;
    return write_buf(fd, "write", attempt_write, buf, len, 0, NULL, 0, caller,
                     &res);
}

__attribute__((noinline)) NT_NO_CANARY static ssize_t
send_gov(int fd, const char *name, const void *buf, size_t len, int flags,
         void *caller)
{
    ssize_t r;
    struct nt_resume res;
    if (nt_io_fast(fd, NT_OUT, (void *)buf, len, flags, send_plain, 0, &r, &res))
        return r;
    return write_buf(fd, name, attempt_sendto, buf, len, flags, NULL, 0,
                     caller, &res);
}

/* A write to a pipe or socket the library does not govern while coalesced
 * bytes are held (nt_coalesce_flush_for_send). Out of line, called as a
 * tail call: the pass-through path keeps no stack frame. (The plain
 * calls let nt_io_call() do it.) */
__attribute__((noinline, cold)) static ssize_t
writev_held(int fd, const struct iovec *iov, int iovcnt)
{
    nt_coalesce_flush_for_send(fd);
    return real.writev(fd, iov, iovcnt);
}

__attribute__((noinline, cold)) static ssize_t
sendmsg_held(int fd, const struct msghdr *msg, int flags)
{
    nt_coalesce_flush_for_send(fd);
    return real.sendmsg(fd, msg, flags);
}

/* sendmmsg to a descriptor the library does not govern (known or seen
 * for the first time): held bytes first, as for sendmsg. */
static int mmsg_pass(int fd, struct mmsghdr *vec, unsigned n, int flags)
{
    if (unlikely(nt_coalesce_held()))
        nt_coalesce_flush_for_send(fd);
    return real.sendmmsg(fd, vec, n, flags);
}

/* The plain calls: what passes through with nothing held goes straight
 * to the real call; the rest (held bytes too: nt_io_call) is governed. */
NT_EXPORT ssize_t write(int fd, const void *buf, size_t len)
{
    if (likely(nt_fd_passes_clean(fd)))
        return real.write(fd, buf, len);
    return write_gov(fd, buf, len, NT_CALLER());
}

NT_EXPORT ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    if (likely(nt_fd_passes_clean(fd)))
        return real.send(fd, buf, len, flags);
    return send_gov(fd, "send", buf, len, flags, NT_CALLER());
}

NT_EXPORT ssize_t sendto(int fd, const void *buf, size_t len, int flags,
                         const struct sockaddr *to, socklen_t tolen)
{
    if (likely(nt_fd_passes_clean(fd)))
        return real.sendto(fd, buf, len, flags, to, tolen);
    if (!to)
        return send_gov(fd, "sendto", buf, len, flags, NT_CALLER());
    return write_buf(fd, "sendto", attempt_sendto, buf, len, flags, to,
                     tolen, NT_CALLER(), NULL);
}

/* --- vectored ---------------------------------------------------------- */

struct vec_args {
    const struct iovec *iov;
    int iovcnt;
    const struct msghdr *msg;
};

static ssize_t send_skipped(int fd, const struct msghdr *msg, int flags,
                            size_t skip)
{
    if (!skip)
        return real.sendmsg(fd, msg, flags);
    struct iovec v[NT_IOV_MAX];
    struct msghdr m = *msg;
    m.msg_iov = v;
    m.msg_iovlen = (size_t)nt_iov_skip(msg->msg_iov, (int)msg->msg_iovlen,
                                       skip, v);
    if (skip) { /* ancillary data went with the first part */
        m.msg_control = NULL;
        m.msg_controllen = 0;
    }
    return real.sendmsg(fd, &m, flags);
}

/* writev as the program called it, or sendmsg once flags are added.
 * `args`: the hook's struct vec_args (io.h's vectored fast path). */
static inline ssize_t writev_plain(int fd, void *args, size_t len, int flags)
{
    const struct vec_args *a = args;
    (void)len;
    if (!flags)
        return real.writev(fd, a->iov, a->iovcnt);
    struct msghdr m = { .msg_iov = (struct iovec *)a->iov,
                        .msg_iovlen = (size_t)a->iovcnt };
    return real.sendmsg(fd, &m, flags);
}

static ssize_t attempt_writev(int fd, const struct nt_op *op, int flags,
                              size_t skip)
{
    const struct vec_args *a = op->args;
    if (!skip)
        return writev_plain(fd, (void *)a, 0, flags);
    struct msghdr m = { .msg_iov = (struct iovec *)a->iov,
                        .msg_iovlen = (size_t)a->iovcnt };
    return send_skipped(fd, &m, flags, skip);
}

static ssize_t attempt_sendmsg(int fd, const struct nt_op *op, int flags,
                               size_t skip)
{
    const struct vec_args *a = op->args;
    return send_skipped(fd, a->msg, flags, skip);
}

/* Coalescing sees the bytes of a plain vectored write: not those of a
 * message with an address or control data. `res`: what io.h's fast path
 * did (NULL: not tried). */
__attribute__((noinline)) NT_NO_CANARY static ssize_t
write_vec(int fd, const char *name, nt_attempt_fn fn, const struct iovec *iov,
          int iovcnt, const struct msghdr *msg, int flags, void *caller,
          const struct nt_resume *res)
{
    struct vec_args a = { iov, iovcnt, msg };
    size_t total = msg ? nt_msg_size(msg) : nt_iov_size(iov, iovcnt);
    if (unlikely(total == NT_IOV_REFUSED)) /* refused whole: see io.h */
        return msg ? real.sendmsg(fd, msg, flags) : real.writev(fd, iov, iovcnt);
    if (msg) {
        iov = msg->msg_name || msg->msg_controllen ? NULL : msg->msg_iov;
        iovcnt = (int)msg->msg_iovlen;
    }
    struct nt_op op = { .name = name, .dir = NT_OUT, .flags = flags,
                        .total = total, .attempt = fn, .args = &a,
                        .caller = caller, .iov = iov, .iovcnt = iovcnt };
    return nt_io_resume(fd, &op, res);
}

/* writev (nginx's responses): the fast path first. */
__attribute__((noinline)) NT_NO_CANARY static ssize_t
writev_gov(int fd, const struct iovec *iov, int iovcnt, void *caller)
{
    ssize_t r;
    struct nt_resume res;
    struct vec_args a = { iov, iovcnt, NULL };
    size_t total = nt_iov_size(iov, iovcnt);
    if (unlikely(total == NT_IOV_REFUSED))
        return real.writev(fd, iov, iovcnt); /* refused whole: see io.h */
    if (nt_io_fast(fd, NT_OUT, &a, total, 0,
                   writev_plain, 1, &r, &res))
        return r;
    return write_vec(fd, "writev", attempt_writev, iov, iovcnt, NULL, 0,
                     caller, &res);
}

NT_EXPORT ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
    if (likely(nt_fd_passes(fd))) {
        if (unlikely(nt_coalesce_held()))
            return writev_held(fd, iov, iovcnt);
        return real.writev(fd, iov, iovcnt);
    }
    return writev_gov(fd, iov, iovcnt, NT_CALLER());
}

NT_EXPORT ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
    if (likely(nt_fd_passes(fd))) {
        if (unlikely(nt_coalesce_held()))
            return sendmsg_held(fd, msg, flags);
        return real.sendmsg(fd, msg, flags);
    }
    return write_vec(fd, "sendmsg", attempt_sendmsg, NULL, 0, msg, flags,
                     NT_CALLER(), NULL);
}

/* A blocking sendmmsg sends every message in full, as the kernel's
 * does; each message is one governed sendmsg, so deadlines, coalescing
 * order and partial results hold per message. */
__attribute__((noinline)) static int
write_mmsg(int fd, struct mmsghdr *vec, unsigned n, int flags, void *caller)
{
    if (!nt_conn_get(fd))
        return mmsg_pass(fd, vec, n, flags);
    int saved = errno;
    for (unsigned i = 0; i < n; i++) {
        const struct msghdr *m = &vec[i].msg_hdr;
        ssize_t r = write_vec(fd, "sendmmsg", attempt_sendmsg, NULL, 0, m,
                              flags, caller, NULL);
        if (r < 0) {
            if (i)
                errno = saved; /* the kernel reports it on the next call */
            return i ? (int)i : -1;
        }
        vec[i].msg_len = (unsigned)r;
        errno = saved;
        /* the kernel took the message: its vector is readable */
        if ((size_t)r < nt_msg_size(m))
            return (int)i + 1;
    }
    return (int)n;
}

NT_EXPORT int sendmmsg(int fd, struct mmsghdr *vec, unsigned n, int flags)
{
    if (likely(nt_fd_passes(fd)) || !vec || !n)
        return mmsg_pass(fd, vec, n, flags);
    return write_mmsg(fd, vec, n, flags, NT_CALLER());
}

/* --- flagless: sendfile, splice ---------------------------------------- */

struct xfer_args {
    int in_fd, out_fd;
    loff_t *in_off, *out_off;
    size_t len;
    unsigned flags;
    int is_splice, is64;
};

static ssize_t xfer_once(const struct xfer_args *a)
{
    if (a->is_splice)
        return real.splice(a->in_fd, a->in_off, a->out_fd, a->out_off,
                           a->len, a->flags);
    return (a->is64 ? real.sendfile64 : real.sendfile)(a->out_fd, a->in_fd,
                                                      a->in_off, a->len);
}

/* sendfile and splice take no MSG_NOSIGNAL: on a socket that is reset
 * or shut down (or a pipe without reader) the kernel's own SIGPIPE may
 * kill the process before other connections' held bytes leave, which
 * without the library were already in the kernel. While something is
 * held, a transfer whose output has hung up flushes them first, if that
 * SIGPIPE would kill (nt_coalesce_guard_sigpipe). The signal mask is left
 * alone: a handler, or a SIGPIPE sent to the process, sees the program's
 * own. */
__attribute__((noinline, cold)) static ssize_t
xfer_guarded(const struct xfer_args *a)
{
    nt_coalesce_guard_sigpipe(a->out_fd);
    return xfer_once(a);
}

static ssize_t xfer_call(const struct xfer_args *a)
{
    if (unlikely(nt_coalesce_held()))
        return xfer_guarded(a);
    return xfer_once(a);
}

/* From `skip` (what earlier parts of this call moved: the offsets, or the
 * file position, moved with them) up to op->total (the engine may ask for
 * less than the program did: bounded_xfer). A later part of a splice
 * from a pipe that is now empty moves nothing (0) instead of waiting for
 * the pipe's writer: the kernel's splice returns once it has moved some. */
static ssize_t attempt_xfer(int fd, const struct nt_op *op, int flags,
                            size_t skip)
{
    (void)fd, (void)flags;
    struct xfer_args a = *(const struct xfer_args *)op->args;
    a.len = (op->total < a.len ? op->total : a.len) - skip;
    if (skip && a.is_splice && op->dir == NT_OUT) {
        int queued = 0, saved = errno;
        int r = real.ioctl(a.in_fd, FIONREAD, &queued);
        errno = saved;
        if (r == 0 && queued <= 0)
            return 0;
    }
    return xfer_call(&a);
}

/* A transfer between descriptors the library does not govern while
 * coalesced bytes are held: to a pipe or socket they go first, as for
 * write(); from one that would block, as for read(). */
__attribute__((noinline, cold)) static ssize_t
xfer_held(struct xfer_args a)
{
    nt_coalesce_flush_for_send(a.out_fd);
    if (a.is_splice)
        nt_coalesce_flush_for_read(a.in_fd);
    return xfer_call(&a);
}

/* `one_shot`: the kernel will not wait in this call (MSG_DONTWAIT for the
 * engine: no deadline-bounded wait of the library's either). */
__attribute__((noinline)) NT_NO_CANARY static ssize_t
xfer(int fd, int dir, const char *name, struct xfer_args a, void *caller,
     int one_shot)
{
    struct nt_op op = { .name = name, .dir = dir, .flagless = 1,
                        .flags = one_shot ? MSG_DONTWAIT : 0,
                        .total = a.len, .attempt = attempt_xfer, .args = &a,
                        .caller = caller };
    return nt_io_call(fd, &op);
}

NT_EXPORT ssize_t sendfile(int out_fd, int in_fd, off_t *off, size_t len)
{
    if (likely(nt_fd_passes(out_fd))) {
        if (unlikely(nt_coalesce_held()))
            return xfer_held((struct xfer_args){ in_fd, out_fd, off, NULL,
                                                 len, 0, 0, 0 });
        return real.sendfile(out_fd, in_fd, off, len);
    }
    return xfer(out_fd, NT_OUT, "sendfile",
                (struct xfer_args){ in_fd, out_fd, off, NULL, len, 0, 0, 0 },
                NT_CALLER(), 0);
}

NT_EXPORT ssize_t sendfile64(int out_fd, int in_fd, off_t *off, size_t len)
{
    if (likely(nt_fd_passes(out_fd))) {
        if (unlikely(nt_coalesce_held()))
            return xfer_held((struct xfer_args){ in_fd, out_fd, off, NULL,
                                                 len, 0, 0, 1 });
        return real.sendfile64(out_fd, in_fd, off, len);
    }
    return xfer(out_fd, NT_OUT, "sendfile",
                (struct xfer_args){ in_fd, out_fd, off, NULL, len, 0, 0, 1 },
                NT_CALLER(), 0);
}

NT_EXPORT ssize_t splice(int in_fd, loff_t *in_off, int out_fd,
                         loff_t *out_off, size_t len, unsigned flags)
{
    if (likely(nt_fd_passes(out_fd) && nt_fd_passes(in_fd))) {
        if (unlikely(nt_coalesce_held()))
            return xfer_held((struct xfer_args){ in_fd, out_fd, in_off,
                                                 out_off, len, flags, 1, 0 });
        return real.splice(in_fd, in_off, out_fd, out_off, len, flags);
    }
    struct xfer_args a = { in_fd, out_fd, in_off, out_off, len, flags, 1, 0 };
    /* Either end may be the socket: govern the output side if it is one.
     * SPLICE_F_NONBLOCK makes a unix socket's splice read not wait (TCP's
     * waits all the same; a socket's writes follow its O_NONBLOCK). */
    struct nt_conn *in;
    if (nt_conn_get(out_fd) || !(in = nt_conn_get(in_fd)))
        return xfer(out_fd, NT_OUT, "splice", a, NT_CALLER(), 0);
    return xfer(in_fd, NT_IN, "splice", a, NT_CALLER(),
                (flags & SPLICE_F_NONBLOCK) && in->family == AF_UNIX);
}
