/* The I/O engine every read/write-family hook goes through once it has
 * found a governed connection. A hook describes its call as a struct
 * nt_op: an `attempt` function that performs it once with given MSG_*
 * flags, starting `skip` bytes in (for resuming a partial blocking write).
 */
#ifndef NT_IO_H
#define NT_IO_H

#include <sys/types.h>
#include <sys/uio.h>

#include "core/conn.h"
#include "deadline/deadline.h"

struct nt_op;
typedef ssize_t (*nt_attempt_fn)(int fd, const struct nt_op *op, int flags,
                                 size_t skip);

struct nt_op {
    const char *name;      /* "read", "sendmsg", ... (event `op`) */
    int dir;               /* NT_IN / NT_OUT */
    int flags;             /* the program's MSG_* flags */
    int flagless;          /* sendfile/splice: no MSG_* flags possible */
    size_t total;          /* bytes the call asks for */
    nt_attempt_fn attempt;
    const void *args;      /* the hook's own argument block */
    void *caller;          /* the program's call site */
    /* coalescing: the bytes of an output call that could be buffered
     * (no address, no control data); NULL otherwise */
    const struct iovec *iov;
    int iovcnt;
};

/* What a hook calls when fd is not known to pass through: looks the fd up
 * (initialising, classifying) and either governs the call or makes it as
 * the program asked. */
ssize_t nt_io_call(int fd, const struct nt_op *op);

/* A pending socket error with no input queued before it (dir NT_IN), or
 * any pending error (NT_OUT): what a call that moved bytes leaves for the
 * next call. */
int nt_io_error_pending(struct nt_conn *c, int fd, int dir);

/* Wait, as a blocking call of the program's would, until the socket is
 * ready in `dir` or the call's deadline (from `start`) passes: 1 ready,
 * 0 deadline passed (event logged, errno set), -1 errno (EINTR: also on
 * an SA_RESTART signal once the call has `moved` bytes of the program's,
 * as the kernel returns the partial count then). For coalescing's
 * flushes. */
int nt_io_wait(struct nt_conn *c, int fd, int dir, nt_ns start,
               size_t moved, const char *op, void *caller);

/* Total length of an iovec array. */
size_t nt_iov_total(const struct iovec *iov, int n);
/* Copy of iov (at most NT_IOV_MAX entries) with the first `skip` bytes
 * removed; returns the new count. */
#define NT_IOV_MAX 1024
int nt_iov_skip(const struct iovec *iov, int n, size_t skip,
                struct iovec *out);

#endif
