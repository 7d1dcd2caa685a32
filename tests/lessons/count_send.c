/* A preloaded library that wraps send() and counts the calls that reach
 * it. Loaded after libnettimeo.so, it must see the sends nettimeo makes on
 * the program's behalf: nettimeo resolves with RTLD_NEXT, not by opening
 * libc itself (LESSONS 2). */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <sys/socket.h>

static unsigned long sends;

ssize_t send(int fd, const void *buf, size_t len, int flags)
{
    static ssize_t (*next)(int, const void *, size_t, int);
    if (!next)
        next = (ssize_t(*)(int, const void *, size_t, int))dlsym(RTLD_NEXT, "send");
    __atomic_add_fetch(&sends, 1, __ATOMIC_RELAXED);
    return next(fd, buf, len, flags);
}

__attribute__((destructor)) static void report(void)
{
    dprintf(2, "count_send: %lu\n", sends);
}
