/* Types shared by the BPF programs (nettimeo.bpf.c) and their loader.
 *
 * The loader compiles the config's rules into struct ntk_rule entries (the
 * BPF side cannot run the C matcher), the kernel reports through
 * struct ntk_event records on a ring buffer. Plain fixed-size types only:
 * both sides see the same layout. */
#ifndef NTK_SHARED_H
#define NTK_SHARED_H

#define NTK_MAX_RULES 32   /* rules + the [defaults] entry */
#define NTK_MAX_PORTS 8    /* port ranges per list */
#define NTK_MAX_CIDRS 8    /* CIDRs per rule */
#define NTK_STACK 32       /* user frames per event */

enum ntk_dir { NTK_DIR_ANY = 0, NTK_DIR_IN = 1, NTK_DIR_OUT = 2 };

struct ntk_ports { __u16 lo, hi; };
struct ntk_cidr { __u8 v6, prefix, pad[2]; __u8 addr[16]; };

struct ntk_rule {
    __u8 dir;                 /* enum ntk_dir */
    __u8 n_lport, n_rport, n_cidr;
    __u8 reset;               /* expire_action = reset (kernel mode always aborts) */
    __u8 pad[3];
    struct ntk_ports lport[NTK_MAX_PORTS], rport[NTK_MAX_PORTS];
    struct ntk_cidr cidr[NTK_MAX_CIDRS];
    __u64 connect_ns, read_ns, write_ns, idle_ns, lifetime_ns;
};

/* Which deadline fired (also the order of the config keys' names). */
enum ntk_which { NTK_T_NONE = 0, NTK_T_CONNECT, NTK_T_READ, NTK_T_WRITE,
                 NTK_T_IDLE, NTK_T_LIFETIME };

enum ntk_kind { NTK_EV_TIMEOUT = 1, NTK_EV_EPIPE, NTK_EV_ECONNRESET };

/* The system call an error came from. */
enum ntk_op { NTK_OP_TIMER = 0, NTK_OP_WRITE, NTK_OP_WRITEV, NTK_OP_SENDTO,
              NTK_OP_SENDMSG, NTK_OP_READ, NTK_OP_READV, NTK_OP_RECVFROM,
              NTK_OP_RECVMSG, NTK_OP_CONNECT, NTK_OP_COUNT };

/* Per-socket state (sk_storage): what sock_ops learnt at connect/accept. */
struct ntk_sk {
    __u64 t_connect;          /* connect() started (ktime), outbound */
    __u64 t_est;              /* established (ktime); 0: not yet */
    __u32 rule;               /* index into rules[] */
    __u32 pid, tid;           /* who connected (outbound); 0: unknown */
    __u8 dir;                 /* NTK_DIR_IN / NTK_DIR_OUT */
    __u8 fired;               /* enum ntk_which that acted, 0: none */
    __u8 pad[2];
    char comm[16];
};

/* What the syscall tracepoints need about a connection, by socket cookie
 * (they cannot reach sk_storage). */
struct ntk_story {
    __u64 t_est;
    __u32 rule;
    __u8 dir, pad[3];
};

struct ntk_event {
    __u32 kind;               /* enum ntk_kind */
    __u32 which;              /* enum ntk_which, timeouts */
    __u32 pid, tid;
    __s32 fd, err;
    __u32 rule;               /* index into rules[]; ~0u: unknown */
    __u8 dir, family, peer_closed, op;
    __u16 lport, rport;       /* host order */
    __u8 laddr[16], raddr[16];/* IPv4 in the first 4 bytes */
    __u64 now, t_est;         /* ktime (CLOCK_MONOTONIC) */
    __u64 limit, elapsed, idle;
    __u64 bytes_in, bytes_out;
    char comm[16];
    __s32 nframes;
    __u32 pad;
    __u64 stack[NTK_STACK];
};

/* Counters the loader reads for --stats (BPF .bss). */
struct ntk_stats {
    __u64 sweep_visited, sweep_governed, destroyed, events_lost;
};

#endif
