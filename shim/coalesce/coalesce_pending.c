/* Write coalescing: the pending set (the connections with something to
 * flush) and the flushes that walk it: waits, exit/exec/fork
 * (nt_coalesce_flush_all), close_range/closefrom. Design notes at the top
 * of coalesce.c.
 *
 * The set is small arrays of (connection, gen, buffer), sharded by
 * connection, each under its own spin lock, so a wait finds them without
 * scanning the fd table, and
 * nt_coalesce_pending keeps the no-pending check in front of a wait a
 * single load.
 *
 * Stale slots: flushes use sendmsg only, so an fd closed and reopened as
 * a non-socket behind the library's back gets ENOTSOCK, never the bytes
 * (the slot is then forgotten and the program's call made as it was);
 * entries whose slot generation changed are dropped and their bytes
 * reported lost (EBADF). syscall(SYS_close) goes through the close hook
 * (hooks/syscall.c), and a new buffer starts with a zero-length send that
 * fails with ENOTSOCK on a file. An inline close system call (no libc)
 * stays out of reach: what was buffered is then lost (flush_error), and
 * writes to a file opened under that number before the buffer's end can
 * still join the buffer.
 */
#include <poll.h>
#include <signal.h>
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

#include "coalesce/coalesce_internal.h"
#include "audit/event.h"
#include "core/process.h"
#include "core/real.h"
#include "core/sandbox.h"
#include "core/signals.h"

/* ---- the pending set -------------------------------------------------- */

struct co_pend {
    struct nt_conn *c;
    uint32_t gen;        /* the connection's generation when it was added */
    struct co_buf *buf;  /* buffer mode: its buffer; cork mode: NULL */
};

/* Sharded by connection (its pool index, fixed for the object's life), each
 * shard with its own spin lock on its own cache line: a buffer's start and
 * end lock only their connection's shard, so threads writing to different
 * connections do not meet on a lock (two connections share one only when
 * their indexes are equal modulo CO_PEND_SHARDS). nt_coalesce_pending is
 * the total, kept with atomic adds (no lock) for the waits' single load. */
#define CO_PEND_SHARDS 64

struct co_pend_shard {
    uint64_t lock;
    struct co_pend *pend;
    size_t n, cap;
} __attribute__((aligned(64)));

static struct co_pend_shard pshards[CO_PEND_SHARDS];

static struct co_pend_shard *shard_of(const struct nt_conn *c)
{
    return &pshards[c->idx & (CO_PEND_SHARDS - 1)];
}

/* Slot locked. */
int co_pend_add(struct nt_conn *c, int fd, struct co_buf *b)
{
    int ok = 0;
    struct co_pend_shard *sh = shard_of(c);
    co_spin_lock(&sh->lock);
    if (sh->n < sh->cap ||
        nt_mmap_grow((void **)&sh->pend, &sh->cap, sizeof *sh->pend, 64) == 0) {
        sh->pend[sh->n] = (struct co_pend){ c, c->gen, b };
        c->co_pidx = (uint32_t)++sh->n;
        __atomic_add_fetch(&nt_coalesce_pending, 1, __ATOMIC_RELAXED);
        ok = 1;
    }
    co_spin_unlock(&sh->lock);
    (void)fd;
    return ok;
}

/* The shard's lock held. */
static void pend_remove_at(struct co_pend_shard *sh, size_t i)
{
    struct co_pend last = sh->pend[--sh->n];
    if (i < sh->n) {
        sh->pend[i] = last;
        struct nt_conn *m = last.c;
        if (m->gen == last.gen && m->co_pidx == sh->n + 1)
            m->co_pidx = (uint32_t)i + 1;
    }
    __atomic_sub_fetch(&nt_coalesce_pending, 1, __ATOMIC_RELAXED);
}

/* Slot locked: the connection leaves the set. Returns the buffer its
 * entry held, for the caller to free: a buffer is freed only by whoever
 * removes its entry (reap_stale for a slot closed behind our back). */
struct co_buf *co_pend_del(struct nt_conn *c, int fd)
{
    struct co_buf *b = NULL;
    if (!c->co_pidx)
        return NULL;
    struct co_pend_shard *sh = shard_of(c);
    co_spin_lock(&sh->lock);
    size_t i = c->co_pidx - 1;
    if (i < sh->n && sh->pend[i].c == c && sh->pend[i].gen == c->gen) {
        b = sh->pend[i].buf;
        pend_remove_at(sh, i);
    }
    c->co_pidx = 0;
    co_spin_unlock(&sh->lock);
    (void)fd;
    return b;
}

