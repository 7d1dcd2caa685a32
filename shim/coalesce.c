/* Write coalescing (shared/SPEC.md section 6).
 *
 * Modes
 *   buffer: a plain output call (write, send, sendto without an address,
 *   writev, sendmsg without name or control data; flags at most
 *   MSG_NOSIGNAL) on a coalescing connection copies its bytes into the
 *   connection's buffer of `coalesce` bytes and returns their count. A call
 *   that does not fit sends the buffered bytes and its own in one sendmsg
 *   (two or more iovecs); a call of `coalesce` bytes or more with nothing
 *   buffered goes straight to the kernel.
 *   cork: plain output calls go to the kernel at once with MSG_MORE, which
 *   keeps a partial segment back like TCP_CORK. A zero-length send does not
 *   release it (tcp_sendmsg pushes only when it copied bytes); setting
 *   TCP_NODELAY does, with TCP_NAGLE_PUSH, so no Nagle/delayed-ACK wait
 *   follows. The release is setsockopt(TCP_NODELAY, 1), then back to 0
 *   unless the program itself asked for TCP_NODELAY. Measured on loopback,
 *   2,000 8-byte sends per response (Nagle on), OutSegs per exchange:
 *   9 without MSG_MORE (and up to 48 ms Nagle stalls), 26 and 220 ms
 *   stalls with MSG_MORE and no release (the 200 ms cork ceiling), 26 with
 *   a zero-length send as the release, 2.5 with TCP_CORK 0 as the release
 *   (still subject to Nagle), 2 with the TCP_NODELAY release (the response
 *   and the next request). Unix stream sockets ignore MSG_MORE: cork mode
 *   leaves them alone.
 *
 * Flush points (both modes; in cork mode a flush is the release): the
 * buffer is full; coalesce_delay has passed since the first byte (the
 * timer thread, nt_coalesce_due); any input call on the connection; any
 * wait of the program's (poll/select/epoll, whatever the fds); shutdown,
 * close, close_range/closefrom, dup2/dup3 over the fd, dup of it; fork,
 * exec, posix_spawn, exit, _exit (nt_coalesce_flush_all); an output call
 * that cannot be coalesced (other flags such as MSG_OOB or MSG_MORE,
 * sendfile, splice, sendmmsg, control data); the program changing
 * TCP_CORK; dup or fdopen of the socket (and coalescing stops there).
 * Writes after the program's own shutdown(SHUT_WR) go straight through,
 * so their EPIPE is immediate; writes on an outbound socket that is not
 * yet connected too (the kernel's EAGAIN/ECONNREFUSED is the program's).
 *
 * Memory: buffers come from a pool of mmap'ed blocks with a spin-locked
 * free list; nothing here calls malloc (hooks may run in signal handlers
 * and vfork children). A buffer exists only while it holds bytes. If the
 * pool cannot serve (mmap fails), the call goes through directly, after
 * what was buffered: always correct, just not coalesced.
 *
 * Locking: the slot lock (nt_conn_lock) guards a connection's buffer and
 * flags and is held only for short work, never across a wait. When a send
 * must wait for room (a blocking socket, or a flush that must complete),
 * the thread marks the connection busy (co_busy), unlocks, polls, and locks
 * again; meanwhile other program threads wait for it to finish (order, and
 * no interleaving inside one call's bytes) and the timer and other
 * threads' waits leave the connection alone. The set of connections with
 * something to flush is a small array of (fd, gen, buffer) under its own
 * spin lock, so a wait finds them without scanning the fd table, and
 * nt_coalesce_pending keeps the no-pending check in front of a wait a
 * single load.
 *
 * Signal handlers: a handler's write on a coalescing socket is coalesced
 * like any other, unless it interrupted its own thread while that held the
 * connection's slot lock (a few instructions around a copy or a send) or
 * one of the global spin locks: then the state may be half-changed, and
 * the handler's call goes straight to the kernel, so its bytes can land
 * ahead of bytes buffered just before (the one ordering exception). A
 * handler that interrupts its thread's wait for room in a send is not
 * stopped by that thread's busy mark, just as a write from a handler gets
 * in between the parts of an interrupted blocking send in the kernel.
 * Waits and exits from such a handler skip what they cannot lock.
 *
 * Non-blocking sockets: flushes never block the program unless it has to
 * (close, shutdown, dup, fork, exec, exit, where a bounded wait follows:
 * write_timeout if set, else NT_CO_LINGER on a non-blocking socket). If the
 * kernel refuses buffered bytes (EAGAIN), they stay buffered (the program
 * was told they were written) and the connection is "stuck": its next
 * write retries the flush and fails with EAGAIN while the bytes are still
 * there, so the program sees back-pressure instead of an ever-growing
 * buffer; each wait retries it, and the timer retries it every 1 ms
 * backing off to 16 ms, so the bytes reach the peer even if the program
 * only waits for input. A blocking socket's flush is a blocking send of
 * everything, bounded by write_timeout like any blocking write.
 *
 * Errors: a flush that fails for good (EPIPE, ECONNRESET, a deadline that
 * expired the connection or a write_timeout) drops the buffered bytes,
 * logs flush_error with lost_bytes and the errno, and makes the program's
 * next call on the socket fail with that errno once: a write without
 * MSG_NOSIGNAL gets SIGPIPE for EPIPE, as from the kernel (unless
 * sigpipe = ignore). If the failing flush is part of the program's own
 * call (a write that did not fit, a read), that call fails instead.
 *
 * Sharing: once another descriptor refers to the socket (dup, dup2,
 * F_DUPFD) or the program wraps it in a FILE* (fdopen: stdio writes with
 * glibc's internal calls, which no hook sees), the connection is flushed
 * and coalescing stops on both, so no byte written through one can
 * overtake bytes buffered for the other. Across fork both processes keep coalescing their own
 * writes: the fork is a flush point, and bytes a fork child would inherit
 * in a buffer (only if the pre-fork flush could not complete) belong to the
 * parent: the child drops them (buffers carry the fork epoch), so nothing
 * is sent twice. Ordering between processes writing to one socket is
 * guaranteed at the flush points only (fork, exit, exec, waits).
 *
 * Stale slots: flushes use sendmsg only, so an fd closed and reopened as
 * a non-socket behind the library's back gets ENOTSOCK, never the bytes
 * (the slot is then forgotten and the program's call made as it was);
 * entries whose slot generation changed are dropped and their bytes
 * reported lost (EBADF). A raw close(2) followed by writes to a file
 * opened under the same number within one buffer's life can still put the
 * file's bytes into the socket's buffer: raw syscalls are out of reach.
 *
 * Limits: a program's bad buffer pointer crashes in the copy instead of
 * failing with EFAULT; SO_SNDTIMEO is not applied to flushes (the program
 * was told the bytes were written); a flush at exit or close on a blocking
 * socket with no write_timeout waits as long as a blocking write would.
 */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include "coalesce.h"
