// SPDX-License-Identifier: GPL-2.0
/* nettimeo kernel mode (shared/SPEC.md section 8).
 *
 *  - nt_sockops (cgroup sock_ops): at connect and accept, matches the
 *    connection against the compiled rules, remembers it in sk_storage and
 *    sets TCP_USER_TIMEOUT (connect_timeout while connecting, write_timeout
 *    once established); when the kernel then aborts it with ETIMEDOUT, the
 *    state callback reports the timeout.
 *  - nt_sweep (iter/tcp), run periodically by the loader: ends governed
 *    sockets past max_lifetime, idle_timeout, or (outbound) stalled past
 *    read_timeout with an answer owed, with bpf_sock_destroy.
 *  - nt_sock_send / nt_sock_recv (raw tracepoints sock_send_length /
 *    sock_recv_length): EPIPE / ECONNRESET in the governed cgroup, with the
 *    user stack and the connection's story.
 *
 * GPL: bpf_sock_destroy and the tracing helpers need it. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "ntk_shared.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define SOL_TCP 6
#define TCP_USER_TIMEOUT 18
#define EPIPE 32
#define ECONNRESET 104
#define ETIMEDOUT 110
#define RCV_SHUTDOWN 1
#define NS_PER_MS 1000000ULL

/* Set by the loader before load. */
const volatile struct ntk_rule rules[NTK_MAX_RULES];
const volatile __u32 n_rules;       /* the last one is [defaults] */

extern unsigned int CONFIG_HZ __kconfig;
extern int bpf_sock_destroy(struct sock_common *sk) __ksym;

struct ntk_stats stats;
/* Connections established so far, governed connections the last sweep
 * saw, and the earliest time a sweep can act on one: the loader sleeps
 * until then, and skips sweeps while nothing is governed. */
__u64 n_est;
__u64 sweep_live;
__u64 next_due;

/* attach: connections made before it are adopted by the sweep. */
const volatile __u8 adopt;
const volatile __u64 target_cgid;

/* Listening ports (host order) at attach: an adopted connection on one of
 * them is inbound. */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u16);
    __type(value, __u8);
} listen_ports SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_SK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, struct ntk_sk);
} sk_map SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 65536);
    __type(key, __u64);            /* socket cookie */
    __type(value, struct ntk_story);
} story_map SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 1 << 20);
} events SEC(".maps");

/* The governed cgroup (its subtree counts too). */
struct {
    __uint(type, BPF_MAP_TYPE_CGROUP_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u32);
} cg_map SEC(".maps");

/* ---- the connection's addresses ---- */

struct tuple {
    __u8 family, v6;          /* v6: match as IPv6 (not v4-mapped) */
    __u16 lport, rport;       /* host order */
    __u8 laddr[16], raddr[16];
    __u8 rmatch[16];          /* remote as matched: v4 in the first 4 bytes */
};

static __always_inline void read_tuple(struct sock *sk, struct tuple *t)
{
    t->family = BPF_CORE_READ(sk, __sk_common.skc_family);
    /* inet_sport, not skc_num: a closed socket's num is already 0. */
    t->lport = bpf_ntohs(BPF_CORE_READ((struct inet_sock *)sk, inet_sport));
    t->rport = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
    if (t->family == AF_INET) {
        __u32 l = BPF_CORE_READ(sk, __sk_common.skc_rcv_saddr);
        __u32 r = BPF_CORE_READ(sk, __sk_common.skc_daddr);
        __builtin_memcpy(t->laddr, &l, 4);
        __builtin_memcpy(t->raddr, &r, 4);
        __builtin_memcpy(t->rmatch, &r, 4);
        t->v6 = 0;
        return;
    }
    BPF_CORE_READ_INTO(&t->laddr, sk, __sk_common.skc_v6_rcv_saddr.in6_u.u6_addr8);
    BPF_CORE_READ_INTO(&t->raddr, sk, __sk_common.skc_v6_daddr.in6_u.u6_addr8);
    /* ::ffff:a.b.c.d (a dual-stack listener's IPv4 peer) matches IPv4
     * CIDRs, as it does under the shim. */
    __u32 w0, w1, w2;
    __builtin_memcpy(&w0, t->raddr, 4);
    __builtin_memcpy(&w1, t->raddr + 4, 4);
    __builtin_memcpy(&w2, t->raddr + 8, 4);
    if (w0 == 0 && w1 == 0 && w2 == bpf_htonl(0xffff)) {
        __builtin_memcpy(t->rmatch, t->raddr + 12, 4);
        t->v6 = 0;
    } else {
        __builtin_memcpy(t->rmatch, t->raddr, 16);
        t->v6 = 1;
    }
}