/* An entry whose fd was closed or reused behind the library's back. */
static void reap_stale(const struct co_pend *e, const char *op,
                       void *caller)
{
    struct co_buf *b = NULL;
    struct co_pend_shard *sh = shard_of(e->c);
    co_spin_lock(&sh->lock);
    for (size_t i = 0; i < sh->n; i++) {
        if (sh->pend[i].c == e->c && sh->pend[i].gen == e->gen &&
            sh->pend[i].buf == e->buf) {
            b = sh->pend[i].buf;
            pend_remove_at(sh, i);
            break;
        }
    }
    co_spin_unlock(&sh->lock);
    if (!b)
        return;
    uint64_t lost = co_held(b);
    int ours = b->epoch == nt_fork_epoch;
    co_buf_put(b);
    if (ours && lost) {
        struct nt_event ev = { .kind = NT_EV_FLUSH_ERROR, .fd = -1,
                               .op = op, .err = EBADF, .lost_bytes = lost,
                               .caller = caller };
        nt_event_emit(&ev);
    }
}

#define CO_ALL_FDS 0u, 0xffffffffu

/* Flush (or on close: flush and release) every pending connection with
 * lo <= fd <= hi. Walks each shard from the end in batches: removals move
 * only the last entry, so every entry present at the start is visited. */
static void flush_shard(struct co_pend_shard *sh, int how, int closing,
                        const char *op, void *caller, unsigned lo,
                        unsigned hi)
{
    enum { BATCH = 64 };
    struct co_pend batch[BATCH];
    co_spin_lock(&sh->lock);
    size_t end = sh->n;
    co_spin_unlock(&sh->lock);
    while (end > 0) {
        co_spin_lock(&sh->lock);
        if (end > sh->n)
            end = sh->n;
        size_t first = end > BATCH ? end - BATCH : 0;
        size_t n = end - first;
        memcpy(batch, sh->pend + first, n * sizeof *batch);
        co_spin_unlock(&sh->lock);
        end = first;
        for (size_t i = 0; i < n; i++) {
            const struct co_pend *e = &batch[i];
            struct nt_conn *c = e->c;
            int fd = c->fd;
            if ((unsigned)fd < lo || (unsigned)fd > hi)
                continue;
            /* A wait (CO_TRY) passes over another thread's connection
             * while a thread is at work on it: its writer's own wait or
             * the timer flushes it, and threads waiting on their own
             * connections do not queue on each other's locks. What this
             * thread wrote is always flushed (a request/response exchange
             * never waits for its own request). */
            struct co_call x;
            int mine = __atomic_load_n(&c->co_writer, __ATOMIC_RELAXED) ==
                       (uint32_t)co_self_id();
            if (!(how == CO_TRY && !closing && !mine
                      ? co_enter_try(&x, c, fd, op, caller)
                      : co_enter(&x, c, fd, op, caller)))
                continue;
            /* stale: retired meanwhile (an orphan has no descriptor of
             * the program's but is live: see "Closing"); or, defensively,
             * an entry that is not the connection's state */
            if (c->gen != e->gen ||
                (!c->refs && !(c->co_flags & CO_ORPHAN)) ||
                (e->buf ? c->cbuf != e->buf
                        : !(c->co_flags & CO_CORKED))) {
                reap_stale(e, op, caller); /* under the slot lock: the slot
                                              cannot re-add that buffer */
                co_leave(&x);
                continue;
            }
            if (!co_busy_other(c)) {
                if (closing)
                    co_flush_closing(&x, 0);
                else
                    co_flush_deferred(&x, how);
            }
            co_leave(&x);
        }
    }
}

static void flush_pending(int how, int closing, const char *op, void *caller,
                          unsigned lo, unsigned hi)
{
    if (co_spin)
        return; /* a signal handler: this thread holds a shard's lock */
    for (int i = 0; i < CO_PEND_SHARDS; i++)
        if (__atomic_load_n(&pshards[i].n, __ATOMIC_RELAXED))
            flush_shard(&pshards[i], how, closing, op, caller, lo, hi);
}

void nt_coalesce_flush_for_wait(void)
{
    if (nt_in_lib)
        return; /* the library's own poll */
    flush_pending(CO_TRY, 0, "wait", __builtin_return_address(0),
                  CO_ALL_FDS);
}

