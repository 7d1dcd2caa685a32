/* The audit log: filtering, rate limiting, gathering the facts of an event
 * and handing one formatted line to the sink. See event.h; formatting is
 * in event_format.c, sinks in log_sink.c, unwinding in backtrace.c.
 *
 * Nothing here allocates or uses stdio: a line is built in a stack buffer
 * (NT_LINE_MAX; the whole path needs ~12 KiB of stack) and written with one
 * write(2).
 *
 * Cost, measured with `nt_audit_prog flood N 14` (an EPIPE 16 frames deep,
 * log to a file, rate_limit off, 2-core VM): a failing send without the
 * library 0.5 us; with an event and no backtrace 5.4 us; with a 16-frame
 * backtrace 20 us once the frames' names are cached (backtrace.c), ~1 ms
 * for the very first event of the process (dlopen of libunwind ~0.15 ms,
 * first unwind, and unw_get_proc_name reading each object's symbols). */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "audit/backtrace.h"
#include "audit/event.h"
#include "audit/event_format.h"
#include "audit/log_sink.h"
#include "audit/ratelimit.h"
#include "core/real.h"
#include "core/sandbox.h"

#define NT_LINE_MAX 8192
#define NT_CONFIG_EVENTS (NT_EV_CONFIG_ERROR | NT_EV_CONFIG_LOADED)
/* On whatever the config says: they report on nettimeo itself. */
#define NT_EV_ALWAYS (NT_EV_CONFIG_ERROR | NT_EV_SUPPRESSED | NT_EV_SANDBOXED)

uint32_t nt_event_mask = NT_EV_DEFAULT;

/* Until a config is loaded (or if it never is): SPEC's defaults. */
static const struct nt_global default_global = {
    .log = "stderr", .events = NT_EV_DEFAULT, .backtrace = 16,
    .rate_limit = 50, .inherit = 1,
};
static const struct nt_global *cur_global = &default_global;

static const struct nt_global *global(void)
{
    return __atomic_load_n(&cur_global, __ATOMIC_ACQUIRE);
}

void nt_event_configure(const struct nt_global *g)
{
    if (!g)
        g = &default_global;
    int saved = errno;
    nt_in_lib++;
    nt_sink_configure(g->log, nt_g.secure);
    __atomic_store_n(&cur_global, g, __ATOMIC_RELEASE);
    __atomic_store_n(&nt_event_mask, g->events | NT_EV_ALWAYS,
                     __ATOMIC_RELAXED);
    nt_in_lib--;
    errno = saved;
}

/* ---- facts the formatter needs ---- */

static int tcp_state_says_peer_closed(int fd, const struct nt_conn *c)
{
    struct tcp_info ti;
    socklen_t len = sizeof ti;
    if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) != 0)
        return 0;
    switch (ti.tcpi_state) {
    case TCP_CLOSE_WAIT:
    case TCP_LAST_ACK:
    case TCP_CLOSING:
    case TCP_TIME_WAIT:
        return 1;
    case TCP_CLOSE:
        /* Also what our own reset (expire_action) leaves behind. */
        return !c->expired && !c->self_closed;
    }
    return 0;
}

