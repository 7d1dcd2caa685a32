/* Descriptors that come to share a socket (dup, dup2, dup3,
 * fcntl(F_DUPFD*)), and the blocking mode the program sets
 * (fcntl(F_SETFL), ioctl(FIONBIO)). The library only watches: it never
 * changes a flag of the program's. */
#include <fcntl.h>
#include <stdarg.h>
#include <sys/ioctl.h>

#include "coalesce/coalesce.h"
#include "core/conn.h"
#include "core/real.h"
#include "core/sandbox.h"
#include "deadline/timer.h"

/* `to` now refers to what `from` refers to. */
static void copied(int from, int to)
{
    if (to < 0 || nt_g.disabled)
        return;
    int saved = errno;
    if (nt_fd_kind(from) == NT_FD_CONN) {
        nt_conn_dup(from, to);
        nt_coalesce_dup(from, to); /* coalescing: shared, so flush & stop */
    } else {
        nt_fd_forget(to);
        int k = nt_fd_kind(from);
        if (k != NT_FD_UNKNOWN)
            nt_fd_set(to, k);
    }
    errno = saved;
}

/* dup2/dup3 silently close `to` first. */
static void replacing(int to)
{
    if (nt_fd_kind(to) == NT_FD_CONN) {
        struct nt_conn *c = nt_fd_conn(to);
        NT_KEEP_ERRNO(nt_coalesce_close(c, to, -1)); /* coalescing: flush */
        nt_timer_disarm(c);
    }
}

NT_EXPORT int dup(int fd)
{
    nt_init();
    if (unlikely(nt_sandboxed())) return nt_sb_fd(real.dup(fd)); /* sandbox: */
    int r = real.dup(fd);
    copied(fd, r);
    return r;
}

NT_EXPORT int dup2(int from, int to)
{
    nt_init();
    if (unlikely(nt_sandboxed())) return nt_sb_fd(real.dup2(from, to)); /* sandbox: */
    if (from != to)
        replacing(to);
    int r = real.dup2(from, to);
    if (r >= 0 && from != to)
        copied(from, r);
    return r;
}

NT_EXPORT int dup3(int from, int to, int flags)
{
    nt_init();
    if (unlikely(nt_sandboxed())) return nt_sb_fd(real.dup3(from, to, flags)); /* sandbox: */
    replacing(to);
    int r = real.dup3(from, to, flags);
    if (r >= 0)
        copied(from, r);
    return r;
}

static void set_nonblock(int fd, int on)
{
    struct nt_conn *c = nt_fd_kind(fd) == NT_FD_CONN ? nt_fd_conn(fd) : NULL;
    if (c)
        c->nonblock = (uint8_t)(on != 0);
}

/* fcntl's third argument is an int or a pointer; reading it as a long and
 * passing it on is what glibc's own wrappers rely on, on every ABI we
 * run on. */
static int fcntl_common(int (*next)(int, int, ...), int fd, int cmd, long arg)
{
    if (unlikely(nt_sandboxed())) return nt_sb_fcntl(next, fd, cmd, arg); /* sandbox: */
    int r = next(fd, cmd, arg);
    if (r < 0 || nt_g.disabled)
        return r;
    if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
        copied(fd, r);
    else if (cmd == F_SETFL)
        set_nonblock(fd, (int)arg & O_NONBLOCK);
    return r;
}

NT_EXPORT int fcntl(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    long arg = va_arg(ap, long);
    va_end(ap);
    nt_init();
    return fcntl_common(real.fcntl, fd, cmd, arg);
}

NT_EXPORT int fcntl64(int fd, int cmd, ...)
{
    va_list ap;
    va_start(ap, cmd);
    long arg = va_arg(ap, long);
    va_end(ap);
    nt_init();
    return fcntl_common(real.fcntl64, fd, cmd, arg);
}

NT_EXPORT int ioctl(int fd, unsigned long req, ...)
{
    va_list ap;
    va_start(ap, req);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    nt_init();
    int r = real.ioctl(fd, req, arg);
    if (r == 0 && req == FIONBIO && arg)
        set_nonblock(fd, *(int *)arg);
    return r;
}
