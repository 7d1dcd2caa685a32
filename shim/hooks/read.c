/* Input calls: read, readv, recv, recvfrom, recvmsg, recvmmsg and their
 * fortified forms. Each hook passes a non-governed fd straight through and
 * hands a governed one to the I/O engine (io.c) with an attempt function
 * that performs the call once. */
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "audit/event.h"
#include "coalesce/coalesce.h"
#include "core/io.h"
#include "core/real.h"

struct buf_args {
    void *buf;
    size_t len;
    struct sockaddr *from;
    socklen_t *fromlen;
};

static inline ssize_t read_plain(int fd, void *buf, size_t len, int flags)
{
    return nt_rw_plain(0, fd, buf, len, flags);
}

static ssize_t attempt_read(int fd, const struct nt_op *op, int flags,
                            size_t skip)
{
    const struct buf_args *a = op->args;
    return read_plain(fd, (char *)a->buf + skip, a->len - skip, flags);
}

static inline ssize_t recv_plain(int fd, void *buf, size_t len, int flags)
{
    return real.recvfrom(fd, buf, len, flags, NULL, NULL);
}

static ssize_t attempt_recvfrom(int fd, const struct nt_op *op, int flags,
                                size_t skip)
{
    const struct buf_args *a = op->args;
    return real.recvfrom(fd, (char *)a->buf + skip, a->len - skip, flags,
                         a->from, a->fromlen);
}

/* The governed path, out of line: the hooks' fast path keeps no locals
 * (no stack frame, no stack-protector canary). `res`: what io.h's fast
 * path did (NULL: not tried). */
__attribute__((noinline)) NT_NO_CANARY static ssize_t
read_buf(int fd, const char *name, nt_attempt_fn fn, void *buf, size_t len,
         int flags, struct sockaddr *from, socklen_t *fromlen, void *caller,
         const struct nt_resume *res)
{
    struct buf_args a = { buf, len, from, fromlen };
    struct nt_op op = { .name = name, .dir = NT_IN, .flags = flags,
                        .total = len, .attempt = fn, .args = &a,
                        .caller = caller };
    return nt_io_resume(fd, &op, res);
}

/* read and recv (recvfrom without an address): the fast path first. */
__attribute__((noinline)) NT_NO_CANARY static ssize_t
read_gov(int fd, void *buf, size_t len, void *caller)
{
    ssize_t r;
    struct nt_resume res;
    if (nt_io_fast(fd, NT_IN, buf, len, 0, read_plain, 0, &r, &res))
        return r;
    return read_buf(fd, "read", attempt_read, buf, len, 0, NULL, NULL, caller,
                    &res);
}

__attribute__((noinline)) NT_NO_CANARY static ssize_t
recv_gov(int fd, const char *name, void *buf, size_t len, int flags,
         void *caller)
{
    ssize_t r;
    struct nt_resume res;
    if (nt_io_fast(fd, NT_IN, buf, len, flags, recv_plain, 0, &r, &res))
        return r;
    return read_buf(fd, name, attempt_recvfrom, buf, len, flags, NULL, NULL,
                    caller, &res);
}

/* A read on a descriptor the library does not govern while coalesced
 * bytes are held (nt_coalesce_flush_for_read). Out of line, called as a
 * tail call: the pass-through path keeps no stack frame. (The plain
 * calls let nt_io_call() do it.) */
__attribute__((noinline, cold)) static ssize_t
readv_held(int fd, const struct iovec *iov, int iovcnt)
{
    nt_coalesce_flush_for_read(fd);
    return real.readv(fd, iov, iovcnt);
}

/* The same for the socket calls; MSG_DONTWAIT never waits. */
static void held_recv(int fd, int flags)
{
    if (!(flags & MSG_DONTWAIT))
        nt_coalesce_flush_for_read(fd);
}

__attribute__((noinline, cold)) static ssize_t
recvmsg_held(int fd, struct msghdr *msg, int flags)
{
    held_recv(fd, flags);
    return real.recvmsg(fd, msg, flags);
}

/* The plain calls: what passes through with nothing held goes straight
 * to the real call; the rest (held bytes too: nt_io_call) is governed. */
NT_EXPORT ssize_t read(int fd, void *buf, size_t len)
{
    if (likely(nt_fd_passes_clean(fd)))
        return real.read(fd, buf, len);
    return read_gov(fd, buf, len, NT_CALLER());
}

NT_EXPORT ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
    if (likely(nt_fd_passes_clean(fd)) || len > buflen)
        return real.__read_chk(fd, buf, len, buflen); /* aborts if too long */
    return read_gov(fd, buf, len, NT_CALLER());
}

