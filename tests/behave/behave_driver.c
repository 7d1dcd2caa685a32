/* Behaviour-fuzzer driver: runs one scenario file and writes a normalised
 * trace of everything a program could observe, so that a run under the
 * library can be compared byte for byte with a run without it (SPEC §7).
 *
 *   behave_driver SCENARIO TRACE         run a scenario
 *   behave_driver --peer CMDFD REPFD TRACEFD   (internal) the peer process
 *   behave_driver --write-fd FD N SEED   (internal) exec'd child: write N
 *                                        pattern bytes to inherited FD
 *
 * One process plays the program (P, the one under LD_PRELOAD); a peer
 * process (Q, re-exec'd without LD_PRELOAD so its sockets are never
 * governed) owns the other end of every connection. Every step is sequenced
 * by the controller (P's main thread): executors (P's main thread, worker
 * threads T1/T2, fork children C1/C2) run one operation at a time when told
 * to over pipes and send the result back; the controller writes all trace
 * lines itself, in scenario order. Pipes and plain files are never governed,
 * so this machinery passes through the library untouched.
 *
 * Scenario syntax (one operation per line, '#' comments): see the
 * docstring of tests/behave/behave.py; in short
 *   [@EXEC[&]] OP ARGS...
 * where EXEC is M (default), T1, T2, C1, C2 and '&' means "do not wait for
 * the result" (collected later with "sync EXEC"). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define MSG 512    /* command message size (atomic on a pipe) */
#define REP 2048   /* reply message size */
#define MAXH 96
#define NEXEC 5    /* M T1 T2 C1 C2 */

/* ---------------------------------------------------------------- utils */

static uint32_t fnv(const unsigned char *p, size_t n, uint32_t h)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 16777619u;
    }
    return h;
}
#define FNV0 2166136261u

static void pattern(unsigned char *buf, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; i++)
        buf[i] = (unsigned char)(seed * 131u + i * 7u + (i >> 8));
}

static const char *ename(int e)
{
    const char *s = strerrorname_np(e);
    return s ? s : "E?";
}

static void die(const char *what)
{
    fprintf(stderr, "behave_driver: %s: %s\n", what, strerror(errno));
    _exit(120);
}

static void xwrite_full(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            char what[64];
            snprintf(what, sizeof what, "write(infra fd %d)", fd);
            die(what);
        }
        p += w;
        n -= (size_t)w;
    }
}

static int xread_full(int fd, void *buf, size_t n)
{
    char *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, p + got, n - got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        got += (size_t)r;
    }
    return 0;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

static void msleep(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* Splits a line into at most 16 whitespace-separated tokens. */
static int tokens(char *line, char **tok)
{
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(line, " \t\r\n", &save); t && n < 16;
         t = strtok_r(NULL, " \t\r\n", &save))
        tok[n++] = t;
    return n;
}

/* ------------------------------------------------------------- handles */

/* Name -> fd, per process (a fork child gets a copy, as it gets a copy of
 * the fd table). Threads share it under a lock. */
static struct handle {
    char name[16];
    int fd;
} handles[MAXH];
static pthread_mutex_t hlock = PTHREAD_MUTEX_INITIALIZER;

static int hfind(const char *name)
{
    pthread_mutex_lock(&hlock);
    int fd = -1;
    for (int i = 0; i < MAXH; i++)
        if (handles[i].name[0] && strcmp(handles[i].name, name) == 0) {
            fd = handles[i].fd;
            break;
        }
    pthread_mutex_unlock(&hlock);
    return fd;
}

static void hset(const char *name, int fd)
{
    pthread_mutex_lock(&hlock);
    int slot = -1;
    for (int i = 0; i < MAXH; i++) {
        if (handles[i].name[0] && strcmp(handles[i].name, name) == 0) {
            slot = i;
            break;
        }
        if (!handles[i].name[0] && slot < 0)
            slot = i;
    }
    if (slot >= 0) {
        snprintf(handles[slot].name, sizeof handles[slot].name, "%s", name);
        handles[slot].fd = fd;
    }
    pthread_mutex_unlock(&hlock);
}

/* Every handle naming fd loses it (after a close of any kind): the
 * descriptor number no longer belongs to the scenario. */
static void hdel_fd_range(int lo, int hi)
{
    pthread_mutex_lock(&hlock);
    for (int i = 0; i < MAXH; i++)
        if (handles[i].name[0] && handles[i].fd >= lo && handles[i].fd <= hi)
            handles[i].name[0] = 0;
    pthread_mutex_unlock(&hlock);
}

/* ------------------------------------------------------------ results */

struct out {
    char *buf;
    size_t len, cap;
};

static void outf(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n < o->cap - o->len ? (size_t)n : o->cap - o->len - 1;
}

/* "ret=R" or "ret=-1 errno=E"; partial results of a size-dependent call
 * (a short write into a full buffer) are a class, not a number. */
static void outret(struct out *o, long ret, int err, long asked, int partial_class)
{
    if (ret < 0)
        outf(o, "ret=-1 errno=%s", ename(err));
    else if (partial_class && ret > 0 && ret < asked)
        outf(o, "ret=partial");
    else
        outf(o, "ret=%ld", ret);
}

static int parse_flags(const char *s)
{
    int f = 0;
    if (!s)
        return 0;
    if (strstr(s, "peek")) f |= MSG_PEEK;
    if (strstr(s, "waitall")) f |= MSG_WAITALL;
    if (strstr(s, "dontwait")) f |= MSG_DONTWAIT;
    if (strstr(s, "more")) f |= MSG_MORE;
    if (strstr(s, "oob")) f |= MSG_OOB;
    if (strstr(s, "errqueue")) f |= MSG_ERRQUEUE;
    if (strstr(s, "trunc")) f |= MSG_TRUNC;
    if (strstr(s, "nosignal")) f |= MSG_NOSIGNAL;
    return f;
}

/* ------------------------------------------------------------- signals */

static volatile int sig_dup_fd = -1;
static volatile sig_atomic_t sig_count;

static void on_signal(int sig)
{
    (void)sig;
    int e = errno;
    sig_count++;
    int fd = sig_dup_fd;
    if (fd >= 0) { /* a handler that does socket calls: dup + close + 0-byte send */
        int d = dup(fd);
        if (d >= 0) {
            send(d, "", 0, MSG_DONTWAIT | MSG_NOSIGNAL);
            close(d);
        }
    }
    errno = e;
}

static int signum(const char *s)
{
    if (!strcmp(s, "USR1")) return SIGUSR1;
    if (!strcmp(s, "USR2")) return SIGUSR2;
    if (!strcmp(s, "ALRM")) return SIGALRM;
    if (!strcmp(s, "PIPE")) return SIGPIPE;
    return atoi(s);
}

/* --------------------------------------------------------- addressing */

struct addr {
    struct sockaddr_storage ss;
    socklen_t len;
    int fam;
};

static const char *rundir = "/tmp";

static int mk_addr(struct addr *a, const char *fam, const char *where, int port)
{
    memset(a, 0, sizeof *a);
    if (!strcmp(fam, "tcp4")) {
        struct sockaddr_in *s = (void *)&a->ss;
        s->sin_family = AF_INET;
        s->sin_port = htons((uint16_t)port);
        inet_pton(AF_INET, "127.0.0.1", &s->sin_addr);
        a->len = sizeof *s;
        a->fam = AF_INET;
    } else if (!strcmp(fam, "tcp6")) {
        struct sockaddr_in6 *s = (void *)&a->ss;
        s->sin6_family = AF_INET6;
        s->sin6_port = htons((uint16_t)port);
        inet_pton(AF_INET6, "::1", &s->sin6_addr);
        a->len = sizeof *s;
        a->fam = AF_INET6;
    } else {
        struct sockaddr_un *s = (void *)&a->ss;
        s->sun_family = AF_UNIX;
        snprintf(s->sun_path, sizeof s->sun_path, "%s", where);
        a->len = sizeof *s;
        a->fam = AF_UNIX;
    }
    return 0;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t l = sizeof ss;
    if (getsockname(fd, (void *)&ss, &l) < 0)
        return -1;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    if (ss.ss_family == AF_INET6)
        return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
    return 0;
}

