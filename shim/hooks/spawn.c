/* Children glibc starts where no hook sees them: system(), popen() and
 * wordexp() (command substitution) spawn theirs with glibc's internal
 * posix_spawn. Whatever the parent buffered must reach the socket before
 * the child can write to it (LESSONS 24): each of these flushes first
 * (nt_process_flush, as fork, exec and vfork do: core/process.c). */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <wordexp.h>

#include "core/nt.h"
#include "core/process.h"
#include "core/real.h"

typedef int (*system_fn)(const char *);
typedef FILE *(*popen_fn)(const char *, const char *);
typedef int (*wordexp_fn)(const char *, wordexp_t *, int);

static void *next_fn(void **cache, const char *name)
{
    void *p = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
    if (!p) {
        p = dlsym(RTLD_NEXT, name);
        __atomic_store_n(cache, p, __ATOMIC_RELEASE);
    }
    return p;
}

static void *next_system, *next_popen, *next_wordexp;

static void before_child(void)
{
    nt_init();
    NT_KEEP_ERRNO(nt_process_flush());
}

NT_EXPORT int system(const char *cmd)
{
    before_child();
    system_fn next = (system_fn)next_fn(&next_system, "system");
    if (!next) {
        errno = ENOSYS;
        return -1;
    }
    return next(cmd);
}

NT_EXPORT FILE *popen(const char *cmd, const char *mode)
{
    before_child();
    popen_fn next = (popen_fn)next_fn(&next_popen, "popen");
    if (!next) {
        errno = ENOSYS;
        return NULL;
    }
    return next(cmd, mode);
}

NT_EXPORT int wordexp(const char *words, wordexp_t *we, int flags)
{
    if (!(flags & WRDE_NOCMD)) /* $(...) runs a shell */
        before_child();
    wordexp_fn next = (wordexp_fn)next_fn(&next_wordexp, "wordexp");
    if (!next)
        return WRDE_NOSPACE;
    return next(words, we, flags);
}
