/* The fd table: what the library knows about each descriptor.
 *
 * Two levels: a fixed array of page pointers (in .bss, so untouched parts
 * cost no memory) and pages of NT_FD_PAGE slots mmap'ed on first use. A
 * lookup is a bounds check and two loads; nothing is allocated up front, so
 * an RLIMIT_NOFILE in the millions costs nothing until those fds are used,
 * and nothing is ever allocated with malloc (hooks may run in signal
 * handlers and vfork children).
 *
 * Per-fd `kind` is read without locks on every call. A slot's connection
 * data is trusted only as far as its `ino` identity: a close the library did
 * not see (raw syscall, fclose of an fdopen'ed socket) leaves a stale slot,
 * which is detected (ENOTSOCK from a socket call, or an inode mismatch
 * before any asynchronous action) and never acted on.
 */
#ifndef NT_CONN_H
#define NT_CONN_H

#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "core/nt.h"

enum nt_fd_kind {
    NT_FD_UNKNOWN = 0, /* never seen, or reset: classify on first use */
    NT_FD_PASS,        /* not ours: file, pipe, datagram, listening, ... */
    NT_FD_NEW,         /* stream socket from socket(): not yet connected */
    NT_FD_CONN,        /* governed stream connection */
    NT_FD_LISTEN,      /* listening stream socket: its accepts are governed */
};

enum nt_role { NT_ROLE_NONE = 0, NT_ROLE_OUTBOUND, NT_ROLE_INBOUND,
               NT_ROLE_INHERITED };

union nt_addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
    struct sockaddr_un un;
};

struct nt_conn {
    /* --- identity (foundation) --- */
    _Atomic uint64_t lock;   /* nt_conn_lock(): (fork epoch << 32) | tid */
    uint32_t gen;            /* bumped whenever the slot is (re)assigned */
    uint64_t ino;            /* socket inode; 0 = not yet captured */
    uint8_t role;            /* enum nt_role */
    uint8_t nonblock;        /* O_NONBLOCK as the program set it */
    uint8_t family;          /* AF_INET, AF_INET6, AF_UNIX */
    uint8_t dup_shared;      /* another fd refers to the same socket */
    socklen_t local_len, remote_len;
    union nt_addr local, remote;
    const struct nt_settings *set; /* resolved once; NULL = audit only */

    /* --- the connection's story (audit) --- */
    nt_ns t_open;            /* established (monotonic) */
    nt_ns t_last;            /* last byte moved either way */
    uint64_t bytes_in, bytes_out;
    uint8_t peer_closed;     /* read returned 0 / ECONNRESET seen */
    uint8_t self_closed;     /* the program shut down its side */

    /* --- deadlines (see deadline.h) --- */
    uint8_t dl_active;       /* bits (1 << NT_DL_*) of the deadlines set */
    uint32_t heap_idx;       /* position in the timer heap, 0 = none */
    nt_ns heap_due;          /* key it is filed under (<= true due time) */
    nt_ns t_req;             /* current exchange started; 0 = parked */
    nt_ns t_wait_rd, t_wait_wr; /* non-blocking: waiting since (EAGAIN) */
    nt_ns t_connect;         /* non-blocking connect in progress since */
    uint8_t req_phase;       /* enum in deadline.c */
    uint8_t expired;         /* a deadline fired: later calls fail */
    uint8_t expired_kind;    /* which one */
    uint8_t in_call;         /* a blocking call of ours waits on it */
    int connect_err;         /* SO_ERROR to report after an aborted connect */