/* A listener on fam; aux gets "fam port-or-path". */
static int make_listener(const char *fam, const char *name, int small, char *aux, size_t auxlen)
{
    struct addr a;
    char path[108];
    snprintf(path, sizeof path, "%s/%s.sock", rundir, name);
    unlink(path);
    mk_addr(&a, fam, path, 0);
    int fd = socket(a.fam, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (small) {
        int sz = 4096;
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
    }
    if (bind(fd, (void *)&a.ss, a.len) < 0 || listen(fd, 64) < 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    if (a.fam == AF_UNIX)
        snprintf(aux, auxlen, "%s %s", fam, path);
    else
        snprintf(aux, auxlen, "%s %d", fam, bound_port(fd));
    return fd;
}

/* ================================================================ peer */

/* The peer process: owns the far end of every connection. Never preloaded. */
struct pconn {
    char name[16];
    int fd;
    unsigned long total;
    uint32_t crc, sum; /* sum: order-free, for connections threads race on */
    int state; /* 0 open, 1 eof, 2 reset/error */
    int racy;
};
static struct pconn pconns[MAXH];
static int ptrace_fd = -1;

static struct pconn *pc_find(const char *name, int create)
{
    for (int i = 0; i < MAXH; i++)
        if (pconns[i].name[0] && !strcmp(pconns[i].name, name))
            return &pconns[i];
    if (!create)
        return NULL;
    for (int i = 0; i < MAXH; i++)
        if (!pconns[i].name[0]) {
            memset(&pconns[i], 0, sizeof pconns[i]);
            snprintf(pconns[i].name, sizeof pconns[i].name, "%s", name);
            pconns[i].crc = FNV0;
            pconns[i].fd = -1;
            return &pconns[i];
        }
    return NULL;
}

/* Reads what the program sent: waits up to first_ms for the first byte, then
 * until quiet_ms pass with nothing new. Returns bytes read this time. */
static long p_drain(struct pconn *c, long first_ms, long quiet_ms, uint32_t *crc_now)
{
    unsigned char buf[65536];
    long got = 0;
    uint32_t h = FNV0;
    long deadline = now_ms() + first_ms;
    if (c->fd < 0 || c->state) {
        *crc_now = h;
        return 0;
    }
    for (;;) {
        long left = deadline - now_ms();
        if (left < 0)
            left = 0;
        struct pollfd p = {c->fd, POLLIN, 0};
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) {
            got += n;
            h = fnv(buf, (size_t)n, h);
            c->crc = fnv(buf, (size_t)n, c->crc);
            for (ssize_t i = 0; i < n; i++)
                c->sum += buf[i];
            c->total += (unsigned long)n;
            deadline = now_ms() + quiet_ms;
            continue;
        }
        if (n == 0) {
            c->state = 1;
            break;
        }
        if (errno == EAGAIN || errno == EINTR)
            continue;
        c->state = 2;
        break;
    }
    *crc_now = h;
    return got;
}

/* The peer's writes leave at once: with Nagle, a small pwrite after an
 * unacknowledged one waits for the program's delayed ACK, and whether a
 * read of the program's sees it is then the timing of that ACK. */
static void peer_nodelay(int fd)
{
    int one = 1;
    if (fd >= 0)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static void peer_op(char *line, struct out *o, char *aux)
{
    char *t[16];
    int n = tokens(line, t);
    if (n == 0)
        return;
    const char *op = t[0];
    if (!strcmp(op, "plisten") && n >= 3) {
        /* plisten NAME FAM [small] */
        int fd = make_listener(t[2], t[1], n >= 4 && !strcmp(t[3], "small"), aux, 128);
        struct pconn *c = pc_find(t[1], 1);
        c->fd = fd;
        if (fd >= 0 && n >= 4 && !strcmp(t[3], "full")) {
            /* a listener whose queue is full: later SYNs are dropped, so a
             * connect to it never completes (TESTING.md) */
            listen(fd, 0);
            char fam[8], where[200];
            sscanf(aux, "%7s %199s", fam, where);
            for (int i = 0; i < 3; i++) {
                struct addr a;
                mk_addr(&a, fam, where, atoi(where));
                int f = socket(a.fam, SOCK_STREAM | SOCK_NONBLOCK, 0);
                connect(f, (void *)&a.ss, a.len);
            }
            msleep(50);
        }
        outf(o, "%s", fd < 0 ? "ret=-1" : "ret=ok");
    } else if (!strcmp(op, "paccept") && n >= 3) {
        struct pconn *l = pc_find(t[2], 0);
        int fd = l ? accept(l->fd, NULL, NULL) : -1;
        peer_nodelay(fd);
        struct pconn *c = pc_find(t[1], 1);
        c->fd = fd;
        outret(o, fd < 0 ? -1 : 0, errno, 0, 0);
    } else if (!strcmp(op, "pconnect") && n >= 5) {
        /* pconnect NAME FAM PORT-OR-PATH small */
        struct addr a;
        mk_addr(&a, t[2], t[3], atoi(t[3]));
        int fd = socket(a.fam, SOCK_STREAM, 0);
        if (!strcmp(t[4], "small")) {
            int sz = 4096;
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
        }
        int r = connect(fd, (void *)&a.ss, a.len);
        outret(o, r, errno, 0, 0);
        peer_nodelay(fd);
        struct pconn *c = pc_find(t[1], 1);
        c->fd = fd;
    } else if (!strcmp(op, "pwrite") && n >= 4) {
        /* pwrite CONN N SEED: waits up to 2s for room */
        struct pconn *c = pc_find(t[1], 0);
        size_t len = (size_t)atol(t[2]);
        unsigned char *buf = malloc(len + 1);
        pattern(buf, len, (unsigned)atoi(t[3]));
        size_t off = 0;
        long dl = now_ms() + 2000;
        int err = 0;
        while (c && c->fd >= 0 && off < len && now_ms() < dl) {
            ssize_t w = send(c->fd, buf + off, len - off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (w > 0) {
                off += (size_t)w;
                continue;
            }
            if (w < 0 && errno == EAGAIN) {
                struct pollfd p = {c->fd, POLLOUT, 0};
                poll(&p, 1, 50);
                continue;
            }
            err = w < 0 ? errno : 0;
            break;
        }
        free(buf);
        if (err)
            outf(o, "sent=%zu errno=%s", off, ename(err));
        else
            outf(o, "sent=%zu", off);
    } else if (!strcmp(op, "pread") && n >= 2) {
        struct pconn *c = pc_find(t[1], 0);
        uint32_t h = FNV0;
        uint32_t before = c ? c->sum : 0;
        long got = c ? p_drain(c, 60, 25, &h) : -1;
        if (c && c->racy)
            outf(o, "got=%ld sum=%08x state=%d", got, c->sum - before, c->state);
        else
            outf(o, "got=%ld crc=%08x state=%d", got, h, c ? c->state : -1);
    } else if (!strcmp(op, "pclose") || !strcmp(op, "preset")) {
        struct pconn *c = n >= 2 ? pc_find(t[1], 0) : NULL;
        if (c && c->fd >= 0) {
            if (!strcmp(op, "preset")) {
                struct linger lg = {1, 0};
                setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            }
            close(c->fd);
            c->fd = -1;
            c->state = 3;
        }
        outf(o, "ok");
    } else if (!strcmp(op, "pshutw") && n >= 2) {
        struct pconn *c = pc_find(t[1], 0);
        int r = c ? shutdown(c->fd, SHUT_WR) : -1;
        outret(o, r, errno, 0, 0);
    } else if (!strcmp(op, "poob") && n >= 2) {
        struct pconn *c = pc_find(t[1], 0);
        ssize_t r = c ? send(c->fd, "!", 1, MSG_OOB | MSG_NOSIGNAL) : -1;
        outret(o, r, errno, 1, 0);
    } else if (!strcmp(op, "pdribble") && n >= 4) {
        /* pdribble CONN N SEED: one byte every 2 ms */
        struct pconn *c = pc_find(t[1], 0);
        size_t len = (size_t)atol(t[2]);
        unsigned char *buf = malloc(len + 1);
        pattern(buf, len, (unsigned)atoi(t[3]));
        size_t off = 0;
        for (; c && off < len; off++) {
            if (send(c->fd, buf + off, 1, MSG_NOSIGNAL) != 1)
                break;
            msleep(2);
        }
        free(buf);
        outf(o, "sent=%zu", off);
    } else if (!strcmp(op, "pdrain") && n >= 3) {
        /* pdrain CONN N: read until exactly N more bytes arrived (or EOF,
         * or 10 s): a deterministic read of a bulk transfer */
        struct pconn *c = pc_find(t[1], 0);
        long want = atol(t[2]), got = 0;
        uint32_t h = FNV0, sum_now = 0;
        unsigned char buf[65536];
        long dl = now_ms() + 10000;
        while (c && c->fd >= 0 && !c->state && got < want && now_ms() < dl) {
            struct pollfd p = {c->fd, POLLIN, 0};
            if (poll(&p, 1, 100) <= 0)
                continue;
            size_t ask = (size_t)(want - got) < sizeof buf ? (size_t)(want - got) : sizeof buf;
            ssize_t r = recv(c->fd, buf, ask, MSG_DONTWAIT);
            if (r > 0) {
                got += r;
                h = fnv(buf, (size_t)r, h);
                c->crc = fnv(buf, (size_t)r, c->crc);
                for (ssize_t i = 0; i < r; i++) {
                    c->sum += buf[i];
                    sum_now += buf[i];
                }
                c->total += (unsigned long)r;
            } else if (r == 0) {
                c->state = 1;
            } else if (errno != EAGAIN && errno != EINTR) {
                c->state = 2;
            }
        }
        if (c && c->racy)
            outf(o, "got=%ld sum=%08x state=%d", got, sum_now, c->state);
        else
            outf(o, "got=%ld crc=%08x state=%d", got, h, c ? c->state : -1);
    } else if (!strcmp(op, "pracy") && n >= 2) {
        /* threads will race on this connection from now on: report an
         * order-free checksum for it */
        struct pconn *c = pc_find(t[1], 0);
        if (c)
            c->racy = 1;
        outf(o, "ok");
    } else if (!strcmp(op, "pnow")) {
        outf(o, "ok"); /* a fence */
    } else {
        outf(o, "bad-peer-op");
    }
}

/* After the program has exited: drain every connection to its end and
 * append one trace line per connection. */
static void peer_final(void)
{
    for (int i = 0; i < MAXH; i++) {
        struct pconn *c = &pconns[i];
        if (!c->name[0])
            continue;
        int lst = 0;
        if (c->fd >= 0) {
            int v = 0;
            socklen_t l = sizeof v;
            if (getsockopt(c->fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) == 0 && v)
                lst = 1;
        }
        if (lst)
            continue;
        uint32_t h;
        if (c->state == 0 && c->fd >= 0)
            p_drain(c, 1500, 1500, &h);
        char line[256];
        int len = snprintf(line, sizeof line, "END peer %s total=%lu %s=%08x end=%s\n",
                           c->name, c->total, c->racy ? "sum" : "crc", c->racy ? c->sum : c->crc,
                           c->state == 0 ? "open" : c->state == 1 ? "eof" :
                           c->state == 2 ? "error" : "closed-by-peer");
        xwrite_full(ptrace_fd, line, (size_t)len);
    }
}

static int peer_main(int cmdfd, int repfd, int tracefd)
{
    ptrace_fd = tracefd;
    signal(SIGPIPE, SIG_IGN);
    char msg[MSG], rep[REP];
    for (;;) {
        if (xread_full(cmdfd, msg, MSG) < 0)
            break; /* the program (and its children) exited */
        if (!strncmp(msg, "pfinal", 6))
            continue; /* wait for EOF: the program exits after sending it */
        memset(rep, 0, sizeof rep);
        struct out o = {rep, 0, REP - 130};
        char *aux = rep + REP - 128;
        peer_op(msg, &o, aux);
        xwrite_full(repfd, rep, REP);
    }
    peer_final();
    return 0;
}

/* ============================================================ executors */

static struct exec {
    const char *name;
    int cmd[2], rep[2];
    pid_t pid;
    pthread_t th;
    pid_t tid;
    int live, pending, async_line;
} ex[NEXEC] = {{.name = "M"}, {.name = "T1"}, {.name = "T2"}, {.name = "C1"}, {.name = "C2"}};

static int qcmd = -1, qrep = -1;     /* controller <-> peer */
static int trace_fd = -1;
static int dgram_sp[2] = {-1, -1};   /* SCM_RIGHTS carrier (datagram: ungoverned) */
static char self_exe[4096];
static int in_child_exec = -1;       /* which executor a fork child runs */

static int exec_index(const char *s)
{
    for (int i = 0; i < NEXEC; i++)
        if (!strcmp(ex[i].name, s))
            return i;
    return -1;
}

/* ---- the operations a program performs ---- */

static void op_read_family(char **t, int n, struct out *o, int fd, unsigned line)
{
    const char *op = t[0];
    size_t len = n >= 3 ? (size_t)atol(t[2]) : 0;
    int flags = parse_flags(n >= 4 ? t[3] : NULL);
    size_t cap = len ? len : 1;
    unsigned char *buf = calloc(1, cap + 16);
    ssize_t r = -1;
    int err = 0;
    (void)line;
    if (!strcmp(op, "read")) {
        r = read(fd, buf, len);
    } else if (!strcmp(op, "recv")) {
        r = recv(fd, buf, len, flags);
    } else if (!strcmp(op, "recvfrom")) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        r = recvfrom(fd, buf, len, flags, (void *)&ss, &sl);
    } else if (!strcmp(op, "readv") || !strcmp(op, "recvmsg")) {
        struct iovec iov[3];
        size_t a = len / 3, b = len / 3;
        iov[0] = (struct iovec){buf, a};
        iov[1] = (struct iovec){buf + a, b};
        iov[2] = (struct iovec){buf + a + b, len - a - b};
        if (!strcmp(op, "readv")) {
            r = readv(fd, iov, 3);
        } else {
            struct msghdr m = {0};
            m.msg_iov = iov;
            m.msg_iovlen = 3;
            r = recvmsg(fd, &m, flags);
            err = errno;
            if (r >= 0)
                outf(o, "mflags=%x ", m.msg_flags & ~MSG_CMSG_CLOEXEC);
            errno = err;
        }
    } else if (!strcmp(op, "recvmmsg")) {
        /* recvmmsg CONN N FLAGS K: K messages of N/K bytes */
        int k = n >= 5 ? atoi(t[4]) : 2;
        if (k < 1 || k > 8)
            k = 2;
        struct mmsghdr mm[8];
        struct iovec iov[8];
        memset(mm, 0, sizeof mm);
        size_t each = len / (size_t)k;
        for (int i = 0; i < k; i++) {
            iov[i] = (struct iovec){buf + (size_t)i * each, each};
            mm[i].msg_hdr.msg_iov = &iov[i];
            mm[i].msg_hdr.msg_iovlen = 1;
        }
        int rr = recvmmsg(fd, mm, (unsigned)k, flags, NULL);
        err = errno;
        if (rr > 0) {
            outf(o, "lens=");
            size_t tot = 0;
            for (int i = 0; i < rr; i++) {
                outf(o, "%u,", mm[i].msg_len);
                memmove(buf + tot, buf + (size_t)i * each, mm[i].msg_len);
                tot += mm[i].msg_len;
            }
            outf(o, " ");
            outf(o, "ret=%d data=%zu:%08x", rr, tot, fnv(buf, tot, FNV0));
        } else {
            outret(o, rr, err, 0, 0);
        }
        free(buf);
        return;
    }
    err = errno;
    outret(o, r, err, 0, 0);
    if (r > 0)
        outf(o, " data=%08x", fnv(buf, (size_t)r, FNV0));
    free(buf);
}

/* A TCP socket with sent data not yet acknowledged. The kernel keeps a
 * MSG_MORE send's partial segment back for that call's push only: the
 * next ACK pushes it under Nagle, so it leaves as soon as nothing is in
 * flight. Whether an ACK is still due when the program sends is the peer's
 * delayed-ACK timing (behave.py, program_corks_from). */
static int tcp_inflight(int fd)
{
    struct tcp_info ti;
    socklen_t l = sizeof ti;
    int e = errno, r = getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &l) == 0 &&
                       l >= offsetof(struct tcp_info, tcpi_unacked) + sizeof ti.tcpi_unacked &&
                       ti.tcpi_unacked > 0;
    errno = e;
    return r;
}

static void op_write_family(char **t, int n, struct out *o, int fd, unsigned line)
{
    const char *op = t[0];
    size_t len = n >= 3 ? (size_t)atol(t[2]) : 0;
    int flags = parse_flags(n >= 4 ? t[3] : NULL);
    int inflight = (flags & MSG_MORE) && tcp_inflight(fd);
    unsigned char *buf = malloc(len + 16);
    pattern(buf, len, line);
    ssize_t r = -1;
    if (!strcmp(op, "write")) {
        r = write(fd, buf, len);
    } else if (!strcmp(op, "send")) {
        r = send(fd, buf, len, flags);
    } else if (!strcmp(op, "sendto")) {
        r = sendto(fd, buf, len, flags, NULL, 0);
    } else if (!strcmp(op, "writev") || !strcmp(op, "sendmsg")) {
        struct iovec iov[3];
        size_t a = len / 3, b = len / 3;
        iov[0] = (struct iovec){buf, a};
        iov[1] = (struct iovec){buf + a, b};
        iov[2] = (struct iovec){buf + a + b, len - a - b};
        if (!strcmp(op, "writev")) {
            r = writev(fd, iov, 3);
        } else {
            struct msghdr m = {0};
            m.msg_iov = iov;
            m.msg_iovlen = 3;
            r = sendmsg(fd, &m, flags);
        }
    } else if (!strcmp(op, "sendmmsg")) {
        int k = n >= 5 ? atoi(t[4]) : 2;
        if (k < 1 || k > 8)
            k = 2;
        struct mmsghdr mm[8];
        struct iovec iov[8];
        memset(mm, 0, sizeof mm);
        size_t each = len / (size_t)k;
        for (int i = 0; i < k; i++) {
            iov[i] = (struct iovec){buf + (size_t)i * each, each};
            mm[i].msg_hdr.msg_iov = &iov[i];
            mm[i].msg_hdr.msg_iovlen = 1;
        }
        int rr = sendmmsg(fd, mm, (unsigned)k, flags);
        int err = errno;
        if (rr > 0) {
            outf(o, "lens=");
            for (int i = 0; i < rr; i++)
                outf(o, "%u,", mm[i].msg_len);
            outf(o, " ");
        }
        outret(o, rr, err, 0, 0);
        if (inflight)
            outf(o, " (inflight)");
        free(buf);
        return;
    } else if (!strcmp(op, "sendfile") || !strcmp(op, "splice")) {
        /* the payload from a file (sendfile) or a pipe (splice) */
        if (!strcmp(op, "sendfile")) {
            char path[160];
            snprintf(path, sizeof path, "%s/sendfile.XXXXXX", rundir);
            int f = mkostemp(path, O_CLOEXEC);
            if (f >= 0) {
                unlink(path);
                xwrite_full(f, buf, len);
                off_t off = 0;
                r = sendfile(fd, f, &off, len);
                int e = errno;
                close(f);
                errno = e;
            }
        } else {
            int pp[2];
            if (pipe2(pp, O_CLOEXEC) == 0) {
                size_t l2 = len > 4096 ? 4096 : len; /* fits in the pipe */
                xwrite_full(pp[1], buf, l2);
                r = splice(pp[0], NULL, fd, NULL, l2, 0);
                int e = errno;
                close(pp[0]);
                close(pp[1]);
                errno = e;
                len = l2;
            }
        }
    } else if (!strcmp(op, "dprintf")) {
        /* printable payload: dprintf goes through glibc's own write */
        for (size_t i = 0; i < len; i++)
            buf[i] = (unsigned char)('a' + buf[i] % 26);
        buf[len] = 0;
        r = dprintf(fd, "%s", (char *)buf);
    }
    int err = errno;
    outret(o, r, err, (long)len, (flags & MSG_DONTWAIT) || (fcntl(fd, F_GETFL) & O_NONBLOCK));
    if (inflight)
        outf(o, " (inflight)");
    free(buf);
}

static void op_wait(char **t, int n, struct out *o, int fd)
{
    /* poll|select|epoll CONN in|out|inout TIMEOUT_MS */
    const char *how = n >= 3 ? t[2] : "in";
    int tmo = n >= 4 ? atoi(t[3]) : 0;
    int wantin = strstr(how, "in") != NULL, wantout = strstr(how, "out") != NULL;
    int r, err;
    if (!strcmp(t[0], "poll") || !strcmp(t[0], "ppoll")) {
        struct pollfd p = {fd, (short)((wantin ? POLLIN : 0) | (wantout ? POLLOUT : 0) | POLLRDHUP), 0};
        if (t[0][0] == 'p' && t[0][1] == 'p') {
            struct timespec ts = {tmo / 1000, (tmo % 1000) * 1000000L};
            r = ppoll(&p, 1, &ts, NULL);
        } else {
            r = poll(&p, 1, tmo);
        }
        err = errno;
        outret(o, r, err, 0, 0);
        if (r > 0)
            outf(o, " revents=%x", p.revents);
    } else if (!strcmp(t[0], "select") || !strcmp(t[0], "pselect")) {
        fd_set rs, ws;
        FD_ZERO(&rs);
        FD_ZERO(&ws);
        if (wantin) FD_SET(fd, &rs);
        if (wantout) FD_SET(fd, &ws);
        if (t[0][0] == 'p') {
            struct timespec ts = {tmo / 1000, (tmo % 1000) * 1000000L};
            r = pselect(fd + 1, &rs, &ws, NULL, &ts, NULL);
        } else {
            struct timeval tv = {tmo / 1000, (tmo % 1000) * 1000};
            r = select(fd + 1, &rs, &ws, NULL, &tv);
        }
        err = errno;
        outret(o, r, err, 0, 0);
        if (r > 0)
            outf(o, " r=%d w=%d", FD_ISSET(fd, &rs) ? 1 : 0, FD_ISSET(fd, &ws) ? 1 : 0);
    } else {
        int ep = epoll_create1(EPOLL_CLOEXEC);
        struct epoll_event ev = {.events = (wantin ? EPOLLIN : 0) | (wantout ? EPOLLOUT : 0) | EPOLLRDHUP,
                                 .data.fd = fd};
        int a = epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
        if (a < 0) {
            outret(o, a, errno, 0, 0);
            close(ep);
            return;
        }
        struct epoll_event got;
        if (!strcmp(t[0], "epoll_pwait"))
            r = epoll_pwait(ep, &got, 1, tmo, NULL);
        else
            r = epoll_wait(ep, &got, 1, tmo);
        err = errno;
        outret(o, r, err, 0, 0);
        if (r > 0)
            outf(o, " events=%x", got.events);
        close(ep);
    }
}

/* Spawned helpers write N pattern bytes to inherited fd FD (the program's
 * socket) and exit 0; fd -1 writes nothing. */
static void helper_argv(char **argv, char *fdbuf, char *nbuf, char *sbuf, int fd, long len, unsigned seed)
{
    snprintf(fdbuf, 16, "%d", fd);
    snprintf(nbuf, 24, "%ld", len);
    snprintf(sbuf, 16, "%u", seed);
    argv[0] = self_exe;
    argv[1] = (char *)"--write-fd";
    argv[2] = fdbuf;
    argv[3] = nbuf;
    argv[4] = sbuf;
    argv[5] = NULL;
}

static void out_status(struct out *o, int st)
{
    if (WIFEXITED(st))
        outf(o, "exit=%d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        outf(o, "signal=%d", WTERMSIG(st));
    else
        outf(o, "status=%x", st);
}

static void op_spawn(char **t, int n, struct out *o, unsigned line)
{
    /* spawn KIND CONN|- N */
    const char *kind = t[1];
    int fd = n >= 3 && strcmp(t[2], "-") ? hfind(t[2]) : -1;
    long len = n >= 4 ? atol(t[3]) : 0;
    char fdb[16], nb[24], sb[16], *argv[6];
    helper_argv(argv, fdb, nb, sb, fd, len, line);
    int st = 0;
    if (!strcmp(kind, "vfork")) {
        /* Python's subprocess: vfork, close every fd but the ones passed,
         * exec. close_range runs in the child on the parent's memory. */
        pid_t pid = vfork();
        if (pid == 0) {
            if (fd >= 0) {
                if (fd > 3)
                    syscall(SYS_close_range, 3u, (unsigned)fd - 1, 0u);
                syscall(SYS_close_range, (unsigned)fd + 1, ~0u, 0u);
            } else {
                syscall(SYS_close_range, 3u, ~0u, 0u);
            }
            execve(self_exe, argv, environ);
            _exit(127);
        }
        if (pid < 0) {
            outret(o, -1, errno, 0, 0);
            return;
        }
        waitpid(pid, &st, 0);
        out_status(o, st);
    } else if (!strcmp(kind, "forkexec")) {
        pid_t pid = fork();
        if (pid == 0) {
            execve(self_exe, argv, environ);
            _exit(127);
        }
        waitpid(pid, &st, 0);
        out_status(o, st);
    } else if (!strcmp(kind, "posix_spawn")) {
        pid_t pid;
        int r = posix_spawn(&pid, self_exe, NULL, NULL, argv, environ);
        if (r) {
            outret(o, -1, r, 0, 0);
            return;
        }
        waitpid(pid, &st, 0);
        out_status(o, st);
    } else if (!strcmp(kind, "system") || !strcmp(kind, "popen")) {
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "exec '%s' --write-fd %s %s %s", self_exe, fdb, nb, sb);
        if (!strcmp(kind, "system")) {
            st = system(cmd);
            out_status(o, st);
        } else {
            FILE *p = popen(cmd, "r");
            if (!p) {
                outret(o, -1, errno, 0, 0);
                return;
            }
            char b[64];
            size_t got = 0;
            while (fgets(b, sizeof b, p))
                got += strlen(b);
            st = pclose(p);
            outf(o, "out=%zu ", got);
            out_status(o, st);
        }
    } else {
        outf(o, "bad-spawn");
    }
}

static void op_end_state(struct out *o)
{
    /* Every descriptor below 200 that is open, with its kind; the library
     * keeps its own far above (and must never take the program's low
     * numbers, which is what this checks). */
    outf(o, "fds=");
    for (int fd = 0; fd < 200; fd++) {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0)
            continue;
        struct stat st;
        char k = '?';
        if (fstat(fd, &st) == 0)
            k = S_ISSOCK(st.st_mode) ? 's' : S_ISFIFO(st.st_mode) ? 'p' : S_ISREG(st.st_mode) ? 'f' : 'o';
        outf(o, "%d%c%s,", fd, k, (fl & O_NONBLOCK) ? "n" : "");
    }
}

