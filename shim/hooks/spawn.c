/* Children glibc starts where no hook sees them: system(), popen() and
 * wordexp() (command substitution) spawn theirs with glibc's internal
 * posix_spawn. Whatever the parent buffered must reach the socket before
 * the child can write to it (LESSONS 24): each of these flushes first
 * (nt_process_flush, as fork, exec and vfork do: core/process.c). */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <wordexp.h>

#include "core/nt.h"
#include "core/process.h"
#include "core/real.h"

static void before_child(void)
{
    nt_init();
    NT_KEEP_ERRNO(nt_process_flush());
}

NT_EXPORT int system(const char *cmd)
{
    before_child();
    return real.system(cmd);
}

NT_EXPORT FILE *popen(const char *cmd, const char *mode)
{
    before_child();
    return real.popen(cmd, mode);
}

NT_EXPORT int wordexp(const char *words, wordexp_t *we, int flags)
{
    if (!(flags & WRDE_NOCMD)) /* $(...) runs a shell */
        before_child();
    else
        nt_init();
    return real.wordexp(words, we, flags);
}