/* ---- rule matching (the same order and meaning as nt_config_match) ---- */

static __always_inline int port_in(__u32 ri, int remote, __u16 port)
{
    __u8 n = remote ? rules[ri].n_rport : rules[ri].n_lport;
    if (!n)
        return 1;
    for (int i = 0; i < NTK_MAX_PORTS; i++) {
        if (i >= n)
            break;
        __u16 lo = remote ? rules[ri].rport[i].lo : rules[ri].lport[i].lo;
        __u16 hi = remote ? rules[ri].rport[i].hi : rules[ri].lport[i].hi;
        if (port >= lo && port <= hi)
            return 1;
    }
    return 0;
}

static __always_inline int cidr_one(__u32 ri, int ci, const struct tuple *t)
{
    if (rules[ri].cidr[ci].v6 != t->v6)
        return 0;
    int plen = rules[ri].cidr[ci].prefix;
    for (int k = 0; k < 16; k++) {
        int bits = plen - 8 * k;
        if (bits <= 0)
            return 1;
        __u8 mask = bits >= 8 ? 0xff : (__u8)(0xff << (8 - bits));
        if ((t->rmatch[k] & mask) != rules[ri].cidr[ci].addr[k])
            return 0;
    }
    return 1;
}

static __always_inline int cidr_in(__u32 ri, const struct tuple *t)
{
    __u8 n = rules[ri].n_cidr;
    if (!n)
        return 1;
    for (int i = 0; i < NTK_MAX_CIDRS; i++) {
        if (i >= n)
            break;
        if (cidr_one(ri, i, t))
            return 1;
    }
    return 0;
}

static __noinline __u32 match_rule(const struct tuple *t, __u32 dir)
{
    __u32 n = n_rules;
    for (__u32 ri = 0; ri < NTK_MAX_RULES; ri++) {
        if (ri + 1 >= n)
            break; /* the last entry is [defaults] */
        if (rules[ri].dir != NTK_DIR_ANY && rules[ri].dir != dir)
            continue;
        if (!port_in(ri, 0, t->lport) || !port_in(ri, 1, t->rport))
            continue;
        if (!cidr_in(ri, t))
            continue;
        return ri;
    }
    return n ? n - 1 : 0;
}

/* ---- events ---- */

static __always_inline void fill_conn(struct ntk_event *e, struct sock *sk,
                                      const struct tuple *t)
{
    e->family = t->family;
    e->lport = t->lport;
    e->rport = t->rport;
    __builtin_memcpy(e->laddr, t->laddr, 16);
    __builtin_memcpy(e->raddr, t->raddr, 16);
    struct tcp_sock *tp = (struct tcp_sock *)sk;
    e->bytes_in = BPF_CORE_READ(tp, bytes_received);
    e->bytes_out = BPF_CORE_READ(tp, bytes_sent);
    e->peer_closed = (BPF_CORE_READ_BITFIELD_PROBED(sk, sk_shutdown) & RCV_SHUTDOWN) != 0;
}

static __always_inline __u64 jiffies_to_ns(__u64 j)
{
    return j * (1000000000ULL / CONFIG_HZ);
}

