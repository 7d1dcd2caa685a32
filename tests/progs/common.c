/* Shared pieces of the test programs; see common.h. */
#define _GNU_SOURCE
#include "common.h"

#include <time.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

noreturn void pc_die(const char *fmt, ...)
{
    int e = errno;
    va_list ap;
    size_t n = strlen(fmt);
    fprintf(stderr, "%s: ", program_invocation_short_name);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (n && fmt[n - 1] == ':')
        fprintf(stderr, " %s", strerror(e));
    fputc('\n', stderr);
    exit(PC_EXIT_SETUP);
}

long pc_num(const char *s)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || v < 0)
        pc_die("bad number '%s'", s);
    switch (*end) {
    case 'k': case 'K': v <<= 10; end++; break;
    case 'm': case 'M': v <<= 20; end++; break;
    }
    if (*end)
        pc_die("bad number '%s'", s);
    return v;
}

int pc_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
    char host[64];
    const char *colon;
    memset(ss, 0, sizeof *ss);
    if (s[0] == '/') {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        if (strlen(s) >= sizeof un->sun_path)
            return -1;
        un->sun_family = AF_UNIX;
        strcpy(un->sun_path, s);
        *len = sizeof *un;
        return 0;
    }
    colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof host)
        return -1;
    if (s[0] == '[') {          /* [v6]:port */
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        if (colon[-1] != ']')
            return -1;
        memcpy(host, s + 1, colon - s - 2);
        host[colon - s - 2] = 0;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(atoi(colon + 1));
        *len = sizeof *in6;
        return inet_pton(AF_INET6, host, &in6->sin6_addr) == 1 ? 0 : -1;
    }
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    memcpy(host, s, colon - s);
    host[colon - s] = 0;
    in->sin_family = AF_INET;
    in->sin_port = htons(atoi(colon + 1));
    *len = sizeof *in;
    return inet_pton(AF_INET, host, &in->sin_addr) == 1 ? 0 : -1;
}

int pc_connect(const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int fd;
    if (pc_parse_addr(addr, &ss, &len) < 0)
        pc_die("bad address '%s'", addr);
    fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    while (connect(fd, (struct sockaddr *)&ss, len) < 0) {
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            errno = e;
            return -1;
        }
    }
    return fd;
}

int pc_listen(const char *addr, int backlog, char *shown, size_t shown_len)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int one = 1, fd;
    if (pc_parse_addr(addr, &ss, &len) < 0)
        pc_die("bad address '%s'", addr);
    fd = socket(ss.ss_family, SOCK_STREAM, 0);
    if (fd < 0)
        pc_die("socket:");
    if (ss.ss_family == AF_UNIX)
        unlink(((struct sockaddr_un *)&ss)->sun_path);
    else
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, backlog) < 0)
        pc_die("bind/listen %s:", addr);
    len = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &len);
    if (ss.ss_family == AF_UNIX)
        snprintf(shown, shown_len, "%s", ((struct sockaddr_un *)&ss)->sun_path);
    else   /* sin_port and sin6_port sit at the same offset */
        snprintf(shown, shown_len, "%u", ntohs(((struct sockaddr_in *)&ss)->sin_port));
    return fd;
}

static unsigned char pattern_byte(uint64_t i)
{
    return (unsigned char)(i * 7 + (i >> 8) * 13 + (i >> 16) * 101);
}

void pc_pattern(unsigned char *buf, size_t len, uint64_t off)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = pattern_byte(off + i);
}

long pc_pattern_check(const unsigned char *buf, size_t len, uint64_t off)
{
    for (size_t i = 0; i < len; i++)
        if (buf[i] != pattern_byte(off + i))
            return (long)i;
    return -1;
}

uint64_t pc_fnv(uint64_t h, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 0x100000001b3ULL;
    return h;
}

ssize_t pc_write_full(int fd, const void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, (const char *)buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        done += n;
    }
    return done;
}

ssize_t pc_read_full(int fd, void *buf, size_t len)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = read(fd, (char *)buf + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        done += n;
    }
    return done;
}

