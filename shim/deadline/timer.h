/* The timer thread: a min-heap of (due, fd, gen) and one thread that
 * sleeps until the earliest entry. Started on the first arm, restarted
 * lazily in a fork child. */
#ifndef NT_TIMER_H
#define NT_TIMER_H

#include "core/conn.h"

/* File connection `fd` (slot c) to be looked at no later than `due`. Cheap
 * when an entry at or before `due` already exists. */
void nt_timer_arm(struct nt_conn *c, int fd, nt_ns due);
/* Drop the connection's entry, if any (close). */
void nt_timer_disarm(struct nt_conn *c);
/* fork: prepare/parent/child handlers. */
void nt_timer_atfork_prepare(void);
void nt_timer_atfork_parent(void);
void nt_timer_atfork_child(void);
/* A fork child whose entries have no thread yet; the hooks restart it. */
extern int nt_timer_orphaned;
void nt_timer_restart(void);
static inline void nt_timer_check_fork(void)
{
    if (unlikely(__atomic_load_n(&nt_timer_orphaned, __ATOMIC_RELAXED)))
        nt_timer_restart();
}
/* Stats for tests and benchmarks: entries filed. */
unsigned nt_timer_pending(void);

#endif