/* Time since the last data moved either way, from the kernel's own record
 * (last data segment received / sent), so traffic through any descriptor
 * or process counts. */
static __always_inline __u64 idle_ns_of(struct tcp_sock *tp, __u32 nowj)
{
    __u32 rcv = BPF_CORE_READ(tp, inet_conn.icsk_ack.lrcvtime);
    __u32 snd = BPF_CORE_READ(tp, lsndtime);
    __u32 last = (__s32)(snd - rcv) > 0 ? snd : rcv;
    __s32 d = (__s32)(nowj - last);
    return d > 0 ? jiffies_to_ns((__u64)d) : 0;
}

/* An answer is owed: the last data went out after the last data came in.
 * Times are in jiffies; a tie (both within one tick) counts as owed only
 * before anything was received, which covers the usual dial-then-write
 * (lrcvtime starts at the handshake). */
static __always_inline int answer_owed(struct tcp_sock *tp)
{
    __u32 rcv = tp->inet_conn.icsk_ack.lrcvtime;
    __u32 snd = tp->lsndtime;
    if (!tp->bytes_sent)
        return 0;
    if ((__s32)(snd - rcv) > 0)
        return 1;
    return snd == rcv && tp->bytes_received == 0;
}

static __always_inline void emit_timeout(struct sock *sk, struct ntk_sk *st,
                                         __u32 which, __u64 limit,
                                         __u64 elapsed, __u64 idle, __u64 now)
{
    struct ntk_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        __sync_fetch_and_add(&stats.events_lost, 1);
        return;
    }
    __builtin_memset(e, 0, sizeof(*e));
    struct tuple t = {};
    read_tuple(sk, &t);
    fill_conn(e, sk, &t);
    e->kind = NTK_EV_TIMEOUT;
    e->which = which;
    e->pid = st->pid;
    e->tid = st->tid;
    __builtin_memcpy(e->comm, st->comm, sizeof(e->comm));
    e->fd = -1;
    e->rule = st->rule;
    e->dir = st->dir;
    e->op = which == NTK_T_CONNECT ? NTK_OP_CONNECT : NTK_OP_TIMER;
    e->now = now;
    e->t_est = st->t_est;
    e->limit = limit;
    e->elapsed = elapsed;
    e->idle = idle;
    e->err = ETIMEDOUT;
    bpf_ringbuf_submit(e, 0);
}

/* ---- sock_ops ---- */

static __always_inline void due_at(__u64 t)
{
    if (t < next_due)
        next_due = t;
}

