/* glibc's single-threaded paths, kept while the timer thread runs.
 *
 * glibc 2.36 skips work while its flag __libc_single_threaded is true:
 * the cancellation bookkeeping of every blocking wrapper (read, write,
 * poll, ...), malloc's arena lock, the atomic of a private mutex.
 * pthread_create clears the flag for good, so the library's timer thread
 * alone would tax every call of a single-threaded program (+45
 * instructions on a pipe write). Once the timer has started in a process
 * glibc saw as single-threaded, the library sets the flag back: glibc
 * does not count the timer.
 *
 * Safe because nothing glibc guards only in multi-threaded mode is
 * shared with the timer thread: after start-up it never allocates, uses
 * no stdio, resolves no symbol and is never cancelled, and its one mutex
 * is process-shared (glibc's shortcut covers private mutexes only). Where
 * glibc must see every thread, the flag is cleared around the call: fork
 * (the locks it takes and the thread list it gives the child) and the
 * set*id family (whose new credentials glibc hands to every thread). The
 * program's own pthread_create clears it for good, as it would without
 * us. The flag goes back only while the process has exactly two threads
 * (glibc's own count), and only on the glibc whose shortcuts were read
 * for this (2.36); elsewhere the timer stays counted. */
#include <dlfcn.h>
#include <gnu/libc-version.h>
#include <string.h>
#include <sys/single_threaded.h>

#include "core/libc_threads.h"

static char *flag_libc;         /* glibc's own flag */
static char *flag_global;       /* the one programs read (a copy, if copy-relocated) */
static const unsigned *nthreads; /* glibc's count of live threads */
static int hidden;              /* the timer runs and glibc does not count it */

void nt_libc_threads_init(void)
{
    if (strcmp(gnu_get_libc_version(), "2.36") != 0)
        return;
    flag_libc = dlsym(RTLD_NEXT, "__libc_single_threaded");
    flag_global = &__libc_single_threaded;
    nthreads = dlvsym(RTLD_NEXT, "__nptl_nthreads", "GLIBC_PRIVATE");
    if (!flag_libc || !nthreads)
        flag_libc = NULL;
}

static void set_flag(char v)
{
    __atomic_store_n(flag_libc, v, __ATOMIC_SEQ_CST);
    __atomic_store_n(flag_global, v, __ATOMIC_SEQ_CST);
}

static int threads_are(unsigned n)
{
    return __atomic_load_n(nthreads, __ATOMIC_SEQ_CST) == n;
}

int nt_libc_single(void)
{
    return flag_libc && __atomic_load_n(flag_libc, __ATOMIC_SEQ_CST);
}

void nt_libc_hide_timer(int was_single)
{
    if (!was_single || !threads_are(2))
        return;
    set_flag(1);
    __atomic_store_n(&hidden, 1, __ATOMIC_RELAXED);
}

int nt_libc_reveal(void)
{
    if (!__atomic_load_n(&hidden, __ATOMIC_RELAXED))
        return 0;
    if (!__atomic_load_n(flag_libc, __ATOMIC_SEQ_CST)) {
        /* the program created a thread: glibc counts threads for good */
        __atomic_store_n(&hidden, 0, __ATOMIC_RELAXED);
        return 0;
    }
    set_flag(0);
    return 1;
}

/* In a fork child (no timer, `hidden` cleared by the atfork handler)
 * glibc leaves the flag as it found it in the parent: the child of a
 * process glibc saw single-threaded is single-threaded to it too. */
void nt_libc_rehide(int token)
{
    if (!token)
        return;
    int parent = __atomic_load_n(&hidden, __ATOMIC_RELAXED);
    if (threads_are(parent ? 2 : 1))
        set_flag(1);
    else
        __atomic_store_n(&hidden, 0, __ATOMIC_RELAXED);
}

void nt_libc_threads_atfork_child(void)
{
    __atomic_store_n(&hidden, 0, __ATOMIC_RELAXED);
}
