/* Write coalescing (shared/SPEC.md section 6). Design notes at the top of
 * coalesce.c.
 *
 * Every entry point here is called from a hook or the timer thread with a
 * governed connection; none allocates with malloc, and none blocks while
 * holding a lock another thread may need for long. */
#ifndef NT_COALESCE_H
#define NT_COALESCE_H

#include <signal.h>

#include "core/conn.h"

struct nt_op;

enum nt_co_mode {
    NT_CO_UNDECIDED = 0, /* fresh slot: decided on the first call */
    NT_CO_OFF,           /* not coalescing: nt_io's fast path */
    NT_CO_BUFFER,        /* coalesce_mode = buffer */
    NT_CO_CORK,          /* coalesce_mode = cork (TCP only) */
    NT_CO_PASS,          /* coalescing did not pay here: pass-through,
                            tried again after a while (coalesce.c) */
};

/* Connections holding coalesced bytes (or a cork); waits flush only when
 * nonzero. */
#define nt_coalesce_pending (nt_g.co_pending) /* beside nt_g.ready: nt.h */

/* The program is about to wait (poll, select, epoll): whatever it wrote
 * must be on the wire, or a request/response exchange would stall. */
void nt_coalesce_flush_for_wait(void);
static inline void nt_coalesce_before_wait(void)
{
    if (unlikely(__atomic_load_n(&nt_coalesce_pending, __ATOMIC_RELAXED)))
        nt_coalesce_flush_for_wait();
}

/* Anything held (a buffer or a cork) anywhere in the process: one load. */
static inline int nt_coalesce_held(void)
{
    return __atomic_load_n(&nt_coalesce_pending, __ATOMIC_RELAXED) != 0;
}
/* The program reads a descriptor the library does not govern (a pipe, a
 * tty): if that read would block, the program is waiting (for a helper
 * that talks to the peer, say), and what it coalesced goes out first. */
void nt_coalesce_flush_for_read(int fd);
/* The program writes to a pipe or socket the library does not govern: a
 * message to another process (a helper, a coordinator) that may act on a
 * peer at once; what it coalesced goes out first, so the message cannot
 * overtake it. Writes to files and ttys leave the buffers alone. */
void nt_coalesce_flush_for_send(int fd);

/* fork (core/process.c's handler, in the documented lock order). */
void nt_coalesce_atfork_prepare(void);
void nt_coalesce_atfork_parent(void);
void nt_coalesce_atfork_child(void);

/* Flush every connection's buffered bytes (fork, exec, spawn, exit). */
void nt_coalesce_flush_all(void);
/* The library is about to raise SIGPIPE: if it kills the process (default
 * action, not blocked), what other connections hold goes out first, as
 * the kernel already had it in the run without the library. */
void nt_coalesce_before_sigpipe(void);
/* A call about to reach the kernel without MSG_NOSIGNAL (sendfile,
 * splice, a zero-length send made exactly as the program made it) while
 * something is held: if fd's output has hung up, the kernel's own SIGPIPE
 * may follow, so nt_coalesce_before_sigpipe() first. errno is kept. */
void nt_coalesce_guard_sigpipe(int fd);

/* io.c: nt_io() hands every call on a connection whose co_mode is not
 * NT_CO_OFF to this function, which buffers, flushes first, or passes the
 * call on to nt_io_direct(). */
ssize_t nt_coalesce_io(struct nt_conn *c, int fd, const struct nt_op *op);
/* io.c: the I/O engine proper, without coalescing. */
ssize_t nt_io_direct(struct nt_conn *c, int fd, const struct nt_op *op);

/* hook_close.c: the fd is about to be closed, or dup2'ed over (how < 0),
 * or shut down (how = SHUT_*): flush first. On close the connection's
 * coalescing state is released whatever happens. */
void nt_coalesce_close(struct nt_conn *c, int fd, int how);
#define NT_CO_CLOSE (-1)       /* how: close(), fclose(), dup2 over it */
#define NT_CO_CLOSE_RANGE (-2) /* how: close_range(), closefrom() */
/* hooks/dup.c: another descriptor now refers to c's socket (dup,
 * F_DUPFD, an inherited twin): flush and stop coalescing (see coalesce.c,
 * "Sharing"). */
void nt_coalesce_dup(struct nt_conn *c, int fd);
/* core/conn.c: the program's last descriptor went, but coalescing keeps
 * the connection to send what it holds (a private duplicate). */
static inline int nt_coalesce_orphaned(const struct nt_conn *c)
{
    return (c->co_flags & 0x20) != 0; /* CO_ORPHAN, coalesce_internal.h */
}
/* core/conn.c: the connection is retired without a flush (its last
 * descriptor was closed behind our back): what it still held is lost. */
void nt_coalesce_release(struct nt_conn *c);

/* hook_sockopt.c: the program wraps the socket in a FILE* (fdopen): its
 * stdio writes bypass every hook, so coalescing stops (after a flush). */
void nt_coalesce_fdopen(struct nt_conn *c, int fd);

/* hook_sockopt.c: the program sets TCP_CORK or TCP_NODELAY. */
int nt_coalesce_setsockopt(struct nt_conn *c, int fd, int opt,
                           const void *val, socklen_t len);

/* deadline.c, timer thread: coalesce_delay. Flushes when due; returns
 * when the timer should look again (0: nothing to do). */
nt_ns nt_coalesce_due(struct nt_conn *c, uint32_t gen, nt_ns now);
/* deadline.c, timer thread: a deadline just expired the connection:
 * whatever is still buffered cannot be delivered. */
void nt_coalesce_expired(struct nt_conn *c, int fd);

#endif