#include "deadline.h"
#include "event.h"
#include "io.h"
#include "process.h"
#include "real.h"
#include "timer.h"

/* co_flags */
#define CO_CORKED 0x01       /* cork mode: the kernel may hold MSG_MORE data */
#define CO_STUCK 0x02        /* the kernel refused buffered bytes (EAGAIN) */
#define CO_PROG_CORK 0x04    /* the program set TCP_CORK: pass through */
#define CO_PROG_NODELAY 0x08 /* the program set TCP_NODELAY (cork release) */
#define CO_SHARED 0x10       /* another writer shares the socket: stop */

#define CO_IOV 64                            /* program iovecs per sendmsg */
#define NT_CO_LINGER (5 * 1000000000LL)      /* see "Non-blocking sockets" */
#define CO_RETRY_MIN (1000000LL)             /* timer retry of a stuck flush */
#define CO_RETRY_SHIFT_MAX 4                 /* ... backing off to 16 ms */

enum { CO_TRY, CO_BLOCK, CO_LINGER };

unsigned nt_coalesce_pending;

/* ---- thread identity and spin locks ---------------------------------- */

/* Global spin locks this thread holds: a signal handler that lands while
 * one is held must not take it again (it would spin forever). */
static NT_TLS int co_spin;
static NT_TLS char co_anchor; /* its address names the thread */

/* (fork epoch, thread): owners from before a fork are not owners. */
static uint64_t self_id(void)
{
    return ((uint64_t)(nt_fork_epoch & 0xffff) << 48) |
           ((uintptr_t)&co_anchor & 0xffffffffffffULL);
}

static int id_live(uint64_t id)
{
    return id && (id >> 48) == (nt_fork_epoch & 0xffff);
}

static void backoff(int round)
{
    if (round < 16) {
        sched_yield();
        return;
    }
    int shift = round - 16 < 5 ? round - 16 : 5;
    struct timespec ts = { 0, 32000L << shift }; /* 32 us .. 1 ms */
    nanosleep(&ts, NULL);
}

/* Global spin locks (pool, pending set): held for a few instructions;
 * enter() keeps a signal handler of the holding thread away (co_spin). */
static void spin_lock(uint64_t *l)
{
    uint64_t me = self_id();
    co_spin++;
    for (int round = 0;; round++) {
        uint64_t cur = __atomic_load_n(l, __ATOMIC_RELAXED);
        if (!id_live(cur) &&
            __atomic_compare_exchange_n(l, &cur, me, 0, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED))
            return;
        if (round > 64)
            backoff(round - 64);
    }
}

static void spin_unlock(uint64_t *l)
{
    __atomic_store_n(l, 0, __ATOMIC_RELEASE);
    co_spin--;
}

/* ---- buffer pool ------------------------------------------------------ */

struct co_buf {
    size_t map;          /* bytes mapped */
    struct co_buf *next; /* free list */
    uint32_t cap;        /* data capacity: the connection's `coalesce` */
    uint32_t len, off;   /* data[off..len) is still to be sent */
    uint32_t epoch;      /* nt_fork_epoch of the process that filled it */
    char data[];
};

#define CO_POOL_SIZES 8          /* distinct buffer sizes kept */
#define CO_POOL_KEEP (4u << 20)  /* free bytes kept per size */

static struct {
    size_t map;
    struct co_buf *head;
    size_t bytes;
} pool[CO_POOL_SIZES];
static uint64_t pool_lock;

static size_t map_size(uint32_t cap)
{
    size_t page = 4096;
    return (offsetof(struct co_buf, data) + cap + page - 1) & ~(page - 1);
}

