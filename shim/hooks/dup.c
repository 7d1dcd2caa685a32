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

/* `to` now refers to what `from` refers to. */
static void copied(int from, int to)
{
    if (to < 0 || nt_g.disabled || nt_bypass())
        return;
    int saved = errno;
    struct nt_conn *c = nt_fd_conn(from);
    if (c) {
        nt_conn_attach(c, to);
        nt_coalesce_dup(c, to); /* one more writer: flush and stop */
    } else {
        int k = nt_fd_kind(from);
        nt_fd_forget(to);
        if (k != NT_FD_UNKNOWN)
            nt_fd_set(to, k);
    }
    errno = saved;
}

/* dup2/dup3 silently close `to` first. */
static void replacing(int to, const char *op, void *caller)
{
    if (!nt_g.disabled && !nt_bypass() && nt_fd_kind(to) == NT_FD_CONN)
        nt_close_fd(to, NT_CO_CLOSE, op, caller);
}

/* The kernel refused: `to` was not closed after all; classify it again. */
static int refused(int r, int to)
{
    if (r < 0 && !nt_bypass())
        NT_KEEP_ERRNO(nt_fd_forget(to));
    return r;
}

NT_EXPORT int dup(int fd)
{
    nt_init();
    if (unlikely(nt_sandboxed())) /* sandbox: */
        return nt_sb_fd(real.dup(fd));
    int r = real.dup(fd);
    copied(fd, r);
    return r;
}

NT_EXPORT int dup2(int from, int to)
{
    nt_init();
    if (from == to)
        return real.dup2(from, to);
    if (unlikely(nt_sandboxed())) /* sandbox: */
        return nt_sb_fd(real.dup2(from, to));
    replacing(to, "dup2", NT_CALLER());
    int r = refused(real.dup2(from, to), to);
    copied(from, r);
    return r;
}

NT_EXPORT int dup3(int from, int to, int flags)
{
    nt_init();
    if (from == to)
        return real.dup3(from, to, flags); /* EINVAL */
    if (unlikely(nt_sandboxed())) /* sandbox: */
        return nt_sb_fd(real.dup3(from, to, flags));
    replacing(to, "dup3", NT_CALLER());
    int r = refused(real.dup3(from, to, flags), to);
    copied(from, r);
    return r;
}

static void set_nonblock(int fd, int on)
{
    struct nt_conn *c = nt_bypass() ? NULL : nt_fd_conn(fd);
    if (c)
        c->nonblock = (uint8_t)(on != 0);
}

/* fcntl's third argument is an int or a pointer; reading it as a long and
 * passing it on is what glibc's own wrappers rely on, on every ABI we
 * run on. */
static int fcntl_common(int (*next)(int, int, ...), int fd, int cmd, long arg)
{
    if (unlikely(nt_sandboxed())) /* sandbox: */
        return nt_sb_fcntl(next, fd, cmd, arg);
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
