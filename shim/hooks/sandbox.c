/* Where programs confine themselves: prctl(PR_SET_SECCOMP) and the
 * seccomp system call made through libc's syscall() (glibc has no
 * seccomp() wrapper; libseccomp 2.5's seccomp_load calls
 * syscall(__NR_seccomp, ...) or, on old kernels, prctl; OpenSSH's sshd
 * sandbox calls prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER)). Before the
 * filter goes in, the library logs one `sandboxed` event and lets go
 * (core/sandbox.c); after it, the confined threads' calls pass straight
 * through. Also the pass-through helpers the other hooks' "sandbox:"
 * lines use. The syscall() hook is in syscall.c. */
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <linux/seccomp.h>
#include <stdarg.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/conn.h"
#include "core/io.h"
#include "core/real.h"
#include "core/sandbox.h"

/* Resolved on first use, not in nt_init(): the library's own syscall()
 * calls (gettid) come through here, some before init has run. */
typedef int (*prctl_fn)(int, ...);
static prctl_fn next_prctl;

static prctl_fn get_prctl(void)
{
    prctl_fn f = __atomic_load_n(&next_prctl, __ATOMIC_ACQUIRE);
    if (unlikely(!f)) {
        f = (prctl_fn)dlsym(RTLD_NEXT, "prctl");
        __atomic_store_n(&next_prctl, f, __ATOMIC_RELEASE);
    }
    return f;
}

NT_EXPORT int prctl(int option, ...)
{
    va_list ap;
    va_start(ap, option);
    unsigned long a2 = va_arg(ap, unsigned long);
    unsigned long a3 = va_arg(ap, unsigned long);
    unsigned long a4 = va_arg(ap, unsigned long);
    unsigned long a5 = va_arg(ap, unsigned long);
    va_end(ap);
    prctl_fn next = get_prctl();
    if (likely(option != PR_SET_SECCOMP) ||
        (a2 == SECCOMP_MODE_FILTER && !a3)) /* a probe: fails with EFAULT */
        return next(option, a2, a3, a4, a5);
    nt_init();
    struct nt_sb_install t;
    nt_sandbox_before("prctl", a2 == SECCOMP_MODE_STRICT, 0, NT_CALLER(), &t);
    int r = next(option, a2, a3, a4, a5);
    nt_sandbox_after(r == 0, &t);
    return r;
}

/* --- pass-through helpers for confined threads ------------------------ */

int nt_sb_fd(int r)
{
    if (r >= 0)
        nt_fd_mark_unknown(r);
    return r;
}

int nt_sb_close(int fd)
{
    nt_fd_mark_unknown(fd);
    return real.close(fd);
}

int nt_sb_close_range(unsigned lo, unsigned hi, int flags)
{
    int r = real.close_range(lo, hi, flags);
    if (r == 0 && !(flags & CLOSE_RANGE_CLOEXEC))
        nt_fd_mark_unknown_range(lo, hi);
    return r;
}

void nt_sb_closefrom(int lo)
{
    real.closefrom(lo);
    if (lo >= 0)
        nt_fd_mark_unknown_range((unsigned)lo, NT_FD_MAX - 1);
}

int nt_sb_socketpair(int domain, int type, int protocol, int sv[2])
{
    int r = real.socketpair(domain, type, protocol, sv);
    if (r == 0) {
        nt_fd_mark_unknown(sv[0]);
        nt_fd_mark_unknown(sv[1]);
    }
    return r;
}

int nt_sb_fcntl(int (*next)(int, int, ...), int fd, int cmd, long arg)
{
    int r = next(fd, cmd, arg);
    if (cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC)
        nt_sb_fd(r);
    return r;
}

long nt_sb_resume(int fd, const struct nt_op *op, unsigned long done,
                  int saved_errno)
{
    ssize_t r = op->attempt(fd, op, op->flags, done);
    if (!done) {
        if (r >= 0)
            errno = saved_errno;
        return r;
    }
    errno = saved_errno; /* bytes moved: the call succeeded */
    return (long)(done + (r > 0 ? (size_t)r : 0));
}
