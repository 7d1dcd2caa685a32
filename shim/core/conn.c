/* Connection objects: the pool, their life cycle and their lock. See
 * conn.h. */
#include <fcntl.h>
#include <stddef.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "audit/event.h"
#include "coalesce/coalesce.h"
#include "core/conn.h"
#include "core/process.h"
#include "core/real.h"
#include "core/settings.h"
#include "deadline/deadline.h"
#include "deadline/timer.h"

/* ---- the pool ----------------------------------------------------------
 * Chunks of objects mmap'ed on demand and never unmapped (a pointer kept
 * by the timer stays readable), and a lock-free free list whose head
 * carries a tag against ABA: allocation may happen in a signal handler
 * (accept there) or race with another thread. */

#define CHUNK_SHIFT NT_CONN_CHUNK_SHIFT
#define CHUNK (1u << CHUNK_SHIFT)
#define NCHUNKS NT_CONN_NCHUNKS

static struct nt_conn *chunks[NCHUNKS]; /* CHUNK objects, then CHUNK links */
static uint32_t high;                /* objects handed out so far */
static uint64_t free_head;           /* (tag << 32) | (idx + 1); 0: empty */

/* Fast-path state fits in four cache lines (issue 17); addresses that
 * do not fit live in the side table below. */
_Static_assert(sizeof(struct nt_conn) <= 256, "struct nt_conn grew past 256 bytes");

static struct nt_conn *at(uint32_t idx)
{
    struct nt_conn *ch = __atomic_load_n(&chunks[idx >> CHUNK_SHIFT],
                                         __ATOMIC_ACQUIRE);
    return ch ? &ch[idx & (CHUNK - 1)] : NULL;
}