static __always_inline void set_user_timeout(struct bpf_sock_ops *skops,
                                             __u64 ns)
{
    int ms = ns ? (int)((ns + NS_PER_MS - 1) / NS_PER_MS) : 0;
    bpf_setsockopt(skops, SOL_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
}

static __always_inline void remember(struct sock *sk, struct ntk_sk *st,
                                     __u64 cookie)
{
    struct ntk_story s = { .t_est = st->t_est, .rule = st->rule,
                           .dir = st->dir };
    bpf_map_update_elem(&story_map, &cookie, &s, BPF_ANY);
}

SEC("sockops")
int nt_sockops(struct bpf_sock_ops *skops)
{
    __u32 op = skops->op;
    if (op != BPF_SOCK_OPS_TCP_CONNECT_CB &&
        op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
        op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB &&
        op != BPF_SOCK_OPS_STATE_CB)
        return 1;
    struct bpf_sock *bsk = skops->sk;
    if (!bsk)
        return 1;
    struct tcp_sock *tp = bpf_skc_to_tcp_sock(bsk);
    if (!tp)
        return 1;
    struct sock *sk = (struct sock *)tp;
    __u64 now = bpf_ktime_get_ns();

    if (op == BPF_SOCK_OPS_STATE_CB) {
        if (skops->args[1] != BPF_TCP_CLOSE)
            return 1;
        struct ntk_sk *st = bpf_sk_storage_get(&sk_map, bsk, 0, 0);
        if (!st || st->fired)
            return 1;
        /* TCP_USER_TIMEOUT (ours) ran out: the kernel set ETIMEDOUT. */
        if (tp->inet_conn.icsk_inet.sk.sk_err != ETIMEDOUT)
            return 1;
        __u32 ri = st->rule & (NTK_MAX_RULES - 1);
        if (skops->args[0] == BPF_TCP_SYN_SENT) {
            if (!rules[ri].connect_ns)
                return 1;
            st->fired = NTK_T_CONNECT;
            emit_timeout(sk, st, NTK_T_CONNECT, rules[ri].connect_ns,
                         now - st->t_connect, 0, now);
        } else if (rules[ri].write_ns) {
            /* Unacknowledged since the last ACK that moved snd_una. */
            __u32 nowj = (__u32)bpf_jiffies64();
            __s32 d = (__s32)(nowj - tp->rcv_tstamp);
            st->fired = NTK_T_WRITE;
            emit_timeout(sk, st, NTK_T_WRITE, rules[ri].write_ns,
                         d > 0 ? jiffies_to_ns((__u64)d) : 0,
                         idle_ns_of(tp, nowj), now);
        }
        return 1;
    }

    struct tuple t = {};
    read_tuple(sk, &t);
    if (op == BPF_SOCK_OPS_TCP_CONNECT_CB) {
        /* Process context: the connecting thread is current. */
        struct ntk_sk *st = bpf_sk_storage_get(&sk_map, bsk, 0,
                                               BPF_SK_STORAGE_GET_F_CREATE);
        if (!st)
            return 1;
        st->dir = NTK_DIR_OUT;
        st->rule = match_rule(&t, NTK_DIR_OUT);
        st->t_connect = now;
        __u64 pt = bpf_get_current_pid_tgid();
        st->pid = pt >> 32;
        st->tid = (__u32)pt;
        bpf_get_current_comm(st->comm, sizeof(st->comm));
        __u32 ri = st->rule & (NTK_MAX_RULES - 1);
        if (rules[ri].connect_ns) {
            set_user_timeout(skops, rules[ri].connect_ns);
            bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
                                      BPF_SOCK_OPS_STATE_CB_FLAG);
        }
        return 1;
    }

    /* Established, either way. */
    struct ntk_sk *st = bpf_sk_storage_get(&sk_map, bsk, 0,
                                           BPF_SK_STORAGE_GET_F_CREATE);
    if (!st)
        return 1;
    if (op == BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB) {
        /* Softirq: no process to name; the loader fills it in. */
        st->dir = NTK_DIR_IN;
        st->rule = match_rule(&t, NTK_DIR_IN);
    } else if (!st->dir) {
        st->dir = NTK_DIR_OUT;
        st->rule = match_rule(&t, NTK_DIR_OUT);
    }
    st->t_est = now;
    __sync_fetch_and_add(&n_est, 1);
    __u32 ri = st->rule & (NTK_MAX_RULES - 1);
    /* Replaces connect_timeout's value; 0 restores the kernel default. */
    if (rules[ri].write_ns || rules[ri].connect_ns)
        set_user_timeout(skops, rules[ri].write_ns);
    /* State changes matter only to report a write_timeout abort: without
     * one, no callback per state change (a connection has about six). */
    __u32 flags = skops->bpf_sock_ops_cb_flags;
    if (rules[ri].write_ns)
        flags |= BPF_SOCK_OPS_STATE_CB_FLAG;
    else
        flags &= ~BPF_SOCK_OPS_STATE_CB_FLAG;
    bpf_sock_ops_cb_flags_set(skops, flags);
    remember(sk, st, bpf_get_socket_cookie(skops));
    return 1;
}

/* ---- the sweep ---- */

