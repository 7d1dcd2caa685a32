/* setsockopt: a program that sets TCP_CORK or TCP_NODELAY on a coalescing
 * connection keeps what it asked for (coalesce.c: buffered bytes go out
 * before the cork changes; a corked connection is passed straight
 * through; the cork mode's release restores the program's TCP_NODELAY).
 * Everything else, and every other socket, goes straight through. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "coalesce.h"
#include "real.h"

NT_EXPORT int setsockopt(int fd, int level, int opt, const void *val,
                         socklen_t len)
{
    nt_init();
    if (level == IPPROTO_TCP && (opt == TCP_CORK || opt == TCP_NODELAY)) {
        struct nt_conn *c = nt_conn_get(fd);
        if (c && c->co_mode != NT_CO_OFF)
            return nt_coalesce_setsockopt(c, fd, opt, val, len);
    }
    return real.setsockopt(fd, level, opt, val, len);
}
