/* Write coalescing: the buffer pool, and the thread identity and the
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

/* Spin locks (pool shards, pending set): held for a few instructions;
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

/* One pool per shard of threads (a hash of the thread's identity), each
 * with its own lock: threads writing to different connections do not
 * meet on a lock to get or give back a buffer. A buffer goes back to the
 * shard of the thread that frees it. */
#define CO_POOL_SIZES 8          /* distinct buffer sizes kept */
#define CO_POOL_SHARDS 8
#define CO_POOL_KEEP (1u << 20)  /* free bytes kept per size and shard */

struct co_shard {
    uint64_t lock;
    struct {
        size_t map;
        struct co_buf *head;
        size_t bytes;
    } pool[CO_POOL_SIZES];
} __attribute__((aligned(64)));

static struct co_shard shards[CO_POOL_SHARDS];

static struct co_shard *my_shard(void)
{
    uint64_t h = (uint64_t)(uintptr_t)&co_anchor * 0x9e3779b97f4a7c15ULL;
    return &shards[h >> 61]; /* CO_POOL_SHARDS == 8 */
}

void co_pool_lock_all(void)
{
    for (int i = 0; i < CO_POOL_SHARDS; i++)
        co_spin_lock(&shards[i].lock);
}

void co_pool_unlock_all(void)
{
    for (int i = CO_POOL_SHARDS; i-- > 0;)
        co_spin_unlock(&shards[i].lock);
}

void co_pool_reset_locks(void)
{
    for (int i = 0; i < CO_POOL_SHARDS; i++)
        shards[i].lock = 0;
}

static size_t map_size(uint32_t cap)
{
    size_t page = 4096;
    return (offsetof(struct co_buf, data) + cap + page - 1) & ~(page - 1);
}

struct co_buf *co_buf_get(uint32_t cap)
{
    size_t map = map_size(cap);
    struct co_buf *b = NULL;
    struct co_shard *sh = my_shard();
    co_spin_lock(&sh->lock);
    for (int i = 0; i < CO_POOL_SIZES; i++) {
        if (sh->pool[i].map == map && sh->pool[i].head) {
            b = sh->pool[i].head;
            sh->pool[i].head = b->next;
            sh->pool[i].bytes -= map;
            break;
        }
    }
    co_spin_unlock(&sh->lock);
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
    struct co_shard *sh = my_shard();
    co_spin_lock(&sh->lock);
    int slot = -1;
    for (int i = 0; i < CO_POOL_SIZES && slot < 0; i++)
        if (sh->pool[i].map == b->map || sh->pool[i].map == 0)
            slot = i;
    if (slot >= 0 && sh->pool[slot].bytes + b->map <= CO_POOL_KEEP) {
        sh->pool[slot].map = b->map;
        b->next = sh->pool[slot].head;
        sh->pool[slot].head = b;
        sh->pool[slot].bytes += b->map;
        b = NULL;
    }
    co_spin_unlock(&sh->lock);
    if (b)
        munmap(b, b->map);
}
