/* Write coalescing: what its files share, and nothing the rest of the
 * shim needs (that is coalesce.h). coalesce.c decides per connection and
 * handles the program's calls; coalesce_flush.c sends what is held;
 * coalesce_pending.c keeps the set of connections with something to
 * flush; coalesce_pool.c has the buffers (pooled per shard of threads) and
 * the spin locks.
 * Design notes at the top of coalesce.c. */
#ifndef NT_COALESCE_INTERNAL_H
#define NT_COALESCE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "coalesce/coalesce.h"

/* co_flags */
#define CO_CORKED 0x01       /* cork mode: the kernel may hold MSG_MORE data */
#define CO_STUCK 0x02        /* the kernel refused buffered bytes (EAGAIN) */
#define CO_PROG_CORK 0x04    /* the program set TCP_CORK: pass through */
#define CO_PROG_NODELAY 0x08 /* the program set TCP_NODELAY (cork release) */
#define CO_SHARED 0x10       /* another writer shares the socket: stop */
#define CO_ORPHAN 0x20       /* the program closed it; the library's own
                                duplicate flushes what is left (close) */
_Static_assert(CO_ORPHAN == 0x20, "nt_coalesce_orphaned() in coalesce.h");
#define CO_PROG_LOWAT 0x40   /* the program set TCP_NOTSENT_LOWAT: the room
                                of a non-blocking buffer is unknown (0) */

#define CO_IOV 64                            /* program iovecs per sendmsg */

enum { CO_TRY, CO_BLOCK, CO_LINGER };

/* ---- thread identity and spin locks (coalesce_pool.c) ----------------- */

/* Spin locks (pool shards, pending set) this thread holds. */
extern NT_TLS int co_spin;
uint64_t co_self_id(void);     /* (fork epoch, thread) */
int co_id_live(uint64_t id);   /* an owner in this process */
void co_backoff(int round);
void co_spin_lock(uint64_t *l);
void co_spin_unlock(uint64_t *l);

/* ---- buffer pool (coalesce_pool.c) ------------------------------------ */

struct co_buf {
    size_t map;          /* bytes mapped */
    struct co_buf *next; /* free list */
    uint32_t cap;        /* data capacity: the connection's `coalesce` */
    uint32_t len, off;   /* data[off..len) is still to be sent */
    uint32_t epoch;      /* nt_fork_epoch of the process that filled it */
    uint32_t room;       /* bytes it may hold: what the kernel is sure to
                            take when it is flushed (non-blocking: the
                            send buffer's free space when it started) */
    uint32_t blocking;   /* started by a blocking write (room = cap): a
                            non-blocking write is not added to it */
    char data[];
};

/* The pool's shard locks, all held across fork (coalesce_pending.c). */
void co_pool_lock_all(void);
void co_pool_unlock_all(void);
void co_pool_reset_locks(void);
struct co_buf *co_buf_get(uint32_t cap); /* NULL: the pool cannot serve */
void co_buf_put(struct co_buf *b);

static inline size_t co_held(const struct co_buf *b)
{
    return b ? b->len - b->off : 0;
}

/* ---- the pending set (coalesce_pending.c) ----------------------------- */

/* Slot locked. 1: the connection joined the set; 0: no room for it. */
int co_pend_add(struct nt_conn *c, int fd, struct co_buf *b);
/* Slot locked: the connection leaves the set; returns the buffer its
 * entry held, for the caller to free. */
struct co_buf *co_pend_del(struct nt_conn *c, int fd);

/* ---- one call's work on a connection (coalesce_flush.c) --------------- */

struct co_call {
    struct nt_conn *c;
    int fd;
    uint32_t gen;
    int taken;           /* nt_conn_lock() result */
    int defer;           /* no program call to fail: remember errors */
    const char *op;
    void *caller;
    int lost_err;        /* flush_error to log once unlocked */
    int retire;          /* an orphan's buffer is gone: close its fd */
    uint64_t lost;
    nt_ns limit;         /* CO_LINGER: wait at most this long (0: default) */
};

/* Lock the slot for coalescing work; 0: not here (a signal handler). */
int co_enter(struct co_call *x, struct nt_conn *c, int fd, const char *op,
             void *caller);
int co_enter_try(struct co_call *x, struct nt_conn *c, int fd,
                 const char *op, void *caller);
void co_report_lost(const struct co_call *x);

void co_retire(struct co_call *x);

static inline void co_leave(struct co_call *x)
{
    if (unlikely(x->retire))
        co_retire(x);
    nt_conn_unlock(x->c, x->taken);
    if (unlikely(x->lost_err))
        co_report_lost(x);
}

/* Another thread is sending with the slot unlocked. */
int co_busy_other(const struct nt_conn *c);
int co_wait_idle_slow(struct co_call *x);

static inline int co_wait_idle(struct co_call *x)
{
    if (likely(!__atomic_load_n(&x->c->co_busy, __ATOMIC_RELAXED)))
        return 1;
    return co_wait_idle_slow(x);
}

/* Flushing: see the definitions in coalesce_flush.c. */
void co_lose(struct co_call *x, int err);
ssize_t co_send(struct co_call *x, const struct iovec *iov, int iovcnt,
                size_t total, int how);
void co_release(struct co_call *x, int push);
void co_push(const struct nt_conn *c, int fd);
void co_uncork(int fd);
extern int co_forked;
int co_other_cork(const struct nt_conn *c, int fd);
int co_flush(struct co_call *x, int how);
int co_flush_deferred(struct co_call *x, int how);
void co_flush_closing(struct co_call *x, int may_orphan);
/* Single-write flushes in a row before a connection goes pass-through,
 * and the writes it then passes through before trying again. */
#define CO_SINGLE_MAX 8
#define CO_PASS_WRITES 4096
void co_note_flushed(struct nt_conn *c, unsigned writes);

#endif
