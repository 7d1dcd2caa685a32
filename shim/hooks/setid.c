/* set*id, setgroups, initgroups, capset: the timer task must not keep the
 * credentials the process had before (deadline/timer.c). glibc changes
 * every thread it knows of, which, with no pthread of the program's,
 * is only the caller; the task is stopped before the call and a new one
 * is cloned from the caller afterwards (nt_timer_suspend/resume).
 * syscall(SYS_set*id) goes the same way (hooks/syscall.c). */
#include <dlfcn.h>
#include <grp.h>
#include <sys/fsuid.h>
#include <unistd.h>

#include "core/nt.h"
#include "core/process.h"
#include "deadline/timer.h"


/* Not in a vfork child (the task is its parent's), not for the library's
 * own calls, not before the library is up (there is no task then). */
int nt_setid_before(void)
{
    if (!__atomic_load_n(&nt_g.ready, __ATOMIC_ACQUIRE) || nt_in_lib ||
        nt_bypass_slow())
        return 0;
    return nt_timer_suspend();
}

void nt_setid_after(int token)
{
    NT_KEEP_ERRNO(nt_timer_resume(token));
}

/* Resolved on first use: these are rare calls, and dlsym at init would
 * cost every exec. */
#define NT_SETID_HOOK(name, params, args)                                  \
    NT_EXPORT int name params                                              \
    {                                                                      \
        static int(*next_) params;                                         \
        int(*f_) params = __atomic_load_n(&next_, __ATOMIC_ACQUIRE);       \
        if (!f_) {                                                         \
            f_ = (int(*) params)dlsym(RTLD_NEXT, #name);                   \
            __atomic_store_n(&next_, f_, __ATOMIC_RELEASE);                \
        }                                                                  \
        int token_ = nt_setid_before();                                    \
        int r_ = f_ args;                                                  \
        nt_setid_after(token_);                                            \
        return r_;                                                         \
    }

NT_SETID_HOOK(setuid, (uid_t u), (u))
NT_SETID_HOOK(setgid, (gid_t g), (g))
NT_SETID_HOOK(seteuid, (uid_t u), (u))
NT_SETID_HOOK(setegid, (gid_t g), (g))
NT_SETID_HOOK(setreuid, (uid_t r, uid_t e), (r, e))
NT_SETID_HOOK(setregid, (gid_t r, gid_t e), (r, e))
NT_SETID_HOOK(setresuid, (uid_t r, uid_t e, uid_t s), (r, e, s))
NT_SETID_HOOK(setresgid, (gid_t r, gid_t e, gid_t s), (r, e, s))
NT_SETID_HOOK(setfsuid, (uid_t u), (u))
NT_SETID_HOOK(setfsgid, (gid_t g), (g))
NT_SETID_HOOK(setgroups, (size_t n, const gid_t *list), (n, list))
NT_SETID_HOOK(initgroups, (const char *user, gid_t g), (user, g))
/* Capabilities are per thread too (a root daemon that keeps uid 0 and
 * drops capabilities). No glibc header declares it. */
int capset(void *hdr, const void *data);
NT_SETID_HOOK(capset, (void *hdr, const void *data), (hdr, data))
