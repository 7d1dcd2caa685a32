/* Per-call-site rate limit (see ratelimit.h). */
#include <string.h>

#include "audit/ratelimit.h"

struct rl_slot {
    uint64_t key;      /* 0: free; claimed once, never released */
    uint64_t state;    /* window << 32 | events passed in that window */
    uint64_t held;     /* events held back, not yet reported */
    const void *caller;
    const char *op;
    uint32_t kind;
};

/* One more slot at the end: shared by all keys once the table is full. */
static struct rl_slot slots[NT_RL_SLOTS + 1];

#define NT_RL_PROBES 8
#define NT_RL_OVERFLOW_KEY UINT64_MAX

static uint64_t mix64(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

uint64_t nt_rl_key(const void *caller, uint32_t kind, const char *op,
                   const char *timeout)
{
    uint64_t k = caller ? (uint64_t)(uintptr_t)caller
                        : mix64((uint64_t)(uintptr_t)op) ^
                              (uint64_t)(uintptr_t)timeout;
    k = mix64(k ^ ((uint64_t)kind << 48));
    return k == 0 || k == NT_RL_OVERFLOW_KEY ? 1 : k;
}

static void remember_site(struct rl_slot *s, const struct nt_rl_site *site)
{
    __atomic_store_n(&s->caller, site->caller, __ATOMIC_RELAXED);
    __atomic_store_n(&s->kind, site->kind, __ATOMIC_RELAXED);
    __atomic_store_n(&s->op, site->op, __ATOMIC_RELEASE);
}

/* The key's slot, claiming a free one on first sight. */
static struct rl_slot *find_slot(uint64_t key, const struct nt_rl_site *site)
{
    unsigned h = (unsigned)key;
    for (unsigned i = 0; i < NT_RL_PROBES; i++) {
        struct rl_slot *s = &slots[(h + i) % NT_RL_SLOTS];
        uint64_t k = __atomic_load_n(&s->key, __ATOMIC_ACQUIRE);
        if (k == key)
            return s;
        if (k == 0 && __atomic_compare_exchange_n(&s->key, &k, key, 0,
                                                  __ATOMIC_ACQ_REL,
                                                  __ATOMIC_ACQUIRE)) {
            remember_site(s, site);
            return s;
        }
        if (k == key) /* another thread claimed it for the same key */
            return s;
    }
    struct rl_slot *s = &slots[NT_RL_SLOTS];
    uint64_t free_key = 0;
    if (__atomic_compare_exchange_n(&s->key, &free_key, NT_RL_OVERFLOW_KEY,
                                    0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        remember_site(s, site);
    return s;
}

int nt_rl_admit(uint64_t key, uint32_t window, uint32_t limit,
                const struct nt_rl_site *site, uint64_t *due)
{
    *due = 0;
    if (!limit)
        return 1;
    struct rl_slot *s = find_slot(key, site);
    uint64_t st = __atomic_load_n(&s->state, __ATOMIC_RELAXED);
    for (;;) {
        uint32_t w = (uint32_t)(st >> 32), n = (uint32_t)st;
        uint64_t next;
        if ((int32_t)(window - w) > 0)
            next = (uint64_t)window << 32 | 1; /* a new window opens */
        else if (n < limit)
            next = st + 1;
        else
            break;
        if (__atomic_compare_exchange_n(&s->state, &st, next, 1,
                                        __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
            if ((uint32_t)next == 1)
                *due = __atomic_exchange_n(&s->held, 0, __ATOMIC_RELAXED);
            return 1;
        }
    }
    __atomic_add_fetch(&s->held, 1, __ATOMIC_RELAXED);
    return 0;
}

void nt_rl_drain(void (*fn)(const struct nt_rl_site *site, uint64_t count,
                            void *arg),
                 void *arg)
{
    for (unsigned i = 0; i <= NT_RL_SLOTS; i++) {
        struct rl_slot *s = &slots[i];
        if (!__atomic_load_n(&s->key, __ATOMIC_ACQUIRE))
            continue;
        uint64_t n = __atomic_exchange_n(&s->held, 0, __ATOMIC_RELAXED);
        if (!n)
            continue;
        struct nt_rl_site site = {
            .op = __atomic_load_n(&s->op, __ATOMIC_ACQUIRE),
            .caller = __atomic_load_n(&s->caller, __ATOMIC_RELAXED),
            .kind = __atomic_load_n(&s->kind, __ATOMIC_RELAXED),
        };
        fn(&site, n, arg);
    }
}

void nt_rl_reset(void)
{
    memset(slots, 0, sizeof slots);
}