/* Executes one program operation in the calling thread/process. */
static void run_op(char *line_in, struct out *o, char *aux, unsigned line)
{
    char work[MSG];
    snprintf(work, sizeof work, "%s", line_in);
    char *t[16];
    int n = tokens(work, t);
    if (n == 0)
        return;
    const char *op = t[0];
    int fd = n >= 2 ? hfind(t[1]) : -1;
    int r, err;

    if (!strcmp(op, "listen")) {
        /* listen NAME FAM */
        char name[64];
        snprintf(name, sizeof name, "p%s", t[1]);
        int l = make_listener(t[2], name, 0, aux, 128);
        err = errno;
        if (l >= 0)
            hset(t[1], l);
        outret(o, l, err, 0, 0);
    } else if (!strcmp(op, "connect")) {
        /* connect NAME FAM PORT|PATH blocking|nonblock */
        struct addr a;
        mk_addr(&a, t[2], t[3], atoi(t[3]));
        int nbk = n >= 5 && !strcmp(t[4], "nonblock");
        int s = socket(a.fam, SOCK_STREAM | (nbk ? SOCK_NONBLOCK : 0), 0);
        if (s < 0) {
            outret(o, -1, errno, 0, 0);
            return;
        }
        hset(t[1], s);
        r = connect(s, (void *)&a.ss, a.len);
        err = errno;
        outf(o, "fd=%d ", s);
        if (r < 0 && err == EINPROGRESS) {
            struct pollfd p = {s, POLLOUT, 0};
            int pr = poll(&p, 1, 5000);
            int soe = -1;
            socklen_t sl = sizeof soe;
            getsockopt(s, SOL_SOCKET, SO_ERROR, &soe, &sl);
            outf(o, "ret=inprogress poll=%d so_error=%s", pr, soe ? ename(soe) : "0");
        } else {
            outret(o, r, err, 0, 0);
        }
    } else if (!strcmp(op, "accept") || !strcmp(op, "accept4")) {
        /* accept NAME LISTENER [nonblock] */
        int l = n >= 3 ? hfind(t[2]) : -1;
        int flags = n >= 4 && !strcmp(t[3], "nonblock") ? SOCK_NONBLOCK : 0;
        int s = !strcmp(op, "accept") ? accept(l, NULL, NULL) : accept4(l, NULL, NULL, flags | SOCK_CLOEXEC);
        err = errno;
        if (s >= 0) {
            hset(t[1], s);
            outf(o, "fd=%d ", s);
        }
        outret(o, s < 0 ? -1 : 0, err, 0, 0);
    } else if (!strcmp(op, "read") || !strcmp(op, "recv") || !strcmp(op, "recvfrom") ||
               !strcmp(op, "readv") || !strcmp(op, "recvmsg") || !strcmp(op, "recvmmsg")) {
        op_read_family(t, n, o, fd, line);
    } else if (!strcmp(op, "write") || !strcmp(op, "send") || !strcmp(op, "sendto") ||
               !strcmp(op, "writev") || !strcmp(op, "sendmsg") || !strcmp(op, "sendmmsg") ||
               !strcmp(op, "dprintf") || !strcmp(op, "sendfile") || !strcmp(op, "splice")) {
        op_write_family(t, n, o, fd, line);
    } else if (!strcmp(op, "errqueue")) {
        char b[64], cb[256];
        struct iovec iov = {b, sizeof b};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cb, .msg_controllen = sizeof cb};
        ssize_t rr = recvmsg(fd, &m, MSG_ERRQUEUE);
        outret(o, rr, errno, 0, 0);
    } else if (!strcmp(op, "shutdown")) {
        int how = n >= 3 ? (!strcmp(t[2], "rd") ? SHUT_RD : !strcmp(t[2], "wr") ? SHUT_WR : SHUT_RDWR) : SHUT_RDWR;
        r = shutdown(fd, how);
        outret(o, r, errno, 0, 0);
    } else if (!strcmp(op, "close") || !strcmp(op, "sysclose") || !strcmp(op, "fclose") ||
               !strcmp(op, "close_range") || !strcmp(op, "closefrom")) {
        if (!strcmp(op, "close")) {
            r = close(fd);
        } else if (!strcmp(op, "sysclose")) {
            r = (int)syscall(SYS_close, fd);
        } else if (!strcmp(op, "fclose")) {
            FILE *f = fdopen(fd, "r+");
            r = f ? fclose(f) : -1;
        } else if (!strcmp(op, "close_range")) {
            r = close_range((unsigned)fd, (unsigned)fd, 0);
        } else {
            closefrom(fd);
            r = 0;
        }
        err = errno;
        outret(o, r, err, 0, 0);
        if (!strcmp(op, "closefrom"))
            hdel_fd_range(fd, 1 << 30);
        else if (fd >= 0)
            hdel_fd_range(fd, fd);
    } else if (!strcmp(op, "dup") || !strcmp(op, "dup2") || !strcmp(op, "dup3") || !strcmp(op, "fdupfd")) {
        /* dup NEW OLD | dup2 NEW OLD TARGETFD | dup3 NEW OLD TARGETFD | fdupfd NEW OLD MIN */
        int old = n >= 3 ? hfind(t[2]) : -1;
        /* "@H" names another handle's descriptor: dup2 over it, whatever
         * number it got in this run */
        int arg = n >= 4 ? (t[3][0] == '@' ? hfind(t[3] + 1) : atoi(t[3])) : 0;
        int nf;
        if (!strcmp(op, "dup"))
            nf = dup(old);
        else if (!strcmp(op, "dup2"))
            nf = dup2(old, arg);
        else if (!strcmp(op, "dup3"))
            nf = dup3(old, arg, O_CLOEXEC);
        else
            nf = fcntl(old, F_DUPFD_CLOEXEC, arg);
        err = errno;
        if (nf >= 0) {
            if (nf != old)
                hdel_fd_range(nf, nf); /* dup2 over another handle's fd */
            hset(t[1], nf);
            outf(o, "fd=%d ", nf);
        }
        outret(o, nf < 0 ? -1 : 0, err, 0, 0);
    } else if (!strcmp(op, "nonblock")) {
        /* nonblock CONN on|off fcntl|ioctl */
        int on = n >= 3 && !strcmp(t[2], "on");
        if (n >= 4 && !strcmp(t[3], "ioctl")) {
            r = ioctl(fd, FIONBIO, &on);
        } else {
            int fl = fcntl(fd, F_GETFL);
            r = fl < 0 ? -1 : fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
        }
        outret(o, r, errno, 0, 0);
    } else if (!strcmp(op, "getfl")) {
        int fl = fcntl(fd, F_GETFL);
        outf(o, "nb=%d ", fl >= 0 && (fl & O_NONBLOCK) ? 1 : 0);
        outret(o, fl < 0 ? -1 : 0, errno, 0, 0);
    } else if (!strcmp(op, "soerror")) {
        int v = -1;
        socklen_t sl = sizeof v;
        r = getsockopt(fd, SOL_SOCKET, SO_ERROR, &v, &sl);
        outf(o, "so_error=%s ", v > 0 ? ename(v) : "0");
        outret(o, r, errno, 0, 0);
    } else if (!strcmp(op, "nodelay") || !strcmp(op, "cork")) {
        int v = n >= 3 ? atoi(t[2]) : 1;
        r = setsockopt(fd, IPPROTO_TCP, !strcmp(op, "cork") ? TCP_CORK : TCP_NODELAY, &v, sizeof v);
        outret(o, r, errno, 0, 0);
    } else if (!strcmp(op, "poll") || !strcmp(op, "select") || !strcmp(op, "epoll") ||
               !strcmp(op, "ppoll") || !strcmp(op, "pselect") || !strcmp(op, "epoll_pwait")) {
        op_wait(t, n, o, fd);
    } else if (!strcmp(op, "sendfd")) {
        /* sendfd NEW OLD: pass OLD through SCM_RIGHTS, receive it as NEW */
        char cbuf[CMSG_SPACE(sizeof(int))];
        memset(cbuf, 0, sizeof cbuf);
        char b = 'x';
        struct iovec iov = {&b, 1};
        struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
        struct cmsghdr *c = CMSG_FIRSTHDR(&m);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        int old = hfind(t[2]);
        memcpy(CMSG_DATA(c), &old, sizeof old);
        r = (int)sendmsg(dgram_sp[0], &m, 0);
        if (r < 0) {
            outret(o, -1, errno, 0, 0);
            return;
        }
        memset(cbuf, 0, sizeof cbuf);
        m.msg_controllen = sizeof cbuf;
        r = (int)recvmsg(dgram_sp[1], &m, 0);
        int nf = -1;
        c = CMSG_FIRSTHDR(&m);
        if (r > 0 && c && c->cmsg_type == SCM_RIGHTS)
            memcpy(&nf, CMSG_DATA(c), sizeof nf);
        if (nf >= 0) {
            hdel_fd_range(nf, nf);
            hset(t[1], nf);
        }
        outf(o, "fd=%d", nf);
    } else if (!strcmp(op, "sigaction")) {
        /* sigaction SIG restart|norestart plain|sockcalls [CONN] */
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_signal;
        sa.sa_flags = n >= 3 && !strcmp(t[2], "restart") ? SA_RESTART : 0;
        sigemptyset(&sa.sa_mask);
        if (n >= 5 && !strcmp(t[3], "sockcalls"))
            sig_dup_fd = hfind(t[4]);
        r = sigaction(signum(t[1]), &sa, NULL);
        outret(o, r, errno, 0, 0);
    } else if (!strcmp(op, "sigpipe")) {
        signal(SIGPIPE, n >= 2 && !strcmp(t[1], "ignore") ? SIG_IGN : SIG_DFL);
        outf(o, "ok");
    } else if (!strcmp(op, "spawn")) {
        op_spawn(t, n, o, line);
    } else if (!strcmp(op, "sleep")) {
        msleep(n >= 2 ? atol(t[1]) : 1);
        outf(o, "ok");
    } else if (!strcmp(op, "sigcount")) {
        outf(o, "signals=%d", (int)sig_count);
    } else if (!strcmp(op, "endstate")) {
        op_end_state(o);
    } else {
        outf(o, "bad-op:%s", op);
    }
}

