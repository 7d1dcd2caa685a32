/* What glibc knows of the timer thread.
 *
 * glibc 2.36 skips work while its flag __libc_single_threaded is true:
 * the cancellation bookkeeping of every blocking wrapper (read, write,
 * poll, ...), malloc's arena lock, the atomic of a private mutex.
 * pthread_create clears the flag for good, so the library's timer thread
 * alone would tax every call of a single-threaded program (+45
 * instructions on a pipe write). And glibc counts live threads
 * (__nptl_nthreads) to end the process when the last one leaves through
 * pthread_exit: counted, the timer kept such a process alive for ever.
 * So once the timer has started, glibc stops counting it, and in a
 * process glibc saw as single-threaded the library sets the flag back.
 *
 * Safe because nothing glibc guards only in multi-threaded mode is
 * shared with the timer thread: after start-up it never allocates, uses
 * no stdio, resolves no symbol and is never cancelled, and its one mutex
 * is process-shared (glibc's shortcut covers private mutexes only).
 * fork then takes glibc's single-threaded path, as the same program's
 * fork does without us: it takes no lock the timer could hold, and the
 * child (no timer) is single-threaded. Only the set*id family needs glibc
 * to see the timer (it hands new credentials to every thread it knows):
 * there the flag is cleared around the one system call, with the
 * program's signals blocked, so nothing else runs meanwhile (a handler's
 * own set*id must not find the window half open, nor make a thread in
 * it). Any thread made elsewhere, by any path (a libpthread handle,
 * glibc's AIO or timer_create helpers), goes through glibc's
 * pthread_create, which clears the flag: the next reveal sees it and
 * glibc counts threads for good, as it would without us. initgroups runs
 * NSS modules, which may block: it is not revealed, and the groups it set
 * on the calling thread are then handed out with one setgroups
 * (hooks/setid.c). Only on the glibc whose internals were read for this (2.36); elsewhere glibc
 * counts the timer like any thread. */
#include <dlfcn.h>
#include <pthread.h>
#include <gnu/libc-version.h>
#include <signal.h>
#include <string.h>
#include <sys/single_threaded.h>

#include "core/libc_threads.h"

static char *flag_libc;   /* glibc's own flag */
static char *flag_global; /* the one programs read (a copy, if copy-relocated) */
static unsigned *nthreads; /* glibc's count of live threads */
static int hidden;        /* the timer runs and the flag says single */
static sigset_t mask_before;

void nt_libc_threads_init(void)
{
    if (strcmp(gnu_get_libc_version(), "2.36") != 0)
        return;
    char *flag = dlsym(RTLD_NEXT, "__libc_single_threaded");
    nthreads = dlvsym(RTLD_NEXT, "__nptl_nthreads", "GLIBC_PRIVATE");
    flag_global = &__libc_single_threaded;
    if (flag && nthreads)
        flag_libc = flag;
}

static void set_flag(char v)
{
    __atomic_store_n(flag_libc, v, __ATOMIC_SEQ_CST);
    __atomic_store_n(flag_global, v, __ATOMIC_SEQ_CST);
}

int nt_libc_single(void)
{
    return flag_libc && __atomic_load_n(flag_libc, __ATOMIC_SEQ_CST);
}

void nt_libc_timer_started(int was_single)
{
    if (!flag_libc)
        return;
    __atomic_sub_fetch(nthreads, 1, __ATOMIC_SEQ_CST);
    if (was_single && __atomic_load_n(nthreads, __ATOMIC_SEQ_CST) == 1) {
        set_flag(1);
        __atomic_store_n(&hidden, 1, __ATOMIC_RELAXED);
    }
}

int nt_libc_reveal(void)
{
    if (!__atomic_load_n(&hidden, __ATOMIC_RELAXED))
        return 0;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &mask_before);
    if (!__atomic_load_n(flag_libc, __ATOMIC_SEQ_CST)) {
        /* the program created a thread: glibc counts threads for good */
        __atomic_store_n(&hidden, 0, __ATOMIC_RELAXED);
        pthread_sigmask(SIG_SETMASK, &mask_before, NULL);
        return 0;
    }
    set_flag(0);
    return 1;
}

void nt_libc_rehide(int token)
{
    if (!token)
        return;
    set_flag(1);
    pthread_sigmask(SIG_SETMASK, &mask_before, NULL);
}

void nt_libc_threads_atfork_child(void)
{
    __atomic_store_n(&hidden, 0, __ATOMIC_RELAXED);
}
