/* Deadlines (shared/SPEC.md section 4).
 *
 * Two mechanisms share one set of per-connection clocks (struct nt_conn):
 * - a call of the program that blocks on a governed socket waits in
 *   nt_deadline_wait() at most until its own read/write deadline;
 * - every deadline that must fire by itself (idle, request, lifetime,
 *   connect, and read/write on non-blocking sockets waiting in an event
 *   loop) is filed with the timer thread (timer.c), which applies
 *   expire_action at the due time.
 * Clocks only ever move a connection's due time later on the fast path, so
 * the timer heap is touched only when a deadline is armed earlier.
 */
#ifndef NT_DEADLINE_H
#define NT_DEADLINE_H

#include "core/conn.h"

enum nt_deadline_kind {
    NT_DL_NONE = 0,
    NT_DL_CONNECT,
    NT_DL_READ,
    NT_DL_WRITE,
    NT_DL_IDLE,
    NT_DL_REQUEST,
    NT_DL_LIFETIME,
};
const char *nt_deadline_name(int kind);

enum nt_dir_io { NT_IN = 0, NT_OUT = 1 };

/* The connection is established (or accepted): arm idle and lifetime. */
void nt_deadline_open(struct nt_conn *c, int fd);
/* A non-blocking connect is in progress / a blocking one starts. */
void nt_deadline_connect_start(struct nt_conn *c, int fd);
/* The connect finished (either way); true if our deadline aborted it. */
int nt_deadline_connect_done(struct nt_conn *c);
/* A non-blocking connect may have finished: if so, stop its clock. */
void nt_deadline_connect_check(struct nt_conn *c, int fd);

/* Does a blocking call in direction `dir` need the library to control its
 * wait (a per-call deadline, or request boundaries to observe)? */
static inline int nt_deadline_controls(const struct nt_conn *c, int dir)
{
    unsigned own = 1u << (dir == NT_IN ? NT_DL_READ : NT_DL_WRITE);
    return (c->dl_active & (own | (1u << NT_DL_REQUEST))) != 0;
}
/* Bytes moved (n > 0) in direction dir: restart clocks, track exchanges. */
void nt_deadline_progress(struct nt_conn *c, int fd, int dir);
/* The call would block: the program is now waiting in direction dir.
 * For a non-blocking socket this arms the timer (event-loop waits). */
void nt_deadline_waiting(struct nt_conn *c, int fd, int dir);
/* The program waits for input on fd in poll/select: its read deadline
 * runs, as if a read had returned EAGAIN. */
void nt_deadline_polled_in(struct nt_conn *c, int fd);
/* Blocking call: wait until fd (the connection's socket; possibly a
 * private duplicate of the program's fd) is ready in `dir` or the call's
 * deadline (start + read/write timeout) passes. Returns 1 ready, 0 deadline passed
 * (event logged, errno set to timeout_errno), -1 with errno (EINTR when
 * the kernel would not have restarted the call). */
int nt_deadline_wait(struct nt_conn *c, int fd, int dir, nt_ns start,
                     const char *op, void *caller);
/* The connection was expired by a deadline: errno for the failing call. */
int nt_deadline_errno(const struct nt_conn *c);

/* Timer thread callback (timer.c): re-check and maybe fire. Returns the
 * next due time to refile under, or 0 to drop the entry. */
nt_ns nt_deadline_due(int fd, uint32_t gen, nt_ns now);

#endif
