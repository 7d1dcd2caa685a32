/* Formatting of one audit event as a JSON line (shared/SPEC.md section 5).
 *
 * Pure functions: everything that needs the kernel or the clock (time,
 * pid, tid, the peer's TCP state, the backtrace) is gathered by event.c
 * into struct nt_event_facts first, so this file is unit-tested without
 * preloading anything. */
#ifndef NT_EVENT_FORMAT_H
#define NT_EVENT_FORMAT_H

#include <stddef.h>
#include <time.h>

#include "audit/event.h"
#include "audit/json.h"

#define NT_TS_LEN 27 /* "2026-11-21T14:20:54.123456Z" */

struct nt_event_facts {
    struct timespec wall;    /* CLOCK_REALTIME */
    nt_ns now;               /* CLOCK_MONOTONIC, for age_ms / idle_ms */
    int pid, tid;
    const char *prog;
    int peer_closed;         /* 0/1; only used with a connection */
    uint64_t dropped;        /* events the sink lost before this one */
    /* Appends the members of the "backtrace" array; NULL: no backtrace
     * field at all. */
    void (*frames)(struct nt_jbuf *b, const struct nt_event *ev, void *arg);
    void *frames_arg;
    const char *via;         /* "kernel" in kernel mode; NULL: no field */
};

/* Formats ev as one line ending in '\n' into buf. Returns the length; a
 * line that does not fit loses backtrace frames first, then is cut to
 * still be a valid JSON object. cap must be at least 256. */
size_t nt_json_format_event(char *buf, size_t cap, const struct nt_event *ev,
                            const struct nt_event_facts *f);

/* UTC RFC 3339 with microseconds into out[NT_TS_LEN + 1], NUL-terminated.
 * No gmtime: no locks, no TZ file, safe anywhere. */
void nt_format_ts(char *out, const struct timespec *t);

/* "EPIPE", or the number as a string for errnos outside the table;
 * buf holds at least 12 bytes. */
const char *nt_errno_name(int err, char *buf);

/* The event's name ("epipe", ...) for one NT_EV_* bit; "?" if unknown. */
const char *nt_event_name(uint32_t kind);

/* A socket address as SPEC writes it: "1.2.3.4:80", "[::1]:80", a Unix
 * path, "@abstract". Appends the escaped text (no quotes) to b; returns 0
 * when there is nothing to say (unknown, unnamed Unix socket). */
int nt_format_addr(struct nt_jbuf *b, const union nt_addr *a, socklen_t len);

#endif
