/* Seccomp sandboxes (issue 15). A program that confines itself with a
 * seccomp filter allows exactly the system calls it makes itself; under
 * the library its write() would become sendto(MSG_NOSIGNAL), its read()
 * recvfrom(MSG_DONTWAIT), and the timer thread would make calls of its
 * own, so the filter would kill it. In a confined thread the library
 * therefore steps back: every hook makes exactly the program's call, with
 * the program's arguments, and nothing else.
 *
 * Who is confined:
 *  - filters the process started under (exec'd under a filter: systemd
 *    SystemCallFilter=, minijail, a launcher with NoNewPrivs): read from
 *    /proc/thread-self/status at init; the whole process is confined;
 *  - filters the program installs through libc (prctl(PR_SET_SECCOMP),
 *    syscall(SYS_seccomp), libseccomp's seccomp_load, which calls either):
 *    seen by the hooks in hooks/sandbox.c; the calling thread, or with
 *    SECCOMP_FILTER_FLAG_TSYNC (or when it is the program's only thread)
 *    the whole process;
 *  - anything else (a filter installed by inline assembly, a thread
 *    created by a confined thread): found by a lazy check, once per
 *    thread, the first time the library is about to act for that thread
 *    (one open/read/close of /proc/thread-self/status).
 *
 * Touch points in the rest of the library are the nt_sandboxed() checks
 * marked "sandbox:"; README "Sandboxed programs" says what they mean. */
#ifndef NT_SANDBOX_H
#define NT_SANDBOX_H

#include <stdint.h>

#include "core/nt.h"

enum { NT_SB_UNKNOWN = 0, NT_SB_FREE = 1, NT_SB_CONFINED = 2 };

/* Nonzero once the library knows of any filter in this process (one it
 * saw installed, one it started under, one a thread check found). */
extern int nt_sb_any;
/* The whole process is confined (inherited filter, TSYNC, or a filter
 * installed by its only thread). */
extern int nt_sb_all;
/* This thread: NT_SB_* (0 until checked). */
extern NT_TLS uint8_t nt_sb_self;

int nt_sandbox_check_thread(void);

/* Must the library keep its hands off this thread's calls? Two loads on
 * the path of a thread already checked; the first call of a thread that
 * was never checked reads /proc (see above). */
static inline int nt_sandboxed(void)
{
    uint8_t s = nt_sb_self;
    if (likely(s == NT_SB_FREE))
        return __atomic_load_n(&nt_sb_all, __ATOMIC_RELAXED);
    return s == NT_SB_CONFINED ? 1 : nt_sandbox_check_thread();
}

/* For the governed fast path (a connection's every call, every wait):
 * one load and a branch while no filter is known anywhere in the process.
 * A thread under a filter installed behind the library's back (inline
 * assembly) is then found on its next slow path (classification, close,
 * a new connection, an event, the timer's start) instead. */
static inline int nt_sandboxed_fast(void)
{
    return unlikely(__atomic_load_n(&nt_sb_any, __ATOMIC_RELAXED)) &&
           nt_sandboxed();
}

/* At init, before the config is read: 1 when the process started under a
 * seccomp filter and the library stands back (it then reads no config and
 * makes no call of its own); NETTIMEO_SECCOMP=govern keeps it governing. */
int nt_sandbox_init(void);

/* The program is about to install a filter (hooks/sandbox.c): flush,
 * log one `sandboxed` event and let go of every connection while this
 * thread may still make the library's calls. `op` is "prctl" or
 * "seccomp"; returns a token for nt_sandbox_installed(). */
struct nt_sb_install {
    uint8_t prev_self;
    int prev_all;
};
void nt_sandbox_before(const char *op, int strict, int tsync, void *caller,
                       struct nt_sb_install *t);
/* The install returned: ok = the filter is in place. */
void nt_sandbox_after(int ok, const struct nt_sb_install *t);

/* Pass-through helpers for the hooks' "sandbox:" lines: make the program's
 * call and keep the fd table honest with memory-only updates (no system
 * call, no allocation), so unconfined threads never act on a number a
 * confined thread closed or reused. */
int nt_sb_fd(int r);                    /* a new fd (or -1): forget its slot */
int nt_sb_close(int fd);
int nt_sb_close_range(unsigned lo, unsigned hi, int flags);
void nt_sb_closefrom(int lo);
int nt_sb_socketpair(int domain, int type, int protocol, int sv[2]);
int nt_sb_fcntl(int (*next)(int, int, ...), int fd, int cmd, long arg);

/* A governed call was under way in a thread that another thread's TSYNC
 * filter has just confined: finish it as the program asked (its own call
 * on its own fd, for what is left; `done` bytes already moved). */
struct nt_op;
long nt_sb_resume(int fd, const struct nt_op *op, unsigned long done,
                  int saved_errno);

#endif
