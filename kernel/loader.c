/* nettimeo-kernel: kernel mode's loader (shared/SPEC.md section 8).
 *
 *   nettimeo-kernel run [--stats] -- PROGRAM [ARGS]   own cgroup, then exec
 *   nettimeo-kernel attach [--stats] CGROUP           until SIGINT/SIGTERM
 *   nettimeo-kernel check FILE                        per-key support
 *   nettimeo-kernel probe                             can kernel mode run?
 *
 * Config as the library finds it: $NETTIMEO_CONFIG, $NETTIMEO_OPTIONS,
 * $NETTIMEO_LOG (the nettimeo script sets them from -c/-o/--log).
 * Everything it attaches is a bpf_link owned by this process: when it
 * exits, however it exits, nothing of it stays loaded. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/types.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/syscall.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "internal.h"       /* config/: the rules, to compile them for BPF */
#include "audit/event_format.h" /* shim/: the same JSON lines as the library */
#include "ksym.h"
#include "ntk_shared.h"   /* before the skeleton, which names its types */
#include "nettimeo.skel.h"

static const char *me = "nettimeo";

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", me);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* Exit status for "kernel mode cannot run here" (the script falls back or
 * refuses on it); 125 like `env`/`timeout` for our own failures. */
#define EX_UNAVAILABLE_K 125
#define EX_OURS 125

/* ---- what kernel mode does with each key (README table, check) ---- */

struct key_support {
    const char *key, *level, *how;
};

static const struct key_support support[] = {
    { "connect_timeout", "exact",
      "TCP_USER_TIMEOUT set at the connect callback; the SYN retries stop at the limit and connect() fails with ETIMEDOUT" },
    { "write_timeout", "approximate",
      "TCP_USER_TIMEOUT once established: data left unacknowledged (or a zero window) for the limit aborts the connection, blocked and later writes fail with ETIMEDOUT; a peer that drains slowly but steadily is never cut" },
    { "idle_timeout", "exact",
      "a sweep runs when a connection is due (within ~5 ms) and compares the kernel's last data sent/received times; the connection is reset (bpf_sock_destroy)" },
    { "max_lifetime", "exact",
      "age from the established callback, enforced by the same sweep; the connection is reset" },
    { "read_timeout", "approximate",
      "outbound only: data sent and nothing received since for the limit (an answer owed) resets the connection; owed is judged from the kernel's last send/receive times, to one clock tick (a request sent within a tick of the previous answer is missed); a read with nothing owed (inbound) is not timed: use idle_timeout" },
    { "request_timeout", "unavailable",
      "exchanges are not visible from the kernel; use idle_timeout / read_timeout" },
    { "expire_action", "approximate",
      "always reset: the kernel can abort a socket but not shut it down for the program" },
    { "timeout_errno", "unavailable",
      "the kernel's errors stand: ETIMEDOUT (connect/write), ECONNABORTED on the program's side after a sweep reset" },
    { "coalesce", "unavailable", "needs the program's writes in user space" },
    { "coalesce_delay", "unavailable", "see coalesce" },
    { "coalesce_mode", "unavailable", "see coalesce" },
    { "direction", "exact", "connect callback = outbound, accept = inbound" },
    { "local_port", "exact", "" },
    { "remote_port", "exact", "" },
    { "remote", "exact", "IPv4-mapped IPv6 peers match IPv4 CIDRs" },
    { "unix_path", "unavailable", "Unix sockets are not governed in kernel mode; such rules never match" },
    { "program", "approximate",
      "run: matched once against the program started; attach: rules with program are skipped" },
    { "log", "exact", "written by nettimeo itself (one write per line)" },
    { "events", "approximate",
      "epipe, econnreset, timeout; abandoned, flush_error and the lifecycle events are not available" },
    { "backtrace", "approximate", "up to 32 frames of the program's own stack (frame pointers: complete for Go, often one frame for C)" },
    { "sigpipe", "unavailable", "the program's own SIGPIPE disposition stands" },
    { "rate_limit", "exact", "per call site (innermost frame) and kind" },
    { "inherit", "approximate", "the cgroup always covers child processes" },
};

static const struct key_support *support_of(const char *key)
{
    for (size_t i = 0; i < sizeof support / sizeof support[0]; i++)
        if (strcmp(support[i].key, key) == 0)
            return &support[i];
    return NULL;
}

/* ---- config ---- */

static void diag_print(void *ctx, const char *file, int line, const char *msg)
{
    (void)ctx;
    if (line)
        fprintf(stderr, "%s:%d: %s\n", file, line, msg);
    else
        fprintf(stderr, "%s: %s\n", file, msg);
}

/* The config exactly as the library would find it; NULL after printing
 * the errors. */
static struct nt_config *load_config(const char **path_out)
{
    const char *path = getenv("NETTIMEO_CONFIG");
    struct stat st;
    if (!path || !*path)
        path = stat("/etc/nettimeo.conf", &st) == 0 ? "/etc/nettimeo.conf" : NULL;
    *path_out = path;
    struct nt_config *cfg = path ? nt_config_parse_file(path, diag_print, NULL)
                                 : nt_config_default();
    if (!cfg)
        return NULL;
    const char *opts = getenv("NETTIMEO_OPTIONS");
    if (opts && *opts && nt_config_apply_options(cfg, opts, diag_print, NULL)) {
        nt_config_free(cfg);
        return NULL;
    }
    return cfg;
}

/* One rule (or [defaults]) as the BPF side matches it. */
struct krule_src {
    const struct nt_settings *set;
};

static struct krule_src ksrc[NTK_MAX_RULES];

