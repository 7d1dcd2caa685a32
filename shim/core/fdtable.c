/* The fd table's slow paths: page allocation, classification of fds seen
 * for the first time, and the per-slot lock. See conn.h. */
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/conn.h"
#include "core/process.h"
#include "core/real.h"
#include "core/settings.h"

struct nt_fd_page *nt_fd_pages[NT_FD_NPAGES];

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

struct nt_conn *nt_fd_conn(int fd)
{
    struct nt_fd_page *p = nt_fd_page_of(fd);
    return p ? &p->conn[fd & (NT_FD_PAGE - 1)] : NULL;
}

static void reset_slot(int fd, int kind)
{
    struct nt_fd_page *p = nt_fd_page_of(fd);
    if (!p)
        return;
    int i = fd & (NT_FD_PAGE - 1);
    __atomic_store_n(&p->kind[i], (uint8_t)kind, __ATOMIC_RELEASE);
    __atomic_add_fetch(&p->conn[i].gen, 1, __ATOMIC_RELEASE);
}

void nt_fd_forget(int fd)
{
    reset_slot(fd, NT_FD_UNKNOWN);
}

/* The program closed fd. Whatever it opens next under that number comes
 * from open/pipe/eventfd (not a socket: sockets come back through hooked
 * calls that set their kind), so the next call on it needs no fstat. */
void nt_fd_release(int fd)
{
    reset_slot(fd, NT_FD_PASS);
}

void nt_fd_release_range(unsigned lo, unsigned hi)
{
    if (hi >= NT_FD_MAX)
        hi = NT_FD_MAX - 1;
    for (unsigned fd = lo; fd <= hi && fd >= lo;) {
        struct nt_fd_page *p = nt_fd_page_of((int)fd);
        unsigned page_end = (fd | (NT_FD_PAGE - 1));
        if (p) {
            unsigned end = page_end < hi ? page_end : hi;
            for (; fd <= end; fd++)
                if (p->kind[fd & (NT_FD_PAGE - 1)] != NT_FD_UNKNOWN)
                    nt_fd_release((int)fd);
        }
        if (page_end >= hi)
            break;
        fd = page_end + 1;
    }
}

static int is_governed_family(int family)
{
    return family == AF_INET || family == AF_INET6 || family == AF_UNIX;
}

static int sockopt_int(int fd, int opt)
{
    int v = -1;
    socklen_t len = sizeof v;
    if (getsockopt(fd, SOL_SOCKET, opt, &v, &len) != 0)
        return -1;
    return v;
}

/* What kind of socket is fd? One fstat and a few getsockopt calls, made
 * once per fd: on first use of an fd the library has not seen created (an
 * inherited socket: inetd, systemd socket activation) or at listen(). */
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

int nt_fd_kind_classified(int fd)
{
    if ((unsigned)fd >= NT_FD_MAX)
        return NT_FD_PASS;
    int saved = errno;
    struct stat st;
    int kind = socket_kind(fd, &st);
    if (kind == NT_FD_CONN) {
        struct nt_conn *c = nt_conn_open(fd, NT_ROLE_INHERITED, -1, NULL, 0);
        if (c)
            c->ino = st.st_ino;
        else
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

/* --- slot lock -------------------------------------------------------- */

static NT_TLS uint32_t my_tid;

static uint64_t lock_word(void)
{
    if (unlikely(!my_tid))
        my_tid = (uint32_t)syscall(SYS_gettid);
    return ((uint64_t)nt_fork_epoch << 32) | my_tid;
}

void nt_tid_reset(void)
{
    my_tid = 0;
}

int nt_conn_lock(struct nt_conn *c)
{
    uint64_t me = lock_word();
    for (;;) {
        uint64_t cur = __atomic_load_n(&c->lock, __ATOMIC_ACQUIRE);
        if (cur == me)
            return 0; /* a signal handler in the owning thread */
        if (cur == 0 || (uint32_t)(cur >> 32) != nt_fork_epoch) {
            /* free, or held by a thread that did not survive fork */
            if (__atomic_compare_exchange_n(&c->lock, &cur, me, 0,
                                            __ATOMIC_ACQUIRE,
                                            __ATOMIC_RELAXED))
                return 1;
            continue;
        }
        sched_yield();
    }
}

void nt_conn_unlock(struct nt_conn *c, int taken)
{
    if (taken)
        __atomic_store_n(&c->lock, 0, __ATOMIC_RELEASE);
}