static struct nt_conn *chunk_for(uint32_t idx)
{
    uint32_t n = idx >> CHUNK_SHIFT;
    if (n >= NCHUNKS)
        return NULL;
    struct nt_conn *ch = __atomic_load_n(&chunks[n], __ATOMIC_ACQUIRE);
    if (!ch) {
        size_t size = CHUNK * (sizeof *ch + sizeof(uint32_t));
        void *m = mmap(NULL, size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            return NULL;
        struct nt_conn *expected = NULL;
        if (!__atomic_compare_exchange_n(&chunks[n], &expected, m, 0,
                                         __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
            munmap(m, size);
            return &expected[idx & (CHUNK - 1)];
        }
        ch = m;
    }
    return &ch[idx & (CHUNK - 1)];
}

/* The free list link of object idx (after its chunk's objects). */
static uint32_t *link_of(uint32_t idx)
{
    struct nt_conn *ch = __atomic_load_n(&chunks[idx >> CHUNK_SHIFT],
                                         __ATOMIC_ACQUIRE);
    return (uint32_t *)(ch + CHUNK) + (idx & (CHUNK - 1));
}

static struct nt_conn *pool_get(void)
{
    uint64_t head = __atomic_load_n(&free_head, __ATOMIC_ACQUIRE);
    while ((uint32_t)head) {
        uint32_t idx = (uint32_t)head - 1;
        uint32_t next = __atomic_load_n(link_of(idx), __ATOMIC_RELAXED);
        uint64_t want = ((head >> 32) + 1) << 32 | next;
        if (__atomic_compare_exchange_n(&free_head, &head, want, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
            return at(idx);
    }
    uint32_t idx = __atomic_fetch_add(&high, 1, __ATOMIC_RELAXED);
    struct nt_conn *c = chunk_for(idx);
    if (c) {
        c->idx = idx;
        c->alias_fd = -1;
    }
    return c;
}

static void pool_put(struct nt_conn *c)
{
    uint32_t idx = c->idx;
    uint64_t head = __atomic_load_n(&free_head, __ATOMIC_ACQUIRE);
    do {
        __atomic_store_n(link_of(idx), (uint32_t)head, __ATOMIC_RELAXED);
    } while (!__atomic_compare_exchange_n(
        &free_head, &head, ((head >> 32) + 1) << 32 | (idx + 1), 0,
        __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE));
}

void nt_conn_each(void (*f)(struct nt_conn *c, void *arg), void *arg)
{
    uint32_t n = __atomic_load_n(&high, __ATOMIC_ACQUIRE);
    for (uint32_t i = 0; i < n; i++) {
        struct nt_conn *c = at(i);
        if (c && __atomic_load_n(&c->refs, __ATOMIC_ACQUIRE))
            f(c, arg);
    }
}

/* ---- the lock ---------------------------------------------------------- */

static NT_TLS uint32_t my_tid;

static uint64_t lock_word(void)
{
    if (unlikely(!my_tid))
        my_tid = (uint32_t)syscall(SYS_gettid);
    return ((uint64_t)nt_fork_epoch << 32) | my_tid;
}

void nt_tid_reset(void)
{
    my_tid = 0;
}

int nt_conn_lock(struct nt_conn *c)
{
    uint64_t me = lock_word();
    for (;;) {
        uint64_t cur = __atomic_load_n(&c->lock, __ATOMIC_ACQUIRE);
        if (cur == me)
            return 0; /* a signal handler in the owning thread */
        if (cur == 0 || (uint32_t)(cur >> 32) != nt_fork_epoch) {
            /* free, or held by a thread that did not survive fork */
            if (__atomic_compare_exchange_n(&c->lock, &cur, me, 0,
                                            __ATOMIC_ACQUIRE,
                                            __ATOMIC_RELAXED))
                return 1;
            continue;
        }
        sched_yield();
    }
}

int nt_conn_trylock(struct nt_conn *c)
{
    uint64_t me = lock_word();
    uint64_t cur = __atomic_load_n(&c->lock, __ATOMIC_ACQUIRE);
    if (cur == me)
        return 0;
    if (cur != 0 && (uint32_t)(cur >> 32) == nt_fork_epoch)
        return -1; /* a live owner */
    return __atomic_compare_exchange_n(&c->lock, &cur, me, 0,
                                       __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)
               ? 1 : -1;
}

void nt_conn_unlock(struct nt_conn *c, int taken)
{
    if (taken)
        __atomic_store_n(&c->lock, 0, __ATOMIC_RELEASE);
}

/* ---- life cycle -------------------------------------------------------- */

/* The local address; its family, 0 when not known. */
static int read_local(struct nt_conn *c, int fd)
{
    union nt_addr a;
    socklen_t len = sizeof a;
    if (getsockname(fd, &a.sa, &len) != 0)
        len = 0;
    if (len > sizeof a)
        len = sizeof a;
    nt_conn_set_addr(c, 0, &a, len);
    return len ? a.sa.sa_family : 0;
}

static void fill_addresses(struct nt_conn *c, int fd,
                           const struct sockaddr *remote, socklen_t rlen)
{
    union nt_addr a;
    socklen_t len;
    int fam = read_local(c, fd);
    if (remote && rlen <= sizeof a) {
        memcpy(&a, remote, rlen);
        len = rlen;
    } else {
        len = sizeof a;
        if (getpeername(fd, &a.sa, &len) != 0)
            len = 0;
        if (len > sizeof a)
            len = sizeof a;
    }
    nt_conn_set_addr(c, 1, &a, len);
    if (!fam && len)
        fam = a.sa.sa_family;
    c->family = (uint8_t)fam;
}

void nt_conn_refresh_local(struct nt_conn *c, int fd)
{
    read_local(c, fd);
}

struct nt_conn *nt_conn_open(int fd, int role, int nonblock,
                             const struct sockaddr *remote, socklen_t rlen)
{
    struct stat st;
    struct nt_conn *c;
    if (nt_fd_kind(fd) == NT_FD_CONN)
        nt_conn_detach(fd, NT_FD_UNKNOWN, NULL); /* an unseen close's leftover */
    if (!nt_g.config || fstat(fd, &st) != 0 || !(c = pool_get())) {
        nt_fd_set(fd, NT_FD_PASS);
        return NULL;
    }
    int taken = nt_conn_lock(c);
    uint32_t gen = c->gen + 1, idx = c->idx;
    /* Everything but the lock word, from a clean slate. */
    memset((char *)c + sizeof c->lock, 0, sizeof *c - sizeof c->lock);
    c->gen = gen;
    c->idx = idx;
    c->alias_fd = -1;
    c->ino = (uint64_t)st.st_ino;
    c->fd = fd;
    c->refs = 1;
    c->role = (uint8_t)role;
    if (nonblock < 0) {
        int fl = real.fcntl(fd, F_GETFL);
        nonblock = fl >= 0 && (fl & O_NONBLOCK);
    }
    c->nonblock = (uint8_t)nonblock;
    fill_addresses(c, fd, remote, rlen);
    c->t_open = c->t_last = nt_now();
    c->set = nt_settings_match(c);
    nt_conn_unlock(c, taken);
    if (nt_fd_set_conn(fd, c) != 0) {
        nt_conn_detach(fd, NT_FD_PASS, NULL);
        return NULL;
    }
    nt_deadline_open(c);
    return c;
}

void nt_conn_attach(struct nt_conn *c, int fd)
{
    if (nt_fd_kind(fd) == NT_FD_CONN)
        nt_conn_detach(fd, NT_FD_UNKNOWN, NULL);
    int taken = nt_conn_lock(c);
    c->refs++;
    c->dup_shared = 1;
    nt_conn_unlock(c, taken);
    if (nt_fd_set_conn(fd, c) != 0)
        nt_conn_detach(fd, NT_FD_PASS, NULL);
}

struct other_fd { struct nt_conn *c; int except, found; };

static void find_other(int fd, struct nt_conn *c, void *arg)
{
    struct other_fd *o = arg;
    if (c == o->c && fd != o->except && o->found < 0)
        o->found = fd;
}

static int same_socket(int a, int b)
{
    struct stat x, y;
    return fstat(a, &x) == 0 && fstat(b, &y) == 0 && x.st_ino == y.st_ino &&
           x.st_dev == y.st_dev;
}

/* No descriptor refers to c any more and no call of ours waits on it. */
static void retire(struct nt_conn *c)
{
    nt_timer_disarm(c);
    nt_coalesce_release(c);
    __atomic_add_fetch(&c->gen, 1, __ATOMIC_RELEASE);
    pool_put(c);
}

void nt_conn_detach(int fd, int kind, void *caller)
{
    struct nt_fd_page *p = nt_fd_page_of(fd);
    if (!p)
        return;
    unsigned i = fd & (NT_FD_PAGE - 1);
    struct nt_conn *c = p->conn[i];
    /* From now on calls on fd pass through or classify it afresh. */
    __atomic_store_n(&p->kind[i], (uint8_t)kind, __ATOMIC_RELEASE);
    if (!c)
        return;
    int taken = nt_conn_lock(c);
    int last = c->refs <= 1;
    if (c->refs)
        c->refs--;
    /* The twin a waiting call would go on with must still be this socket:
     * a raw close the hooks never saw may have freed it (LESSONS 3). */
    int twin_gone = 0;
    if (!last && (c->fd == fd || c->waiters)) {
        struct other_fd o = { c, fd, -1 };
        nt_fd_each_conn(find_other, &o);
        twin_gone = c->waiters && (o.found < 0 || !same_socket(fd, o.found));
        if (o.found >= 0 && c->fd == fd)
            c->fd = o.found;
    }
    /* A call of ours still waits on the socket: keep it open for that
     * call (the kernel would), above the number the program frees. */
    if ((last || twin_gone) && c->waiters && kind == NT_FD_PASS &&
        c->alias_fd < 0) {
        int a = real.fcntl(fd, F_DUPFD_CLOEXEC, 0);
        c->alias_fd = a >= 0 ? nt_fd_move_high(a) : -1;
        if (c->alias_fd >= 0)
            c->fd = c->alias_fd;
    }
    /* ... or coalescing still sends what it holds (an orphan) */
    int done = last && !(c->waiters && c->alias_fd >= 0) &&
               !nt_coalesce_orphaned(c);
    if (done) {
        __atomic_store_n(&c->refs, 0, __ATOMIC_RELEASE);
        retire(c);
    }
    nt_conn_unlock(c, taken);
    (void)caller;
}

void nt_conn_orphan_done(struct nt_conn *c)
{
    if (c->refs || c->waiters)
        return; /* the program, or a call of ours, still has it */
    int a = c->alias_fd;
    c->alias_fd = -1;
    if (a >= 0)
        NT_KEEP_ERRNO(real.close(a));
    retire(c);
}

void nt_conn_unwait(struct nt_conn *c)
{
    int taken = nt_conn_lock(c);
    int alias = -1;
    if (c->waiters && __atomic_sub_fetch(&c->waiters, 1, __ATOMIC_ACQ_REL) == 0 &&
        c->alias_fd >= 0) {
        alias = c->alias_fd;
        c->alias_fd = -1;
        if (!c->refs)
            retire(c);
    }
    nt_conn_unlock(c, taken);
    if (alias >= 0)
        NT_KEEP_ERRNO(real.close(alias));
}

/* A fork child's first call on a connection it inherited: from now on it
 * governs it, with its own clocks starting now. */
void nt_conn_wake(struct nt_conn *c)
{
    int taken = nt_conn_lock(c);
    int was = c->dormant;
    c->dormant = 0;
    nt_conn_unlock(c, taken);
    if (was)
        NT_KEEP_ERRNO(nt_deadline_wake(c));
}