static int compile_one(struct ntk_rule *k, const struct ntc_rule *r,
                       const struct nt_settings *s)
{
    memset(k, 0, sizeof *k);
    if (r) {
        if (r->local_ports.n > NTK_MAX_PORTS || r->remote_ports.n > NTK_MAX_PORTS ||
            r->remotes.n > NTK_MAX_CIDRS) {
            say("kernel mode: rule '%s' has more than %d ports or CIDRs in one list; split it",
                r->name, NTK_MAX_PORTS);
            return -1;
        }
        k->dir = r->dir == NT_DIR_INBOUND ? NTK_DIR_IN
                 : r->dir == NT_DIR_OUTBOUND ? NTK_DIR_OUT : NTK_DIR_ANY;
        k->n_lport = (__u8)r->local_ports.n;
        for (size_t i = 0; i < r->local_ports.n; i++)
            k->lport[i] = (struct ntk_ports){ r->local_ports.v[i].lo, r->local_ports.v[i].hi };
        k->n_rport = (__u8)r->remote_ports.n;
        for (size_t i = 0; i < r->remote_ports.n; i++)
            k->rport[i] = (struct ntk_ports){ r->remote_ports.v[i].lo, r->remote_ports.v[i].hi };
        k->n_cidr = (__u8)r->remotes.n;
        for (size_t i = 0; i < r->remotes.n; i++) {
            k->cidr[i].v6 = r->remotes.v[i].v6;
            k->cidr[i].prefix = r->remotes.v[i].prefix;
            memcpy(k->cidr[i].addr, r->remotes.v[i].addr, 16);
        }
    }
    k->reset = s->expire_action == NT_EXPIRE_RESET;
    k->connect_ns = (__u64)s->connect_timeout;
    k->read_ns = (__u64)s->read_timeout;
    k->write_ns = (__u64)s->write_timeout;
    k->idle_ns = (__u64)s->idle_timeout;
    k->lifetime_ns = (__u64)s->max_lifetime;
    return 0;
}

/* prog: the program `run` starts (rules with `program` are matched against
 * it once), NULL under attach (such rules are skipped). */
static int compile_rules(const struct nt_config *cfg, const char *prog,
                         struct ntk_rule *out, __u32 *n_out)
{
    __u32 n = 0;
    for (size_t i = 0; i < cfg->n_rules; i++) {
        const struct ntc_rule *r = &cfg->rules[i];
        if (r->unix_path)
            continue; /* never matches a TCP socket */
        if (r->program) {
            if (!prog) {
                say("warning: kernel mode: rule '%s' selects by program; attach cannot tell programs apart, so it is skipped",
                    r->name);
                continue;
            }
            if (!ntc_glob_match(r->program, prog, 0))
                continue;
        }
        if (n + 1 >= NTK_MAX_RULES) {
            say("kernel mode: more than %d rules apply; not supported", NTK_MAX_RULES - 1);
            return -1;
        }
        if (compile_one(&out[n], r, &r->eff))
            return -1;
        ksrc[n].set = &r->eff;
        n++;
    }
    compile_one(&out[n], NULL, &cfg->defaults);
    ksrc[n].set = &cfg->defaults;
    *n_out = n + 1;
    return 0;
}

/* ---- prerequisites ---- */

static int have_caps(void)
{
    if (geteuid() == 0)
        return 1;
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d))
        return 0;
    static const int need[] = { CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON,
                                CAP_SYS_ADMIN };
    for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
        if (!(d[need[i] / 32].effective & (1u << (need[i] % 32))))
            return 0;
    return 1;
}

static char cg2_root[512];

static int find_cgroup2(void)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return -1;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        char *sep = strstr(line, " - ");
        if (!sep || strncmp(sep + 3, "cgroup2 ", 8) != 0)
            continue;
        char mnt[512];
        if (sscanf(line, "%*s %*s %*s %*s %511s", mnt) == 1) {
            snprintf(cg2_root, sizeof cg2_root, "%s", mnt);
            found = 1;
        }
    }
    fclose(f);
    return found ? 0 : -1;
}

/* No cgroup v2 mounted (a v1-only host): mount one for ourselves. The v2
 * hierarchy coexists with v1 controllers ("hybrid"), so this changes
 * nothing for what already runs. */
static int mount_cgroup2(void)
{
    static const char *const where[] = { "/sys/fs/cgroup/unified",
                                         "/run/nettimeo/cgroup2" };
    for (size_t i = 0; i < sizeof where / sizeof where[0]; i++) {
        mkdir("/run/nettimeo", 0755);
        mkdir(where[i], 0755);
        if (mount("none", where[i], "cgroup2", 0, NULL) == 0) {
            snprintf(cg2_root, sizeof cg2_root, "%s", where[i]);
            say("mounted a cgroup v2 hierarchy at %s", where[i]);
            return 0;
        }
    }
    return -1;
}

/* One message naming what is missing; 0 if kernel mode can run. */
static int check_prereqs(int quiet)
{
    struct utsname u;
    int maj = 0, min = 0;
    if (uname(&u) == 0)
        sscanf(u.release, "%d.%d", &maj, &min);
    const char *missing = NULL;
    char buf[600];
    if (!have_caps())
        missing = "root (or CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON and CAP_SYS_ADMIN)";
    else if (access("/sys/kernel/btf/vmlinux", R_OK) != 0)
        missing = "a kernel with BTF (/sys/kernel/btf/vmlinux; CONFIG_DEBUG_INFO_BTF)";
    else if (maj < 6 || (maj == 6 && min < 5)) {
        snprintf(buf, sizeof buf, "Linux 6.5 or later (bpf_sock_destroy for the sweep); this is %s", u.release);
        missing = buf;
    } else if (find_cgroup2() && mount_cgroup2())
        missing = "a cgroup v2 hierarchy (none is mounted and mounting one failed)";
    if (missing) {
        if (!quiet)
            say("kernel mode needs %s", missing);
        return -1;
    }
    return 0;
}

/* ---- the audit log ---- */

static int log_fd = 2, log_syslog;
static uint32_t ev_mask = NT_EV_DEFAULT;
static int bt_frames = 16;
static uint32_t rate_limit = 50;
static const char *prog_name = "?"; /* basename of the program run starts */
static int main_pid;                /* run: the child; attach: first in the cgroup */
static char cg_path[1200];

