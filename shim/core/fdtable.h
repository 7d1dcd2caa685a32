/* The fd table: what the library knows about each descriptor number.
 *
 * A descriptor is one of
 *   UNKNOWN  never seen, or forgotten: classified on its first use
 *   PASS     not ours (file, pipe, datagram or socketpair socket, ...):
 *            every hook sends it straight to the real call
 *   NEW      a stream socket from socket(), not connected yet
 *   LISTEN   a listening stream socket: what it accepts is governed
 *   CONN     a governed connection: the slot points at its struct nt_conn
 *
 * State belongs to the socket, not to the number: every descriptor of one
 * socket in this process (dup, dup2, F_DUPFD, inherited twins such as
 * inetd's 0/1, SCM_RIGHTS) points at the same connection object (conn.h).
 *
 * Two levels: a fixed array of page pointers in .bss (untouched parts cost
 * no memory) and pages of NT_FD_PAGE slots mmap'ed on first use. A lookup
 * is two loads; nothing is allocated with malloc (hooks may run in signal
 * handlers and vfork children), and an RLIMIT_NOFILE in the millions costs
 * nothing until those numbers are used.
 *
 * `kind` is read without locks on every call. A close the library does not
 * see (raw syscall(SYS_close)) leaves a stale slot: it is detected before
 * anything is done to the socket (the connection's inode, conn.h) or by the
 * kernel's answer (ENOTSOCK), and the slot is forgotten. */
#ifndef NT_FDTABLE_H
#define NT_FDTABLE_H

#include "core/nt.h"

enum nt_fd_kind {
    NT_FD_UNKNOWN = 0,
    NT_FD_PASS,
    NT_FD_NEW,
    NT_FD_CONN,
    NT_FD_LISTEN,
};

struct nt_conn;

#define NT_FD_PAGE_SHIFT 12
#define NT_FD_PAGE (1u << NT_FD_PAGE_SHIFT)
/* The kernel's fs.nr_open ceiling is 2^30; the page array covers every
 * unsigned value so the fast path needs no bounds check (8 MiB of .bss,
 * untouched except for the pages in use). */
#define NT_FD_MAX (1u << 30)
#define NT_FD_NPAGES (1u << (32 - NT_FD_PAGE_SHIFT))

struct nt_fd_page {
    uint8_t kind[NT_FD_PAGE];
    struct nt_conn *conn[NT_FD_PAGE]; /* CONN: the socket's connection */
};

extern struct nt_fd_page *nt_fd_pages[NT_FD_NPAGES];
/* 1 + the highest page index ever allocated: scans stop there. */
extern unsigned nt_fd_pages_end;

static inline struct nt_fd_page *nt_fd_page_of(int fd)
{
    return __atomic_load_n(&nt_fd_pages[(unsigned)fd >> NT_FD_PAGE_SHIFT],
                           __ATOMIC_ACQUIRE);
}

static inline int nt_fd_kind(int fd)
{
    struct nt_fd_page *p = nt_fd_page_of(fd);
    return p ? __atomic_load_n(&p->kind[fd & (NT_FD_PAGE - 1)],
                               __ATOMIC_RELAXED)
             : NT_FD_UNKNOWN;
}

/* The connection fd points at, or NULL unless fd is CONN. */
static inline struct nt_conn *nt_fd_conn(int fd)
{
    struct nt_fd_page *p = nt_fd_page_of(fd);
    if (!p || __atomic_load_n(&p->kind[fd & (NT_FD_PAGE - 1)],
                              __ATOMIC_ACQUIRE) != NT_FD_CONN)
        return 0;
    return __atomic_load_n(&p->conn[fd & (NT_FD_PAGE - 1)], __ATOMIC_RELAXED);
}

/* Set a non-CONN kind (allocates the page; a failed allocation leaves the
 * fd UNKNOWN, which classifies again next time). A CONN slot loses its
 * connection reference first (conn.h: nt_conn_detach). */
void nt_fd_set(int fd, int kind);
/* Point fd at connection c (CONN). 0, or -1 when no page could be had. */
int nt_fd_set_conn(int fd, struct nt_conn *c);
/* Memory only (no system call, no lock: a confined thread may call it):
 * fd, or [lo, hi], must be classified afresh on next use. Connections
 * they pointed at keep their references (identity checks protect them). */
void nt_fd_mark_unknown(int fd);
void nt_fd_mark_unknown_range(unsigned lo, unsigned hi);
/* Calls f(fd, c) for every CONN slot; the slot may change meanwhile. */
void nt_fd_each_conn(void (*f)(int fd, struct nt_conn *c, void *arg),
                     void *arg);

/* A descriptor of the library's own, moved out of the way of programs
 * that expect low numbers to be theirs (and of select()'s FD_SETSIZE
 * users): to NT_OWN_FD_BASE or above, below the soft RLIMIT_NOFILE,
 * close-on-exec. Returns the new number (fd itself if it cannot move). */
#define NT_OWN_FD_BASE 1000
int nt_fd_move_high(int fd);

/* The fast path of every hook: fd is known not to be governed (a file,
 * pipe, datagram socket, ...). A load of the init flag, one of the page
 * pointer, one of the kind byte; no call, so the hook needs no frame. */
static inline int nt_fd_passes(int fd)
{
    if (unlikely(!__atomic_load_n(&nt_g.ready, __ATOMIC_ACQUIRE)))
        return 0;
    struct nt_fd_page *p = nt_fd_page_of(fd);
    return likely(p) && __atomic_load_n(&p->kind[fd & (NT_FD_PAGE - 1)],
                                        __ATOMIC_RELAXED) == NT_FD_PASS;
}

/* nt_fd_passes(), and nothing coalesced is held anywhere (coalesce.h:
 * nt_coalesce_held()): the hooks' pass-through needs both, and gets them
 * with one load of nt_g's ready word. */
static inline int nt_fd_passes_clean(int fd)
{
    if (unlikely(__atomic_load_n(&nt_g.ready_word, __ATOMIC_ACQUIRE) !=
                 NT_READY_CLEAN))
        return 0;
    struct nt_fd_page *p = nt_fd_page_of(fd);
    return likely(p) && __atomic_load_n(&p->kind[fd & (NT_FD_PAGE - 1)],
                                        __ATOMIC_RELAXED) == NT_FD_PASS;
}

#endif