/* Executor loop for threads and fork children: one op per command. */
static void exec_loop(struct exec *e)
{
    char msg[MSG], rep[REP];
    for (;;) {
        if (xread_full(e->cmd[0], msg, MSG) < 0)
            return;
        unsigned line = 0;
        memcpy(&line, msg, sizeof line);
        char *cmd = msg + 8;
        if (!strncmp(cmd, "quit", 4))
            return;
        if (!strncmp(cmd, "exit ", 5) || !strncmp(cmd, "_exit ", 6)) {
            int code = atoi(strchr(cmd, ' ') + 1);
            if (cmd[0] == '_')
                _exit(code);
            exit(code);
        }
        memset(rep, 0, sizeof rep);
        struct out o = {rep, 0, REP - 130};
        run_op(cmd, &o, rep + REP - 128, line);
        xwrite_full(e->rep[1], rep, REP);
    }
}

static void *thread_main(void *arg)
{
    struct exec *e = arg;
    e->tid = (pid_t)syscall(SYS_gettid);
    exec_loop(e);
    return NULL;
}

/* ============================================================ controller */

static struct listener {
    char name[16];
    char fam[8];
    char where[200];
} lst[32];

static struct listener *lst_find(const char *name, int create)
{
    for (int i = 0; i < 32; i++)
        if (lst[i].name[0] && !strcmp(lst[i].name, name))
            return &lst[i];
    if (!create)
        return NULL;
    for (int i = 0; i < 32; i++)
        if (!lst[i].name[0]) {
            snprintf(lst[i].name, sizeof lst[i].name, "%s", name);
            return &lst[i];
        }
    return NULL;
}

