/* Write coalescing: the pending set (the connections with something to
 * flush) and the flushes that walk it: waits, exit/exec/fork
 * (nt_coalesce_flush_all), close_range/closefrom. Design notes at the top
 * of coalesce.c.
 *
 * The set is a small array of (connection, gen, buffer) under its own spin lock,
 * so a wait finds them without scanning the fd table, and
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
#include <pthread.h>
#include <string.h>
#include <sys/stat.h>

#include "coalesce/coalesce_internal.h"
#include "audit/event.h"
#include "core/process.h"
#include "core/real.h"
#include "core/sandbox.h"

unsigned nt_coalesce_pending;

/* ---- the pending set -------------------------------------------------- */

struct co_pend {
    struct nt_conn *c;
    uint32_t gen;        /* the connection's generation when it was added */
    struct co_buf *buf;  /* buffer mode: its buffer; cork mode: NULL */
};

static struct co_pend *pend;
static size_t npend, pend_cap;
static uint64_t pend_lock;

static int pend_grow(void)
{
    return nt_mmap_grow((void **)&pend, &pend_cap, sizeof *pend, 1024);
}

static void publish_count(void)
{
    __atomic_store_n(&nt_coalesce_pending, (unsigned)npend, __ATOMIC_RELAXED);
}

/* Slot locked. */
int co_pend_add(struct nt_conn *c, int fd, struct co_buf *b)
{
    int ok = 0;
    co_spin_lock(&pend_lock);
    if (npend < pend_cap || pend_grow() == 0) {
        pend[npend] = (struct co_pend){ c, c->gen, b };
        c->co_pidx = (uint32_t)++npend;
        publish_count();
        ok = 1;
    }
    co_spin_unlock(&pend_lock);
    return ok;
}

/* pend_lock held. */
static void pend_remove_at(size_t i)
{
    struct co_pend last = pend[--npend];
    if (i < npend) {
        pend[i] = last;
        struct nt_conn *m = last.c;
        if (m->gen == last.gen && m->co_pidx == npend + 1)
            m->co_pidx = (uint32_t)i + 1;
    }
    publish_count();
}

/* Slot locked: the connection leaves the set. Returns the buffer its
 * entry held, for the caller to free: a buffer is freed only by whoever
 * removes its entry (reap_stale for a slot closed behind our back). */
struct co_buf *co_pend_del(struct nt_conn *c, int fd)
{
    struct co_buf *b = NULL;
    if (!c->co_pidx)
        return NULL;
    co_spin_lock(&pend_lock);
    size_t i = c->co_pidx - 1;
    if (i < npend && pend[i].c == c && pend[i].gen == c->gen) {
        b = pend[i].buf;
        pend_remove_at(i);
    }
    c->co_pidx = 0;
    co_spin_unlock(&pend_lock);
    return b;
}

/* An entry whose fd was closed or reused behind the library's back. */
static void reap_stale(const struct co_pend *e, const char *op,
                       void *caller)
{
    struct co_buf *b = NULL;
    co_spin_lock(&pend_lock);
    for (size_t i = 0; i < npend; i++) {
        if (pend[i].c == e->c && pend[i].gen == e->gen &&
            pend[i].buf == e->buf) {
            b = pend[i].buf;
            pend_remove_at(i);
            break;
        }
    }
    co_spin_unlock(&pend_lock);
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
 * lo <= fd <= hi. Walks the set from the end in batches: removals move
 * only the last entry, so every entry present at the start is visited. */
static void flush_pending(int how, int closing, const char *op, void *caller,
                          unsigned lo, unsigned hi)
{
    enum { BATCH = 64 };
    struct co_pend batch[BATCH];
    if (co_spin)
        return; /* a signal handler: this thread holds the set's lock */
    co_spin_lock(&pend_lock);
    size_t end = npend;
    co_spin_unlock(&pend_lock);
    while (end > 0) {
        co_spin_lock(&pend_lock);
        if (end > npend)
            end = npend;
        size_t first = end > BATCH ? end - BATCH : 0;
        size_t n = end - first;
        memcpy(batch, pend + first, n * sizeof *batch);
        co_spin_unlock(&pend_lock);
        end = first;
        for (size_t i = 0; i < n; i++) {
            const struct co_pend *e = &batch[i];
            struct nt_conn *c = e->c;
            int fd = c->fd;
            if ((unsigned)fd < lo || (unsigned)fd > hi)
                continue;
            struct co_call x;
            if (!co_enter(&x, c, fd, op, caller))
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
    co_spin_lock(&pend_lock);
    co_pool_lock_all();
}

void nt_coalesce_atfork_parent(void)
{
    if (!fork_locked)
        return;
    co_pool_unlock_all();
    co_spin_unlock(&pend_lock);
}

void nt_coalesce_atfork_child(void)
{
    co_pool_reset_locks();
    pend_lock = 0;
    co_spin = 0;
    /* The parent's duplicates of closed sockets (see "Closing" in
     * coalesce_flush.c) are its own: held here they would delay the FIN
     * until this child exits. Their bytes are the parent's to send. */
    for (size_t i = npend; i-- > 0;) {
        struct nt_conn *c = pend[i].c;
        if (c->gen != pend[i].gen || !(c->co_flags & CO_ORPHAN))
            continue;
        c->co_flags &= (uint8_t)~CO_ORPHAN;
        c->cbuf = NULL;
        c->co_pidx = 0;
        pend_remove_at(i);
        if (c->alias_fd >= 0)
            real.close(c->alias_fd);
        c->alias_fd = -1;
    }
}
