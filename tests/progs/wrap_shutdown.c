/* libwrap_shutdown.so: another preloaded library that wraps a call the
 * timer makes (shutdown), as torsocks or libfaketime wrap theirs. Preloaded
 * after libnettimeo.so, it is what nettimeo's RTLD_NEXT finds. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <sys/socket.h>

int shutdown(int fd, int how)
{
    static int (*next)(int, int);
    if (!next)
        next = (int (*)(int, int))dlsym(RTLD_NEXT, "shutdown");
    return next(fd, how);
}