/* With BEHAVE_TIMES set (deadline mode), every line also gets when its
 * operation ended and how long it took, in ms from the scenario's start. */
static long t_start, t_opstart;
static int with_times;

static void trace(unsigned line, const char *who, const char *op, const char *res)
{
    char buf[REP + 256];
    int n;
    if (with_times)
        n = snprintf(buf, sizeof buf, "%u %s %s -> %s @%ld dt=%ld\n", line, who, op, res,
                     now_ms() - t_start, now_ms() - t_opstart);
    else
        n = snprintf(buf, sizeof buf, "%u %s %s -> %s\n", line, who, op, res);
    if (n > (int)sizeof buf)
        n = sizeof buf - 1;
    xwrite_full(trace_fd, buf, (size_t)n);
}

static void peer_call(const char *cmd, char *rep)
{
    char msg[MSG];
    memset(msg, 0, sizeof msg);
    snprintf(msg, sizeof msg, "%s", cmd);
    xwrite_full(qcmd, msg, MSG);
    if (xread_full(qrep, rep, REP) < 0)
        die("peer went away");
}

static void exec_send(struct exec *e, unsigned line, const char *cmd)
{
    char msg[MSG];
    memset(msg, 0, sizeof msg);
    memcpy(msg, &line, sizeof line);
    snprintf(msg + 8, sizeof msg - 8, "%s", cmd);
    xwrite_full(e->cmd[1], msg, MSG);
}

