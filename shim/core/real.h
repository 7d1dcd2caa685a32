/* The next definition of every interposed function, resolved with
 * dlsym(RTLD_NEXT) (never dlopen("libc.so.6"): that would skip other
 * preloaded libraries). Resolved all at once by nt_init_slow(); before
 * that, hooks fall back to raw syscalls (see real.c). */
#ifndef NT_REAL_H
#define NT_REAL_H

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <wordexp.h>

/* X(return type, name, (parameter list)) */
#define NT_REAL_FUNCS(X)                                                      \
    X(int, socket, (int, int, int))                                          \
    X(int, socketpair, (int, int, int, int[2]))                              \
    X(int, pipe2, (int[2], int))                                             \
    X(int, sigaction, (int, const struct sigaction *, struct sigaction *))   \
    X(int, connect, (int, const struct sockaddr *, socklen_t))               \
    X(int, listen, (int, int))                                               \
    X(int, getsockopt, (int, int, int, void *, socklen_t *))                 \
    X(int, setsockopt, (int, int, int, const void *, socklen_t))             \
    X(FILE *, fdopen, (int, const char *))                                   \
    X(int, fclose, (FILE *))                                                 \
    X(int, accept, (int, struct sockaddr *, socklen_t *))                    \
    X(int, accept4, (int, struct sockaddr *, socklen_t *, int))              \
    X(ssize_t, read, (int, void *, size_t))                                  \
    X(ssize_t, readv, (int, const struct iovec *, int))                      \
    X(ssize_t, recv, (int, void *, size_t, int))                             \
    X(ssize_t, recvfrom, (int, void *, size_t, int, struct sockaddr *,       \
                          socklen_t *))                                      \
    X(ssize_t, recvmsg, (int, struct msghdr *, int))                         \
    X(int, recvmmsg, (int, struct mmsghdr *, unsigned, int,                  \
                      struct timespec *))                                    \
    X(ssize_t, write, (int, const void *, size_t))                           \
    X(ssize_t, writev, (int, const struct iovec *, int))                     \
    X(ssize_t, send, (int, const void *, size_t, int))                       \
    X(ssize_t, sendto, (int, const void *, size_t, int,                      \
                        const struct sockaddr *, socklen_t))                 \
    X(ssize_t, sendmsg, (int, const struct msghdr *, int))                   \
    X(int, sendmmsg, (int, struct mmsghdr *, unsigned, int))                 \
    X(ssize_t, sendfile, (int, int, off_t *, size_t))                        \
    X(ssize_t, sendfile64, (int, int, off_t *, size_t))                      \
    X(ssize_t, splice, (int, loff_t *, int, loff_t *, size_t, unsigned))     \
    X(int, close, (int))                                                     \
    X(int, close_range, (unsigned, unsigned, int))                           \
    X(void, closefrom, (int))                                                \
    X(int, shutdown, (int, int))                                             \
    X(int, dup, (int))                                                       \
    X(int, dup2, (int, int))                                                 \
    X(int, dup3, (int, int, int))                                            \
    X(int, fcntl, (int, int, ...))                                           \
    X(int, fcntl64, (int, int, ...))                                         \
    X(int, ioctl, (int, unsigned long, ...))                                 \
    X(int, poll, (struct pollfd *, nfds_t, int))                             \
    X(int, ppoll, (struct pollfd *, nfds_t, const struct timespec *,         \
                   const sigset_t *))                                        \
    X(int, select, (int, fd_set *, fd_set *, fd_set *, struct timeval *))    \
    X(int, pselect, (int, fd_set *, fd_set *, fd_set *,                      \
                     const struct timespec *, const sigset_t *))             \
    X(int, epoll_wait, (int, struct epoll_event *, int, int))                \
    X(int, epoll_pwait, (int, struct epoll_event *, int, int,                \
                         const sigset_t *))                                  \
    X(int, epoll_pwait2, (int, struct epoll_event *, int,                    \
                          const struct timespec *, const sigset_t *))        \
    X(pid_t, fork, (void))                                                   \
    X(int, setuid, (uid_t))                                                  \
    X(int, setgid, (gid_t))                                                  \
    X(int, seteuid, (uid_t))                                                 \
    X(int, setegid, (gid_t))                                                 \
    X(int, setreuid, (uid_t, uid_t))                                         \
    X(int, setregid, (gid_t, gid_t))                                         \
    X(int, setresuid, (uid_t, uid_t, uid_t))                                 \
    X(int, setresgid, (gid_t, gid_t, gid_t))                                 \
    X(int, setgroups, (size_t, const gid_t *))                               \
    X(int, initgroups, (const char *, gid_t))                                \
    X(int, execve, (const char *, char *const[], char *const[]))             \
    X(int, execv, (const char *, char *const[]))                             \
    X(int, execvp, (const char *, char *const[]))                            \
    X(int, execvpe, (const char *, char *const[], char *const[]))            \
    X(int, fexecve, (int, char *const[], char *const[]))                     \
    X(int, posix_spawn, (pid_t *, const char *,                              \
                         const posix_spawn_file_actions_t *,                 \
                         const posix_spawnattr_t *, char *const[],           \
                         char *const[]))                                     \
    X(int, posix_spawnp, (pid_t *, const char *,                             \
                          const posix_spawn_file_actions_t *,                \
                          const posix_spawnattr_t *, char *const[],          \
                          char *const[]))                                    \
    X(void, _exit, (int))                                                    \
    X(void, _Exit, (int))                                                    \
    X(void, exit, (int))                                                     \
    X(int, vdprintf, (int, const char *, va_list))                           \
    X(int, __vdprintf_chk, (int, int, const char *, va_list))                \
    X(int, system, (const char *))                                           \
    X(FILE *, popen, (const char *, const char *))                           \
    X(int, wordexp, (const char *, wordexp_t *, int))                        \
    X(ssize_t, __read_chk, (int, void *, size_t, size_t))                    \
    X(ssize_t, __recv_chk, (int, void *, size_t, size_t, int))               \
    X(ssize_t, __recvfrom_chk, (int, void *, size_t, size_t, int,            \
                                struct sockaddr *, socklen_t *))             \
    X(int, __poll_chk, (struct pollfd *, nfds_t, int, size_t))               \
    X(int, __ppoll_chk, (struct pollfd *, nfds_t, const struct timespec *,   \
                         const sigset_t *, size_t))

