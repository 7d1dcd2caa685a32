/* Reading a config file from inside someone else's process: never block
 * (a FIFO or a device given as the config), never leak an fd into an exec,
 * never read an unbounded amount. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int fail_errno(char *err, size_t errlen, const char *what, int e)
{
    char buf[128];
    snprintf(err, errlen, "%s: %s", what, strerror_r(e, buf, sizeof buf));
    return -1;
}

static const char *file_kind(mode_t m)
{
    return S_ISDIR(m) ? "a directory"
         : S_ISFIFO(m) ? "a FIFO"
         : S_ISCHR(m) ? "a character device"
         : S_ISBLK(m) ? "a block device"
         : S_ISSOCK(m) ? "a socket" : "an unknown kind of file";
}

/* Reads to EOF into a buffer that grows up to NTC_MAX_FILE + 1 bytes; the
 * loop stops at EOF before the buffer is full, which leaves the spare byte
 * the parser needs for its terminating NUL. */
static int read_all(int fd, size_t hint, char **text, size_t *len, char *err,
                    size_t errlen)
{
    size_t cap = (hint < NTC_MAX_FILE ? hint : NTC_MAX_FILE) + 1, n = 0;
    char *buf = malloc(cap);

    for (;;) {
        if (!buf) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        if (n == cap) {
            if (cap > NTC_MAX_FILE) {
                free(buf);
                snprintf(err, errlen, "file too large (at most %u bytes)",
                         NTC_MAX_FILE);
                return -1;
            }
            size_t bigger = cap * 2 > NTC_MAX_FILE + 1 ? NTC_MAX_FILE + 1 : cap * 2;
            char *grown = realloc(buf, bigger);
            if (!grown)
                free(buf);
            buf = grown;
            cap = bigger;
            continue;
        }
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            free(buf);
            return fail_errno(err, errlen, "cannot read", e);
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    *text = buf;
    *len = n;
    return 0;
}

int ntc_read_file(const char *path, char **text, size_t *len, char *err,
                  size_t errlen)
{
    struct stat st;
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    int rc = -1;

    if (fd < 0)
        return fail_errno(err, errlen, "cannot open", errno);
    if (fstat(fd, &st) != 0)
        fail_errno(err, errlen, "cannot stat", errno);
    else if (!S_ISREG(st.st_mode))
        snprintf(err, errlen, "is %s, not a regular file", file_kind(st.st_mode));
    else if (st.st_size > (off_t)NTC_MAX_FILE)
        snprintf(err, errlen, "file too large (%lld bytes, at most %u)",
                 (long long)st.st_size, NTC_MAX_FILE);
    else
        rc = read_all(fd, (size_t)st.st_size, text, len, err, errlen);
    close(fd);
    return rc;
}