static struct co_buf *buf_get(uint32_t cap)
{
    size_t map = map_size(cap);
    struct co_buf *b = NULL;
    spin_lock(&pool_lock);
    for (int i = 0; i < CO_POOL_SIZES; i++) {
        if (pool[i].map == map && pool[i].head) {
            b = pool[i].head;
            pool[i].head = b->next;
            pool[i].bytes -= map;
            break;
        }
    }
    spin_unlock(&pool_lock);
    if (!b) {
        void *m = mmap(NULL, map, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        b = m;
        b->map = map;
    }
    b->next = NULL;
    b->cap = cap;
    b->len = b->off = 0;
    b->epoch = nt_fork_epoch;
    return b;
}

static void buf_put(struct co_buf *b)
{
    spin_lock(&pool_lock);
    int slot = -1;
    for (int i = 0; i < CO_POOL_SIZES && slot < 0; i++)
        if (pool[i].map == b->map || pool[i].map == 0)
            slot = i;
    if (slot >= 0 && pool[slot].bytes + b->map <= CO_POOL_KEEP) {
        pool[slot].map = b->map;
        b->next = pool[slot].head;
        pool[slot].head = b;
        pool[slot].bytes += b->map;
        b = NULL;
    }
    spin_unlock(&pool_lock);
    if (b)
        munmap(b, b->map);
}

static size_t held(const struct co_buf *b)
{
    return b ? b->len - b->off : 0;
}

/* ---- the pending set -------------------------------------------------- */

struct co_pend {
    int fd;
    uint32_t gen;        /* the slot's generation when it was added */
    struct co_buf *buf;  /* buffer mode: its buffer; cork mode: NULL */
};

static struct co_pend *pend;
static size_t npend, pend_cap;
static uint64_t pend_lock;

static int pend_grow(void)
{
    size_t ncap = pend_cap ? pend_cap * 2 : 1024;
    void *m = pend_cap ? mremap(pend, pend_cap * sizeof *pend,
                                ncap * sizeof *pend, MREMAP_MAYMOVE)
                       : mmap(NULL, ncap * sizeof *pend,
                              PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return -1;
    pend = m;
    pend_cap = ncap;
    return 0;
}

static void publish_count(void)
{
    __atomic_store_n(&nt_coalesce_pending, (unsigned)npend, __ATOMIC_RELAXED);
}

/* Slot locked. */
static int pend_add(struct nt_conn *c, int fd, struct co_buf *b)
{
    int ok = 0;
    spin_lock(&pend_lock);
    if (npend < pend_cap || pend_grow() == 0) {
        pend[npend] = (struct co_pend){ fd, c->gen, b };
        c->co_pidx = (uint32_t)++npend;
        publish_count();
        ok = 1;
    }
    spin_unlock(&pend_lock);
    return ok;
}

/* pend_lock held. */
static void pend_remove_at(size_t i)
{
    struct co_pend last = pend[--npend];
    if (i < npend) {
        pend[i] = last;
        struct nt_conn *m = nt_fd_conn(last.fd);
        if (m && m->gen == last.gen && m->co_pidx == npend + 1)
            m->co_pidx = (uint32_t)i + 1;
    }
    publish_count();
}

/* Slot locked: the connection leaves the set. Returns the buffer its
 * entry held, for the caller to free: a buffer is freed only by whoever
 * removes its entry (reap_stale for a slot closed behind our back). */
static struct co_buf *pend_del(struct nt_conn *c, int fd)
{
    struct co_buf *b = NULL;
    if (!c->co_pidx)
        return NULL;
    spin_lock(&pend_lock);
    size_t i = c->co_pidx - 1;
    if (i < npend && pend[i].fd == fd && pend[i].gen == c->gen) {
        b = pend[i].buf;
        pend_remove_at(i);
    }
    c->co_pidx = 0;
    spin_unlock(&pend_lock);
    return b;
}

/* ---- one call's work on a connection ---------------------------------- */

struct co_call {
    struct nt_conn *c;
    int fd;
    uint32_t gen;
    int taken;           /* nt_conn_lock() result */
    int defer;           /* no program call to fail: remember errors */
    const char *op;
    void *caller;
    int lost_err;        /* flush_error to log once unlocked */
    uint64_t lost;
};

static void release_buf(struct co_call *x);

/* Lock the slot for coalescing work. 0: not here: a signal handler
 * interrupted this thread while it held the slot (inside this file, or in
 * close) or a global spin lock; the caller does without (see "Signal
 * handlers" above). */
static int enter(struct co_call *x, struct nt_conn *c, int fd,
                 const char *op, void *caller)
{
    if (co_spin)
        return 0;
    *x = (struct co_call){ .c = c, .fd = fd, .op = op, .caller = caller };
    x->taken = nt_conn_lock(c);
    if (!x->taken)
        return 0;
    x->gen = c->gen;
    struct co_buf *b = c->cbuf;
    if (b && b->epoch != nt_fork_epoch) {
        /* A fork child: these bytes are the parent's to send. */
        release_buf(x);
    }
    return 1;
}

static void report_lost(const struct co_call *x)
{
    struct nt_event ev = {
        .kind = NT_EV_FLUSH_ERROR, .fd = x->fd, .op = x->op, .conn = x->c,
        .err = x->lost_err, .lost_bytes = x->lost, .caller = x->caller,
    };
    nt_event_emit(&ev);
}

static inline void leave(struct co_call *x)
{
    nt_conn_unlock(x->c, x->taken);
    if (unlikely(x->lost_err))
        report_lost(x);
}

/* Another thread is sending with the slot unlocked. (This thread's own
 * mark means a signal handler interrupted that send: the handler goes on,
 * as a write from a handler interrupts a blocking send in the kernel.) */
static int busy_other(const struct nt_conn *c)
{
    uint64_t b = __atomic_load_n(&c->co_busy, __ATOMIC_RELAXED);
    return id_live(b) && b != self_id();
}

/* Wait while another thread sends on the connection. 0: the slot was
 * closed or reused meanwhile. */
static int wait_idle_slow(struct co_call *x)
{
    for (int round = 0; busy_other(x->c); round++) {
        nt_conn_unlock(x->c, 1);
        backoff(round);
        nt_conn_lock(x->c);
        if (x->c->gen != x->gen)
            return 0;
    }
    return 1;
}

static inline int wait_idle(struct co_call *x)
{
    if (likely(!__atomic_load_n(&x->c->co_busy, __ATOMIC_RELAXED)))
        return 1;
    return wait_idle_slow(x);
}

/* The buffer is empty, or its bytes are lost: give it back. */
static void release_buf(struct co_call *x)
{
    struct nt_conn *c = x->c;
    struct co_buf *b = pend_del(c, x->fd);
    c->cbuf = NULL;
    c->clen = 0;
    c->co_flags &= (uint8_t)~CO_STUCK;
    c->t_cflush = 0;
    c->co_retry = 0;
    if (b)
        buf_put(b);
}

/* A flush failed for good: the buffered bytes cannot be delivered. */
static void lose(struct co_call *x, int err)
{
    struct nt_conn *c = x->c;
    uint64_t n = held(c->cbuf);
    if (n) {
        x->lost_err = err;
        x->lost += n;
    }
    release_buf(x);
    if (err == ECONNRESET)
        c->peer_closed = 1;
    if (err == ENOTSOCK || err == EBADF) {
        /* closed (and reopened) behind our back: those bytes cannot be
         * delivered, and the descriptor is no longer this connection */
        nt_fd_forget(x->fd);
    } else if (x->defer && n) {
        c->flush_err = err;
    }
}

static void sent(struct co_call *x, size_t n)
{
    x->c->bytes_out += n;
    if (x->c->dl_active)
        nt_deadline_progress(x->c, x->fd, NT_OUT);
}

/* A non-blocking socket (or no write_timeout) must still end a wait that
 * cannot be avoided (close, fork, exit): see "Non-blocking sockets". */
static int linger_wait(struct nt_conn *c, int fd, nt_ns start)
{
    nt_ns limit = c->set && c->set->write_timeout > 0 ? c->set->write_timeout
                : c->nonblock ? NT_CO_LINGER : 0;
    struct pollfd p = { .fd = fd, .events = POLLOUT };
    for (;;) {
        struct timespec ts, *tsp = NULL;
        if (limit) {
            nt_ns left = start + limit - nt_now();
            if (left <= 0) {
                errno = ETIMEDOUT;
                return 0;
            }
            ts.tv_sec = left / 1000000000;
            ts.tv_nsec = left % 1000000000;
            tsp = &ts;
        }
        int r = real.ppoll(&p, 1, tsp, NULL);
        if (r > 0 || (r < 0 && errno != EINTR))
            return 1; /* ready, or let the send report the problem */
    }
}

/* Wait for room with the slot unlocked and the connection marked busy.
 * 1 ready; 0 deadline passed (errno says which); -1 EINTR that the
 * kernel would not have restarted; -2 the fd was closed meanwhile. */
static int wait_room(struct co_call *x, int how, nt_ns start)
{
    struct nt_conn *c = x->c;
    int w;
    uint64_t prev = c->co_busy; /* a handler's send keeps its thread's mark */
    __atomic_store_n(&c->co_busy, self_id(), __ATOMIC_RELAXED);
    nt_conn_unlock(c, 1);
    if (how == CO_BLOCK) {
        w = nt_deadline_wait(c, x->fd, NT_OUT, start, x->op, x->caller);
    } else {
        w = linger_wait(c, x->fd, start);
    }
    int e = errno;
    nt_conn_lock(c);
    __atomic_store_n(&c->co_busy, prev, __ATOMIC_RELAXED);
    if (c->gen != x->gen) {
        errno = EBADF;
        return -2;
    }
    errno = e;
    return w;
}

/* Send the buffered bytes, then iov (the program's own; may be empty), in
 * order, in as few sendmsg calls as the kernel allows. Slot locked on entry
 * and return. Returns the bytes of iov sent (>= 0), the buffer then being
 * empty; or -1 with errno: EAGAIN (CO_TRY: the kernel has no room; bytes
 * kept, connection stuck), EINTR (kept), EBADF (closed meanwhile: nothing
 * touched), or a hard error (the buffered bytes were lost). */
static ssize_t co_send(struct co_call *x, const struct iovec *iov,
                       int iovcnt, size_t total, int how)
{
    struct nt_conn *c = x->c;
    size_t done = 0;
    nt_ns start = 0;
    for (;;) {
        struct co_buf *b = c->cbuf;
        size_t have = held(b);
        if (!have && done == total)
            return (ssize_t)done;
        int err = 0;
        if (c->expired) {
            err = nt_deadline_errno(c);
        } else {
            struct iovec v[CO_IOV + 1]; /* iovcnt <= CO_IOV (plain()) */
            int n = 0;
            if (have)
                v[n++] = (struct iovec){ b->data + b->off, have };
            if (iovcnt > 0)
                n += nt_iov_skip(iov, iovcnt, done, v + n);
            size_t want = nt_iov_total(v, n);
            struct msghdr m = { .msg_iov = v, .msg_iovlen = (size_t)n };
            ssize_t r = real.sendmsg(x->fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (r > 0) {
                sent(x, (size_t)r);
                size_t from_buf = (size_t)r < have ? (size_t)r : have;
                if (from_buf) {
                    b->off += (uint32_t)from_buf;
                    c->clen = (uint32_t)held(b);
                    if (b->off == b->len)
                        release_buf(x);
                }
                done += (size_t)r - from_buf;
                if ((size_t)r == want)
                    continue;
                /* a short send: the kernel is full, as EAGAIN would say */
            } else if (r < 0 && errno == EINTR) {
                continue;
            } else if (r < 0 && errno != EAGAIN) {
                err = errno;
            }
        }
        if (!err) {
            /* no room */
            if (c->cbuf)
                c->co_flags |= CO_STUCK;
            if (how == CO_TRY) {
                if (c->cbuf) {
                    errno = EAGAIN;
                    return -1;
                }
                return (ssize_t)done;
            }
            if (!start)
                start = nt_now();
            int w = wait_room(x, how, start);
            if (w == -2)
                return -1;
            if (w > 0)
                continue;
            if (w < 0) { /* EINTR: a blocking send would return */
                if (c->cbuf || !done)
                    return -1;
                return (ssize_t)done;
            }
            err = errno; /* the deadline passed */
        }
        if (!c->cbuf && done)
            return (ssize_t)done; /* as the kernel: the error comes next */
        lose(x, err);
        errno = err;
        return -1;
    }
}

/* ---- cork mode -------------------------------------------------------- */

/* Push whatever MSG_MORE held back (see the top of this file). */
static void release(struct co_call *x, int push)
{
    struct nt_conn *c = x->c;
    if (!(c->co_flags & CO_CORKED))
        return;
    c->co_flags &= (uint8_t)~CO_CORKED;
    c->t_cflush = 0;
    pend_del(c, x->fd);
    if (!push || (c->co_flags & CO_PROG_CORK))
        return; /* close pushes by itself; the program's cork is its own */
    int one = 1, zero = 0, saved = errno;
    real.setsockopt(x->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!(c->co_flags & CO_PROG_NODELAY))
        real.setsockopt(x->fd, IPPROTO_TCP, TCP_NODELAY, &zero, sizeof zero);
    errno = saved;
}

/* ---- flushing ---------------------------------------------------------- */

/* Whatever the connection holds goes out (cork: is released). 0, or -1
 * with errno as co_send. */
static int flush(struct co_call *x, int how)
{
    if (x->c->co_mode == NT_CO_CORK) {
        release(x, 1);
        return 0;
    }
    if (!x->c->cbuf)
        return 0;
    return co_send(x, NULL, 0, 0, how) < 0 ? -1 : 0;
}

/* A flush no program call on this connection is waiting for (a wait, the
 * timer, close, fork, ...): a failure is remembered for its next call.
 * Returns 0 or the failure's errno; errno itself is left alone. */
static int flush_deferred(struct co_call *x, int how)
{
    x->defer = 1;
    int saved = errno;
    int e = flush(x, how) < 0 ? errno : 0;
    errno = saved;
    return e;
}

/* The fd goes away: nothing may stay buffered for it. */
static void flush_closing(struct co_call *x)
{
    struct nt_conn *c = x->c;
    int e;
    if (c->co_mode == NT_CO_CORK) {
        release(x, 0); /* close pushes whatever is held */
        return;
    }
    e = flush_deferred(x, CO_LINGER);
    if (c->gen == x->gen) {
        if (c->cbuf)
            lose(x, e ? e : EIO);
        c->flush_err = 0;
    }
}

static nt_ns retry_interval(struct nt_conn *c)
{
    int n = c->co_retry < CO_RETRY_SHIFT_MAX ? c->co_retry
                                             : CO_RETRY_SHIFT_MAX;
    if (c->co_retry < 255)
        c->co_retry++;
    return CO_RETRY_MIN << n;
}

/* The first byte is held: the timer flushes it within coalesce_delay. */
static void arm_delay(struct co_call *x)
{
    nt_ns delay = x->c->set->coalesce_delay;
    x->c->t_cflush = nt_now() + (delay > 0 ? delay : 0);
    x->c->co_retry = 0;
    nt_timer_arm(x->c, x->fd, x->c->t_cflush);
}

/* An entry whose fd was closed or reused behind the library's back. */
static void reap_stale(const struct co_pend *e, const char *op,
                       void *caller)
{
    struct co_buf *b = NULL;
    spin_lock(&pend_lock);
    for (size_t i = 0; i < npend; i++) {
        if (pend[i].fd == e->fd && pend[i].gen == e->gen &&
            pend[i].buf == e->buf) {
            b = pend[i].buf;
            pend_remove_at(i);
            break;
        }
    }
    spin_unlock(&pend_lock);
    if (!b)
        return;
    uint64_t lost = held(b);
    int ours = b->epoch == nt_fork_epoch;
    buf_put(b);
    if (ours && lost) {
        struct nt_event ev = { .kind = NT_EV_FLUSH_ERROR, .fd = e->fd,
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
    spin_lock(&pend_lock);
    size_t end = npend;
    spin_unlock(&pend_lock);
    while (end > 0) {
        spin_lock(&pend_lock);
        if (end > npend)
            end = npend;
        size_t first = end > BATCH ? end - BATCH : 0;
        size_t n = end - first;
        memcpy(batch, pend + first, n * sizeof *batch);
        spin_unlock(&pend_lock);
        end = first;
        for (size_t i = 0; i < n; i++) {
            const struct co_pend *e = &batch[i];
            if ((unsigned)e->fd < lo || (unsigned)e->fd > hi)
                continue;
            struct nt_conn *c = nt_fd_conn(e->fd);
            struct co_call x;
            if (!c || !enter(&x, c, e->fd, op, caller))
                continue;
            /* stale: the fd was closed (or reused) behind our back; or,
             * defensively, an entry that is not the connection's state */
            if (c->gen != e->gen || nt_fd_kind(e->fd) != NT_FD_CONN ||
                (e->buf ? c->cbuf != e->buf
                        : !(c->co_flags & CO_CORKED))) {
                reap_stale(e, op, caller); /* under the slot lock: the slot
                                              cannot re-add that buffer */
                leave(&x);
                continue;
            }
            if (!busy_other(c)) {
                if (closing)
                    flush_closing(&x);
                else
                    flush_deferred(&x, how);
            }
            leave(&x);
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

void nt_coalesce_flush_all(void)
{
    if (__atomic_load_n(&nt_coalesce_pending, __ATOMIC_RELAXED))
        flush_pending(CO_LINGER, 0, "flush", __builtin_return_address(0),
                      CO_ALL_FDS);
}

void nt_coalesce_close_range(unsigned lo, unsigned hi)
{
    if (__atomic_load_n(&nt_coalesce_pending, __ATOMIC_RELAXED))
        flush_pending(CO_LINGER, 1, "close", __builtin_return_address(0),
                      lo, hi);
}

void nt_coalesce_close(struct nt_conn *c, int fd, int how)
{
    struct co_call x;
    if (c->co_mode <= NT_CO_OFF && !c->cbuf && !c->co_pidx)
        return;
    int saved = errno;
    if (!enter(&x, c, fd, how < 0 ? "close" : "shutdown",
               __builtin_return_address(0))) {
        errno = saved;
        return;
    }
    /* Another thread is sending: it finds the fd gone and stops there. */
    if (!busy_other(c)) {
        if (how < 0)
            flush_closing(&x);
        else
            flush_deferred(&x, CO_LINGER);
    }
    leave(&x);
    errno = saved;
}

/* ---- deciding, and the calls of the program ---------------------------- */

static int tcp_opt(int fd, int opt)
{
    int v = 0;
    socklen_t len = sizeof v;
    return real.getsockopt(fd, IPPROTO_TCP, opt, &v, &len) == 0 && v;
}

static void decide(struct nt_conn *c, int fd)
{
    const struct nt_settings *s = c->set;
    uint8_t mode = NT_CO_OFF, flags = 0;
    int tcp = c->family == AF_INET || c->family == AF_INET6;
    if (s && s->coalesce > 0 && !c->dup_shared) {
        if (s->coalesce_mode == NT_COALESCE_CORK)
            mode = tcp ? NT_CO_CORK : NT_CO_OFF;
        else
            mode = NT_CO_BUFFER;
    }
    if (mode == NT_CO_OFF) {
        /* the common case: nothing to set up, and from now on nt_io()'s
         * single branch keeps the connection on the fast path */
        __atomic_store_n(&c->co_mode, NT_CO_OFF, __ATOMIC_RELAXED);
        return;
    }
    int saved = errno, ready = c->role != NT_ROLE_OUTBOUND;
    if (tcp) {
        if (tcp_opt(fd, TCP_CORK))
            flags |= CO_PROG_CORK;
        if (mode == NT_CO_CORK && tcp_opt(fd, TCP_NODELAY))
            flags |= CO_PROG_NODELAY; /* what the release restores */
    }
    if (!ready) {
        /* Bytes are buffered only on an established connection: before,
         * the kernel's answer (EAGAIN, ECONNREFUSED) is the program's. */
        struct sockaddr_storage ss;
        socklen_t len = sizeof ss;
        ready = getpeername(fd, (struct sockaddr *)&ss, &len) == 0;
    }
    errno = saved;
    int taken = nt_conn_lock(c);
    if (c->co_mode == NT_CO_UNDECIDED) {
        c->co_flags |= flags;
        c->co_ready = (uint8_t)ready;
        c->co_mode = mode;
    }
    nt_conn_unlock(c, taken);
}

static int shared(const struct nt_conn *c)
{
    return c->dup_shared || (c->co_flags & CO_SHARED);
}

/* May this output call be coalesced (its bytes copied and sent later)? */
static int plain(const struct nt_op *op)
{
    return op->iov && !op->flagless && !op->msgs && op->iovcnt >= 0 &&
           op->iovcnt <= CO_IOV && !(op->flags & ~MSG_NOSIGNAL);
}

/* The program's call fails with an error that belongs to it (a flush
 * inside it failed, or an earlier flush's error is reported now). */
static ssize_t fail_out(struct nt_conn *c, int fd, const struct nt_op *op,
                        int e)
{
    if (e == EPIPE || e == ECONNRESET) {
        nt_in_lib++;
        nt_event_io_error(c, fd, op->name, e, op->caller);
        nt_in_lib--;
    }
    if (e == EPIPE && !(op->flags & MSG_NOSIGNAL)) {
        const struct nt_global *g = nt_g.global;
        if (!g || !g->sigpipe_ignore)
            raise(SIGPIPE); /* what the kernel would have done */
    }
    errno = e;
    return -1;
}

static int take_err(struct nt_conn *c)
{
    int e = c->flush_err;
    c->flush_err = 0;
    return e;
}

/* A flush inside the program's own output call did not complete. */
static ssize_t out_failed(struct co_call *x, const struct nt_op *op)
{
    int e = errno;
    if (e == EAGAIN && x->c->dl_active)
        nt_deadline_waiting(x->c, x->fd, NT_OUT);
    leave(x);
    if (e == ENOTSOCK) /* not our socket any more: the call as made */
        return op->attempt(x->fd, op, op->flags, 0);
    if (e == EAGAIN || e == EINTR || e == EBADF) {
        errno = e;
        return -1;
    }
    return fail_out(x->c, x->fd, op, e);
}

static ssize_t input(struct nt_conn *c, int fd, const struct nt_op *op)
{
    struct co_call x;
    if ((c->cbuf || (c->co_flags & CO_CORKED) || c->flush_err) &&
        enter(&x, c, fd, op->name, op->caller)) {
        int e = 0;
        if (!wait_idle(&x)) {
            e = 0; /* closed meanwhile: the kernel says so */
        } else if (c->flush_err) {
            e = take_err(c);
        } else {
            int how = c->nonblock || (op->flags & MSG_DONTWAIT) ? CO_TRY
                                                                : CO_BLOCK;
            /* EAGAIN: read anyway; the bytes stay and are retried */
            if (flush(&x, how) < 0 && errno != EAGAIN && errno != EBADF)
                e = errno;
        }
        leave(&x);
        if (e) {
            errno = e;
            return -1;
        }
    }
    ssize_t r = nt_io_direct(c, fd, op);
    if (r > 0 && !c->co_ready)
        c->co_ready = 1;
    return r;
}

static ssize_t output_cork(struct nt_conn *c, int fd, const struct nt_op *op)
{
    int corkable = !op->flagless && !op->msgs && !shared(c) &&
                   !(op->flags & ~(MSG_NOSIGNAL | MSG_DONTWAIT | MSG_MORE));
    struct co_call x;
    if ((c->flush_err || !corkable || (c->co_flags & CO_PROG_CORK)) &&
        enter(&x, c, fd, op->name, op->caller)) {
        int e = c->flush_err ? take_err(c) : 0;
        if (!e && (!corkable || (c->co_flags & CO_PROG_CORK)))
            release(&x, 1); /* OOB, sendfile, ...: after what is held */
        if (shared(c) && !(c->co_flags & CO_CORKED))
            c->co_mode = NT_CO_OFF;
        leave(&x);
        if (e)
            return fail_out(c, fd, op, e);
    }
    if (!corkable || (c->co_flags & CO_PROG_CORK))
        return nt_io_direct(c, fd, op);
    struct nt_op more = *op;
    more.flags |= MSG_MORE;
    ssize_t r = nt_io_direct(c, fd, &more);
    if (r > 0 && !(c->co_flags & CO_CORKED) &&
        enter(&x, c, fd, op->name, op->caller)) {
        int e = errno;
        if (!(c->co_flags & CO_CORKED) && pend_add(c, fd, NULL)) {
            c->co_flags |= CO_CORKED;
            arm_delay(&x);
        } else if (!(c->co_flags & CO_CORKED)) {
            release(&x, 1); /* cannot track it: push now */
        }
        leave(&x);
        errno = e;
    }
    return r;
}

/* The bytes of a plain call go into the buffer. */
static inline void copy_in(struct co_buf *b, const struct nt_op *op)
{
    if (op->iovcnt == 1) { /* write, send */
        memcpy(b->data + b->len, op->iov[0].iov_base, op->iov[0].iov_len);
        b->len += (uint32_t)op->iov[0].iov_len;
        return;
    }
    for (int i = 0; i < op->iovcnt; i++) {
        memcpy(b->data + b->len, op->iov[i].iov_base, op->iov[i].iov_len);
        b->len += (uint32_t)op->iov[i].iov_len;
    }
}

static struct co_buf *start_buf(struct co_call *x, uint32_t cap)
{
    struct co_buf *b = buf_get(cap);
    if (!b)
        return NULL;
    if (!pend_add(x->c, x->fd, b)) {
        buf_put(b);
        return NULL;
    }
    x->c->cbuf = b;
    arm_delay(x);
    return b;
}

static ssize_t output_buffer(struct nt_conn *c, int fd,
                             const struct nt_op *op)
{
    struct co_call x;
    if (!enter(&x, c, fd, op->name, op->caller))
        return nt_io_direct(c, fd, op); /* signal handler: write through */
    if (!wait_idle(&x)) {
        leave(&x);
        return nt_io_direct(c, fd, op);
    }
    if (c->flush_err) {
        int e = take_err(c);
        leave(&x);
        return fail_out(c, fd, op, e);
    }
    if (c->expired) {
        /* nt_io_direct fails the call with timeout_errno */
        if (c->cbuf)
            lose(&x, nt_deadline_errno(c));
        leave(&x);
        return nt_io_direct(c, fd, op);
    }
    int how = c->nonblock || (op->flags & MSG_DONTWAIT) ? CO_TRY : CO_BLOCK;
    if (!plain(op) || shared(c) || (c->co_flags & CO_PROG_CORK) ||
        !c->co_ready || c->self_closed) {
        /* Not to be coalesced: after what is buffered, as it is. */
        if (flush(&x, how) < 0)
            return out_failed(&x, op);
        if (shared(c))
            c->co_mode = NT_CO_OFF;
        leave(&x);
        ssize_t r = nt_io_direct(c, fd, op);
        if (r > 0 && !c->co_ready)
            c->co_ready = 1;
        return r;
    }
    struct co_buf *b = c->cbuf;
    if (b && (c->co_flags & CO_STUCK) && how == CO_TRY) {
        /* Back-pressure: nothing new until the kernel took the rest. */
        if (co_send(&x, NULL, 0, 0, CO_TRY) < 0)
            return out_failed(&x, op);
        b = NULL;
    }
    uint32_t cap = c->set->coalesce;
    size_t total = op->total;
    if (total == 0) {
        leave(&x);
        return 0;
    }
    if (total < cap && held(b) + total <= cap) {
        if (!b && !(b = start_buf(&x, cap))) {
            leave(&x);
            return nt_io_direct(c, fd, op); /* nothing buffered: in order */
        }
        if (b->len + total > b->cap) {
            memmove(b->data, b->data + b->off, held(b));
            b->len -= b->off;
            b->off = 0;
        }
        copy_in(b, op);
        c->clen = (uint32_t)held(b);
        leave(&x);
        return (ssize_t)total;
    }
    if (!b) {
        leave(&x);
        return nt_io_direct(c, fd, op); /* big, nothing buffered */
    }
    /* Does not fit: what is buffered and this call in one sendmsg. */
    ssize_t r = co_send(&x, op->iov, op->iovcnt, total, how);
    if (r < 0)
        return out_failed(&x, op);
    if (r == 0) { /* the kernel took the buffered bytes only */
        errno = EAGAIN;
        return out_failed(&x, op);
    }
    leave(&x);
    return r;
}

ssize_t nt_coalesce_io(struct nt_conn *c, int fd, const struct nt_op *op)
{
    if (unlikely(c->co_mode == NT_CO_UNDECIDED))
        decide(c, fd);
    if (c->co_mode == NT_CO_OFF)
        return nt_io_direct(c, fd, op);
    if (op->dir == NT_IN)
        return input(c, fd, op);
    if (c->co_mode == NT_CO_CORK)
        return output_cork(c, fd, op);
    return output_buffer(c, fd, op);
}

/* ---- sharing, socket options, the timer --------------------------------- */

/* Another writer now shares the socket (a dup'ed fd, a FILE*): what is
 * held goes out, and this descriptor stops coalescing (see "Sharing"). */
static void stop_coalescing(struct nt_conn *c, int fd, const char *op,
                            void *caller)
{
    struct co_call x;
    if (c->co_mode == NT_CO_OFF || !enter(&x, c, fd, op, caller))
        return;
    c->co_flags |= CO_SHARED;
    if (c->co_mode == NT_CO_UNDECIDED) {
        c->co_mode = NT_CO_OFF;
    } else if (wait_idle(&x)) {
        flush_deferred(&x, CO_LINGER);
        if (!c->cbuf && !c->flush_err && !(c->co_flags & CO_CORKED))
            c->co_mode = NT_CO_OFF; /* else its next call reports, then off */
    }
    leave(&x);
}

void nt_coalesce_dup(int from, int to)
{
    struct nt_conn *dst = nt_fd_conn(to);
    struct nt_conn *src = nt_fd_conn(from);
    if (!dst || !src)
        return;
    /* nt_conn_dup copied the source's coalescing state: not the copy's */
    memset(&dst->cbuf, 0, sizeof *dst - offsetof(struct nt_conn, cbuf));
    dst->co_mode = NT_CO_OFF;
    stop_coalescing(src, from, "dup", __builtin_return_address(0));
}

void nt_coalesce_fdopen(struct nt_conn *c, int fd)
{
    stop_coalescing(c, fd, "fdopen", __builtin_return_address(0));
}

int nt_coalesce_setsockopt(struct nt_conn *c, int fd, int opt,
                           const void *val, socklen_t len)
{
    if (c->co_mode == NT_CO_UNDECIDED)
        decide(c, fd);
    struct co_call x;
    if (c->co_mode == NT_CO_OFF ||
        !enter(&x, c, fd, "setsockopt", __builtin_return_address(0)))
        return real.setsockopt(fd, IPPROTO_TCP, opt, val, len);
    if (opt == TCP_CORK && wait_idle(&x))
        flush_deferred(&x, c->nonblock ? CO_TRY : CO_BLOCK);
    int r = real.setsockopt(fd, IPPROTO_TCP, opt, val, len);
    int e = errno;
    if (r == 0 && val && len >= (socklen_t)sizeof(int)) {
        uint8_t bit = opt == TCP_CORK ? CO_PROG_CORK : CO_PROG_NODELAY;
        if (*(const int *)val)
            c->co_flags |= bit;
        else
            c->co_flags &= (uint8_t)~bit;
    }
    leave(&x);
    errno = e;
    return r;
}

nt_ns nt_coalesce_due(int fd, uint32_t gen, nt_ns now)
{
    struct nt_conn *c = nt_fd_conn(fd);
    struct co_call x;
    if (!c || !__atomic_load_n(&c->t_cflush, __ATOMIC_RELAXED) ||
        !enter(&x, c, fd, "timer", NULL))
        return 0;
    nt_ns next = 0;
    if (c->gen == gen && nt_fd_kind(fd) == NT_FD_CONN && c->t_cflush) {
        if (c->t_cflush > now) {
            next = c->t_cflush;
        } else if (busy_other(c)) {
            next = now + CO_RETRY_MIN; /* its sender is at it */
        } else {
            flush_deferred(&x, CO_TRY);
            if (c->cbuf) /* stuck: try again soon, backing off */
                next = c->t_cflush = now + retry_interval(c);
        }
    }
    leave(&x);
    return next;
}

void nt_coalesce_expired(struct nt_conn *c, int fd)
{
    struct co_call x;
    if (c->co_mode <= NT_CO_OFF || !enter(&x, c, fd, "timer", NULL))
        return;
    x.defer = 1;
    release(&x, 0);
    if (c->cbuf)
        lose(&x, nt_deadline_errno(c));
    leave(&x);
}

/* ---- fork --------------------------------------------------------------- */

/* The pool and the pending set are consistent in a fork child: no other
 * thread is inside them when fork happens. (The child does not need to
 * unlock: the owners' fork epoch is stale there.) */
static void atfork_prepare(void)
{
    /* fork() itself flushed (process.c); this catches forks glibc makes
     * internally (daemon()), whose parent then leaves with _exit */
    nt_coalesce_flush_all();
    spin_lock(&pend_lock);
    spin_lock(&pool_lock);
}

static void atfork_parent(void)
{
    spin_unlock(&pool_lock);
    spin_unlock(&pend_lock);
}

static void atfork_child(void)
{
    pool_lock = 0;
    pend_lock = 0;
    co_spin = 0;
}

__attribute__((constructor)) static void co_register_atfork(void)
{
    pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
}