NT_EXPORT ssize_t recv(int fd, void *buf, size_t len, int flags)
{
    if (likely(nt_fd_passes_clean(fd)))
        return real.recv(fd, buf, len, flags);
    return recv_gov(fd, "recv", buf, len, flags, NT_CALLER());
}

NT_EXPORT ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen,
                             int flags)
{
    if (likely(nt_fd_passes_clean(fd)) || len > buflen)
        return real.__recv_chk(fd, buf, len, buflen, flags);
    return recv_gov(fd, "recv", buf, len, flags, NT_CALLER());
}

NT_EXPORT ssize_t recvfrom(int fd, void *buf, size_t len, int flags,
                           struct sockaddr *from, socklen_t *fromlen)
{
    if (likely(nt_fd_passes_clean(fd)))
        return real.recvfrom(fd, buf, len, flags, from, fromlen);
    if (!from)
        return recv_gov(fd, "recvfrom", buf, len, flags, NT_CALLER());
    return read_buf(fd, "recvfrom", attempt_recvfrom, buf, len, flags,
                    from, fromlen, NT_CALLER(), NULL);
}

NT_EXPORT ssize_t __recvfrom_chk(int fd, void *buf, size_t len, size_t buflen,
                                 int flags, struct sockaddr *from,
                                 socklen_t *fromlen)
{
    if (likely(nt_fd_passes_clean(fd)) || len > buflen)
        return real.__recvfrom_chk(fd, buf, len, buflen, flags, from,
                                   fromlen);
    if (!from)
        return recv_gov(fd, "recvfrom", buf, len, flags, NT_CALLER());
    return read_buf(fd, "recvfrom", attempt_recvfrom, buf, len, flags,
                    from, fromlen, NT_CALLER(), NULL);
}

/* --- vectored ---------------------------------------------------------- */

struct vec_args {
    const struct iovec *iov;
    int iovcnt;
    struct msghdr *msg; /* recvmsg: the program's header */
};

/* Perform `call` on msg with its iovec advanced by skip bytes. */
static ssize_t with_skipped_iov(int fd, struct msghdr *msg, int flags,
                                size_t skip, int out)
{
    if (!skip)
        return out ? real.sendmsg(fd, msg, flags) : real.recvmsg(fd, msg, flags);
    struct iovec v[NT_IOV_MAX];
    struct msghdr m = *msg;
    m.msg_iov = v;
    m.msg_iovlen = (size_t)nt_iov_skip(msg->msg_iov, (int)msg->msg_iovlen,
                                       skip, v);
    ssize_t r = out ? real.sendmsg(fd, &m, flags) : real.recvmsg(fd, &m, flags);
    msg->msg_flags = m.msg_flags;
    msg->msg_controllen = m.msg_controllen;
    return r;
}

static ssize_t attempt_readv(int fd, const struct nt_op *op, int flags,
                             size_t skip)
{
    const struct vec_args *a = op->args;
    if (!flags && !skip)
        return real.readv(fd, a->iov, a->iovcnt);
    struct msghdr m = { .msg_iov = (struct iovec *)a->iov,
                        .msg_iovlen = (size_t)a->iovcnt };
    return with_skipped_iov(fd, &m, flags, skip, 0);
}

static ssize_t attempt_recvmsg(int fd, const struct nt_op *op, int flags,
                               size_t skip)
{
    const struct vec_args *a = op->args;
    return with_skipped_iov(fd, a->msg, flags, skip, 0);
}

__attribute__((noinline)) NT_NO_CANARY static ssize_t
read_vec(int fd, const struct iovec *iov, int iovcnt, void *caller)
{
    size_t total = nt_iov_size(iov, iovcnt);
    if (unlikely(total == NT_IOV_REFUSED))
        return real.readv(fd, iov, iovcnt); /* refused whole: see io.h */
    struct vec_args a = { iov, iovcnt, NULL };
    struct nt_op op = { .name = "readv", .dir = NT_IN, .total = total,
                        .attempt = attempt_readv, .args = &a,
                        .caller = caller };
    return nt_io_call(fd, &op);
}

NT_EXPORT ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
    if (likely(nt_fd_passes(fd))) {
        if (unlikely(nt_coalesce_held()))
            return readv_held(fd, iov, iovcnt);
        return real.readv(fd, iov, iovcnt);
    }
    return read_vec(fd, iov, iovcnt, NT_CALLER());
}

/* Descriptors passed with SCM_RIGHTS arrive without any call the library
 * sees, on any socket (a socketpair too): whatever a slot knew about
 * those numbers is stale. They are classified at once, so a socket the
 * process already has (sent to itself, or back from a child) joins its
 * connection now: a close of the original is then not the last one
 * (repro/program-more-bytes-before-peer-reset). Under a sandbox filter,
 * memory only: they are classified on first use. */
