/* Where descriptors end: close, close_range, closefrom, fclose, and
 * shutdown. A descriptor leaves its connection (conn.h); the last one of
 * a socket flushes, logs an exchange it abandons and the close event,
 * and retires it. close() itself never fails because of the library. */
#include <linux/close_range.h>
#include <stdio.h>
#include <sys/socket.h>

#include "audit/event.h"
#include "coalesce/coalesce.h"
#include "core/conn.h"
#include "core/real.h"
#include "deadline/deadline.h"

void nt_close_fd(int fd, int how, const char *op, void *caller)
{
    struct nt_conn *c = nt_fd_conn(fd);
    if (!c) {
        int k = nt_fd_kind(fd);
        if (k != NT_FD_UNKNOWN && k != NT_FD_PASS)
            nt_fd_set(fd, NT_FD_PASS);
        return;
    }
    int saved = errno;
    if (c->refs <= 1) {
        /* Last words while the fd still names the socket. */
        nt_coalesce_close(c, fd, how);
        nt_deadline_closing(c, fd, op, caller);
        nt_event_lifecycle(NT_EV_CLOSE, c, fd, op, caller);
    }
    nt_conn_detach(fd, NT_FD_PASS, caller);
    errno = saved;
}

NT_EXPORT int close(int fd)
{
    nt_init();
    struct nt_fd_page *p = nt_fd_page_of(fd);
    int k = p ? p->kind[fd & (NT_FD_PAGE - 1)] : NT_FD_UNKNOWN;
    if (k == NT_FD_UNKNOWN || nt_bypass())
        return real.close(fd);
    if (unlikely(nt_sandboxed())) /* sandbox: */
        return nt_sb_close(fd);
    /* a file, pipe or ungoverned socket: nothing of ours to let go of
     * (nt_close_fd would only find that out; a server closes one such
     * fd per request) */
    if (k != NT_FD_PASS)
        nt_close_fd(fd, NT_CO_CLOSE, "close", NT_CALLER());
    return real.close(fd);
}

NT_EXPORT int fclose(FILE *f)
{
    nt_init();
    int fd = f ? fileno(f) : -1;
    if (fd >= 0 && !nt_bypass() && nt_fd_kind(fd) == NT_FD_CONN) {
        if (unlikely(nt_sandboxed())) /* sandbox: */
            nt_fd_mark_unknown(fd);
        else
            nt_close_fd(fd, NT_CO_CLOSE, "fclose", NT_CALLER());
    }
    return real.fclose(f);
}

struct range { unsigned lo, hi; const char *op; void *caller; };

static void close_in_range(int fd, struct nt_conn *c, void *arg)
{
    const struct range *r = arg;
    (void)c;
    if ((unsigned)fd >= r->lo && (unsigned)fd <= r->hi)
        nt_close_fd(fd, NT_CO_CLOSE_RANGE, r->op, r->caller);
}

/* Every descriptor in [lo, hi] is about to be closed: last words and
 * detach first, as close() does, so that no number the kernel frees can
 * be reused by another thread while its slot still says otherwise. */
static void closing_range(unsigned lo, unsigned hi, const char *op,
                          void *caller)
{
    int saved = errno;
    struct range r = { lo, hi, op, caller };
    nt_fd_each_conn(close_in_range, &r);
    nt_fd_release_range(lo, hi, caller); /* NEW, LISTEN: plain slots */
    errno = saved;
}

NT_EXPORT int close_range(unsigned lo, unsigned hi, int flags)
{
    nt_init();
    if (flags & CLOSE_RANGE_CLOEXEC || nt_bypass())
        return real.close_range(lo, hi, flags);
    if (unlikely(nt_sandboxed())) /* sandbox: */
        return nt_sb_close_range(lo, hi, flags);
    if (lo <= hi)
        closing_range(lo, hi, "close_range", NT_CALLER());
    int r = real.close_range(lo, hi, flags);
    if (r != 0) /* nothing was closed: classify them afresh */
        NT_KEEP_ERRNO(nt_fd_mark_unknown_range(lo, hi));
    return r;
}

NT_EXPORT void closefrom(int lo)
{
    nt_init();
    if (lo < 0 || nt_bypass()) {
        real.closefrom(lo);
        return;
    }
    if (unlikely(nt_sandboxed())) { /* sandbox: */
        nt_sb_closefrom(lo);
        return;
    }
    closing_range((unsigned)lo, NT_FD_MAX - 1, "closefrom", NT_CALLER());
    real.closefrom(lo);
}

NT_EXPORT int shutdown(int fd, int how)
{
    struct nt_conn *c = nt_conn_get(fd);
    if (c) {
        int saved = errno;
        if (c->co_mode != NT_CO_OFF)
            nt_coalesce_close(c, fd, how); /* flush first */
        if (how == SHUT_WR || how == SHUT_RDWR)
            c->self_closed = 1;
        /* giving up the direction the program owes ends the exchange */
        int owes_out = c->role != NT_ROLE_OUTBOUND;
        if (how == SHUT_RDWR || (owes_out ? how == SHUT_WR : how == SHUT_RD))
            nt_deadline_closing(c, fd, "shutdown", NT_CALLER());
        errno = saved;
    }
    return real.shutdown(fd, how);
}
