/* Where connections begin: socket, socketpair, listen, connect, accept,
 * accept4, and getsockopt(SO_ERROR) for connects the library aborted. */
#include <sys/socket.h>

#include "core/conn.h"
#include "deadline/deadline.h"
#include "audit/event.h"
#include "core/real.h"

static int governed_type(int domain, int type)
{
    /* SOCK_NONBLOCK/SOCK_CLOEXEC ride along in `type` */
    return (type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)) == SOCK_STREAM &&
           (domain == AF_INET || domain == AF_INET6 || domain == AF_UNIX);
}

/* A new fd number from the kernel: whatever the slot said is stale. */
static void fresh_fd(int fd, int kind)
{
    nt_fd_forget(fd);
    nt_fd_set(fd, kind);
}

NT_EXPORT int socket(int domain, int type, int protocol)
{
    nt_init();
    if (unlikely(nt_sandboxed())) /* sandbox: */
        return nt_sb_fd(real.socket(domain, type, protocol));
    int fd = real.socket(domain, type, protocol);
    if (fd >= 0 && !nt_g.disabled && !nt_bypass())
        NT_KEEP_ERRNO(fresh_fd(fd, governed_type(domain, type) ? NT_FD_NEW
                                                               : NT_FD_PASS));
    return fd;
}

/* A socketpair is neither inbound nor outbound: not governed. */
NT_EXPORT int socketpair(int domain, int type, int protocol, int sv[2])
{
    nt_init();
    if (unlikely(nt_sandboxed())) /* sandbox: */
        return nt_sb_socketpair(domain, type, protocol, sv);
    int r = real.socketpair(domain, type, protocol, sv);
    if (r == 0 && !nt_g.disabled && !nt_bypass()) {
        fresh_fd(sv[0], NT_FD_PASS);
        fresh_fd(sv[1], NT_FD_PASS);
    }
    return r;
}

NT_EXPORT int listen(int fd, int backlog)
{
    nt_init();
    int r = real.listen(fd, backlog);
    if (r == 0 && !nt_g.disabled && !nt_bypass() && nt_fd_kind(fd) == NT_FD_NEW)
        nt_fd_set(fd, NT_FD_LISTEN);
    return r;
}

static int kind_of(int fd)
{
    int k = nt_fd_kind(fd);
    return k == NT_FD_UNKNOWN ? nt_fd_kind_classified(fd) : k;
}

/* connect() again on a socket whose connect is under way or done: the
 * kernel's answer, except after our deadline aborted the attempt, which
 * every way of asking reports as ETIMEDOUT (never a fresh attempt). */
static int connect_again(struct nt_conn *c, int fd, const struct sockaddr *addr,
                         socklen_t len)
{
    if (c->connect_err) {
        errno = c->connect_err;
        c->connect_err = 0;
        return -1;
    }
    if (c->expired && c->expired_kind == NT_DL_CONNECT) {
        errno = nt_deadline_errno(c);
        return -1;
    }
    int r = real.connect(fd, addr, len);
    if ((r == 0 || errno == EISCONN) && c->t_connect)
        NT_KEEP_ERRNO(nt_deadline_connect_done(c));
    return r;
}

NT_EXPORT int connect(int fd, const struct sockaddr *addr, socklen_t len)
{
    nt_init();
    if (nt_bypass() || nt_g.disabled || !addr || addr->sa_family == AF_UNSPEC ||
        nt_sandboxed() /* sandbox: */)
        return real.connect(fd, addr, len);
    int k = kind_of(fd);
    if (k == NT_FD_CONN)
        return connect_again(nt_fd_conn(fd), fd, addr, len);
    if (k != NT_FD_NEW)
        return real.connect(fd, addr, len);
    void *caller = NT_CALLER();
    struct nt_conn *c = nt_conn_open(fd, NT_ROLE_OUTBOUND, -1, addr, len);
    if (!c)
        return real.connect(fd, addr, len);
    nt_deadline_connect_start(c);
    int r = real.connect(fd, addr, len);
    int e = errno;
    if (r == 0 || e == EINPROGRESS || e == EINTR)
        nt_conn_refresh_local(c, fd);
    if (r == 0) {
        nt_deadline_connect_done(c);
        nt_event_lifecycle(NT_EV_CONNECT, c, fd, "connect", caller);
    } else if (e != EINPROGRESS && e != EINTR && e != EALREADY) {
        if (nt_deadline_connect_done(c))
            e = ETIMEDOUT; /* our deadline aborted it */
    }
    errno = e;
    return r;
}

static int accepted(int listen_fd, int fd, int flags, void *caller)
{
    int k = kind_of(listen_fd);
    if (k != NT_FD_LISTEN) {
        fresh_fd(fd, NT_FD_UNKNOWN);
        return fd;
    }
    int saved = errno;
    struct nt_conn *c = nt_conn_open(fd, NT_ROLE_INBOUND,
                                     (flags & SOCK_NONBLOCK) != 0, NULL, 0);
    if (c)
        nt_event_lifecycle(NT_EV_ACCEPT, c, fd, "accept", caller);
    errno = saved;
    return fd;
}

NT_EXPORT int accept(int fd, struct sockaddr *addr, socklen_t *len)
{
    nt_init();
    int r = real.accept(fd, addr, len);
    if (r < 0 || nt_g.disabled || nt_bypass())
        return r;
    if (unlikely(nt_sandboxed())) /* sandbox: */
        return nt_sb_fd(r);
    return accepted(fd, r, 0, NT_CALLER());
}

NT_EXPORT int accept4(int fd, struct sockaddr *addr, socklen_t *len,
                      int flags)
{
    nt_init();
    int r = real.accept4(fd, addr, len, flags);
    if (r < 0 || nt_g.disabled || nt_bypass())
        return r;
    if (unlikely(nt_sandboxed())) /* sandbox: */
        return nt_sb_fd(r);
    return accepted(fd, r, flags, NT_CALLER());
}

/* After the library aborted a non-blocking connect at its deadline, the
 * program's event loop asks SO_ERROR why: the answer is ETIMEDOUT. */
NT_EXPORT int getsockopt(int fd, int level, int opt, void *val,
                         socklen_t *len)
{
    nt_init();
    if (level != SOL_SOCKET || opt != SO_ERROR)
        return real.getsockopt(fd, level, opt, val, len);
    struct nt_conn *c = nt_conn_get(fd);
    int r = real.getsockopt(fd, level, opt, val, len);
    if (r != 0 || !c || !len || *len < (socklen_t)sizeof(int))
        return r;
    if (c->connect_err) {
        *(int *)val = c->connect_err;
        c->connect_err = 0;
    } else if (*(int *)val == 0 && c->t_connect) {
        nt_deadline_connect_check(c); /* connected: its clock stops */
    }
    return r;
}
