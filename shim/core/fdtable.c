/* The fd table's slow paths: pages, kinds, and the classification of
 * descriptors seen for the first time. See fdtable.h. */
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "core/conn.h"
#include "core/real.h"

struct nt_fd_page *nt_fd_pages[NT_FD_NPAGES];
unsigned nt_fd_pages_end;

static struct nt_fd_page *page_for(int fd)
{
    struct nt_fd_page **pp = &nt_fd_pages[(unsigned)fd >> NT_FD_PAGE_SHIFT];
    struct nt_fd_page *p = __atomic_load_n(pp, __ATOMIC_ACQUIRE);
    if (likely(p))
        return p;
    /* mmap, not malloc: async-signal-safe, and untouched slots cost no
     * memory. MAP_NORESERVE: commit charge only for what is used. */
    void *m = mmap(NULL, sizeof *p, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    struct nt_fd_page *expected = NULL;
    if (!__atomic_compare_exchange_n(pp, &expected, m, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        munmap(m, sizeof *p); /* another thread won the race */
        return expected;
    }
    unsigned end = ((unsigned)fd >> NT_FD_PAGE_SHIFT) + 1, cur;
    while ((cur = __atomic_load_n(&nt_fd_pages_end, __ATOMIC_RELAXED)) < end &&
           !__atomic_compare_exchange_n(&nt_fd_pages_end, &cur, end, 0,
                                        __ATOMIC_RELEASE, __ATOMIC_RELAXED))
        ;
    return m;
}

void nt_fd_set(int fd, int kind)
{
    if ((unsigned)fd >= NT_FD_MAX)
        return;
    struct nt_fd_page *p = page_for(fd);
    if (p)
        __atomic_store_n(&p->kind[fd & (NT_FD_PAGE - 1)], (uint8_t)kind,
                         __ATOMIC_RELEASE);
}

int nt_fd_set_conn(int fd, struct nt_conn *c)
{
    if ((unsigned)fd >= NT_FD_MAX)
        return -1;
    struct nt_fd_page *p = page_for(fd);
    if (!p)
        return -1;
    unsigned i = fd & (NT_FD_PAGE - 1);
    __atomic_store_n(&p->conn[i], c, __ATOMIC_RELAXED);
    __atomic_store_n(&p->kind[i], NT_FD_CONN, __ATOMIC_RELEASE);
    return 0;
}

void nt_fd_each_conn(void (*f)(int fd, struct nt_conn *c, void *arg),
                     void *arg)
{
    unsigned end = __atomic_load_n(&nt_fd_pages_end, __ATOMIC_ACQUIRE);
    for (unsigned pg = 0; pg < end; pg++) {
        struct nt_fd_page *p = __atomic_load_n(&nt_fd_pages[pg],
                                               __ATOMIC_ACQUIRE);
        if (!p)
            continue;
        for (unsigned i = 0; i < NT_FD_PAGE; i++)
            if (__atomic_load_n(&p->kind[i], __ATOMIC_ACQUIRE) == NT_FD_CONN)
                f((int)((pg << NT_FD_PAGE_SHIFT) | i), p->conn[i], arg);
    }
}

void nt_fd_release_range(unsigned lo, unsigned hi, void *caller)
{
    unsigned pages = __atomic_load_n(&nt_fd_pages_end, __ATOMIC_ACQUIRE);
    if (!pages)
        return;
    if (hi > (pages << NT_FD_PAGE_SHIFT) - 1)
        hi = (pages << NT_FD_PAGE_SHIFT) - 1;
    for (unsigned fd = lo; fd <= hi && fd >= lo;) {
        struct nt_fd_page *p = nt_fd_page_of((int)fd);
        unsigned page_end = (fd | (NT_FD_PAGE - 1));
        if (p) {
            unsigned end = page_end < hi ? page_end : hi;
            for (; fd <= end; fd++) {
                int k = p->kind[fd & (NT_FD_PAGE - 1)];
                if (k == NT_FD_CONN)
                    nt_conn_detach((int)fd, NT_FD_PASS, caller);
                else if (k != NT_FD_UNKNOWN && k != NT_FD_PASS)
                    nt_fd_set((int)fd, NT_FD_PASS);
            }
        }
        if (page_end >= hi)
            break;
        fd = page_end + 1;
    }
}

void nt_fd_mark_unknown(int fd)
{
    struct nt_fd_page *p = nt_fd_page_of(fd);
    if (p)
        __atomic_store_n(&p->kind[fd & (NT_FD_PAGE - 1)], NT_FD_UNKNOWN,
                         __ATOMIC_RELEASE);
}

void nt_fd_mark_unknown_range(unsigned lo, unsigned hi)
{
    unsigned end = __atomic_load_n(&nt_fd_pages_end, __ATOMIC_ACQUIRE);
    if (end && hi > (end << NT_FD_PAGE_SHIFT) - 1)
        hi = (end << NT_FD_PAGE_SHIFT) - 1;
    for (unsigned fd = lo; end && fd <= hi && fd >= lo; fd++)
        nt_fd_mark_unknown((int)fd);
}

void nt_fd_forget(int fd)
{
    if (nt_fd_kind(fd) == NT_FD_CONN)
        nt_conn_detach(fd, NT_FD_UNKNOWN, NULL);
    else if (nt_fd_page_of(fd))
        nt_fd_set(fd, NT_FD_UNKNOWN);
}

static int is_governed_family(int family)
{
    return family == AF_INET || family == AF_INET6 || family == AF_UNIX;
}

static int sockopt_int(int fd, int opt)
{
    int v = -1;
    socklen_t len = sizeof v;
    if (real.getsockopt(fd, SOL_SOCKET, opt, &v, &len) != 0)
        return -1;
    return v;
}

/* What kind of socket is fd? One fstat and a few getsockopt calls, made
 * once per descriptor the library has not seen created: on its first use
 * when inherited (inetd, systemd socket activation), on receipt when
 * passed with SCM_RIGHTS. */
static int socket_kind(int fd, struct stat *st)
{
    if (fstat(fd, st) != 0)
        return NT_FD_UNKNOWN; /* not open: let the call fail */
    if (!S_ISSOCK(st->st_mode) || sockopt_int(fd, SO_TYPE) != SOCK_STREAM ||
        !is_governed_family(sockopt_int(fd, SO_DOMAIN)))
        return NT_FD_PASS;
    if (sockopt_int(fd, SO_ACCEPTCONN) == 1)
        return NT_FD_LISTEN;
    struct sockaddr_storage peer;
    socklen_t plen = sizeof peer;
    if (getpeername(fd, (struct sockaddr *)&peer, &plen) != 0)
        return NT_FD_NEW; /* not connected yet */
    return NT_FD_CONN;
}

struct same_ino { uint64_t ino; struct nt_conn *found; };

static void find_ino(struct nt_conn *c, void *arg)
{
    struct same_ino *s = arg;
    if (!s->found && c->ino == s->ino && c->refs)
        s->found = c;
}

/* Does c's descriptor still name the socket c was made for? (An inode is
 * reused once its socket is gone, and a close we did not see leaves c.) */
static int still_there(struct nt_conn *c)
{
    struct stat st;
    return nt_fd_conn(c->fd) == c && fstat(c->fd, &st) == 0 &&
           (uint64_t)st.st_ino == c->ino;
}

int nt_fd_kind_classified(int fd)
{
    if ((unsigned)fd >= NT_FD_MAX)
        return NT_FD_PASS;
    int saved = errno;
    struct stat st;
    int kind = socket_kind(fd, &st);
    if (kind == NT_FD_CONN) {
        /* Another descriptor of the same socket (inetd's 0 and 1, a
         * socket received twice) already has its connection. */
        struct same_ino s = { (uint64_t)st.st_ino, NULL };
        nt_conn_each(find_ino, &s);
        if (s.found && !still_there(s.found)) {
            nt_fd_forget(s.found->fd);
            s.found = NULL;
        }
        if (s.found)
            nt_conn_attach(s.found, fd);
        else if (!nt_conn_open(fd, NT_ROLE_INHERITED, -1, NULL, 0))
            kind = NT_FD_PASS;
    }
    if (kind != NT_FD_UNKNOWN && kind != NT_FD_CONN)
        nt_fd_set(fd, kind);
    errno = saved;
    return kind;
}

struct nt_conn *nt_fd_classify(int fd)
{
    return nt_fd_kind_classified(fd) == NT_FD_CONN ? nt_fd_conn(fd) : NULL;
}

int nt_fd_move_high(int fd)
{
    struct rlimit rl;
    long base = NT_OWN_FD_BASE;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (long)rl.rlim_cur < base + 64)
        base = (long)rl.rlim_cur * 3 / 4;
    if (fd >= base || base < 3)
        return fd;
    int high = real.fcntl(fd, F_DUPFD_CLOEXEC, (int)base);
    if (high < 0)
        return fd; /* a low fd still works */
    real.close(fd);
    return high;
}