#define NT_REAL_FIELD(ret, name, args) ret (*name) args;
struct nt_real {
    NT_REAL_FUNCS(NT_REAL_FIELD)
};
#undef NT_REAL_FIELD

/* Fortified entry points: glibc's headers declare them only for their own
 * inline wrappers. */
int __vdprintf_chk(int, int, const char *, va_list);
ssize_t __read_chk(int, void *, size_t, size_t);
ssize_t __recv_chk(int, void *, size_t, size_t, int);
ssize_t __recvfrom_chk(int, void *, size_t, size_t, int, struct sockaddr *,
                       socklen_t *);
int __poll_chk(struct pollfd *, nfds_t, int, size_t);
int __ppoll_chk(struct pollfd *, nfds_t, const struct timespec *,
                const sigset_t *, size_t);

/* Before init completes these point at raw-syscall fallbacks, so a hook
 * that runs during dlsym (or before any constructor) still works. */
extern struct nt_real real;

void nt_real_resolve(void);

#if defined(__x86_64__)
/* A system call with no libc in between: errno untouched, nothing
 * interposed (-errno on failure). */
static inline long nt_raw6(long n, long a, long b, long c, long d, long e,
                           long f)
{
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    long ret;
    __asm__ volatile("syscall"
                     : "=a"(ret)
                     : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8),
                       "r"(r9)
                     : "rcx", "r11", "memory");
    return ret;
}
#endif

/* A recv or send that cannot block (MSG_DONTWAIT: the engine's first try
 * of a blocking call it waits for itself), made as a raw system call when
 * the next definitions are glibc's own (nt_raw_nowait, set by
 * nt_real_resolve: another preloaded library that wraps them keeps
 * seeing them). Why: once the process has a second thread (the timer),
 * glibc makes every cancellation point switch to asynchronous
 * cancellation around the system call, ~30 instructions. A call that
 * cannot block needs only the check at entry, which
 * pthread_testcancel() makes: a pending cancel acts here, as it would in
 * glibc's wrapper. Same system calls as glibc's (recvfrom, sendto). */
extern int nt_raw_nowait;
ssize_t nt_recv_nowait(int fd, void *buf, size_t len, int flags);
ssize_t nt_send_nowait(int fd, const void *buf, size_t len, int flags);

/* The same call (out: send, else recv) as a raw system call, answered
 * as the kernel answers it: the count, or -errno with errno left alone,
 * so that a blocking call that succeeds after a wait leaves the program's
 * errno as it was without reading it first. Only where nt_raw_nowait is
 * set (x86_64; io.h makes the hook's own call otherwise). Inline: the
 * I/O fast path's try. */
static inline ssize_t nt_xfer_raw(int out, int fd, const void *buf,
                                  size_t len, int flags)
{
#if defined(__x86_64__)
    pthread_testcancel();
    return nt_raw6(out ? SYS_sendto : SYS_recvfrom, fd, (long)buf, (long)len,
                   flags, 0, 0);
#else
    (void)out, (void)fd, (void)buf, (void)len, (void)flags;
    return -ENOSYS; /* never called: nt_raw_nowait stays 0 */
#endif
}

#endif