void nt_coalesce_flush_for_read(int fd)
{
    if (nt_in_lib || nt_sandboxed_fast()) /* our own read; sandbox: */
        return;
    int saved = errno;
    struct pollfd p = { .fd = fd, .events = POLLIN };
    if (real.poll(&p, 1, 0) == 0) /* nothing to read: it would block */
        flush_pending(CO_TRY, 0, "wait", __builtin_return_address(0),
                      CO_ALL_FDS);
    errno = saved;
}

void nt_coalesce_flush_for_send(int fd)
{
    if (nt_in_lib || nt_sandboxed_fast()) /* our own write; sandbox: */
        return;
    int saved = errno;
    struct stat st;
    if (fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)))
        flush_pending(CO_TRY, 0, "wait", __builtin_return_address(0),
                      CO_ALL_FDS);
    errno = saved;
}

void nt_coalesce_flush_all(void)
{
    if (__atomic_load_n(&nt_coalesce_pending, __ATOMIC_RELAXED))
        flush_pending(CO_LINGER, 0, "flush", __builtin_return_address(0),
                      CO_ALL_FDS);
}

void nt_coalesce_before_sigpipe(void)
{
    if (!__atomic_load_n(&nt_coalesce_pending, __ATOMIC_RELAXED))
        return;
    int saved = errno;
    struct sigaction sa;
    sigset_t blocked;
    if (nt_signal_action(SIGPIPE, &sa) == 0 && sa.sa_handler == SIG_DFL &&
        !(sa.sa_flags & SA_SIGINFO) &&
        pthread_sigmask(SIG_BLOCK, NULL, &blocked) == 0 &&
        sigismember(&blocked, SIGPIPE) != 1)
        flush_pending(CO_LINGER, 0, "flush", __builtin_return_address(0),
                      CO_ALL_FDS);
    errno = saved;
}

void nt_coalesce_guard_sigpipe(int fd)
{
    int saved = errno;
    /* a reset or a shutdown peer answers at once (POLLHUP, POLLERR,
     * POLLRDHUP); a reset that arrives during the call is not covered */
    struct pollfd p = { .fd = fd, .events = POLLRDHUP };
    if (real.poll(&p, 1, 0) == 1 &&
        (p.revents & (POLLHUP | POLLERR | POLLRDHUP)))
        nt_coalesce_before_sigpipe();
    errno = saved;
}

/* ---- fork --------------------------------------------------------------- */

/* Called by core/process.c's fork handler, in the lock order of
 * deadline/timer.h. The pool and the pending set are consistent in a fork
 * child: no other thread is inside them when fork happens. */
static NT_TLS int fork_locked; /* prepare took the locks (parent side) */

void nt_coalesce_atfork_prepare(void)
{
    /* A fork from a signal handler that interrupted this thread inside
     * the set or the pool would wait for itself: go without (the child
     * may then see them half-updated, as it would the program's own). */
    fork_locked = !co_spin;
    if (!fork_locked)
        return;
    for (int i = 0; i < CO_PEND_SHARDS; i++)
        co_spin_lock(&pshards[i].lock);
    co_pool_lock_all();
}

void nt_coalesce_atfork_parent(void)
{
    co_forked = 1;
    if (!fork_locked)
        return;
    co_pool_unlock_all();
    for (int i = CO_PEND_SHARDS; i-- > 0;)
        co_spin_unlock(&pshards[i].lock);
}

void nt_coalesce_atfork_child(void)
{
    co_forked = 1;
    co_pool_reset_locks();
    for (int i = 0; i < CO_PEND_SHARDS; i++)
        pshards[i].lock = 0;
    co_spin = 0;
    /* The parent's duplicates of closed sockets (see "Closing" in
     * coalesce_flush.c) are its own: held here they would delay the FIN
     * until this child exits. Their bytes are the parent's to send. */
    for (int k = 0; k < CO_PEND_SHARDS; k++) {
        struct co_pend_shard *sh = &pshards[k];
        for (size_t i = sh->n; i-- > 0;) {
            struct nt_conn *c = sh->pend[i].c;
            if (c->gen != sh->pend[i].gen || !(c->co_flags & CO_ORPHAN))
                continue;
            c->co_flags &= (uint8_t)~CO_ORPHAN;
            c->cbuf = NULL;
            c->co_pidx = 0;
            pend_remove_at(sh, i);
            if (c->alias_fd >= 0)
                real.close(c->alias_fd);
            c->alias_fd = -1;
        }
    }
}
