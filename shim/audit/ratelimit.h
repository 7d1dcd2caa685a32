/* Per-call-site rate limit for audit events ([global] rate_limit).
 *
 * A fixed table of NT_RL_SLOTS entries, each counting the events of one
 * key (call site and event kind) in the current one-second window. No lock
 * and no allocation: entries are claimed with a compare-and-swap and
 * updated with atomics, so a signal handler or the timer thread can never
 * deadlock here. When the table is full, new keys share one overflow entry
 * (they are limited together rather than not at all). */
#ifndef NT_RATELIMIT_H
#define NT_RATELIMIT_H

#include <stdint.h>

#define NT_RL_SLOTS 256

/* Where held-back events came from, for their `suppressed` report. */
struct nt_rl_site {
    const void *caller; /* NULL: the timer thread */
    uint32_t kind;      /* NT_EV_* */
    const char *op;
};

/* key != 0 (see nt_rl_key); window: the current second of a monotonic
 * clock; limit: events per window, 0 = unlimited. Returns 1 if the event
 * may be logged, 0 if it is held back (and counted). On 1, *due is the
 * number of events held back in earlier windows that should now be
 * reported as `suppressed` (0 mostly). */
int nt_rl_admit(uint64_t key, uint32_t window, uint32_t limit,
                const struct nt_rl_site *site, uint64_t *due);

/* Visit and clear every entry that still holds back events: the exit-time
 * report. */
void nt_rl_drain(void (*fn)(const struct nt_rl_site *site, uint64_t count,
                            void *arg),
                 void *arg);

/* After fork: forget everything (the parent reports its own). */
void nt_rl_reset(void);

/* The key for an event: call site and kind; the timer thread has no call
 * site, so its events are keyed by op and deadline name instead. */
uint64_t nt_rl_key(const void *caller, uint32_t kind, const char *op,
                   const char *timeout);

#endif
