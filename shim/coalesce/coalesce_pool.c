/* Write coalescing: the buffer pool, and the thread identity and global
 * spin locks that the pool and the pending set use. Design notes at the
 * top of coalesce.c.
 *
 * Memory: buffers come from a pool of mmap'ed blocks with a spin-locked
 * free list; nothing here calls malloc (hooks may run in signal handlers
 * and vfork children). A buffer exists only while it holds bytes. If the
 * pool cannot serve (mmap fails), the call goes through directly, after
 * what was buffered: always correct, just not coalesced.
 */
#include <sched.h>
#include <stddef.h>
#include <sys/mman.h>
#include <time.h>

#include "coalesce/coalesce_internal.h"
#include "core/process.h"

/* ---- thread identity and spin locks ---------------------------------- */

/* Global spin locks this thread holds: a signal handler that lands while
 * one is held must not take it again (it would spin forever). */
NT_TLS int co_spin;
static NT_TLS char co_anchor; /* its address names the thread */

/* (fork epoch, thread): owners from before a fork are not owners. */
uint64_t co_self_id(void)
{
    return ((uint64_t)(nt_fork_epoch & 0xffff) << 48) |
           ((uintptr_t)&co_anchor & 0xffffffffffffULL);
}

int co_id_live(uint64_t id)
{
    return id && (id >> 48) == (nt_fork_epoch & 0xffff);
}

void co_backoff(int round)
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
 * co_enter() keeps a signal handler of the holding thread away (co_spin). */
void co_spin_lock(uint64_t *l)
{
    uint64_t me = co_self_id();
    co_spin++;
    for (int round = 0;; round++) {
        uint64_t cur = __atomic_load_n(l, __ATOMIC_RELAXED);
        if (!co_id_live(cur) &&
            __atomic_compare_exchange_n(l, &cur, me, 0, __ATOMIC_ACQUIRE,
                                        __ATOMIC_RELAXED))
            return;
        if (round > 64)
            co_backoff(round - 64);
    }
}

void co_spin_unlock(uint64_t *l)
{
    __atomic_store_n(l, 0, __ATOMIC_RELEASE);
    co_spin--;
}

/* ---- buffer pool ------------------------------------------------------ */

#define CO_POOL_SIZES 8          /* distinct buffer sizes kept */
#define CO_POOL_KEEP (4u << 20)  /* free bytes kept per size */

static struct {
    size_t map;
    struct co_buf *head;
    size_t bytes;
} pool[CO_POOL_SIZES];
uint64_t co_pool_lock;

static size_t map_size(uint32_t cap)
{
    size_t page = 4096;
    return (offsetof(struct co_buf, data) + cap + page - 1) & ~(page - 1);
}

struct co_buf *co_buf_get(uint32_t cap)
{
    size_t map = map_size(cap);
    struct co_buf *b = NULL;
    co_spin_lock(&co_pool_lock);
    for (int i = 0; i < CO_POOL_SIZES; i++) {
        if (pool[i].map == map && pool[i].head) {
            b = pool[i].head;
            pool[i].head = b->next;
            pool[i].bytes -= map;
            break;
        }
    }
    co_spin_unlock(&co_pool_lock);
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

void co_buf_put(struct co_buf *b)
{
    co_spin_lock(&co_pool_lock);
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
    co_spin_unlock(&co_pool_lock);
    if (b)
        munmap(b, b->map);
}
