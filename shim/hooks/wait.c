/* Waits: poll, ppoll, select, pselect, epoll_wait, epoll_pwait,
 * epoll_pwait2 and the fortified forms. Deadlines never need these hooks (they act on the
 * socket, which wakes the program's own loop); coalesced bytes must be
 * flushed before the program sleeps. */
#include <poll.h>
#include <sys/epoll.h>
#include <sys/select.h>

#include "coalesce/coalesce.h"
#include "deadline/deadline.h"
#include "core/real.h"

/* glibc declares poll's array write-only; the hooks read the requested
 * events before the kernel fills in the results. */
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

static inline void before_wait(void)
{
    nt_init();
    if (nt_sandboxed_fast()) /* sandbox: */
        return;
    nt_deadline_program_waits();
    nt_coalesce_before_wait();
}

/* A program that polls a socket for input is waiting for it, even if it
 * never saw EAGAIN (curl polls before every read). The slot is looked at
 * in place; what it does not answer (first sight, re-entry, a sandbox, a
 * fork child's connection) goes through nt_conn_get(). No canary: the
 * only stack object is the clock's timespec. */
__attribute__((noinline)) static void note_waiting_slow(int fd)
{
    struct nt_conn *c = nt_conn_get(fd);
    if (c && c->dl_active)
        nt_deadline_polled_in(c); /* keeps errno */
}

static inline void note_waiting_in(int fd)
{
    int kind;
    struct nt_conn *c = nt_conn_peek(fd, &kind);
    if (c) {
        if (c->dl_active)
            nt_deadline_polled_in(c); /* keeps errno */
    } else if (kind != NT_FD_PASS) {
        note_waiting_slow(fd);
    }
}

NT_NO_CANARY static void before_poll(const struct pollfd *fds, nfds_t n)
{
    before_wait();
    for (nfds_t i = 0; i < n; i++)
        if (fds[i].events & POLLIN)
            note_waiting_in(fds[i].fd);
}

NT_NO_CANARY static void before_select(int n, const fd_set *r)
{
    before_wait();
    if (!r)
        return;
    /* FD_ISSET beyond FD_SETSIZE is the program's own business: only look
     * at what an fd_set can hold. */
    if (n > FD_SETSIZE)
        n = FD_SETSIZE;
    for (int fd = 0; fd < n; fd++)
        if (FD_ISSET(fd, r))
            note_waiting_in(fd);
}

NT_EXPORT int poll(struct pollfd *fds, nfds_t n, int timeout)
{
    before_poll(fds, n);
    return real.poll(fds, n, timeout);
}

NT_EXPORT int __poll_chk(struct pollfd *fds, nfds_t n, int timeout,
                         size_t fdslen)
{
    before_poll(fds, n);
    return real.__poll_chk(fds, n, timeout, fdslen);
}

NT_EXPORT int ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts,
                    const sigset_t *mask)
{
    before_poll(fds, n);
    return real.ppoll(fds, n, ts, mask);
}

NT_EXPORT int __ppoll_chk(struct pollfd *fds, nfds_t n,
                          const struct timespec *ts, const sigset_t *mask,
                          size_t fdslen)
{
    before_poll(fds, n);
    return real.__ppoll_chk(fds, n, ts, mask, fdslen);
}

NT_EXPORT int select(int n, fd_set *r, fd_set *w, fd_set *e,
                     struct timeval *tv)
{
    before_select(n, r);
    return real.select(n, r, w, e, tv);
}

NT_EXPORT int pselect(int n, fd_set *r, fd_set *w, fd_set *e,
                      const struct timespec *ts, const sigset_t *mask)
{
    before_select(n, r);
    return real.pselect(n, r, w, e, ts, mask);
}

NT_EXPORT int epoll_wait(int epfd, struct epoll_event *ev, int max,
                         int timeout)
{
    before_wait();
    return real.epoll_wait(epfd, ev, max, timeout);
}

NT_EXPORT int epoll_pwait(int epfd, struct epoll_event *ev, int max,
                          int timeout, const sigset_t *mask)
{
    before_wait();
    return real.epoll_pwait(epfd, ev, max, timeout, mask);
}

/* glibc 2.35. A program that sleeps here has gone back to its loop like
 * one in epoll_wait: without the hook, request_timeout cut its parked
 * keep-alive connections (deadline: exchange/epoll_server_keeps_parked_connection). */
NT_EXPORT int epoll_pwait2(int epfd, struct epoll_event *ev, int max,
                           const struct timespec *timeout, const sigset_t *mask)
{
    before_wait();
    if (!real.epoll_pwait2) { /* an older libc: the program found ours */
        errno = ENOSYS;
        return -1;
    }
    return real.epoll_pwait2(epfd, ev, max, timeout, mask);
}
