/* The set*id family: glibc gives the new credentials to every thread it
 * counts, so it must count the timer thread here (core/libc_threads.c);
 * a timer left with the old ones would keep privileges the program
 * dropped. */
#include <errno.h>
#include <grp.h>
#include <limits.h>
#include <unistd.h>

#include "core/libc_threads.h"
#include "core/nt.h"
#include "core/real.h"

#define NT_SETID(name, params, args)                                        \
    NT_EXPORT int name params                                               \
    {                                                                       \
        nt_init();                                                          \
        int token = nt_libc_reveal();                                       \
        int ret = real.name args;                                           \
        nt_libc_rehide(token);                                              \
        return ret;                                                         \
    }

NT_SETID(setuid, (uid_t u), (u))
NT_SETID(setgid, (gid_t g), (g))
NT_SETID(seteuid, (uid_t u), (u))
NT_SETID(setegid, (gid_t g), (g))
NT_SETID(setreuid, (uid_t r, uid_t e), (r, e))
NT_SETID(setregid, (gid_t r, gid_t e), (r, e))
NT_SETID(setresuid, (uid_t r, uid_t e, uid_t s), (r, e, s))
NT_SETID(setresgid, (gid_t r, gid_t e, gid_t s), (r, e, s))
NT_SETID(setgroups, (size_t n, const gid_t *l), (n, l))

/* initgroups runs NSS modules (files, LDAP, sss), which may block for as
 * long as they like: no window around it (the program's signals stay
 * deliverable). It sets the groups through glibc's internal setgroups,
 * on the calling thread alone while the timer is hidden; the same list
 * then goes to every thread with one setgroups. Not async-signal-safe,
 * so the one program thread is the only caller: a static list is fine. */
NT_EXPORT int initgroups(const char *user, gid_t g)
{
    static gid_t list[NGROUPS_MAX];
    nt_init();
    int ret = real.initgroups(user, g);
    int token = ret == 0 ? nt_libc_reveal() : 0;
    if (token) {
        int saved = errno;
        int n = getgroups(NGROUPS_MAX, list);
        if (n >= 0)
            real.setgroups((size_t)n, list);
        errno = saved;
    }
    nt_libc_rehide(token);
    return ret;
}