static void adopt_passed_fds(const struct msghdr *msg)
{
    if (!msg->msg_controllen || nt_bypass())
        return;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR((struct msghdr *)msg); cm;
         cm = CMSG_NXTHDR((struct msghdr *)msg, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < n; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof fd);
            if (unlikely(nt_sandboxed())) {
                nt_fd_mark_unknown(fd);
            } else {
                nt_fd_forget(fd);
                nt_fd_kind_classified(fd);
            }
        }
    }
}

__attribute__((noinline)) NT_NO_CANARY static ssize_t
read_msg(int fd, struct msghdr *msg, int flags, const char *name,
         void *caller)
{
    ssize_t r;
    size_t total = nt_msg_size(msg);
    if (unlikely(total == NT_IOV_REFUSED)) {
        return real.recvmsg(fd, msg, flags); /* refused whole: see io.h */
    } else if (nt_fd_passes(fd)) {
        if (unlikely(nt_coalesce_held()))
            held_recv(fd, flags);
        r = real.recvmsg(fd, msg, flags);
    } else {
        struct vec_args a = { NULL, 0, msg };
        struct nt_op op = { .name = name, .dir = NT_IN, .flags = flags,
                            .total = total,
                            .attempt = attempt_recvmsg, .args = &a,
                            .caller = caller };
        r = nt_io_call(fd, &op);
    }
    if (r >= 0)
        NT_KEEP_ERRNO(adopt_passed_fds(msg));
    return r;
}

NT_EXPORT ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
    if (likely(nt_fd_passes(fd)) && (!msg || !msg->msg_control)) {
        if (unlikely(nt_coalesce_held()))
            return recvmsg_held(fd, msg, flags);
        return real.recvmsg(fd, msg, flags);
    }
    return read_msg(fd, msg, flags, "recvmsg", NT_CALLER());
}

/* A blocking recvmmsg waits for every message (but the first, with
 * MSG_WAITFORONE); each message is one governed recvmsg, so deadlines and
 * the kernel's all-or-nothing rules hold per message. With a timeout of
 * its own the call is made as the program made it. */
__attribute__((noinline)) static int
read_mmsg(int fd, struct mmsghdr *vec, unsigned n, int flags, void *caller)
{
    struct nt_conn *c = nt_conn_get(fd);
    if (!c) {
        if (unlikely(nt_coalesce_held()))
            held_recv(fd, flags);
        return real.recvmmsg(fd, vec, n, flags, NULL);
    }
    int saved = errno;
    if (!(flags & MSG_ERRQUEUE)) {
        /* The kernel reports (and clears) a pending error before any
         * message, even with data queued (do_recvmmsg: sock_error()). */
        int err = 0;
        socklen_t len = sizeof err;
        if (real.getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 &&
            err) {
            if (err == ECONNRESET || err == EPIPE)
                nt_event_io_error(c, fd, "recvmmsg", err, caller);
            errno = err;
            return -1;
        }
    }
    for (unsigned i = 0; i < n; i++) {
        /* An error after some messages stays for the next call, as the
         * kernel's does (it puts it back in sk_err). */
        if (i && !(flags & MSG_ERRQUEUE) && nt_io_error_pending(c, fd, NT_IN))
            return (int)i;
        ssize_t r = read_msg(fd, &vec[i].msg_hdr, flags & ~MSG_WAITFORONE,
                             "recvmmsg", caller);
        if (r < 0) {
            if (i)
                errno = saved; /* the kernel reports it on the next call */
            return i ? (int)i : -1;
        }
        vec[i].msg_len = (unsigned)r; /* 0 at EOF: the kernel goes on too */
        errno = saved;
        if (flags & MSG_WAITFORONE)
            flags |= MSG_DONTWAIT;
    }
    return (int)n;
}

NT_EXPORT int recvmmsg(int fd, struct mmsghdr *vec, unsigned n, int flags,
                       struct timespec *timeout)
{
    if (likely(nt_fd_passes(fd)) || timeout || !vec || !n) {
        if (unlikely(nt_coalesce_held()))
            held_recv(fd, flags);
        int r = real.recvmmsg(fd, vec, n, flags, timeout);
        for (int i = 0; i < r; i++) /* SCM_RIGHTS on a socketpair too */
            NT_KEEP_ERRNO(adopt_passed_fds(&vec[i].msg_hdr));
        return r;
    }
    return read_mmsg(fd, vec, n, flags, NT_CALLER());
}