static int child_status[NEXEC];

/* A fork child executor that dies (a signal) never answers: its reply
 * pipe has other writers, so watch the child too. */
static int exec_recv(struct exec *e, char *rep)
{
    if (e->pid < 0)
        return -1;
    if (e->pid > 0) {
        for (;;) {
            struct pollfd p = {e->rep[0], POLLIN, 0};
            if (poll(&p, 1, 100) > 0)
                break;
            int st;
            if (waitpid(e->pid, &st, WNOHANG) == e->pid) {
                child_status[e - ex] = st;
                e->pid = -e->pid;   /* reaped: "wait" reports the status */
                return -1;
            }
        }
    }
    return xread_full(e->rep[0], rep, REP);
}

/* Waits until executor e is blocked inside an operation (not in its
 * command read), so a signal lands in the call under test. */
static void wait_blocked(struct exec *e)
{
    char path[128], buf[256];
    pid_t tid = e->pid ? e->pid : e->tid;
    if (e->pid)
        snprintf(path, sizeof path, "/proc/%d/syscall", tid);
    else
        snprintf(path, sizeof path, "/proc/self/task/%d/syscall", tid);
    char idle[64];
    snprintf(idle, sizeof idle, "0 0x%x ", e->cmd[0]);
    /* Blocked means the same system call (number, arguments, stack) seen
     * in three samples 2 ms apart: under the library a call first makes
     * quick system calls of its own (a non-blocking attempt) before it
     * waits, and a signal or close landing there tests nothing the bare
     * run tests (and races the library's set-up of the wait). */
    char last[256] = "";
    int same = 0;
    long dl = now_ms() + 3000;
    while (now_ms() < dl) {
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t r = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
        if (fd >= 0)
            close(fd);
        if (r > 0) {
            buf[r] = 0;
            if (strncmp(buf, idle, strlen(idle)) != 0 && strncmp(buf, "running", 7) != 0) {
                same = strcmp(buf, last) == 0 ? same + 1 : 0;
                snprintf(last, sizeof last, "%s", buf);
                if (same >= 2)
                    break;
            } else {
                same = 0;
                last[0] = 0;
            }
        }
        msleep(2);
    }
    msleep(30);
}

