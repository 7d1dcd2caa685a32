/* pthread_create, thrd_create: counted, so that the library never tells
 * glibc the process is single-threaded again once the program made a
 * thread (core/libc_threads.c). */
#include <dlfcn.h>
#include <pthread.h>
#include <threads.h>

#include "core/libc_threads.h"
#include "core/nt.h"
#include "core/real.h"

NT_EXPORT int pthread_create(pthread_t *t, const pthread_attr_t *attr,
                             void *(*start)(void *), void *arg)
{
    nt_libc_thread_created();
    nt_init();
    if (unlikely(!real.pthread_create)) /* from inside our own init */
        real.pthread_create = dlsym(RTLD_NEXT, "pthread_create");
    return real.pthread_create(t, attr, start, arg);
}

NT_EXPORT int thrd_create(thrd_t *t, thrd_start_t start, void *arg)
{
    nt_libc_thread_created();
    nt_init();
    if (unlikely(!real.thrd_create))
        real.thrd_create = dlsym(RTLD_NEXT, "thrd_create");
    return real.thrd_create(t, start, arg);
}
