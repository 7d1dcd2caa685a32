/* The timer: a min-heap of (due, connection, gen) and one task that
 * sleeps until the earliest entry. Started on the first arm; a fork
 * child starts with an empty heap (its inherited connections are dormant
 * until it touches them, conn.h) and starts its own timer when it arms.
 * In release builds the timer is a raw clone()d task glibc does not count
 * as a thread, so the program keeps glibc's single-threaded fast paths
 * (timer.c says what that allows the task to run); the sanitizer build
 * uses a pthread.
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
/* fork child: an empty heap, a fresh lock, no thread. */
void nt_timer_atfork_child(void);
/* The timer exists in this process. */
int nt_timer_running(void);
/* ... and is the raw task (not a pthread). */
int nt_timer_is_task(void);
/* Around a call that changes credentials (set*id, setgroups): stop the
 * task and start no timer until nt_timer_resume(token), which starts one
 * (with the caller's credentials, now the new ones) if entries wait. */
int nt_timer_suspend(void);
void nt_timer_resume(int token);
/* The same for a hook (hooks/setid.c): nothing for the library's own
 * calls, a vfork child, or before init. */
int nt_setid_before(void);
void nt_setid_after(int token);
/* Stats for tests and benchmarks: entries filed. */
unsigned nt_timer_pending(void);

#endif