static int run_scenario(const char *path)
{
    /* Read whole, so no stdio fd is open while the scenario runs. */
    FILE *f = fopen(path, "re");
    if (!f)
        die("open scenario");
    static char sbuf[1 << 20];
    size_t slen = fread(sbuf, 1, sizeof sbuf - 1, f);
    sbuf[slen] = 0;
    fclose(f);
    f = fmemopen(sbuf, slen + 1, "r");
    if (!f)
        die("fmemopen");
    char linebuf[MSG - 16];
    unsigned lineno = 0;
    int exit_how = 0, exit_code = 0; /* 0 return, 1 exit, 2 _exit */
    while (fgets(linebuf, sizeof linebuf, f)) {
        lineno++;
        char *nl = strchr(linebuf, '\n');
        if (nl)
            *nl = 0;
        char *s = linebuf;
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s || *s == '#')
            continue;
        char orig[MSG - 16];
        snprintf(orig, sizeof orig, "%s", s);
        char work[MSG - 16];
        snprintf(work, sizeof work, "%s", s);
        char *t[16];
        int n = tokens(work, t);
        int xi = 0, async = 0, k = 0;
        if (t[0][0] == '@') {
            char nm[8];
            snprintf(nm, sizeof nm, "%s", t[0] + 1);
            size_t l = strlen(nm);
            if (l && nm[l - 1] == '&') {
                async = 1;
                nm[l - 1] = 0;
            }
            xi = exec_index(nm);
            if (xi < 0)
                xi = 0;
            k = 1;
            /* the command without the prefix */
            char *sp = strchr(orig, ' ');
            memmove(orig, sp ? sp + 1 : orig, strlen(sp ? sp + 1 : orig) + 1);
        }
        if (k >= n)
            continue;
        const char *op = t[k];
        struct exec *e = &ex[xi];
        char rep[REP];
        memset(rep, 0, sizeof rep);
        struct out o = {rep, 0, REP - 130};
        t_opstart = now_ms();

        /* ---- controller operations ---- */
        if (op[0] == 'p' && strcmp(op, "poll") && strcmp(op, "ppoll") && strcmp(op, "pselect")) {
            char cmd[MSG];
            if (!strcmp(op, "pconnect") && n - k >= 3) {
                /* pconnect CONN LISTENER [small] */
                struct listener *L = lst_find(t[k + 2], 0);
                snprintf(cmd, sizeof cmd, "pconnect %s %s %s %s", t[k + 1], L ? L->fam : "tcp4",
                         L ? L->where : "0", n - k >= 4 ? t[k + 3] : "-");
            } else if (!strcmp(op, "pwrite") || !strcmp(op, "pdribble")) {
                snprintf(cmd, sizeof cmd, "%s %s %s %u", op, t[k + 1], n - k >= 3 ? t[k + 2] : "1", lineno);
            } else {
                snprintf(cmd, sizeof cmd, "%s", orig);
            }
            peer_call(cmd, rep);
            if (!strcmp(op, "plisten")) {
                struct listener *L = lst_find(t[k + 1], 1);
                sscanf(rep + REP - 128, "%7s %199s", L->fam, L->where);
            }
            trace(lineno, "Q", orig, rep);
            continue;
        }
        if (!strcmp(op, "thread") && n - k >= 2) {
            int ti = exec_index(t[k + 1]);
            struct exec *te = &ex[ti];
            te->tid = 0;
            pthread_create(&te->th, NULL, thread_main, te);
            while (!__atomic_load_n(&te->tid, __ATOMIC_ACQUIRE))
                msleep(1);
            te->live = 1;
            trace(lineno, "M", orig, "ok");
            continue;
        }
        if (!strcmp(op, "join") && n - k >= 2) {
            struct exec *te = &ex[exec_index(t[k + 1])];
            if (te->live) {
                exec_send(te, lineno, "quit");
                pthread_join(te->th, NULL);
                te->live = 0;
            }
            trace(lineno, "M", orig, "ok");
            continue;
        }
        if (!strcmp(op, "fork") && n - k >= 2) {
            int ci = exec_index(t[k + 1]);
            struct exec *ce = &ex[ci];
            if (ci < 3 || ce->live) { /* one child per executor name at a time */
                trace(lineno, "M", orig, "busy");
                continue;
            }
            pid_t pid = fork();
            if (pid == 0) {
                in_child_exec = ci;
                ce->pid = 0;
                exec_loop(ce);
                _exit(0);
            }
            ce->pid = pid;
            ce->live = pid > 0;
            trace(lineno, "M", orig, pid > 0 ? "ok" : "fork-failed");
            continue;
        }
        if ((!strcmp(op, "exit") || !strcmp(op, "_exit")) && xi >= 3) {
            exec_send(e, lineno, orig);
            trace(lineno, e->name, orig, "sent");
            continue;
        }
        if (!strcmp(op, "wait") && n - k >= 2) {
            struct exec *ce = &ex[exec_index(t[k + 1])];
            int st = 0;
            if (ce->live && ce->pid < 0) {
                ce->live = 0;
                ce->pid = 0;
                out_status(&o, child_status[ce - ex]);
            } else if (ce->live) {
                waitpid(ce->pid, &st, 0);
                ce->live = 0;
                out_status(&o, st);
            } else {
                outf(&o, "not-live");
            }
            trace(lineno, "M", orig, rep);
            continue;
        }
        if (!strcmp(op, "kill") && n - k >= 3) {
            /* kill EXEC SIG: once EXEC is blocked in its operation */
            int ti = exec_index(t[k + 1]);
            struct exec *te = &ex[ti < 0 ? 0 : ti];
            if (te->pending)
                wait_blocked(te);
            if (te->pid > 0)
                kill(te->pid, signum(t[k + 2]));
            else if (te->tid)
                syscall(SYS_tgkill, getpid(), te->tid, signum(t[k + 2]));
            trace(lineno, "M", orig, "ok");
            continue;
        }
        if (!strcmp(op, "blocked") && n - k >= 2) {
            /* blocked EXEC: wait until EXEC sits in its pending call */
            int ti = exec_index(t[k + 1]);
            struct exec *te = &ex[ti < 0 ? 0 : ti];
            if (te->pending)
                wait_blocked(te);
            trace(lineno, "M", orig, "ok");
            continue;
        }
        if (!strcmp(op, "sync") && n - k >= 2) {
            struct exec *te = &ex[exec_index(t[k + 1])];
            if (te->pending) {
                if (exec_recv(te, rep) < 0)
                    snprintf(rep, sizeof rep, "executor-gone");
                te->pending = 0;
                char tag[160];
                snprintf(tag, sizeof tag, "sync %s (line %d)", te->name, te->async_line);
                trace(lineno, te->name, tag, rep);
            } else {
                trace(lineno, te->name, orig, "nothing-pending");
            }
            continue;
        }
        if (xi == 0 && (!strcmp(op, "exit") || !strcmp(op, "_exit") || !strcmp(op, "return"))) {
            exit_how = !strcmp(op, "exit") ? 1 : !strcmp(op, "_exit") ? 2 : 0;
            exit_code = n - k >= 2 ? atoi(t[k + 1]) : 0;
            break;
        }

        /* ---- program operations: rewrite listener references ---- */
        char shown[MSG - 16];
        snprintf(shown, sizeof shown, "%s", orig);
        if (!strcmp(op, "connect") && n - k >= 3) {
            struct listener *L = lst_find(t[k + 2], 0);
            char cmd[MSG - 16];
            snprintf(cmd, sizeof cmd, "connect %s %s %s %s", t[k + 1], L ? L->fam : "tcp4",
                     L ? L->where : "0", n - k >= 4 ? t[k + 3] : "blocking");
            snprintf(orig, sizeof orig, "%s", cmd);
        }
        if (xi == 0) {
            run_op(orig, &o, rep + REP - 128, lineno);
        } else {
            if (e->pending) {
                trace(lineno, e->name, orig, "busy");
                continue;
            }
            exec_send(e, lineno, orig);
            if (async) {
                e->pending = 1;
                e->async_line = (int)lineno;
                trace(lineno, e->name, shown, "started");
                continue;
            }
            if (exec_recv(e, rep) < 0)
                snprintf(rep, sizeof rep, "executor-gone");
        }
        if (!strcmp(op, "listen")) {
            struct listener *L = lst_find(t[k + 1], 1);
            sscanf(rep + REP - 128, "%7s %199s", L->fam, L->where);
        }
        trace(lineno, e->name, shown, rep);
        /* a connect completes in the peer with an accept of the same name */
        if (!strcmp(op, "connect") && n - k >= 3 && !(n - k >= 5 && !strcmp(t[k + 4], "noaccept"))) {
            char cmd[MSG], prep[REP];
            snprintf(cmd, sizeof cmd, "paccept %s %s", t[k + 1], t[k + 2]);
            peer_call(cmd, prep);
            trace(lineno, "Q", cmd, prep);
        }
    }
    fclose(f);

    /* Collect what is still running so the end is deterministic. */
    for (int i = 1; i < NEXEC; i++) {
        struct exec *e = &ex[i];
        char rep[REP];
        if (e->pending && exec_recv(e, rep) == 0) {
            char tag[64];
            snprintf(tag, sizeof tag, "sync %s (line %d)", e->name, e->async_line);
            trace(lineno, e->name, tag, rep);
            e->pending = 0;
        }
        if (!e->live)
            continue;
        if (i < 3) {
            exec_send(e, lineno, "quit");
            pthread_join(e->th, NULL);
        } else {
            int st = child_status[i];
            if (e->pid > 0) {
                exec_send(e, lineno, "_exit 0");
                waitpid(e->pid, &st, 0);
            }
            char b[64];
            struct out o = {b, 0, sizeof b};
            out_status(&o, st);
            trace(lineno, e->name, "(end)", b);
        }
        e->live = 0;
    }
    {
        char rep[REP];
        memset(rep, 0, sizeof rep);
        struct out o = {rep, 0, REP - 130};
        op_end_state(&o);
        trace(lineno + 1, "M", "endstate", rep);
    }
    char fin[MSG];
    memset(fin, 0, sizeof fin);
    snprintf(fin, sizeof fin, "pfinal");
    xwrite_full(qcmd, fin, MSG);
    if (exit_how == 1)
        exit(exit_code);
    if (exit_how == 2)
        _exit(exit_code);
    return exit_code;
}

