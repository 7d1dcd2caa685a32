/* pipe, pipe2: the program's go straight through; one made while this
 * thread unwinds a backtrace is libunwind's own (audit/backtrace.c keeps
 * it out of the program's way). */
#include <unistd.h>

#include "audit/backtrace.h"
#include "core/real.h"

NT_EXPORT int pipe2(int fds[2], int flags)
{
    if (unlikely(nt_unwinding))
        return nt_backtrace_pipe2(fds, flags);
    return real.pipe2(fds, flags);
}

NT_EXPORT int pipe(int fds[2])
{
    return pipe2(fds, 0);
}