static void open_log(const struct nt_global *g)
{
    const char *dest = getenv("NETTIMEO_LOG");
    if (!dest || !*dest)
        dest = g->log;
    ev_mask = g->events;
    bt_frames = g->backtrace > NTK_STACK ? NTK_STACK : g->backtrace;
    rate_limit = g->rate_limit;
    if (!strcmp(dest, "stderr"))
        return;
    if (!strcmp(dest, "syslog")) {
        openlog("nettimeo", LOG_PID, LOG_DAEMON);
        log_syslog = 1;
        return;
    }
    int fd = open(dest, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        say("warning: cannot open log %s (%s); events go to stderr", dest, strerror(errno));
    else
        log_fd = fd;
}

static void write_line(const char *buf, size_t n)
{
    if (log_syslog) {
        syslog(LOG_WARNING, "%.*s", (int)(n ? n - 1 : 0), buf);
        return;
    }
    while (n) {
        ssize_t w = write(log_fd, buf, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        buf += w;
        n -= (size_t)w;
    }
}

/* Rate limit per call site (innermost frame) and kind, per second. */
#define RL_SLOTS 256
static struct { uint64_t site; uint32_t kind; time_t sec; uint32_t n, held; } rl[RL_SLOTS];

static int rate_ok(uint64_t site, uint32_t kind, time_t sec, uint64_t *held_out)
{
    *held_out = 0;
    if (!rate_limit)
        return 1;
    unsigned h = (unsigned)((site * 0x9E3779B97F4A7C15ULL) >> 56) ^ kind;
    h %= RL_SLOTS;
    if (rl[h].site != site || rl[h].kind != kind || rl[h].sec != sec) {
        *held_out = rl[h].held; /* reported by the caller as suppressed */
        rl[h].site = site;
        rl[h].kind = kind;
        rl[h].sec = sec;
        rl[h].n = 0;
        rl[h].held = 0;
    }
    if (rl[h].n >= rate_limit) {
        rl[h].held++;
        return 0;
    }
    rl[h].n++;
    return 1;
}

/* What the rate limit still holds when nettimeo stops. */
static void flush_suppressed(void)
{
    struct timespec wall;
    clock_gettime(CLOCK_REALTIME, &wall);
    for (size_t i = 0; i < RL_SLOTS; i++) {
        if (!rl[i].held)
            continue;
        struct nt_event ev = { .kind = NT_EV_SUPPRESSED, .fd = -1,
                               .count = rl[i].held, .of_kind = rl[i].kind };
        struct nt_event_facts f = { .wall = wall, .pid = main_pid, .tid = main_pid,
                                    .prog = prog_name, .via = "kernel" };
        char buf[1024];
        size_t n = nt_json_format_event(buf, sizeof buf, &ev, &f);
        if (n)
            write_line(buf, n);
        rl[i].held = 0;
    }
}

struct frames_arg {
    const struct ntk_event *e;
};

static void put_frames(struct nt_jbuf *b, const struct nt_event *ev, void *arg)
{
    (void)ev;
    const struct ntk_event *e = ((struct frames_arg *)arg)->e;
    /* The program's own call site first: Go's system-call plumbing under
     * net.(*conn).Write is the runtime's, as libc's would be. */
    static const char *const plumbing[] = {
        "runtime/internal/syscall.", "syscall.", "internal/poll.",
        "net.(*netFD).", "runtime.",
    };
    int first = 0;
    for (; first < e->nframes && first < NTK_STACK; first++) {
        struct ksym_frame fr;
        ksym_resolve((int)e->pid, e->stack[first], &fr);
        int skip = 0;
        for (size_t j = 0; fr.symbol && j < sizeof plumbing / sizeof plumbing[0]; j++)
            if (!strncmp(fr.symbol, plumbing[j], strlen(plumbing[j])))
                skip = 1;
        if (!skip)
            break;
    }
    if (first >= e->nframes)
        first = 0; /* all plumbing: show it rather than nothing */
    int n = e->nframes - first < bt_frames ? e->nframes - first : bt_frames;
    for (int k = 0; k < n; k++) {
        int i = first + k;
        struct ksym_frame fr;
        ksym_resolve((int)e->pid, e->stack[i], &fr);
        struct nt_jmark m = nt_j_mark(b);
        nt_j_elem(b);
        nt_j_raw(b, "\"", 1);
        if (fr.symbol) {
            nt_j_escaped(b, fr.symbol, strlen(fr.symbol));
            nt_j_raw(b, "+", 1);
            nt_j_hex(b, fr.sym_off);
        } else {
            nt_j_raw(b, "??", 2);
        }
        nt_j_raw(b, " (", 2);
        nt_j_escaped(b, fr.module, strlen(fr.module));
        nt_j_raw(b, "+", 1);
        nt_j_hex(b, fr.module_off);
        nt_j_raw(b, ")\"", 2);
        if (b->overflow) {
            nt_j_rollback(b, m);
            return;
        }
    }
}

static void set_addr(struct nt_conn *c, int remote, int family,
                     const __u8 *addr, __u16 port)
{
    union nt_addr a;
    socklen_t len;
    memset(&a, 0, sizeof a);
    if (family == 2) {
        a.in.sin_family = AF_INET;
        memcpy(&a.in.sin_addr, addr, 4);
        a.in.sin_port = htons(port);
        len = sizeof a.in;
    } else {
        a.in6.sin6_family = AF_INET6;
        memcpy(&a.in6.sin6_addr, addr, 16);
        a.in6.sin6_port = htons(port);
        len = sizeof a.in6;
    }
    nt_conn_set_addr(c, remote, &a, len);
}

static const char *const op_names[NTK_OP_COUNT] = {
    "timer", "write", "writev", "sendto", "sendmsg", "read", "readv",
    "recvfrom", "recvmsg", "connect",
};
static const char *const which_names[] = {
    NULL, "connect_timeout", "read_timeout", "write_timeout", "idle_timeout",
    "max_lifetime",
};

static uint64_t n_events, n_timeouts;
static uint64_t lateness_sum_ns, lateness_max_ns; /* elapsed - limit, sweep kills */

static void comm_of(int pid, char *out, size_t len)
{
    char fn[64];
    snprintf(fn, sizeof fn, "/proc/%d/comm", pid);
    int fd = open(fn, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, out, len - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        n = 0;
    out[n] = 0;
    char *nl = strchr(out, '\n');
    if (nl)
        *nl = 0;
}

static void emit_suppressed(const struct ntk_event *e, uint32_t kind,
                            uint64_t held, const struct nt_event_facts *base)
{
    struct nt_event ev = { .kind = NT_EV_SUPPRESSED, .fd = -1, .count = held,
                           .of_kind = kind };
    struct nt_event_facts f = *base;
    f.frames = NULL;
    char buf[1024];
    size_t n = nt_json_format_event(buf, sizeof buf, &ev, &f);
    (void)e;
    if (n)
        write_line(buf, n);
}

static int on_event(void *ctx, void *data, size_t size)
{
    (void)ctx;
    if (size < sizeof(struct ntk_event))
        return 0;
    const struct ntk_event *e = data;
    uint32_t kind = e->kind == NTK_EV_TIMEOUT ? NT_EV_TIMEOUT
                    : e->kind == NTK_EV_EPIPE ? NT_EV_EPIPE : NT_EV_ECONNRESET;
    n_events++;
    if (e->kind == NTK_EV_TIMEOUT) {
        n_timeouts++;
        if (e->which != NTK_T_CONNECT && e->which != NTK_T_WRITE &&
            e->elapsed >= e->limit) {
            uint64_t late = e->elapsed - e->limit;
            lateness_sum_ns += late;
            if (late > lateness_max_ns)
                lateness_max_ns = late;
        }
    }
    if (!(ev_mask & kind))
        return 0;

    struct timespec mono, wall;
    clock_gettime(CLOCK_MONOTONIC, &mono);
    clock_gettime(CLOCK_REALTIME, &wall);
    int64_t mono_ns = (int64_t)mono.tv_sec * 1000000000 + mono.tv_nsec;
    int64_t back = mono_ns - (int64_t)e->now; /* event happened this long ago */
    int64_t wall_ns = (int64_t)wall.tv_sec * 1000000000 + wall.tv_nsec - (back > 0 ? back : 0);

    struct nt_conn c;
    memset(&c, 0, sizeof c);
    c.role = e->dir == NTK_DIR_IN ? NT_ROLE_INBOUND
             : e->dir == NTK_DIR_OUT ? NT_ROLE_OUTBOUND : NT_ROLE_NONE;
    set_addr(&c, 0, e->family, e->laddr, e->lport);
    set_addr(&c, 1, e->family, e->raddr, e->rport);
    c.set = e->rule < NTK_MAX_RULES ? ksrc[e->rule].set : NULL;
    c.t_open = (nt_ns)e->t_est;
    c.t_last = (nt_ns)(e->now - e->idle);
    c.bytes_in = e->bytes_in;
    c.bytes_out = e->bytes_out;

    int pid = (int)e->pid, tid = (int)e->tid;
    char comm[17];
    memcpy(comm, e->comm, 16);
    comm[16] = 0;
    if (!pid) { /* inbound, learnt in softirq: the governed program */
        pid = tid = main_pid;
        comm_of(pid, comm, sizeof comm);
    }
    const char *prog = (pid == main_pid && strcmp(prog_name, "?")) ? prog_name
                       : comm[0] ? comm : "?";

    struct nt_event ev = {
        .kind = kind, .fd = e->fd, .conn = &c, .err = e->err,
        .op = e->op < NTK_OP_COUNT ? op_names[e->op] : "?",
    };
    if (e->kind == NTK_EV_TIMEOUT) {
        ev.timeout = e->which < 6 ? which_names[e->which] : "?";
        ev.limit = (nt_ns)e->limit;
        ev.elapsed = (nt_ns)e->elapsed;
        ev.action = (e->which == NTK_T_CONNECT || e->which == NTK_T_WRITE) ? "error" : "reset";
    }
    struct frames_arg fa = { e };
    struct nt_event_facts f = {
        .wall = { wall_ns / 1000000000, wall_ns % 1000000000 },
        .now = (nt_ns)e->now, .pid = pid, .tid = tid, .prog = prog,
        .peer_closed = e->peer_closed,
        .frames = (e->nframes > 0 && bt_frames > 0) ? put_frames : NULL,
        .frames_arg = &fa, .via = "kernel",
    };
    uint64_t held;
    if (!rate_ok(e->nframes > 0 ? e->stack[0] : e->which, kind, wall.tv_sec, &held)) 
        return 0;
    if (held)
        emit_suppressed(e, kind, held, &f);
    char buf[8192];
    size_t n = nt_json_format_event(buf, sizeof buf, &ev, &f);
    if (n)
        write_line(buf, n);
    return 0;
}

/* ---- load, attach, sweep ---- */

struct kstate {
    struct nettimeo_bpf *skel;
    struct ring_buffer *rb;
    struct bpf_link *links[16];
    int n_links;
    int cg_fd;
    int64_t sweep_ns;              /* 0: no sweep needed */
    int64_t fixed_ns;              /* forced sweep period (benchmarks) */
    uint64_t n_est_seen;           /* n_est before the last sweep */
    int adopt;                     /* attach mode */
    int swept;                     /* at least one sweep done */
    uint64_t sweeps, sweep_total_ns, sweep_max_ns;
};

static int libbpf_quiet(enum libbpf_print_level lvl, const char *fmt, va_list ap)
{
    if (lvl == LIBBPF_WARN && getenv("NETTIMEO_BPF_DEBUG"))
        return vfprintf(stderr, fmt, ap);
    if (getenv("NETTIMEO_BPF_DEBUG"))
        return vfprintf(stderr, fmt, ap);
    return 0;
}

/* The shortest limit a sweep enforces: no connection that was not yet
 * governed at one sweep can be due sooner than this after it. */
static int64_t shortest_limit(const struct ntk_rule *r, __u32 n)
{
    int64_t p = 0;
    for (__u32 i = 0; i < n; i++) {
        const __u64 v[3] = { r[i].idle_ns, r[i].lifetime_ns, r[i].read_ns };
        for (int j = 0; j < 3; j++)
            if (v[j] && (!p || (int64_t)v[j] < p))
                p = (int64_t)v[j];
    }
    return p;
}

#define SWEEP_MIN_GAP 5000000LL   /* 5 ms between sweeps at most */

/* Listening TCP ports of this network namespace (IPv4 and IPv6). */
static void fill_listen_ports(int map_fd)
{
    static const char *const files[] = { "/proc/net/tcp", "/proc/net/tcp6" };
    for (size_t i = 0; i < 2; i++) {
        FILE *f = fopen(files[i], "re");
        if (!f)
            continue;
        char line[512];
        while (fgets(line, sizeof line, f)) {
            char local[128];
            unsigned st;
            if (sscanf(line, " %*d: %127s %*s %x", local, &st) != 2 || st != 0x0A)
                continue;
            char *colon = strrchr(local, ':');
            if (!colon)
                continue;
            __u16 port = (__u16)strtoul(colon + 1, NULL, 16);
            __u8 one = 1;
            bpf_map_update_elem(map_fd, &port, &one, BPF_ANY);
        }
        fclose(f);
    }
}

static int kload(struct kstate *k, const struct nt_config *cfg, const char *prog,
                 const char *cgroup)
{
    libbpf_set_print(libbpf_quiet);
    k->cg_fd = open(cgroup, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (k->cg_fd < 0) {
        say("cannot open cgroup %s: %s", cgroup, strerror(errno));
        return -1;
    }
    k->skel = nettimeo_bpf__open();
    if (!k->skel) {
        say("kernel mode: cannot open the BPF object: %s", strerror(errno));
        return -1;
    }
    struct ntk_rule rules[NTK_MAX_RULES];
    __u32 n = 0;
    memset(rules, 0, sizeof rules);
    if (compile_rules(cfg, prog, rules, &n))
        return -1;
    memcpy((void *)k->skel->rodata->rules, rules, sizeof rules);
    k->skel->rodata->n_rules = n;
    if (!prog) { /* attach */
        struct stat cst;
        if (fstat(k->cg_fd, &cst) == 0) {
            k->skel->rodata->adopt = 1;
            k->skel->rodata->target_cgid = cst.st_ino; /* the cgroup's kernfs id */
            k->adopt = 1;
        }
    }
    k->sweep_ns = shortest_limit(rules, n);
    const char *fixed = getenv("NETTIMEO_KERNEL_SWEEP_MS");
    if (fixed && atoi(fixed) > 0 && k->sweep_ns) {
        k->fixed_ns = (int64_t)atoi(fixed) * 1000000;
        k->sweep_ns = k->fixed_ns;
    }
    int err = nettimeo_bpf__load(k->skel);
    if (err) {
        if (err == -EPERM)
            say("kernel mode needs BPF, which is not permitted here (%s); see kernel.unprivileged_bpf_disabled, lockdown or a seccomp filter",
                strerror(-err));
        else
            say("kernel mode: the kernel refused our BPF programs (%s); NETTIMEO_BPF_DEBUG=1 shows the verifier's log",
                strerror(-err));
        return -1;
    }
    if (k->adopt)
        fill_listen_ports(bpf_map__fd(k->skel->maps.listen_ports));
    __u32 zero = 0;
    if (bpf_map_update_elem(bpf_map__fd(k->skel->maps.cg_map), &zero, &k->cg_fd, BPF_ANY)) {
        say("kernel mode: cannot register cgroup %s: %s", cgroup, strerror(errno));
        return -1;
    }
    struct bpf_link *l = bpf_program__attach_cgroup(k->skel->progs.nt_sockops, k->cg_fd);
    if (!l) {
        say("kernel mode: cannot attach to cgroup %s: %s (is it a cgroup v2 directory?)",
            cgroup, strerror(errno));
        return -1;
    }
    k->links[k->n_links++] = l;
    /* Socket-call results, for epipe/econnreset: only socket I/O pays for
     * the hook (a compare per send/recv while attached). */
    if (nt_config_global(cfg)->events & (NT_EV_EPIPE | NT_EV_ECONNRESET)) {
        struct bpf_program *io[] = { k->skel->progs.nt_sock_send, k->skel->progs.nt_sock_recv };
        for (size_t i = 0; i < 2; i++) {
            l = bpf_program__attach(io[i]);
            if (!l) {
                say("kernel mode: cannot attach %s (the sock:sock_send_length tracepoints need Linux 6.3+): %s",
                    bpf_program__name(io[i]), strerror(errno));
                return -1;
            }
            k->links[k->n_links++] = l;
        }
    }
    if (k->sweep_ns) {
        l = bpf_program__attach_iter(k->skel->progs.nt_sweep, NULL);
        if (!l) {
            say("kernel mode: cannot create the TCP socket iterator: %s", strerror(errno));
            return -1;
        }
        k->links[k->n_links++] = l;
    }
    k->rb = ring_buffer__new(bpf_map__fd(k->skel->maps.events), on_event, NULL, NULL);
    if (!k->rb) {
        say("kernel mode: cannot open the event ring buffer: %s", strerror(errno));
        return -1;
    }
    return 0;
}

static void kunload(struct kstate *k)
{
    if (k->rb)
        ring_buffer__free(k->rb);
    for (int i = k->n_links - 1; i >= 0; i--)
        bpf_link__destroy(k->links[i]);
    k->n_links = 0;
    if (k->skel)
        nettimeo_bpf__destroy(k->skel);
    k->skel = NULL;
    if (k->cg_fd >= 0)
        close(k->cg_fd);
    k->cg_fd = -1;
}

static int64_t mono_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

/* One pass of the iterator; returns when the next one is needed (monotonic
 * ns). Sweeps happen when a connection can be due, not on a fixed tick:
 * nothing governed costs nothing, and a deadline fires within
 * SWEEP_MIN_GAP plus the timer's slack. */
static int64_t sweep(struct kstate *k)
{
    int64_t t0 = mono_ns();
    struct nettimeo_bpf__bss *bss = k->skel->bss;
    uint64_t est = __atomic_load_n(&bss->n_est, __ATOMIC_RELAXED);
    if (k->swept && !k->fixed_ns &&
        __atomic_load_n(&bss->sweep_live, __ATOMIC_RELAXED) == 0 &&
        est == k->n_est_seen)
        return t0 + k->sweep_ns; /* nothing governed, nothing new */
    k->swept = 1;
    k->n_est_seen = est;
    __atomic_store_n(&bss->sweep_live, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&bss->next_due, UINT64_MAX, __ATOMIC_RELAXED);
    int fd = bpf_iter_create(bpf_link__fd(k->links[k->n_links - 1]));
    if (fd < 0)
        return t0 + k->sweep_ns;
    char buf[256];
    while (read(fd, buf, sizeof buf) > 0)
        ;
    close(fd);
    uint64_t d = (uint64_t)(mono_ns() - t0);
    k->sweeps++;
    k->sweep_total_ns += d;
    if (d > k->sweep_max_ns)
        k->sweep_max_ns = d;
    int64_t now = mono_ns();
    int64_t next = now + k->sweep_ns;
    uint64_t due = __atomic_load_n(&bss->next_due, __ATOMIC_RELAXED);
    if (due < (uint64_t)next)
        next = (int64_t)due;
    if (next < now + SWEEP_MIN_GAP)
        next = now + SWEEP_MIN_GAP;
    if (k->fixed_ns) /* NETTIMEO_KERNEL_SWEEP_MS: a fixed tick, for measuring */
        next = now + k->fixed_ns;
    return next;
}

static void print_stats(const struct kstate *k, int64_t t_start)
{
    const struct ntk_stats *s = &k->skel->bss->stats;
    double secs = (double)(mono_ns() - t_start) / 1e9;
    fprintf(stderr,
            "nettimeo-kernel stats: %.1fs, %llu sweeps (when due; at least every %.0f ms while governing), mean %.1f us, max %.1f us, "
            "%llu sockets visited, %llu governed visits, %llu destroyed, %llu events (%llu timeouts), "
            "lateness mean %.1f ms max %.1f ms, %llu events lost\n",
            secs, (unsigned long long)k->sweeps, (double)k->sweep_ns / 1e6,
            k->sweeps ? (double)k->sweep_total_ns / (double)k->sweeps / 1e3 : 0.0,
            (double)k->sweep_max_ns / 1e3,
            (unsigned long long)s->sweep_visited, (unsigned long long)s->sweep_governed,
            (unsigned long long)s->destroyed, (unsigned long long)n_events,
            (unsigned long long)n_timeouts,
            n_timeouts ? (double)lateness_sum_ns / (double)n_timeouts / 1e6 : 0.0,
            (double)lateness_max_ns / 1e6, (unsigned long long)s->events_lost);
}

/* ---- the loop ---- */

static int sig_fd = -1;

static int block_signals(void)
{
    sigset_t s;
    sigemptyset(&s);
    int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2 };
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaddset(&s, sigs[i]);
    if (sigprocmask(SIG_BLOCK, &s, NULL))
        return -1;
    /* An inherited SIG_IGN for SIGCHLD would reap the program silently. */
    signal(SIGCHLD, SIG_DFL);
    sig_fd = signalfd(-1, &s, SFD_CLOEXEC | SFD_NONBLOCK);
    return sig_fd < 0 ? -1 : 0;
}

/* Runs until the child exits (child > 0) or a stop signal (attach).
 * Returns the child's wait status, or 0. */
static int loop(struct kstate *k, pid_t child, int stats)
{
    int tfd = -1;
    if (k->sweep_ns) {
        tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
        /* attach: sweep at once, to adopt the connections already there. */
        int64_t first = mono_ns() + (k->adopt ? 1000000 : k->sweep_ns);
        struct itimerspec it = { .it_value = { first / 1000000000, first % 1000000000 } };
        timerfd_settime(tfd, TFD_TIMER_ABSTIME, &it, NULL);
    }
    int64_t t_start = mono_ns();
    struct pollfd pf[3] = {
        { .fd = ring_buffer__epoll_fd(k->rb), .events = POLLIN },
        { .fd = sig_fd, .events = POLLIN },
        { .fd = tfd, .events = POLLIN },
    };
    int status = 0, done = 0;
    while (!done) {
        if (poll(pf, tfd >= 0 ? 3 : 2, -1) < 0 && errno != EINTR)
            break;
        if (pf[0].revents)
            ring_buffer__consume(k->rb);
        if (tfd >= 0 && pf[2].revents) {
            uint64_t x;
            if (read(tfd, &x, sizeof x) > 0) {
                int64_t next = sweep(k);
                struct itimerspec it = { .it_value = { next / 1000000000, next % 1000000000 } };
                timerfd_settime(tfd, TFD_TIMER_ABSTIME, &it, NULL);
            }
            ring_buffer__consume(k->rb);
        }
        if (pf[1].revents) {
            struct signalfd_siginfo si;
            while (read(sig_fd, &si, sizeof si) == sizeof si) {
                int sig = (int)si.ssi_signo;
                if (sig == SIGCHLD) {
                    pid_t w;
                    int st;
                    while (child > 0 && (w = waitpid(-1, &st, WNOHANG)) > 0)
                        if (w == child) {
                            status = st;
                            done = 1;
                        }
                    continue;
                }
                if (child > 0) {
                    /* The program's signals stay its own: pass on what was
                     * sent to us; a terminal's ^C already reached it. */
                    if (si.ssi_code != SI_KERNEL)
                        kill(child, sig);
                } else if (sig == SIGINT || sig == SIGTERM || sig == SIGHUP ||
                           sig == SIGQUIT) {
                    done = 1;
                }
                if (done)
                    break;
            }
        }
    }
    ring_buffer__consume(k->rb);
    flush_suppressed();
    if (stats)
        print_stats(k, t_start);
    if (tfd >= 0)
        close(tfd);
    return status;
}

/* ---- commands ---- */

static int cmd_probe(void)
{
    if (check_prereqs(0))
        return EX_UNAVAILABLE_K;
    printf("kernel mode available (cgroup v2 at %s)\n", cg2_root);
    return 0;
}

static int prepare(struct nt_config **cfg_out)
{
    const char *path;
    struct nt_config *cfg = load_config(&path);
    if (!cfg) {
        say("%s has errors; kernel mode does not start with a config it cannot use",
            path ? path : "the configuration");
        return 78;
    }
    open_log(nt_config_global(cfg));
    *cfg_out = cfg;
    return 0;
}

/* run-PID cgroups of nettimeo processes that are gone (killed with
 * SIGKILL): removed when empty. */
static void remove_stale(const char *parent)
{
    DIR *d = opendir(parent);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d))) {
        int pid;
        if (sscanf(de->d_name, "run-%d", &pid) != 1 || pid <= 0 || kill(pid, 0) == 0 ||
            errno != ESRCH)
            continue;
        char path[1200];
        snprintf(path, sizeof path, "%s/%s", parent, de->d_name);
        rmdir(path); /* fails, harmlessly, while processes remain */
    }
    closedir(d);
}