/* Moves an fd to a fixed low slot so the program's descriptor numbers are
 * the same in every run (and all infrastructure sits below them). */
static int park(int fd, int slot)
{
    if (fd == slot)
        return fd;
    if (dup3(fd, slot, O_CLOEXEC) < 0)
        die("dup3 park");
    close(fd);
    return slot;
}

int main(int argc, char **argv)
{
    /* First: the exec'd peer makes the unix listeners, and with the default
     * /tmp concurrent runs unlinked and took over each other's sockets. */
    const char *rd = getenv("BEHAVE_RUNDIR");
    if (rd)
        rundir = rd;
    if (argc >= 5 && !strcmp(argv[1], "--peer"))
        return peer_main(atoi(argv[2]), atoi(argv[3]), atoi(argv[4]));
    if (argc >= 5 && !strcmp(argv[1], "--write-fd")) {
        int fd = atoi(argv[2]);
        long len = atol(argv[3]);
        if (fd < 0 || len <= 0)
            return 0;
        unsigned char *buf = malloc((size_t)len);
        pattern(buf, (size_t)len, (unsigned)atoi(argv[4]));
        ssize_t w = write(fd, buf, (size_t)len);
        free(buf); /* a sanitizer build's leak check would change the exit status */
        return w == len ? 0 : 3;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: behave_driver SCENARIO TRACE\n");
        return 2;
    }
    ssize_t sl = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (sl <= 0)
        die("readlink");
    self_exe[sl] = 0;
    with_times = getenv("BEHAVE_TIMES") != NULL;
    t_start = now_ms();

    /* Infrastructure fds at fixed numbers 3..30, before any socket. */
    int slot = 3;
    int tfd = open(argv[2], O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
    if (tfd < 0)
        die("open trace");
    trace_fd = park(tfd, slot++);
    for (int i = 1; i < NEXEC; i++) {
        if (pipe2(ex[i].cmd, O_CLOEXEC) < 0 || pipe2(ex[i].rep, O_CLOEXEC) < 0)
            die("pipe");
        ex[i].cmd[0] = park(ex[i].cmd[0], slot++);
        ex[i].cmd[1] = park(ex[i].cmd[1], slot++);
        ex[i].rep[0] = park(ex[i].rep[0], slot++);
        ex[i].rep[1] = park(ex[i].rep[1], slot++);
    }
    if (socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, dgram_sp) < 0)
        die("socketpair");
    dgram_sp[0] = park(dgram_sp[0], slot++);
    dgram_sp[1] = park(dgram_sp[1], slot++);

    int qc[2], qr[2];
    if (pipe2(qc, O_CLOEXEC) < 0 || pipe2(qr, O_CLOEXEC) < 0)
        die("pipe");
    pid_t q = fork();
    if (q == 0) {
        /* The peer: exec'd without the library so its sockets are plain. */
        dup2(qc[0], 100);
        dup2(qr[1], 101);
        dup2(trace_fd, 102);
        for (int fd = 3; fd < 100; fd++)
            close(fd);
        int n = 0;
        for (char **e = environ; *e; e++)
            n++;
        char **env = calloc((size_t)n + 1, sizeof *env);
        int j = 0;
        for (char **e = environ; *e; e++)
            if (strncmp(*e, "LD_PRELOAD=", 11) && strncmp(*e, "NETTIMEO", 8))
                env[j++] = *e;
        char *av[] = {self_exe, (char *)"--peer", (char *)"100", (char *)"101", (char *)"102", NULL};
        execve(self_exe, av, env);
        _exit(127);
    }
    close(qc[0]);
    close(qr[1]);
    qcmd = park(qc[1], slot++);
    qrep = park(qr[0], slot++);
    /* pad so the first program socket is always fd 30 */
    while (slot < 30) {
        int d = open("/dev/null", O_RDONLY | O_CLOEXEC);
        park(d, slot++);
    }
    return run_scenario(argv[1]);
}
