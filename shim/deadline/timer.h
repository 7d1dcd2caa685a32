/* The timer thread: a min-heap of (due, connection, gen) and one thread
 * that sleeps until the earliest entry. Started on the first arm; a fork
 * child starts with an empty heap (its inherited connections are dormant
 * until it touches them, conn.h) and starts its own thread when it arms.
 *
 * Lock order: connection locks -> coalescing's pending set -> buffer
 * pool -> timer (process.c's fork handler takes the middle two).
 * The timer lock is held for heap operations only; nothing is called
 * under it that takes another lock. A signal handler never waits for it:
 * while a thread holds it, an arm from a handler on that thread is queued
 * and filed when the thread lets go, and a disarm is left to the timer
 * (entries carry the connection's gen and are dropped when stale). */
#ifndef NT_TIMER_H
#define NT_TIMER_H

#include "core/conn.h"

/* File connection c to be looked at no later than `due`. Cheap when an
 * entry at or before `due` already exists. */
void nt_timer_arm(struct nt_conn *c, nt_ns due);
/* Drop the connection's entry, if any (it is being retired). */
void nt_timer_disarm(struct nt_conn *c);
/* At library init, before anything arms. */
void nt_timer_init(void);
/* fork child: an empty heap, a fresh lock, no thread. */
void nt_timer_atfork_child(void);
/* The timer thread exists in this process. */
int nt_timer_running(void);
/* Stats for tests and benchmarks: entries filed. */
unsigned nt_timer_pending(void);

#endif
