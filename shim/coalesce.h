/* Write coalescing (shared/SPEC.md section 6). */
#ifndef NT_COALESCE_H
#define NT_COALESCE_H

#include "conn.h"

/* Flush every connection's buffered bytes (fork, exec, spawn, exit). */
void nt_coalesce_flush_all(void);

/* Connections holding coalesced bytes; waits flush only when nonzero. */
extern unsigned nt_coalesce_pending;

/* The program is about to wait (poll, select, epoll): whatever it wrote
 * must be on the wire, or a request/response exchange would stall. */
void nt_coalesce_flush_for_wait(void);
static inline void nt_coalesce_before_wait(void)
{
    if (unlikely(__atomic_load_n(&nt_coalesce_pending, __ATOMIC_RELAXED)))
        nt_coalesce_flush_for_wait();
}

#endif