int pc_echo_exchange(int fd, size_t total, size_t chunk, uint64_t *fnv)
{
    /* Stack buffers, no stdio on success: callable in the child of a fork
     * from a multi-threaded program, where malloc may be locked (ASan). */
    unsigned char out[16384], in[16384];
    if (chunk > sizeof out)
        chunk = sizeof out;
    for (size_t off = 0; off < total; off += chunk) {
        size_t n = total - off < chunk ? total - off : chunk;
        ssize_t got;
        long bad;
        pc_pattern(out, n, off);
        if (pc_write_full(fd, out, n) < 0) {
            dprintf(2, "write at %zu: %s\n", off, strerror(errno));
            return -1;
        }
        if ((got = pc_read_full(fd, in, n)) != (ssize_t)n) {
            dprintf(2, "read at %zu: got %zd of %zu: %s\n", off, got, n,
                    got < 0 ? strerror(errno) : "EOF");
            return -1;
        }
        if ((bad = pc_pattern_check(in, n, off)) >= 0) {
            dprintf(2, "mismatch at byte %zu\n", off + bad);
            return -1;
        }
        *fnv = pc_fnv(*fnv, in, n);
    }
    return 0;
}

uint64_t pc_echo_blocking(int fd)
{
    char buf[16384];
    uint64_t total = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) != 0) {
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || pc_write_full(fd, buf, n) < 0)
            break;
        total += n;
    }
    close(fd);
    return total;
}

void *pc_echo_thread(void *fd_as_ptr)
{
    pc_echo_blocking((int)(intptr_t)fd_as_ptr);
    return NULL;
}

static void spawn_detached(void *(*fn)(void *), void *arg)
{
    pthread_t t;
    pthread_attr_t at;
    pthread_attr_init(&at);
    pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
    if (pthread_create(&t, &at, fn, arg) != 0)
        pc_die("pthread_create failed");
    pthread_attr_destroy(&at);
}

static void *acceptor(void *lfd_as_ptr)
{
    int lfd = (int)(intptr_t)lfd_as_ptr;
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd >= 0)
            spawn_detached(pc_echo_thread, (void *)(intptr_t)fd);
        else if (errno != EINTR && errno != ECONNABORTED)
            return NULL;
    }
}

void pc_start_echo_acceptor(int lfd)
{
    spawn_detached(acceptor, (void *)(intptr_t)lfd);
}

int pc_family(const char *name)
{
    if (!strcmp(name, "tcp4"))
        return AF_INET;
    if (!strcmp(name, "tcp6"))
        return AF_INET6;
    if (!strcmp(name, "unix"))
        return AF_UNIX;
    pc_die("bad family '%s' (tcp4|tcp6|unix)", name);
}

void pc_pair(int family, int *c, int *s)
{
    struct sockaddr_storage ss = {.ss_family = family};
    socklen_t len = family == AF_INET ? sizeof(struct sockaddr_in)
                  : family == AF_INET6 ? sizeof(struct sockaddr_in6)
                  : sizeof(sa_family_t);   /* AF_UNIX: autobind */
    int lfd = socket(family, SOCK_STREAM, 0);
    if (family == AF_INET)
        ((struct sockaddr_in *)&ss)->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    else if (family == AF_INET6)
        ((struct sockaddr_in6 *)&ss)->sin6_addr = in6addr_loopback;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&ss, len) < 0 || listen(lfd, 1) < 0)
        pc_die("pair listen:");
    len = sizeof ss;
    getsockname(lfd, (struct sockaddr *)&ss, &len);
    *c = socket(family, SOCK_STREAM, 0);
    if (*c < 0 || connect(*c, (struct sockaddr *)&ss, len) < 0)
        pc_die("pair connect:");
    *s = accept(lfd, NULL, NULL);
    if (*s < 0)
        pc_die("pair accept:");
    close(lfd);
}

int pc_connect_or_die(const char *addr)
{
    int fd = pc_connect(addr);
    if (fd < 0)
        pc_die("connect %s:", addr);
    return fd;
}

long long pc_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000LL + ts.tv_nsec / 1000000;
}
