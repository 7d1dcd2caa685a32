/* The connection object: one per governed socket in this process, shared
 * by every descriptor that refers to it (fdtable.h). Its clocks, expired
 * state and coalescing buffer are the socket's.
 *
 * Life cycle
 *   nt_conn_open()    a connect, an accept, or the first use of an
 *                     inherited or received connected socket (another
 *                     descriptor of the same socket, found by inode, is
 *                     joined instead of opening a second object)
 *   nt_conn_attach()  one more descriptor (dup, dup2, F_DUPFD)
 *   nt_conn_detach()  a descriptor goes (close, dup2 over it, close_range,
 *                     a close the library did not see); the last one
 *                     retires the object, unless a blocked call of ours
 *                     still waits on the socket: then the socket stays
 *                     open under a private descriptor until that call
 *                     returns, as the kernel keeps it open for a blocked
 *                     call (`alias_fd`, see io.c).
 * Objects live in mmap'ed chunks that are never unmapped, so a pointer is
 * always safe to read; `gen` changes whenever an object is retired or
 * reused, and anything that kept (pointer, gen) checks it before acting.
 *
 * Locking: `lock` (nt_conn_lock) is a spin lock held only for a few
 * instructions or one non-blocking system call, by the timer thread
 * before it acts on the socket, by close/dup2 while they change which
 * descriptors refer to it, and by a blocked call of ours around each
 * attempt. It is re-entrant for the owning thread (a signal handler that
 * interrupts it), and an owner from before a fork is stale in the child.
 *
 * Identity: `ino` is the socket's inode. Before the library does anything
 * the program did not ask for (the timer shuts the socket down, a buffered
 * write is flushed) it checks that `fd` still names that socket.
 */
#ifndef NT_CONN_H
#define NT_CONN_H

#include <netinet/in.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "core/fdtable.h"
#include "core/sandbox.h"

enum nt_role { NT_ROLE_NONE = 0, NT_ROLE_OUTBOUND, NT_ROLE_INBOUND,
               NT_ROLE_INHERITED };

union nt_addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
    struct sockaddr_un un;
};

/* The pool: chunks of 2^NT_CONN_CHUNK_SHIFT objects (conn.c). */
#define NT_CONN_CHUNK_SHIFT 8
#define NT_CONN_NCHUNKS (1u << 14) /* 4M connections */

/* An address as events and rules need it: family, address, port. IP
 * addresses are kept inline in 19 bytes instead of a 110-byte
 * sockaddr_un; anything longer (Unix paths) goes to a side table that
 * exists only for chunks that hold such a connection (conn.c). */
struct nt_caddr {
    uint8_t fam;             /* AF_INET, AF_INET6; AF_UNIX: unnamed, or
                                in the side table when ip[0] is 1;
                                0: not known */
    uint16_t port;           /* network order */
    uint8_t ip[16];          /* AF_INET: the first 4 bytes */
} __attribute__((packed));

/* Field order packs the object into 256 bytes (no holes): see the
 * static assert in conn.c before adding a field. */
struct nt_conn {
    /* --- identity and references --- */
    _Atomic uint64_t lock;   /* nt_conn_lock(): (fork epoch << 32) | tid */
    uint32_t gen;            /* changes when the object is retired/reused */
    uint32_t idx;            /* position in the pool (free list) */
    uint64_t ino;            /* socket inode */
    const struct nt_settings *set; /* resolved once; NULL = audit only */
    int fd;                  /* a descriptor of this process that refers to it */
    int alias_fd;            /* private descriptor while waiters outlive
                                the program's last one; -1: none */
    uint16_t refs;           /* descriptors referring to it */
    uint16_t waiters;        /* blocked calls of ours waiting on it */
    uint8_t role;            /* enum nt_role */
    uint8_t nonblock;        /* O_NONBLOCK as the program set it */
    uint8_t family;          /* AF_INET, AF_INET6, AF_UNIX */
    uint8_t dup_shared;      /* more than one descriptor has referred to it */
    uint8_t dormant;         /* fork child: not touched in this process yet */
    uint8_t peer_closed;     /* read returned 0 / ECONNRESET seen */
    uint8_t self_closed;     /* the program shut down its side */

