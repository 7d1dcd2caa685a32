/* syscall(): programs (and libseccomp 2.5's seccomp_load) install seccomp
 * filters with syscall(SYS_seccomp, ...), glibc having no wrapper. See
 * hooks/sandbox.c for prctl and what happens around an install.
 *
 * Not variadic on purpose, and so without <unistd.h>: on x86-64 and
 * AArch64 Linux a variadic call passes integer arguments exactly as a
 * fixed one, and reading six of them whatever the call takes is what
 * glibc's own syscall() does. A variadic hook would spill every register
 * and copy a va_list on each of the program's syscall() calls (53 added
 * instructions, measured); this one adds a compare and a jump. */
#include <dlfcn.h>
#include <linux/seccomp.h>
#include <sys/syscall.h>

#include "core/fdtable.h"
#include "core/nt.h"
#include "core/sandbox.h"

#if !defined(__x86_64__) && !defined(__aarch64__)
#error "check the variadic calling convention before building here"
#endif

typedef long (*syscall_fn)(long, long, long, long, long, long, long);
static syscall_fn next_syscall;

__attribute__((noinline, cold)) static syscall_fn resolve(void)
{
    syscall_fn f = (syscall_fn)dlsym(RTLD_NEXT, "syscall");
    __atomic_store_n(&next_syscall, f, __ATOMIC_RELEASE);
    return f;
}

__attribute__((noinline)) static long install(long nr, long a1, long a2,
                                              long a3, long a4, long a5,
                                              long a6, void *caller)
{
    syscall_fn next = __atomic_load_n(&next_syscall, __ATOMIC_ACQUIRE);
    nt_init();
    struct nt_sb_install t;
    unsigned long flags = (unsigned long)a2;
    nt_sandbox_before("seccomp", a1 == SECCOMP_SET_MODE_STRICT,
                      a1 == SECCOMP_SET_MODE_FILTER &&
                          (flags & SECCOMP_FILTER_FLAG_TSYNC),
                      caller, &t);
    long r = next(nr, a1, a2, a3, a4, a5, a6);
    /* A listener flag makes success a new fd; a TSYNC that could not
     * synchronise returns the blocking thread's id and installs nothing. */
    int ok = a1 == SECCOMP_SET_MODE_FILTER &&
                     (flags & SECCOMP_FILTER_FLAG_NEW_LISTENER)
                 ? r >= 0 : r == 0;
    nt_sandbox_after(ok, &t);
    return r;
}

long syscall(long nr, long a1, long a2, long a3, long a4, long a5, long a6);

/* Only once the library is up, and for a number it knows: allocators
 * (jemalloc) close files with syscall() while malloc initialises, where
 * the hooks' nt_init() must not run (LESSONS 1). */
static int governed_close(long nr, long a1)
{
    if (!__atomic_load_n(&nt_g.ready, __ATOMIC_ACQUIRE) || nt_in_lib)
        return 0;
    if (nr == SYS_close_range)
        return 1;
    int k = a1 >= 0 && a1 <= INT32_MAX ? nt_fd_kind((int)a1) : NT_FD_UNKNOWN;
    return k != NT_FD_UNKNOWN && k != NT_FD_PASS;
}
int close(int fd);
int close_range(unsigned lo, unsigned hi, int flags);

NT_EXPORT long syscall(long nr, long a1, long a2, long a3, long a4, long a5,
                       long a6)
{
    syscall_fn next = __atomic_load_n(&next_syscall, __ATOMIC_ACQUIRE);
    if (unlikely(!next))
        next = resolve();
    /* A close made through syscall() is a close: it goes through the
     * close hooks, so no connection state (coalesced bytes, a slot) is
     * left behind for a number the kernel frees (LESSONS 3). */
    if (unlikely(nr == SYS_close || nr == SYS_close_range) &&
        governed_close(nr, a1))
        return nr == SYS_close
                   ? close((int)a1)
                   : close_range((unsigned)a1, (unsigned)a2, (int)a3);
    /* Probes are not installs: libseccomp 2.5 asks whether the call
     * exists with strict mode and flags 1 (EINVAL), and which flags the
     * kernel knows with a filter mode and no program (EFAULT). */
    if (likely(nr != SYS_seccomp) ||
        (a1 != SECCOMP_SET_MODE_FILTER && a1 != SECCOMP_SET_MODE_STRICT) ||
        (a1 == SECCOMP_SET_MODE_FILTER && !a3) ||
        (a1 == SECCOMP_SET_MODE_STRICT && (a2 || a3)))
        return next(nr, a1, a2, a3, a4, a5, a6);
    return install(nr, a1, a2, a3, a4, a5, a6, NT_CALLER());
}
