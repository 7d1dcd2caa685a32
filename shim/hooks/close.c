/* Where connections end: close, close_range, closefrom, shutdown. The slot
 * is forgotten under its lock, so the timer thread never acts on an fd
 * number the program is about to reuse. close() itself never fails
 * because of the library. */
#include <linux/close_range.h>
#include <sys/socket.h>

#include "coalesce/coalesce.h"
#include "core/conn.h"
#include "audit/event.h"
#include "core/real.h"
#include "core/sandbox.h"
#include "deadline/timer.h"

/* Last words for a governed connection, while the fd still names the
 * socket (the close event reads the peer's TCP state). */
static void retire(struct nt_conn *c, int fd, void *caller)
{
    nt_event_lifecycle(NT_EV_CLOSE, c, fd, "close", caller);
    nt_timer_disarm(c);
}

NT_EXPORT int close(int fd)
{
    nt_init();
    if (unlikely(nt_sandboxed())) return nt_sb_close(fd); /* sandbox: */
    struct nt_fd_page *p = nt_fd_page_of(fd);
    if (!p)
        return real.close(fd);
    int kind = p->kind[fd & (NT_FD_PAGE - 1)];
    if (kind == NT_FD_UNKNOWN)
        return real.close(fd);
    if (kind != NT_FD_CONN) {
        if (kind != NT_FD_PASS)
            nt_fd_release(fd);
        return real.close(fd);
    }
    struct nt_conn *c = &p->conn[fd & (NT_FD_PAGE - 1)];
    int saved = errno;
    nt_coalesce_close(c, fd, -1); /* coalescing: flush before the close */
    retire(c, fd, NT_CALLER());
    int taken = nt_conn_lock(c);
    nt_fd_release(fd);
    errno = saved;
    int r = real.close(fd);
    nt_conn_unlock(c, taken);
    return r;
}

NT_EXPORT int close_range(unsigned lo, unsigned hi, int flags)
{
    nt_init();
    if (unlikely(nt_sandboxed())) return nt_sb_close_range(lo, hi, flags); /* sandbox: */
    if (!(flags & CLOSE_RANGE_CLOEXEC))
        nt_coalesce_close_range(lo, hi); /* coalescing: flush first */
    int r = real.close_range(lo, hi, flags);
    if (r == 0 && !(flags & CLOSE_RANGE_CLOEXEC))
        NT_KEEP_ERRNO(nt_fd_release_range(lo, hi));
    return r;
}

NT_EXPORT void closefrom(int lo)
{
    nt_init();
    if (unlikely(nt_sandboxed())) { nt_sb_closefrom(lo); return; } /* sandbox: */
    if (lo >= 0)
        nt_coalesce_close_range((unsigned)lo, NT_FD_MAX - 1); /* coalescing */
    real.closefrom(lo);
    if (lo >= 0)
        NT_KEEP_ERRNO(nt_fd_release_range((unsigned)lo, NT_FD_MAX - 1));
}

NT_EXPORT int shutdown(int fd, int how)
{
    struct nt_conn *c = nt_conn_get(fd);
    if (c && c->co_mode != NT_CO_OFF)
        nt_coalesce_close(c, fd, how); /* coalescing: flush first */
    if (c && (how == SHUT_WR || how == SHUT_RDWR))
        c->self_closed = 1;
    return real.shutdown(fd, how);
}