    /* --- deadlines (see deadline.h) --- */
    uint8_t dl_active;       /* bits (1 << NT_DL_*) of the deadlines set */
    uint8_t req_phase;       /* exchange state (deadline.c) */
    uint8_t req_dir;         /* NT_IN inbound, NT_OUT outbound: requests */
    uint8_t expired;         /* a deadline fired: later calls fail */
    uint8_t expired_kind;    /* which one */
    uint8_t in_call[2];      /* blocking calls of ours waiting: [NT_IN], [NT_OUT] */
    uint8_t mark_writes;     /* unix with idle_timeout: count writes in progress */
    uint8_t connect_err;     /* SO_ERROR (an errno value) to report after
                                an aborted connect */
    uint32_t heap_idx;       /* position in the timer heap, 0 = none */

    /* --- the connection's story (audit) --- */
    nt_ns t_open;            /* established (monotonic) */
    nt_ns t_last;            /* last byte moved either way */
    /* Per direction, also as arrays indexed by NT_IN/NT_OUT (deadline.h),
     * so the fast path picks a direction's field without a branch. */
    union {
        struct { uint64_t bytes_in, bytes_out; };
        uint64_t bytes[2];
    };

    nt_ns heap_due;          /* key it is filed under (<= true due time) */
    nt_ns t_req;             /* current exchange started; 0 = parked */
    union {                  /* non-blocking: waiting since (EAGAIN) */
        struct { nt_ns t_wait_rd, t_wait_wr; };
        nt_ns t_wait[2];
    };
    nt_ns t_connect;         /* connect in progress since */
    uint32_t ans_seq;        /* nt_wait_seq at the last answer bytes */
    uint32_t ux_queued;      /* unix: bytes queued both ways at the last look */
    union {                  /* bytes_in/out when the exchange started */
        struct { uint64_t x_in0, x_out0; };
        uint64_t x0[2];
    };

    /* --- addresses (nt_conn_addr() gives them as a sockaddr) --- */
    struct nt_caddr local, remote;

/* --- write coalescing (see coalesce.h; must stay the last section:
     * nt_coalesce_dup() resets everything from cbuf to the end) --- */
    void *cbuf;              /* buffer while it holds data, else NULL */
    uint32_t clen;           /* bytes buffered */
    uint32_t co_writer;      /* thread that last added bytes (low bits of
                                co_self_id(): a false match only makes a
                                wait's flush take the lock) */
    int16_t flush_err;       /* error (an errno value) for the next call */
    uint8_t co_mode;         /* enum nt_co_mode; 0: not decided yet */
    uint8_t co_flags;        /* CO_* bits (coalesce_internal.h), slot lock */
    uint8_t co_ready;        /* connected: bytes may be buffered */
    uint8_t co_retry;        /* failed timer flushes in a row (back-off) */
    uint8_t co_full;         /* the kernel said no room: writes go to it */
    uint8_t co_single;       /* flushes in a row that carried one write */
    uint32_t co_pidx;        /* 1 + index in the pending set (its lock) */
    uint16_t co_nwr;         /* writes in the buffer / under the cork */
    uint16_t co_pass;        /* pass-through: writes left until a probe */
    uint64_t co_busy;        /* thread sending with the slot unlocked */
    nt_ns t_cflush;          /* timer flush due (coalesce_delay); 0: none */
    nt_ns t_orphan;          /* closed, still flushing: last progress */
};

/* The connection's local (remote = 0) or remote address as a sockaddr
 * in *out; its length, 0 when not known. nt_conn_set_addr() stores one
 * (len 0: not known). conn_addr.c. */
void nt_conn_set_addr(struct nt_conn *c, int remote, const union nt_addr *a,
                      socklen_t len);
socklen_t nt_conn_addr(const struct nt_conn *c, int remote,
                       union nt_addr *out);

/* First use of an UNKNOWN fd: classify it (fdtable.c). */
struct nt_conn *nt_fd_classify(int fd);
/* A fork child wakes a connection on its own first call on it. */
void nt_conn_wake(struct nt_conn *c);

/* Hooks that may bypass the library: re-entry from its own code, or a
 * vfork child (which shares the parent's memory: it must change nothing).
 * nt_bypass_slow() tells a vfork child from the parent it returned to. */
int nt_bypass_slow(void);
static inline int nt_bypass(void)
{
    return unlikely(nt_in_lib) && nt_bypass_slow();
}

/* The connection a hook should govern, or NULL to pass straight through;
 * initialises the library and classifies fds seen for the first time. */
