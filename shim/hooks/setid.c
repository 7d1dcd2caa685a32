/* set*id, setgroups, initgroups, capset: the timer task must not keep the
 * credentials the process had before (deadline/timer.c). glibc changes
 * every thread it knows of, which, with no pthread of the program's, is
 * only the caller. So, as glibc's own setxid broadcast does, the call is
 * made here, and if it succeeded the timer makes the same raw system
 * call on itself (nt_timer_replay). syscall(SYS_set*id) goes the same way
 * (hooks/syscall.c). Not skipped inside the library or a signal handler:
 * a task left with root's credentials is the failure this prevents. */
#include <dlfcn.h>
#include <grp.h>
#include <stdint.h>
#include <sys/fsuid.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/nt.h"
#include "core/process.h"
#include "deadline/timer.h"

void nt_setid_replay(long nr, long a, long b, long c, long expect, int raw)
{
    if (!__atomic_load_n(&nt_g.ready, __ATOMIC_ACQUIRE))
        return; /* no timer before the library is up */
    nt_timer_replay(nr, a, b, c, expect, raw);
}

/* glibc's setxid broadcast (a pthread timer's credentials changed with
 * the caller's) covers these; setfsuid, setfsgid and capset are plain
 * system calls in glibc too. */
static int glibc_broadcasts(long nr)
{
    return nr != SYS_setfsuid && nr != SYS_setfsgid && nr != SYS_capset;
}

/* Resolved on first use: these are rare calls, and dlsym at init would
 * cost every exec. `ok`: the call did what the replay repeats; nr, a, b,
 * c: the raw call glibc made (seteuid is setresuid(-1, u, -1)). */
#define NT_SETID_HOOK(name, params, args, ok, nr, a, b, c)                  \
    NT_EXPORT int name params                                              \
    {                                                                      \
        static int(*next_) params;                                         \
        int(*f_) params = __atomic_load_n(&next_, __ATOMIC_ACQUIRE);       \
        if (!f_) {                                                         \
            f_ = (int(*) params)dlsym(RTLD_NEXT, #name);                   \
            __atomic_store_n(&next_, f_, __ATOMIC_RELEASE);                \
        }                                                                  \
        int r_ = f_ args;                                                  \
        if (ok) {                                                          \
            int e_ = errno;                                                \
            nt_setid_replay(nr, (long)(a), (long)(b), (long)(c), r_,       \
                            !glibc_broadcasts(nr));                        \
            errno = e_;                                                    \
        }                                                                  \
        return r_;                                                         \
    }

#define M1 (-1L)
NT_SETID_HOOK(setuid, (uid_t u), (u), r_ == 0, SYS_setuid, u, 0, 0)
NT_SETID_HOOK(setgid, (gid_t g), (g), r_ == 0, SYS_setgid, g, 0, 0)
NT_SETID_HOOK(seteuid, (uid_t u), (u), r_ == 0, SYS_setresuid, M1, u, M1)
NT_SETID_HOOK(setegid, (gid_t g), (g), r_ == 0, SYS_setresgid, M1, g, M1)
NT_SETID_HOOK(setreuid, (uid_t r, uid_t e), (r, e), r_ == 0, SYS_setreuid,
              r, e, 0)
NT_SETID_HOOK(setregid, (gid_t r, gid_t e), (r, e), r_ == 0, SYS_setregid,
              r, e, 0)
NT_SETID_HOOK(setresuid, (uid_t r, uid_t e, uid_t s), (r, e, s), r_ == 0,
              SYS_setresuid, r, e, s)
NT_SETID_HOOK(setresgid, (gid_t r, gid_t e, gid_t s), (r, e, s), r_ == 0,
              SYS_setresgid, r, e, s)
/* No failure to tell: the old fs id comes back either way, the same for
 * the timer, whose credentials were the caller's. */
NT_SETID_HOOK(setfsuid, (uid_t u), (u), 1, SYS_setfsuid, u, 0, 0)
NT_SETID_HOOK(setfsgid, (gid_t g), (g), 1, SYS_setfsgid, g, 0, 0)
NT_SETID_HOOK(setgroups, (size_t n, const gid_t *list), (n, list), r_ == 0,
              SYS_setgroups, n, list, 0)
/* Capabilities are per thread too (a root daemon that keeps uid 0 and
 * drops capabilities). No glibc header declares it. */
int capset(void *hdr, const void *data);
NT_SETID_HOOK(capset, (void *hdr, const void *data), (hdr, data), r_ == 0,
              SYS_capset, hdr, data, 0)

/* initgroups sets the list it read from the group database: the timer
 * gets the list the caller has now. */
NT_EXPORT int initgroups(const char *user, gid_t g)
{
    static int (*next_)(const char *, gid_t);
    int (*f_)(const char *, gid_t) = __atomic_load_n(&next_, __ATOMIC_ACQUIRE);
    if (!f_) {
        f_ = (int (*)(const char *, gid_t))dlsym(RTLD_NEXT, "initgroups");
        __atomic_store_n(&next_, f_, __ATOMIC_RELEASE);
    }
    int r = f_(user, g);
    if (r == 0) {
        int e = errno;
        static gid_t list[65536];
        /* (a signal handler's initgroups would share `list`: glibc's own
         * initgroups is not async-signal-safe either) */
        long n = syscall(SYS_getgroups, 65536, list);
        if (n >= 0)
            nt_setid_replay(SYS_setgroups, n, (long)list, 0, 0, 0);
        errno = e;
    }
    return r;
}