/* Is the socket's cgroup the target or below it? */
static __always_inline int in_target(struct sock *sk)
{
    struct cgroup *cg = BPF_CORE_READ(sk, sk_cgrp_data.cgroup);
    for (int i = 0; i < 16 && cg; i++) {
        if (BPF_CORE_READ(cg, kn, id) == target_cgid)
            return 1;
        cg = (struct cgroup *)BPF_CORE_READ(cg, self.parent);
    }
    return 0;
}

/* A connection made before attach: govern it from now on (its age counts
 * from now); inbound if its local port is a listening one. */
static __noinline struct ntk_sk *adopt_sock(struct tcp_sock *tp, __u64 now)
{
    struct sock *sk = (struct sock *)tp;
    if (BPF_CORE_READ(sk, __sk_common.skc_state) != BPF_TCP_ESTABLISHED ||
        !in_target(sk))
        return 0;
    struct ntk_sk *st = bpf_sk_storage_get(&sk_map, tp, 0,
                                           BPF_SK_STORAGE_GET_F_CREATE);
    if (!st)
        return 0;
    struct tuple t = {};
    read_tuple(sk, &t);
    __u16 lp = t.lport;
    st->dir = bpf_map_lookup_elem(&listen_ports, &lp) ? NTK_DIR_IN : NTK_DIR_OUT;
    st->rule = match_rule(&t, st->dir);
    st->t_est = now;
    return st;
}

SEC("iter/tcp")
int nt_sweep(struct bpf_iter__tcp *ctx)
{
    struct sock_common *skc = ctx->sk_common;
    if (!skc)
        return 0;
    stats.sweep_visited++;
    struct tcp_sock *tp = bpf_skc_to_tcp_sock(skc);
    if (!tp)
        return 0;
    struct ntk_sk *st = bpf_sk_storage_get(&sk_map, tp, 0, 0);
    if (!st && adopt)
        st = adopt_sock(tp, bpf_ktime_get_ns());
    if (!st || st->fired || !st->t_est)
        return 0;
    __u8 state = tp->inet_conn.icsk_inet.sk.__sk_common.skc_state;
    if (state != BPF_TCP_ESTABLISHED && state != BPF_TCP_CLOSE_WAIT)
        return 0;
    stats.sweep_governed++;
    __u32 ri = st->rule & (NTK_MAX_RULES - 1);
    __u64 now = bpf_ktime_get_ns();
    __u32 nowj = (__u32)bpf_jiffies64();
    __u64 age = now - st->t_est;
    __u64 idle = idle_ns_of(tp, nowj);
    if (idle > age)
        idle = age;
    __u32 which = 0;
    __u64 limit = 0, elapsed = 0;

    if (rules[ri].lifetime_ns && age >= rules[ri].lifetime_ns) {
        which = NTK_T_LIFETIME;
        limit = rules[ri].lifetime_ns;
        elapsed = age;
    } else if (rules[ri].idle_ns && idle >= rules[ri].idle_ns) {
        which = NTK_T_IDLE;
        limit = rules[ri].idle_ns;
        elapsed = idle;
    } else if (rules[ri].read_ns && st->dir == NTK_DIR_OUT) {
        /* Measured from the last byte sent (idle is since then when an
         * answer is owed). */
        __u64 sent_ago = idle;
        if (answer_owed(tp) && sent_ago >= rules[ri].read_ns) {
            which = NTK_T_READ;
            limit = rules[ri].read_ns;
            elapsed = sent_ago;
        }
    }
    if (!which) {
        sweep_live++;
        /* When this socket could next be due (the loader sleeps until the
         * earliest; a socket that is not owed an answer yet, or a new one,
         * is at least the shortest limit away, its upper bound). */
        if (rules[ri].lifetime_ns)
            due_at(st->t_est + rules[ri].lifetime_ns);
        if (rules[ri].idle_ns)
            due_at(now - idle + rules[ri].idle_ns);
        if (rules[ri].read_ns && st->dir == NTK_DIR_OUT && answer_owed(tp))
            due_at(now - idle + rules[ri].read_ns); /* owed: since the last send */
        return 0;
    }
    st->fired = which;
    emit_timeout((struct sock *)tp, st, which, limit, elapsed, idle, now);
    if (bpf_sock_destroy(skc) == 0)
        stats.destroyed++;
    return 0;
}