    /* --- write coalescing (see coalesce.h; must stay the last section:
     * nt_coalesce_dup() resets everything from cbuf to the end) --- */
    void *cbuf;              /* buffer while it holds data, else NULL */
    uint32_t clen;           /* bytes buffered */
    int flush_err;           /* error to report on the next call */
    uint8_t co_mode;         /* enum nt_co_mode; 0: not decided yet */
    uint8_t co_flags;        /* CO_* bits (coalesce_internal.h), slot lock */
    uint8_t co_ready;        /* connected: bytes may be buffered */
    uint8_t co_retry;        /* failed timer flushes in a row (back-off) */
    uint32_t co_pidx;        /* 1 + index in the pending set (its lock) */
    uint64_t co_busy;        /* thread sending with the slot unlocked */
    nt_ns t_cflush;          /* timer flush due (coalesce_delay); 0: none */
    uint8_t co_full;         /* the kernel said no room: writes go to it */
    uint8_t co_single;       /* flushes in a row that carried one write */
    uint16_t co_nwr;         /* writes in the buffer / under the cork */
    uint16_t co_pass;        /* pass-through: writes left until a probe */
    nt_ns t_orphan;          /* closed, still flushing: last progress */
};

#define NT_FD_PAGE_SHIFT 12
#define NT_FD_PAGE (1u << NT_FD_PAGE_SHIFT)
/* The kernel's fs.nr_open ceiling is 2^30; the page array covers every
 * unsigned value so the fast path needs no bounds check (8 MiB of .bss,
 * untouched except for the pages in use). */
#define NT_FD_MAX (1u << 30)
#define NT_FD_NPAGES (1u << (32 - NT_FD_PAGE_SHIFT))

struct nt_fd_page {
    uint8_t kind[NT_FD_PAGE];
    struct nt_conn conn[NT_FD_PAGE];
};

extern struct nt_fd_page *nt_fd_pages[NT_FD_NPAGES];

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

/* Slow paths (fdtable.c). */
struct nt_conn *nt_fd_classify(int fd);        /* first use of an UNKNOWN fd */
void nt_fd_set(int fd, int kind);              /* allocates the page if needed */
struct nt_conn *nt_fd_conn(int fd);            /* slot, page must exist */
void nt_fd_forget(int fd);      /* stale: classify again on next use */
void nt_fd_release(int fd);     /* closed by the program */
void nt_fd_release_range(unsigned lo, unsigned hi);

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

/* The connection a hook should govern, or NULL to pass straight through;
 * initialises the library and classifies fds seen for the first time. */
static inline struct nt_conn *nt_conn_get(int fd)
{
    nt_init();
    struct nt_fd_page *p = nt_fd_page_of(fd);
    if (likely(p)) {
        int k = __atomic_load_n(&p->kind[fd & (NT_FD_PAGE - 1)],
                                __ATOMIC_RELAXED);
        if (likely(k == NT_FD_PASS))
            return 0;
        if (k == NT_FD_CONN)
            return nt_in_lib ? 0 : &p->conn[fd & (NT_FD_PAGE - 1)];
        if (k != NT_FD_UNKNOWN)
            return 0;
    }
    return nt_in_lib || nt_g.disabled ? 0 : nt_fd_classify(fd);
}

/* Slot lock, held only briefly by close/dup2 and the timer thread so that
 * an asynchronous action never hits an fd the program has just reused.
 * Re-entrant for the owning thread (a signal handler calling close), and
 * stale owners from before a fork are ignored. */
int nt_conn_lock(struct nt_conn *c);          /* 1: taken, 0: already ours */
void nt_conn_unlock(struct nt_conn *c, int taken);

/* Set up the slot for a newly connected or accepted socket; nonblock -1:
 * ask the kernel. `remote` (may be NULL) is the address given to connect,
 * used while the connection is still being made. Returns NULL (the fd
 * passes through) when not governed. */
struct nt_conn *nt_conn_open(int fd, int role, int nonblock,
                             const struct sockaddr *remote, socklen_t rlen);
/* Is this fd a socket the library may govern (stream, inet/unix)? Sets
 * its kind: NEW, LISTEN, CONN (inherited, connected) or PASS. */
int nt_fd_kind_classified(int fd);
/* Re-read the local address (after connect bound it). */
void nt_conn_refresh_local(struct nt_conn *c, int fd);
/* Copy the table entry of `from` to `to` (dup); `to` was free. */
void nt_conn_dup(int from, int to);

#endif
