/* dprintf, vdprintf and their fortified forms. glibc formats into a FILE
 * of its own and writes it with its internal write, which no hook sees:
 * on a coalescing connection those bytes would overtake the ones still
 * buffered (LESSONS 24). On a governed socket the library has glibc's
 * stdio format the text into a FILE of its own (same buffer size, so the
 * same write()s) whose writes go through the I/O engine, like a write()
 * of the program's: in order with buffered bytes, under the connection's
 * deadlines and audit. Each write is made whole (looping over partial
 * writes), and the call returns the characters formatted, or -1 on a
 * write error, as glibc's. Every other fd goes straight to glibc, after
 * what was coalesced when it is a pipe or another socket. */
#include <stdarg.h>
#include <stdio.h>
#include <stdio_ext.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "coalesce/coalesce.h"
#include "core/io.h"
#include "core/real.h"

int __vfprintf_chk(FILE *fp, int flag, const char *format, va_list ap);
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
        if (r <= 0) /* EINTR too: glibc's file write stops there */
            return -1;
        off += (size_t)r;
    }
    return n;
}

/* glibc's vdprintf writes through a FILE buffer of the socket's st_blksize
 * (BUFSIZ at most): a long text goes out as several write()s, and after a
 * peer's FIN the second one fails with EPIPE (SIGPIPE), where one big write
 * would succeed. So the text goes through the same stdio machinery, into a
 * buffer of the same size, and each write glibc would make is made through
 * the engine instead. */
struct text_sink {
    int fd;
    void *caller;
};

/* Like glibc's file write: all of it, or 0 on an error (errno set). A
 * -1 would be taken for a byte count by the stdio machinery. */
static ssize_t sink_write(void *cookie, const char *buf, size_t n)
{
    struct text_sink *s = cookie;
    return write_text(s->fd, buf, (int)n, s->caller) < 0 ? 0 : (ssize_t)n;
}

/* flag < 0: not fortified. */
__attribute__((noinline)) static int
governed_vdprintf(int fd, int flag, const char *fmt, va_list ap, void *caller)
{
    size_t size = BUFSIZ;
    struct stat st;
    if (fstat(fd, &st) == 0 && st.st_blksize > 0 && st.st_blksize < BUFSIZ)
        size = (size_t)st.st_blksize;
    struct text_sink sink = { fd, caller };
    cookie_io_functions_t io = { .write = sink_write };
    FILE *fp = fopencookie(&sink, "w", io);
    /* on the heap, as glibc's own: a handler on a small alternate
     * signal stack may call dprintf */
    char *buf = fp ? malloc(size) : NULL;
    if (!buf) {
        if (fp)
            fclose(fp);
        errno = ENOMEM; /* as glibc's own allocation */
        return -1;
    }
    setvbuf(fp, buf, _IOFBF, size);
    int n = flag < 0 ? vfprintf(fp, fmt, ap) : __vfprintf_chk(fp, flag, fmt, ap);
    if (n >= 0 && fflush(fp) != 0)
        n = -1;
    /* after an error glibc writes nothing more: neither does the close */
    NT_KEEP_ERRNO(__fpurge(fp); fclose(fp); free(buf));
    return n;
}

static int governed(int fd)
{
    if (!nt_fd_passes(fd) && nt_conn_get(fd) != NULL)
        return 1;
    /* glibc's write to a pipe or another socket: a message that must not
     * overtake what was coalesced (as write(), hooks/write.c) */
    if (unlikely(nt_coalesce_held()))
        nt_coalesce_flush_for_send(fd);
    return 0;
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
