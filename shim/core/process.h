/* Process lifecycle: fork, exec, spawn and exit. */
#ifndef NT_PROCESS_H
#define NT_PROCESS_H

#include <stdint.h>

#include <sys/types.h>

/* Bumped in every fork child: locks taken before the fork are stale. */
extern uint32_t nt_fork_epoch;
/* This process's pid (set at init and in a fork child; a vfork child
 * still sees its parent's). */
extern pid_t nt_pid;

void nt_process_init(void);
/* Forget the cached thread id (fork child). */
void nt_tid_reset(void);
/* Everything the library holds for the program goes out before the process
 * is replaced, duplicated or ends (coalesced bytes, suppressed counts). */
void nt_process_flush(void);

#endif
