/* dprintf, vdprintf and their fortified forms. glibc formats into a FILE
 * of its own and writes it with its internal write, which no hook sees:
 * on a coalescing connection those bytes would overtake the ones still
 * buffered (LESSONS 24). On a governed socket the library formats the
 * text itself and writes it through the I/O engine, like a write() of the
 * program's: in order with buffered bytes, under the connection's
 * deadlines and audit. glibc writes the text whole (looping over partial
 * writes) and returns the characters formatted, or -1 on a write error:
 * so does this. Every other fd goes straight to glibc. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "core/io.h"
#include "core/real.h"

int __vsnprintf_chk(char *s, size_t maxlen, int flag, size_t slen,
                    const char *format, va_list ap);
int __dprintf_chk(int fd, int flag, const char *format, ...);



static ssize_t attempt_text(int fd, const struct nt_op *op, int flags,
                            size_t skip)
{
    const struct iovec *v = op->iov;
    if (!flags)
        return real.write(fd, (const char *)v->iov_base + skip,
                          v->iov_len - skip);
    return real.send(fd, (const char *)v->iov_base + skip, v->iov_len - skip,
                     flags);
}

/* The formatted text, written whole through the engine. */
static int write_text(int fd, const char *text, int n, void *caller)
{
    size_t off = 0;
    while (off < (size_t)n) {
        struct iovec v = { (void *)(text + off), (size_t)n - off };
        struct nt_op op = { .name = "dprintf", .dir = NT_OUT,
                            .total = v.iov_len, .attempt = attempt_text,
                            .args = NULL, .caller = caller, .iov = &v,
                            .iovcnt = 1 };
        ssize_t r = nt_io_call(fd, &op);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        off += (size_t)r;
    }
    return n;
}

/* flag < 0: not fortified. */
__attribute__((noinline)) static int
governed_vdprintf(int fd, int flag, const char *fmt, va_list ap, void *caller)
{
    char small[1024], *text = small;
    va_list again;
    va_copy(again, ap);
    int n = flag < 0 ? vsnprintf(small, sizeof small, fmt, ap)
                     : __vsnprintf_chk(small, sizeof small, flag,
                                       sizeof small, fmt, ap);
    if (n >= (int)sizeof small) {
        text = malloc((size_t)n + 1);
        if (!text) {
            va_end(again);
            return -1; /* errno: ENOMEM, as glibc's own allocation */
        }
        n = flag < 0 ? vsnprintf(text, (size_t)n + 1, fmt, again)
                     : __vsnprintf_chk(text, (size_t)n + 1, flag,
                                       (size_t)n + 1, fmt, again);
    }
    va_end(again);
    if (n > 0)
        n = write_text(fd, text, n, caller);
    if (text != small)
        NT_KEEP_ERRNO(free(text));
    return n;
}

static int governed(int fd)
{
    return !nt_fd_passes(fd) && nt_conn_get(fd) != NULL;
}

NT_EXPORT int vdprintf(int fd, const char *fmt, va_list ap)
{
    if (governed(fd))
        return governed_vdprintf(fd, -1, fmt, ap, NT_CALLER());
    return real.vdprintf(fd, fmt, ap);
}

NT_EXPORT int dprintf(int fd, const char *fmt, ...)
{
    va_list ap;
    int r;
    va_start(ap, fmt);
    if (governed(fd)) {
        r = governed_vdprintf(fd, -1, fmt, ap, NT_CALLER());
    } else {
        r = real.vdprintf(fd, fmt, ap);
    }
    va_end(ap);
    return r;
}

NT_EXPORT int __vdprintf_chk(int fd, int flag, const char *fmt, va_list ap)
{
    if (governed(fd))
        return governed_vdprintf(fd, flag, fmt, ap, NT_CALLER());
    return real.__vdprintf_chk(fd, flag, fmt, ap);
}

NT_EXPORT int __dprintf_chk(int fd, int flag, const char *fmt, ...)
{
    va_list ap;
    int r;
    va_start(ap, fmt);
    if (governed(fd)) {
        r = governed_vdprintf(fd, flag, fmt, ap, NT_CALLER());
    } else {
        r = real.__vdprintf_chk(fd, flag, fmt, ap);
    }
    va_end(ap);
    return r;
}
