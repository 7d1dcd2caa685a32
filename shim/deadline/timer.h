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
/* Around a whole-process seccomp install (core/sandbox.c): stop the
 * timer and start none until nt_timer_resume(token). 0 (nothing to
 * resume): a handler inside the timer lock, or not the owner process. */
int nt_timer_suspend(void);
void nt_timer_resume(int token);
/* After a successful set*id-type call: the timer makes the same raw call
 * `nr` (a, b, c) on itself, expecting `expect`; `raw`: glibc's setxid did
 * not cover it (syscall(), capset, setfsuid), so a pthread timer needs
 * it too. Signal-safe. */
void nt_timer_replay(long nr, long a, long b, long c, long expect, int raw);
/* On the timer, in a wait or spin: make a replay asked for meanwhile.
 * `may_leave`: it holds no lock there; a task asked to stop for a
 * seccomp install leaves on the spot (the thread it waits for may be
 * the one whose signal handler installs the filter). */
void nt_timer_serve(int may_leave);
/* The same for a hook (hooks/setid.c): nothing before init. */
void nt_setid_replay(long nr, long a, long b, long c, long expect, int raw);
/* Stats for tests and benchmarks: entries filed. */
unsigned nt_timer_pending(void);

#endif