static int cmd_run(int argc, char **argv, int stats)
{
    if (argc < 1) {
        say("run: no program given");
        return 2;
    }
    if (check_prereqs(0))
        return EX_UNAVAILABLE_K;
    struct nt_config *cfg;
    int rc = prepare(&cfg);
    if (rc)
        return rc;
    const char *base = strrchr(argv[0], '/');
    prog_name = base ? base + 1 : argv[0];

    char parent[700];
    snprintf(parent, sizeof parent, "%s/nettimeo", cg2_root);
    mkdir(parent, 0755);
    remove_stale(parent);
    snprintf(cg_path, sizeof cg_path, "%s/run-%d", parent, (int)getpid());
    if (mkdir(cg_path, 0755) && errno != EEXIST) {
        say("kernel mode: cannot create cgroup %s: %s", cg_path, strerror(errno));
        return EX_UNAVAILABLE_K;
    }
    if (block_signals()) {
        say("signalfd: %s", strerror(errno));
        rmdir(cg_path);
        return EX_OURS;
    }
    struct kstate k = { .cg_fd = -1 };
    if (kload(&k, cfg, prog_name, cg_path)) {
        kunload(&k);
        rmdir(cg_path);
        return EX_UNAVAILABLE_K;
    }
    char exe[4096];
    /* For symbolising after the process is gone. */
    if (strchr(argv[0], '/')) {
        if (!realpath(argv[0], exe))
            snprintf(exe, sizeof exe, "%s", argv[0]);
    } else {
        exe[0] = 0;
        const char *path = getenv("PATH");
        char *dup = strdup(path ? path : "/usr/bin:/bin");
        for (char *d = strtok(dup, ":"); d; d = strtok(NULL, ":")) {
            char cand[4096];
            snprintf(cand, sizeof cand, "%s/%s", d, argv[0]);
            if (access(cand, X_OK) == 0) {
                if (!realpath(cand, exe))
                    snprintf(exe, sizeof exe, "%s", cand);
                break;
            }
        }
        free(dup);
    }
    ksym_init(exe[0] ? exe : NULL);

    int errpipe[2];
    if (pipe2(errpipe, O_CLOEXEC)) {
        kunload(&k);
        rmdir(cg_path);
        return EX_OURS;
    }
    pid_t child = fork();
    if (child < 0) {
        say("fork: %s", strerror(errno));
        kunload(&k);
        rmdir(cg_path);
        return EX_OURS;
    }
    if (child == 0) {
        close(errpipe[0]);
        char procs[1300];
        snprintf(procs, sizeof procs, "%s/cgroup.procs", cg_path);
        int fd = open(procs, O_WRONLY | O_CLOEXEC);
        int ok = fd >= 0 && write(fd, "0", 1) == 1;
        if (fd >= 0)
            close(fd);
        if (!ok) {
            int e = errno;
            if (write(errpipe[1], &e, sizeof e) < 0)
                _exit(EX_OURS);
            _exit(EX_OURS);
        }
        sigset_t s;
        sigemptyset(&s);
        sigprocmask(SIG_SETMASK, &s, NULL);
        if (log_fd > 2)
            close(log_fd);
        execvp(argv[0], argv);
        int e = errno;
        fprintf(stderr, "%s: cannot run %s: %s\n", me, argv[0], strerror(e));
        _exit(e == ENOENT ? 127 : 126);
    }
    close(errpipe[1]);
    int cerr = 0;
    if (read(errpipe[0], &cerr, sizeof cerr) == sizeof cerr) {
        say("kernel mode: cannot move the program into %s: %s", cg_path, strerror(cerr));
        waitpid(child, NULL, 0);
        kunload(&k);
        rmdir(cg_path);
        return EX_UNAVAILABLE_K;
    }
    close(errpipe[0]);
    main_pid = child;
    int st = loop(&k, child, stats);
    kunload(&k);
    if (rmdir(cg_path) && errno == EBUSY)
        say("warning: processes the program left behind still run in %s (no longer governed)", cg_path);
    nt_config_free(cfg);
    if (WIFSIGNALED(st)) {
        int sig = WTERMSIG(st);
        signal(sig, SIG_DFL);
        sigset_t s;
        sigemptyset(&s);
        sigaddset(&s, sig);
        sigprocmask(SIG_UNBLOCK, &s, NULL);
        prctl(PR_SET_DUMPABLE, 0); /* the program's core is its own, not ours */
        kill(getpid(), sig);
        return 128 + sig;
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : EX_OURS;
}

static int first_pid_in(const char *cg)
{
    char fn[1300];
    snprintf(fn, sizeof fn, "%s/cgroup.procs", cg);
    FILE *f = fopen(fn, "re");
    int pid = 0;
    if (f) {
        if (fscanf(f, "%d", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return pid;
}

static int cmd_attach(const char *cg, int stats)
{
    if (check_prereqs(0))
        return EX_UNAVAILABLE_K;
    if (cg[0] != '/')
        snprintf(cg_path, sizeof cg_path, "%s/%s", cg2_root, cg);
    else
        snprintf(cg_path, sizeof cg_path, "%s", cg);
    struct stat st;
    char ctl[1300];
    snprintf(ctl, sizeof ctl, "%s/cgroup.procs", cg_path);
    if (stat(ctl, &st)) {
        say("attach: %s is not a cgroup directory", cg_path);
        return 2;
    }
    struct nt_config *cfg;
    int rc = prepare(&cfg);
    if (rc)
        return rc;
    if (block_signals())
        return EX_OURS;
    struct kstate k = { .cg_fd = -1 };
    if (kload(&k, cfg, NULL, cg_path)) {
        kunload(&k);
        return EX_UNAVAILABLE_K;
    }
    ksym_init(NULL);
    main_pid = first_pid_in(cg_path);
    if (main_pid) {
        char comm[17];
        comm_of(main_pid, comm, sizeof comm);
        prog_name = strdup(comm);
    }
    say("governing the connections of %s (kernel mode) until stopped", cg_path);
    loop(&k, 0, stats);
    kunload(&k);
    nt_config_free(cfg);
    say("detached from %s", cg_path);
    return 0;
}

static void print_setting_keys(const struct nt_settings *s, uint32_t mask,
                               const char *where, int *bad)
{
    static const struct { int bit; const char *key; } keys[] = {
        { NTC_S_CONNECT, "connect_timeout" }, { NTC_S_READ, "read_timeout" },
        { NTC_S_WRITE, "write_timeout" }, { NTC_S_IDLE, "idle_timeout" },
        { NTC_S_REQUEST, "request_timeout" }, { NTC_S_LIFETIME, "max_lifetime" },
        { NTC_S_COALESCE, "coalesce" }, { NTC_S_COALESCE_DELAY, "coalesce_delay" },
        { NTC_S_COALESCE_MODE, "coalesce_mode" }, { NTC_S_TIMEOUT_ERRNO, "timeout_errno" },
        { NTC_S_EXPIRE_ACTION, "expire_action" },
    };
    (void)s;
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        if (!(mask & (1u << keys[i].bit)))
            continue;
        const struct key_support *k = support_of(keys[i].key);
        printf("  %-20s %-16s %-12s %s\n", where, keys[i].key, k->level, k->how);
        if (!strcmp(k->level, "unavailable"))
            (*bad)++;
    }
}

/* Which keys the file uses, and what kernel mode does with each. */
static int cmd_check(const char *file)
{
    struct nt_config *cfg = nt_config_parse_file(file, diag_print, NULL);
    if (!cfg)
        return 1;
    printf("%s: kernel mode, per key used:\n", file);
    int bad = 0;
    /* [defaults]: a key is "used" when it differs from the built-in
     * default; a rule's own keys are in own_mask. */
    struct nt_settings d;
    ntc_settings_default(&d);
    uint32_t dmask = 0;
    const struct nt_settings *s = &cfg->defaults;
    if (s->connect_timeout != d.connect_timeout) dmask |= 1u << NTC_S_CONNECT;
    if (s->read_timeout != d.read_timeout) dmask |= 1u << NTC_S_READ;
    if (s->write_timeout != d.write_timeout) dmask |= 1u << NTC_S_WRITE;
    if (s->idle_timeout != d.idle_timeout) dmask |= 1u << NTC_S_IDLE;
    if (s->request_timeout != d.request_timeout) dmask |= 1u << NTC_S_REQUEST;
    if (s->max_lifetime != d.max_lifetime) dmask |= 1u << NTC_S_LIFETIME;
    if (s->coalesce != d.coalesce) dmask |= 1u << NTC_S_COALESCE;
    if (s->coalesce_delay != d.coalesce_delay) dmask |= 1u << NTC_S_COALESCE_DELAY;
    if (s->coalesce_mode != d.coalesce_mode) dmask |= 1u << NTC_S_COALESCE_MODE;
    if (s->timeout_errno != d.timeout_errno) dmask |= 1u << NTC_S_TIMEOUT_ERRNO;
    if (s->expire_action != d.expire_action) dmask |= 1u << NTC_S_EXPIRE_ACTION;
    print_setting_keys(s, dmask, "[defaults]", &bad);
    for (size_t i = 0; i < cfg->n_rules; i++) {
        const struct ntc_rule *r = &cfg->rules[i];
        char where[80];
        snprintf(where, sizeof where, "[rule %s]", r->name);
        const struct { int used; const char *key; } sel[] = {
            { r->dir != NT_DIR_ANY, "direction" },
            { r->local_ports.n > 0, "local_port" },
            { r->remote_ports.n > 0, "remote_port" },
            { r->remotes.n > 0, "remote" },
            { r->unix_path != NULL, "unix_path" },
            { r->program != NULL, "program" },
        };
        for (size_t j = 0; j < sizeof sel / sizeof sel[0]; j++) {
            if (!sel[j].used)
                continue;
            const struct key_support *k = support_of(sel[j].key);
            printf("  %-20s %-16s %-12s %s\n", where, k->key, k->level, k->how);
            if (!strcmp(k->level, "unavailable"))
                bad++;
        }
        if ((r->local_ports.n > NTK_MAX_PORTS || r->remote_ports.n > NTK_MAX_PORTS ||
             r->remotes.n > NTK_MAX_CIDRS)) {
            printf("  %-20s %-16s %-12s more than %d items in a list: split the rule\n",
                   where, "-", "unavailable", NTK_MAX_PORTS);
            bad++;
        }
        print_setting_keys(&r->own, r->own_mask, where, &bad);
    }
    const struct nt_global *g = nt_config_global(cfg);
    const char *gk[] = { "log", "events", "backtrace", "rate_limit" };
    for (size_t j = 0; j < sizeof gk / sizeof gk[0]; j++) {
        const struct key_support *k = support_of(gk[j]);
        printf("  %-20s %-16s %-12s %s\n", "[global]", k->key, k->level, k->how);
    }
    if (g->sigpipe_ignore) {
        const struct key_support *k = support_of("sigpipe");
        printf("  %-20s %-16s %-12s %s\n", "[global]", k->key, k->level, k->how);
        bad++;
    }
    if (bad)
        printf("%d key(s) have no effect in kernel mode\n", bad);
    else
        printf("every key used has an effect in kernel mode\n");
    nt_config_free(cfg);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: nettimeo-kernel run [--stats] [--] PROGRAM [ARGS...]\n"
            "       nettimeo-kernel attach [--stats] CGROUP\n"
            "       nettimeo-kernel check FILE\n"
            "       nettimeo-kernel probe\n"
            "       nettimeo-kernel keys      (the per-key table)\n"
            "Config from $NETTIMEO_CONFIG (or /etc/nettimeo.conf), $NETTIMEO_OPTIONS,\n"
            "$NETTIMEO_LOG, as for the library. Normally run through `nettimeo`.\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    int i = 2, stats = 0;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--stats"))
            stats = 1;
        else if (!strcmp(argv[i], "--")) {
            i++;
            break;
        } else
            break;
    }
    if (!strcmp(cmd, "run"))
        return cmd_run(argc - i, argv + i, stats);
    if (!strcmp(cmd, "attach")) {
        if (i >= argc) {
            usage(stderr);
            return 2;
        }
        return cmd_attach(argv[i], stats);
    }
    if (!strcmp(cmd, "check")) {
        if (i >= argc) {
            usage(stderr);
            return 2;
        }
        return cmd_check(argv[i]);
    }
    if (!strcmp(cmd, "probe"))
        return cmd_probe();
    if (!strcmp(cmd, "keys")) {
        for (size_t j = 0; j < sizeof support / sizeof support[0]; j++)
            printf("%s\t%s\t%s\n", support[j].key, support[j].level, support[j].how);
        return 0;
    }
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help")) {
        usage(stdout);
        return 0;
    }
    usage(stderr);
    return 2;
}