static int unix_peer_closed(int fd)
{
    struct pollfd p = { .fd = fd, .events = POLLRDHUP };
    return real.poll(&p, 1, 0) == 1 &&
           (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Did the peer send FIN or RST before this event? What the library saw,
 * else what the kernel knows. */
int nt_event_peer_closed(const struct nt_conn *c, int fd)
{
    if (c->peer_closed)
        return 1;
    if (fd < 0)
        return 0;
    if (c->family == AF_INET || c->family == AF_INET6)
        return tcp_state_says_peer_closed(fd, c);
    if (c->family == AF_UNIX)
        return unix_peer_closed(fd);
    return 0;
}

struct frames_opts {
    int max;
    int single; /* only the caller's address: no unwinding */
};

static void append_frames(struct nt_jbuf *b, const struct nt_event *ev,
                          void *arg)
{
    const struct frames_opts *o = arg;
    if (o->single) {
        if (ev->caller)
            nt_backtrace_append_addr(b, ev->caller);
    } else {
        nt_backtrace_append(b, o->max, ev->caller);
    }
}

static int syslog_level(uint32_t kind)
{
    if (kind == NT_EV_CONFIG_ERROR)
        return NT_LOG_ERR;
    if (kind & (NT_EV_CONNECT | NT_EV_ACCEPT | NT_EV_CLOSE |
                NT_EV_CONFIG_LOADED))
        return NT_LOG_INFO;
    return NT_LOG_WARNING;
}

/* Gather, format, write: no filtering, no rate limit. */
static void write_event(const struct nt_event *ev, int single_frame)
{
    const struct nt_global *g = global();
    struct frames_opts fo = { .max = g->backtrace, .single = single_frame };
    struct nt_event_facts f = {
        .now = nt_now(),
        .pid = (int)getpid(),
        .tid = (int)syscall(SYS_gettid),
        .prog = nt_g.prog[0] ? nt_g.prog : "?",
        .peer_closed = ev->conn ? nt_event_peer_closed(ev->conn, ev->fd) : 0,
        .dropped = nt_sink_take_dropped(),
    };
    clock_gettime(CLOCK_REALTIME, &f.wall);
    if (g->backtrace > 0 && !(ev->kind & NT_CONFIG_EVENTS)) {
        f.frames = append_frames;
        f.frames_arg = &fo;
    }
    char line[NT_LINE_MAX];
    size_t len = nt_json_format_event(line, sizeof line, ev, &f);
    if (len && nt_sink_write(line, len, syslog_level(ev->kind)) != 0)
        nt_sink_add_dropped(f.dropped); /* say it with the next line */
}

/* ---- rate limit ---- */

static void emit_suppressed(const struct nt_event *ev, uint64_t count,
                            int single_frame)
{
    struct nt_event s = {
        .kind = NT_EV_SUPPRESSED, .fd = -1, .op = ev->op, .count = count,
        .of_kind = ev->kind, .caller = ev->caller,
    };
    write_event(&s, single_frame);
}

static uint32_t current_window(void)
{
    return (uint32_t)(nt_now() / 1000000000);
}

/* 1: log it (after reporting what this call site held back before). */
static int admit(const struct nt_event *ev)
{
    struct nt_rl_site site = { .caller = ev->caller, .kind = ev->kind,
                               .op = ev->op };
    uint64_t due = 0;
    uint64_t key = nt_rl_key(ev->caller, ev->kind, ev->op, ev->timeout);
    if (!nt_rl_admit(key, current_window(), global()->rate_limit, &site,
                     &due))
        return 0;
    if (due)
        emit_suppressed(ev, due, 0);
    return 1;
}

/* ---- the API ---- */

void nt_event_emit(const struct nt_event *ev)
{
    if (!nt_event_enabled(ev->kind) || nt_sandboxed()) /* sandbox: */
        return;
    int saved = errno;
    nt_in_lib++;
    if (admit(ev))
        write_event(ev, 0);
    nt_in_lib--;
    errno = saved;
}

void nt_event_io_error(struct nt_conn *c, int fd, const char *op, int err,
                       void *caller)
{
    uint32_t kind = err == EPIPE ? NT_EV_EPIPE
                  : err == ECONNRESET ? NT_EV_ECONNRESET : 0;
    if (!kind)
        return;
    if (kind == NT_EV_ECONNRESET)
        c->peer_closed = 1;
    struct nt_event ev = { .kind = kind, .fd = fd, .op = op, .conn = c,
                           .err = err, .caller = caller };
    nt_event_emit(&ev);
}

void nt_event_lifecycle(uint32_t kind, const struct nt_conn *c, int fd,
                        const char *op, void *caller)
{
    if (!nt_event_enabled(kind))
        return;
    struct nt_event ev = { .kind = kind, .fd = fd, .op = op, .conn = c,
                           .caller = caller };
    nt_event_emit(&ev);
}

static void report_held(const struct nt_rl_site *site, uint64_t count,
                        void *arg)
{
    struct nt_event ev = { .kind = site->kind, .op = site->op,
                           .caller = (void *)site->caller };
    /* At exit: no unwinding, just the call site's own address. */
    emit_suppressed(&ev, count, 1);
}

void nt_event_flush_suppressed(void)
{
    int saved = errno;
    nt_in_lib++;
    nt_rl_drain(report_held, NULL);
    nt_in_lib--;
    errno = saved;
}

void nt_event_atfork_child(void)
{
    nt_rl_reset();
    nt_sink_atfork_child();
    nt_backtrace_atfork_child();
}
