/* Calls that only matter to write coalescing (coalesce.c).
 *
 * setsockopt: a program that sets TCP_CORK or TCP_NODELAY on a coalescing
 * connection keeps what it asked for (buffered bytes go out before the
 * cork changes; a corked connection is passed straight through; the cork
 * mode's release restores the program's TCP_NODELAY).
 * fdopen: stdio on the socket writes through glibc's internal calls, which
 * no hook sees, so the connection stops coalescing first (order).
 * Everything else, and every other fd, goes straight through. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <sys/socket.h>

#include "coalesce/coalesce.h"
#include "core/real.h"

NT_EXPORT int setsockopt(int fd, int level, int opt, const void *val,
                         socklen_t len)
{
    nt_init();
    if (level == IPPROTO_TCP &&
        (opt == TCP_CORK || opt == TCP_NODELAY || opt == TCP_NOTSENT_LOWAT)) {
        struct nt_conn *c = nt_conn_get(fd);
        if (c && c->co_mode != NT_CO_OFF)
            return nt_coalesce_setsockopt(c, fd, opt, val, len);
    }
    return real.setsockopt(fd, level, opt, val, len);
}

NT_EXPORT FILE *fdopen(int fd, const char *mode)
{
    nt_init();
    if (nt_fd_kind(fd) == NT_FD_CONN && !nt_g.disabled && !nt_bypass() &&
        !nt_sandboxed() /* sandbox: */)
        NT_KEEP_ERRNO(nt_coalesce_fdopen(nt_fd_conn(fd), fd));
    return real.fdopen(fd, mode);
}
