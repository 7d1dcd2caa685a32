/* Resolution of the next definitions (RTLD_NEXT) of interposed functions. */
#define _GNU_SOURCE 1
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/nt.h"
#include "core/real.h"

/* Raw-syscall stand-ins used until dlsym has answered: an allocator or
 * logger that reads or writes while the library resolves its symbols must
 * not find a NULL pointer. */
static ssize_t early_read(int fd, void *b, size_t n) { return syscall(SYS_read, fd, b, n); }
static ssize_t early_write(int fd, const void *b, size_t n) { return syscall(SYS_write, fd, b, n); }
static ssize_t early_readv(int fd, const struct iovec *v, int n) { return syscall(SYS_readv, fd, v, n); }
static ssize_t early_writev(int fd, const struct iovec *v, int n) { return syscall(SYS_writev, fd, v, n); }
static int early_close(int fd) { return (int)syscall(SYS_close, fd); }
static int early_pipe2(int fds[2], int flags) { return (int)syscall(SYS_pipe2, fds, flags); }
/* glibc's own (it adds the signal restorer a raw system call lacks). */
extern int __sigaction(int, const struct sigaction *, struct sigaction *);
static int early_poll(struct pollfd *p, nfds_t n, int t) { return (int)syscall(SYS_poll, p, n, t); }
static ssize_t early_recv(int fd, void *b, size_t n, int f) { return syscall(SYS_recvfrom, fd, b, n, f, 0, 0); }
static ssize_t early_send(int fd, const void *b, size_t n, int f) { return syscall(SYS_sendto, fd, b, n, f, 0, 0); }

struct nt_real real = {
    .read = early_read, .write = early_write, .readv = early_readv,
    .writev = early_writev, .close = early_close, .poll = early_poll,
    .recv = early_recv, .send = early_send, .pipe2 = early_pipe2,
    .sigaction = __sigaction,
};

int nt_raw_nowait;

/* Are the next recv and send (and recvfrom, sendto: the fast path
 * makes the recv and send hooks' tries raw too) glibc's own? (Compared,
 * not resolved: calls still go through RTLD_NEXT.) ~8k instructions once
 * per exec. */
static int recv_send_are_libc(void)
{
    void *libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    if (!libc)
        return 0;
    int same = dlsym(libc, "recv") == (void *)real.recv &&
               dlsym(libc, "send") == (void *)real.send &&
               dlsym(libc, "recvfrom") == (void *)real.recvfrom &&
               dlsym(libc, "sendto") == (void *)real.sendto;
    dlclose(libc);
    return same;
}

void nt_real_resolve(void)
{
    void *p;
#define NT_RESOLVE(ret, name, args)                                         \
    p = dlsym(RTLD_NEXT, #name);                                            \
    if (p)                                                                  \
        __atomic_store_n((void **)&real.name, p, __ATOMIC_RELEASE);
    NT_REAL_FUNCS(NT_RESOLVE)
#undef NT_RESOLVE
#if defined(__x86_64__) && !defined(NT_SANITIZER_BUILD)
    /* the sanitizers check buffers in their own recv/send: keep them */
    nt_raw_nowait = recv_send_are_libc();
#else
    (void)recv_send_are_libc;
#endif
}

#if defined(__x86_64__)
static inline ssize_t raw_result(long r)
{
    if (r < 0 && r > -4096) {
        errno = (int)-r;
        return -1;
    }
    return r;
}
#endif

ssize_t nt_recv_nowait(int fd, void *buf, size_t len, int flags)
{
#if defined(__x86_64__)
    if (nt_raw_nowait) {
        pthread_testcancel();
        return raw_result(nt_raw6(SYS_recvfrom, fd, (long)buf, (long)len,
                               flags, 0, 0));
    }
#endif
    return real.recv(fd, buf, len, flags);
}

ssize_t nt_send_nowait(int fd, const void *buf, size_t len, int flags)
{
#if defined(__x86_64__)
    if (nt_raw_nowait) {
        pthread_testcancel();
        return raw_result(nt_raw6(SYS_sendto, fd, (long)buf, (long)len, flags,
                               0, 0));
    }
#endif
    return real.send(fd, buf, len, flags);
}