static inline struct nt_conn *nt_conn_get(int fd)
{
    nt_init();
    struct nt_fd_page *p = nt_fd_page_of(fd);
    if (likely(p)) {
        unsigned i = fd & (NT_FD_PAGE - 1);
        int k = __atomic_load_n(&p->kind[i], __ATOMIC_ACQUIRE);
        if (likely(k == NT_FD_PASS))
            return 0;
        if (k == NT_FD_CONN) {
            if (nt_bypass() || nt_sandboxed_fast() /* sandbox: */)
                return 0;
            struct nt_conn *c = __atomic_load_n(&p->conn[i], __ATOMIC_RELAXED);
            if (unlikely(c->dormant))
                nt_conn_wake(c);
            return c;
        }
        /* NEW: maybe connected since, through another descriptor of the
         * same socket (a dup made before connect): classify again */
        if (k != NT_FD_UNKNOWN && k != NT_FD_NEW)
            return 0;
    }
    return nt_bypass() || nt_g.disabled || nt_sandboxed() /* sandbox: */
               ? 0 : nt_fd_classify(fd);
}

/* The hot paths' lookup (io.h's fast path, poll): the connection of a
 * CONN fd, without initialising (the caller knows init is done) or
 * classifying. NULL, with the slot's kind in *kind, when fd is not CONN
 * or when the library may have to stand back (re-entry, a sandbox) or
 * wake it (dormant): nt_conn_get() then decides. */
static inline struct nt_conn *nt_conn_peek(int fd, int *kind)
{
    struct nt_fd_page *p = nt_fd_page_of(fd);
    unsigned i = fd & (NT_FD_PAGE - 1);
    *kind = likely(p) ? __atomic_load_n(&p->kind[i], __ATOMIC_ACQUIRE)
                      : NT_FD_UNKNOWN;
    if (*kind != NT_FD_CONN || unlikely(nt_in_lib) ||
        unlikely(__atomic_load_n(&nt_sb_any, __ATOMIC_RELAXED)))
        return 0;
    struct nt_conn *c = __atomic_load_n(&p->conn[i], __ATOMIC_RELAXED);
    return unlikely(c->dormant) ? 0 : c;
}

int nt_conn_lock(struct nt_conn *c);          /* 1: taken, 0: already ours */
int nt_conn_trylock(struct nt_conn *c);       /* ... -1: another thread's */
void nt_conn_unlock(struct nt_conn *c, int taken);

/* A connected or accepted socket on fd (which the program just got from
 * the kernel): a new connection object. nonblock -1: ask the kernel.
 * `remote` (may be NULL) is the address given to connect. NULL when not
 * governed (no config, pool exhausted): fd passes through. */
struct nt_conn *nt_conn_open(int fd, int role, int nonblock,
                             const struct sockaddr *remote, socklen_t rlen);
/* fd now refers to c too (dup); fd was not CONN. */
void nt_conn_attach(struct nt_conn *c, int fd);
/* fd no longer refers to its connection: the program is closing it (the
 * real close follows; `closing` says the number is going away) or it was
 * found stale. The last descriptor retires the connection (close event,
 * timer entry dropped), unless a blocked call of ours still waits. */
void nt_conn_detach(int fd, int kind, void *caller);
/* hooks/close.c: the program is done with fd (close, fclose, dup2 over
 * it): last words for the socket if it was the last descriptor, then
 * detach. */
void nt_close_fd(int fd, int how, const char *op, void *caller);
/* Coalescing kept a connection whose program closed it, to send what it
 * still held (an orphan, alias_fd): that is done now. Lock held. */
void nt_conn_orphan_done(struct nt_conn *c);
/* A blocked call of ours is done with the socket (io.c). */
void nt_conn_unwait(struct nt_conn *c);
/* Re-read the local address (after connect bound it). */
void nt_conn_refresh_local(struct nt_conn *c, int fd);
/* Every live connection (fork child, exit). */
void nt_conn_each(void (*f)(struct nt_conn *c, void *arg), void *arg);

/* The kind of fd, classifying it if it is UNKNOWN. */
int nt_fd_kind_classified(int fd);
/* The fd turned out stale (ENOTSOCK): forget it; the next call
 * classifies it again. */
void nt_fd_forget(int fd);
/* [lo, hi] are closed (close_range, closefrom). */
void nt_fd_release_range(unsigned lo, unsigned hi, void *caller);

#endif
