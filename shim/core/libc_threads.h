/* Whether glibc counts the timer thread: see libc_threads.c. */
#ifndef NT_LIBC_THREADS_H
#define NT_LIBC_THREADS_H

/* At init: find glibc's flag and thread count; off on any other glibc. */
void nt_libc_threads_init(void);
/* Before the timer thread is created: does glibc see one thread? */
int nt_libc_single(void);
/* After it started (given nt_libc_single() before): glibc takes its
 * single-threaded paths again while the process has no other thread. */
void nt_libc_hide_timer(int was_single);
/* Around a call for which glibc must see every thread (fork, set*id):
 * reveal returns a token for rehide, which hides the timer again only if
 * the process still has no other thread. */
int nt_libc_reveal(void);
void nt_libc_rehide(int token);
/* Fork child: no timer thread, nothing hidden. */
void nt_libc_threads_atfork_child(void);

#endif
