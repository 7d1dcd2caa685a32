/* Time, temp dirs and small file helpers. */
#define _GNU_SOURCE
#include "nttest.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int64_t nt_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t nt_now_ms(void)
{
    return nt_now_us() / 1000;
}

void nt_sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

bool nt_elapsed_ok(int64_t elapsed_ms, int64_t expected_ms, int64_t slack_ms)
{
    return elapsed_ms * 10 >= expected_ms * 8 && elapsed_ms <= expected_ms + slack_ms;
}

static char tmpdir[64];
static pid_t tmpdir_owner;
static pthread_mutex_t tmpdir_mu = PTHREAD_MUTEX_INITIALIZER;

/* Only the process that made the dir removes it (forked children exit too). */
static void remove_tmpdir(void)
{
    if (tmpdir[0] && getpid() == tmpdir_owner)
        nt_rmtree(tmpdir);
}

char *nt_mkdtemp(void)
{
    char *dir = strdup("/tmp/nttest.XXXXXX");
    if (!mkdtemp(dir)) {
        free(dir);
        return NULL;
    }
    chmod(dir, 0755);
    return dir;
}

const char *nt_tmpdir(void)
{
    pthread_mutex_lock(&tmpdir_mu);
    if (!tmpdir[0] || tmpdir_owner != getpid()) {
        char *dir = nt_mkdtemp();
        if (dir) {
            snprintf(tmpdir, sizeof tmpdir, "%s", dir);
            free(dir);
            if (!tmpdir_owner)
                atexit(remove_tmpdir);
            tmpdir_owner = getpid();
        }
    }
    pthread_mutex_unlock(&tmpdir_mu);
    return tmpdir;
}

char *nt_path(const char *name)
{
    char *p;
    return asprintf(&p, "%s/%s", nt_tmpdir(), name) < 0 ? NULL : p;
}

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    return remove(path);
}

int nt_rmtree(const char *path)
{
    return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

int nt_write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    size_t done = 0;
    if (fd < 0)
        return -1;
    while (done < len) {
        ssize_t n = write(fd, (const char *)data + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            close(fd);
            return -1;
        }
        done += n;
    }
    return close(fd);
}

char *nt_read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t cap = 65536, n = 0;
    char *buf;
    ssize_t got;
    if (fd < 0)
        return NULL;
    buf = malloc(cap);
    while ((got = read(fd, buf + n, cap - n - 1)) != 0) {
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            free(buf);
            close(fd);
            return NULL;
        }
        n += got;
        if (cap - n < 2)
            buf = realloc(buf, cap *= 2);
    }
    close(fd);
    buf[n] = 0;
    if (len)
        *len = n;
    return buf;
}

char *nt_write_tmp(const char *name, const char *text)
{
    char *path = nt_path(name);
    if (path && nt_write_file(path, text, strlen(text)) < 0) {
        free(path);
        return NULL;
    }
    return path;
}

void nt_fill_bytes(void *buf, size_t len, uint32_t seed)
{
    unsigned char *p = buf;
    uint32_t x = seed ? seed : 1;
    for (size_t i = 0; i < len; i++) {   /* xorshift32 */
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (unsigned char)x;
    }
}
