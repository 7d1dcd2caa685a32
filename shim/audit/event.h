/* The audit log: JSON Lines events (shared/SPEC.md section 5).
 *
 * nt_event_emit() may be called from any program thread inside a hook, or
 * from the timer thread (op "timer", no call site). It never blocks for
 * long, never fails the program's call, never writes to stdout and never
 * uses stdio; each event is one write(2). Backtraces and symbol lookups
 * happen only here, on the event path, never on the fast path.
 */
#ifndef NT_EVENT_H
#define NT_EVENT_H

#include "core/conn.h"

struct nt_event {
    uint32_t kind;            /* one NT_EV_* bit */
    int fd;                   /* -1: none */
    const char *op;           /* "write", "sendmsg", "read", "timer", ... */
    const struct nt_conn *conn; /* the connection's story; may be NULL */
    int err;                  /* errno value, 0: none */
    const char *timeout;      /* timeout events: "read_timeout", ... */
    nt_ns limit, elapsed;     /* timeout events */
    const char *action;       /* timeout events: "error", "shutdown", "reset" */
    uint64_t lost_bytes;      /* flush_error */
    uint64_t request_bytes, answer_bytes; /* abandoned: the exchange */
    uint64_t count;           /* suppressed */
    uint32_t of_kind;         /* suppressed: the kind held back */
    const char *message;      /* config_error / config_loaded text */
    void *caller;             /* program call site (NT_CALLER() of the hook);
                                 NULL from the timer thread: no backtrace */
};

/* Open the sink named by the config's [global] log; called at init and on
 * reload. Safe to call again. */
void nt_event_configure(const struct nt_global *g);
/* Filtered by [global] events and rate-limited per call site. */
void nt_event_emit(const struct nt_event *ev);
/* True if events of this kind are enabled (cheap; check before building):
 * one load and a test. The mask holds NT_EV_DEFAULT until the config is
 * loaded. */
extern uint32_t nt_event_mask;
static inline int nt_event_enabled(uint32_t kind)
{
    return (__atomic_load_n(&nt_event_mask, __ATOMIC_RELAXED) & kind) != 0;
}
/* An I/O call on a governed socket failed with `err`: logs `epipe` or
 * `econnreset` (other errors are ignored) and marks the peer as closed. */
void nt_event_io_error(struct nt_conn *c, int fd, const char *op, int err,
                       void *caller);

/* Did the peer send FIN or RST? What the library saw, else what the
 * kernel knows (fd names the socket). */
int nt_event_peer_closed(const struct nt_conn *c, int fd);

/* Emit pending `suppressed` counts now (exit, exec, fork). */
void nt_event_flush_suppressed(void);

/* events = all: a connection's life. kind is NT_EV_CONNECT (after a
 * connect succeeded, or a non-blocking one completed), NT_EV_ACCEPT (after
 * accept returned it) or NT_EV_CLOSE (before the real close, while the fd
 * still names the socket, so the peer's TCP state can be read). Does
 * nothing unless the kind is enabled; callers on hot paths check
 * nt_event_enabled() first. */
void nt_event_lifecycle(uint32_t kind, const struct nt_conn *c, int fd,
                        const char *op, void *caller);

/* Report what the rate limit still holds back (one `suppressed` event per
 * call site). Called from the process's exit hooks; registers nothing with
 * atexit itself. */
void nt_event_flush_suppressed(void);

/* fork child: reset locks, counters, and the sink if it was per-process. */
void nt_event_atfork_child(void);

/* Warm-up for the unwinder, done outside hot paths. */
void nt_backtrace_prepare(void);

#endif
