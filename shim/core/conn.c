/* Setting up a governed connection's slot. */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "core/conn.h"
#include "deadline/deadline.h"
#include "core/real.h"
#include "core/settings.h"
#include "deadline/timer.h"

static void fill_addresses(struct nt_conn *c, int fd,
                           const struct sockaddr *remote, socklen_t rlen)
{
    c->local_len = sizeof c->local;
    if (getsockname(fd, &c->local.sa, &c->local_len) != 0)
        c->local_len = 0;
    if (remote && rlen <= sizeof c->remote) {
        memcpy(&c->remote, remote, rlen);
        c->remote_len = rlen;
    } else {
        c->remote_len = sizeof c->remote;
        if (getpeername(fd, &c->remote.sa, &c->remote_len) != 0)
            c->remote_len = 0;
    }
    c->family = c->local_len ? c->local.sa.sa_family
                             : c->remote_len ? c->remote.sa.sa_family : 0;
}

void nt_conn_refresh_local(struct nt_conn *c, int fd)
{
    c->local_len = sizeof c->local;
    if (getsockname(fd, &c->local.sa, &c->local_len) != 0)
        c->local_len = 0;
}

struct nt_conn *nt_conn_open(int fd, int role, int nonblock,
                             const struct sockaddr *remote, socklen_t rlen)
{
    struct nt_conn *c;
    nt_fd_set(fd, NT_FD_PASS); /* allocates the page; stays PASS on failure */
    if (!nt_g.config || !(c = nt_fd_conn(fd)))
        return NULL;
    nt_timer_disarm(c); /* an unseen predecessor's entry */
    uint32_t gen = c->gen + 1;
    /* Everything but the lock word is reset: the slot may hold what a
     * closed, unseen predecessor left behind. */
    memset((char *)c + sizeof c->lock, 0, sizeof *c - sizeof c->lock);
    c->gen = gen;
    c->role = (uint8_t)role;
    if (nonblock < 0) {
        int fl = fcntl(fd, F_GETFL);
        nonblock = fl >= 0 && (fl & O_NONBLOCK);
    }
    c->nonblock = (uint8_t)nonblock;
    fill_addresses(c, fd, remote, rlen);
    c->t_open = c->t_last = nt_now();
    c->set = nt_settings_match(c);
    nt_fd_set(fd, NT_FD_CONN);
    nt_deadline_open(c, fd);
    return c;
}

void nt_conn_dup(int from, int to)
{
    struct nt_conn *src = nt_fd_conn(from);
    nt_fd_set(to, NT_FD_PASS); /* page for `to` */
    struct nt_conn *dst = nt_fd_conn(to);
    if (!src || !dst)
        return;
    uint32_t gen = dst->gen + 1;
    memcpy((char *)dst + sizeof dst->lock, (char *)src + sizeof src->lock,
           sizeof *dst - sizeof dst->lock);
    dst->gen = gen;
    dst->heap_idx = 0;
    dst->cbuf = NULL; /* the buffer stays with the original (flushed first) */
    dst->clen = 0;
    src->dup_shared = dst->dup_shared = 1;
    nt_fd_set(to, NT_FD_CONN);
    nt_deadline_open(dst, to);
}
