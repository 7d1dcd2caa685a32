/* What glibc knows of the timer thread: see libc_threads.c. */
#ifndef NT_LIBC_THREADS_H
#define NT_LIBC_THREADS_H

/* At init: find glibc's flag and thread count; off on any other glibc. */
void nt_libc_threads_init(void);
/* Before the timer thread is created: does glibc see one thread? */
int nt_libc_single(void);
/* The timer thread has started (`was_single`: nt_libc_single() before):
 * glibc stops counting it. */
void nt_libc_timer_started(int was_single);
/* Around one set*id system call, for which glibc must see every thread:
 * reveal (the program's signals blocked) returns a token for rehide,
 * which hides the timer again and lets the signals through (errno
 * untouched). */
int nt_libc_reveal(void);
void nt_libc_rehide(int token);
/* Fork child: no timer thread, nothing hidden. */
void nt_libc_threads_atfork_child(void);

#endif
