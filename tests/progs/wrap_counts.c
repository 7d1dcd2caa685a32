/* A second interposer stacked after libnettimeo.so (a tracer, a UDP
 * shim): it counts the sendto and recvfrom calls it sees and prints the
 * counts at exit. LESSONS: a library must not skip the next one. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

static int sendtos, recvfroms;

ssize_t sendto(int fd, const void *buf, size_t len, int flags,
               const struct sockaddr *to, socklen_t tolen)
{
    static ssize_t (*next)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
    if (!next)
        next = (ssize_t (*)(int, const void *, size_t, int, const struct sockaddr *, socklen_t))
            dlsym(RTLD_NEXT, "sendto");
    __atomic_add_fetch(&sendtos, 1, __ATOMIC_RELAXED);
    return next(fd, buf, len, flags, to, tolen);
}

ssize_t recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *from,
                 socklen_t *fromlen)
{
    static ssize_t (*next)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
    if (!next)
        next = (ssize_t (*)(int, void *, size_t, int, struct sockaddr *, socklen_t *))
            dlsym(RTLD_NEXT, "recvfrom");
    __atomic_add_fetch(&recvfroms, 1, __ATOMIC_RELAXED);
    return next(fd, buf, len, flags, from, fromlen);
}

__attribute__((destructor)) static void report(void)
{
    char b[64];
    int n = snprintf(b, sizeof b, "wrapped: sendto=%d recvfrom=%d\n", sendtos, recvfroms);
    (void)!write(2, b, (size_t)n);
}