/* ---- EPIPE / ECONNRESET from system calls ---- */

/* EPIPE / ECONNRESET where the kernel hands a socket call's result back
 * (sock:sock_send_length / sock:sock_recv_length, 6.3+): only socket I/O
 * pays for the hook, not every system call on the machine. The caller is
 * current: the fd and the system call come from its saved user registers. */
static __always_inline int on_sock_result(void *ctx, struct sock *sk, int ret,
                                          int send)
{
    if (ret != -EPIPE && ret != -ECONNRESET)
        return 0;
    if (!bpf_current_task_under_cgroup(&cg_map, 0))
        return 0;
    if (!sk || BPF_CORE_READ(sk, sk_protocol) != 6 /* IPPROTO_TCP */)
        return 0;
    struct task_struct *task = bpf_get_current_task_btf();
    struct pt_regs *regs = (struct pt_regs *)bpf_task_pt_regs(task);
    long nr = BPF_CORE_READ(regs, orig_ax);
    __u8 op;
    switch (nr) { /* x86_64 numbers */
    case 0: op = NTK_OP_READ; break;
    case 1: op = NTK_OP_WRITE; break;
    case 19: op = NTK_OP_READV; break;
    case 20: op = NTK_OP_WRITEV; break;
    case 44: op = NTK_OP_SENDTO; break;
    case 45: op = NTK_OP_RECVFROM; break;
    case 46: op = NTK_OP_SENDMSG; break;
    case 47: op = NTK_OP_RECVMSG; break;
    default: op = send ? NTK_OP_SENDMSG : NTK_OP_RECVMSG; nr = -1; break;
    }
    long fd = nr >= 0 ? (long)BPF_CORE_READ(regs, di) : -1;
    struct ntk_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        __sync_fetch_and_add(&stats.events_lost, 1);
        return 0;
    }
    __builtin_memset(e, 0, sizeof(*e));
    struct tuple t = {};
    read_tuple(sk, &t);
    fill_conn(e, sk, &t);
    e->kind = ret == -EPIPE ? NTK_EV_EPIPE : NTK_EV_ECONNRESET;
    e->err = -ret;
    e->op = op;
    e->fd = (int)fd;
    __u64 pt = bpf_get_current_pid_tgid();
    e->pid = pt >> 32;
    e->tid = (__u32)pt;
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    e->now = bpf_ktime_get_ns();
    e->rule = ~0u;
    __u64 cookie = BPF_CORE_READ(sk, __sk_common.skc_cookie.counter);
    struct ntk_story *s = cookie ? bpf_map_lookup_elem(&story_map, &cookie) : 0;
    if (s) {
        e->t_est = s->t_est;
        e->rule = s->rule;
        e->dir = s->dir;
    }
    struct tcp_sock *tp = (struct tcp_sock *)sk;
    __u32 nowj = (__u32)bpf_jiffies64();
    e->idle = idle_ns_of(tp, nowj);
    long n = bpf_get_stack(ctx, e->stack, sizeof(e->stack), BPF_F_USER_STACK);
    e->nframes = n > 0 ? (int)((unsigned long)n / 8) : 0;
    bpf_ringbuf_submit(e, 0);
    return 0;
}

SEC("raw_tracepoint/sock_send_length")
int nt_sock_send(struct bpf_raw_tracepoint_args *ctx)
{
    return on_sock_result(ctx, (struct sock *)ctx->args[0], (int)ctx->args[1], 1);
}

SEC("raw_tracepoint/sock_recv_length")
int nt_sock_recv(struct bpf_raw_tracepoint_args *ctx)
{
    return on_sock_result(ctx, (struct sock *)ctx->args[0], (int)ctx->args[1], 0);
}
