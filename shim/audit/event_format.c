/* One audit event as one JSON line (see event_format.h). */
#include <errno.h>
#include <string.h>

#include "audit/event_format.h"

/* ---- time ---- */

/* Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's
 * civil_from_days): exact for every 64-bit time, no tables, no locks. */
static void civil_from_days(int64_t z, int64_t *y, unsigned *m, unsigned *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int64_t)yoe + era * 400 + (*m <= 2);
}

static void put_digits(char *out, uint64_t v, int width)
{
    for (int i = width - 1; i >= 0; i--, v /= 10)
        out[i] = (char)('0' + v % 10);
}

void nt_format_ts(char *out, const struct timespec *t)
{
    int64_t secs = t->tv_sec;
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days--;
    }
    int64_t y;
    unsigned mo, d;
    civil_from_days(days, &y, &mo, &d);
    if (y < 0 || y > 9999)
        y = 0; /* the clock is nonsense; keep the fixed width */
    memcpy(out, "0000-00-00T00:00:00.000000Z", NT_TS_LEN + 1);
    put_digits(out, (uint64_t)y, 4);
    put_digits(out + 5, mo, 2);
    put_digits(out + 8, d, 2);
    put_digits(out + 11, (uint64_t)rem / 3600, 2);
    put_digits(out + 14, (uint64_t)rem / 60 % 60, 2);
    put_digits(out + 17, (uint64_t)rem % 60, 2);
    put_digits(out + 20, (uint64_t)t->tv_nsec / 1000 % 1000000, 6);
}

/* ---- names ---- */

#define NT_ERRNO_NAME(e) { e, #e }
static const struct { int err; const char *name; } errno_names[] = {
    NT_ERRNO_NAME(EPIPE), NT_ERRNO_NAME(ECONNRESET),
    NT_ERRNO_NAME(ETIMEDOUT), NT_ERRNO_NAME(EAGAIN),
    NT_ERRNO_NAME(ECONNREFUSED), NT_ERRNO_NAME(ECONNABORTED),
    NT_ERRNO_NAME(ENOTCONN), NT_ERRNO_NAME(ESHUTDOWN),
    NT_ERRNO_NAME(EHOSTUNREACH), NT_ERRNO_NAME(ENETUNREACH),
    NT_ERRNO_NAME(ENETDOWN), NT_ERRNO_NAME(ENETRESET),
    NT_ERRNO_NAME(EHOSTDOWN), NT_ERRNO_NAME(EINPROGRESS),
    NT_ERRNO_NAME(EALREADY), NT_ERRNO_NAME(EINTR), NT_ERRNO_NAME(EBADF),
    NT_ERRNO_NAME(ENOTSOCK), NT_ERRNO_NAME(EINVAL), NT_ERRNO_NAME(EIO),
    NT_ERRNO_NAME(ENOMEM), NT_ERRNO_NAME(ENOBUFS), NT_ERRNO_NAME(ENOSPC),
    NT_ERRNO_NAME(EDQUOT), NT_ERRNO_NAME(EFBIG), NT_ERRNO_NAME(EMSGSIZE),
    NT_ERRNO_NAME(EPROTO), NT_ERRNO_NAME(EADDRINUSE),
    NT_ERRNO_NAME(EADDRNOTAVAIL), NT_ERRNO_NAME(EMFILE),
    NT_ERRNO_NAME(ENFILE), NT_ERRNO_NAME(EACCES), NT_ERRNO_NAME(EPERM),
    NT_ERRNO_NAME(ENOENT), NT_ERRNO_NAME(EFAULT), NT_ERRNO_NAME(ECANCELED),
};

const char *nt_errno_name(int err, char *buf)
{
    for (size_t i = 0; i < sizeof errno_names / sizeof errno_names[0]; i++)
        if (errno_names[i].err == err)
            return errno_names[i].name;
    size_t n = 0;
    if (err < 0) {
        buf[n++] = '-';
        err = -err;
    }
    buf[n + nt_fmt_u64(buf + n, (uint64_t)(unsigned)err)] = 0;
    return buf;
}

/* In the order of the NT_EV_* bits. */
static const char *const event_names[] = {
    "epipe", "econnreset", "timeout", "flush_error", "config_error",
    "config_loaded", "suppressed", "connect", "accept", "close", "abandoned",
    "sandboxed",
};

const char *nt_event_name(uint32_t kind)
{
    if (!kind || (kind & (kind - 1)))
        return "?";
    unsigned bit = (unsigned)__builtin_ctz(kind);
    return bit < sizeof event_names / sizeof event_names[0]
               ? event_names[bit] : "?";
}

/* ---- addresses ---- */

static void put_u8_dec(struct nt_jbuf *b, unsigned v)
{
    nt_j_u64(b, v);
}

static void put_ipv4(struct nt_jbuf *b, const uint8_t *a)
{
    for (int i = 0; i < 4; i++) {
        if (i)
            nt_j_raw(b, ".", 1);
        put_u8_dec(b, a[i]);
    }
}

/* The longest run of two or more zero groups, for "::" (RFC 5952). */
static void longest_zero_run(const uint16_t *g, int *start, int *len)
{
    *start = -1;
    *len = 0;
    for (int i = 0; i < 8;) {
        int j = i;
        while (j < 8 && g[j] == 0)
            j++;
        if (j - i > *len && j - i >= 2) {
            *start = i;
            *len = j - i;
        }
        i = j > i ? j : i + 1;
    }
}

static void put_hex_group(struct nt_jbuf *b, uint16_t v)
{
    static const char hx[] = "0123456789abcdef";
    char d[4];
    int n = 0;
    for (int shift = 12; shift >= 0; shift -= 4)
        if ((v >> shift) || n || shift == 0)
            d[n++] = hx[(v >> shift) & 15];
    nt_j_raw(b, d, (size_t)n);
}

/* RFC 5952 text: lowercase, no leading zeros, "::" for the longest zero
 * run, IPv4-mapped addresses as ::ffff:1.2.3.4. */
static void put_ipv6(struct nt_jbuf *b, const uint8_t *a)
{
    static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                        0xff, 0xff };
    if (memcmp(a, mapped, 12) == 0) {
        nt_j_cstr(b, "::ffff:");
        put_ipv4(b, a + 12);
        return;
    }
    uint16_t g[8];
    for (int i = 0; i < 8; i++)
        g[i] = (uint16_t)(a[2 * i] << 8 | a[2 * i + 1]);
    int zs, zl;
    longest_zero_run(g, &zs, &zl);
    for (int i = 0; i < 8; i++) {
        if (i == zs) {
            nt_j_cstr(b, "::");
            i += zl - 1;
            continue;
        }
        if (i && i != zs + zl)
            nt_j_raw(b, ":", 1);
        put_hex_group(b, g[i]);
    }
}

static void put_port(struct nt_jbuf *b, in_port_t port_be)
{
    nt_j_raw(b, ":", 1);
    nt_j_u64(b, ntohs(port_be));
}

static int put_unix(struct nt_jbuf *b, const struct sockaddr_un *un,
                    socklen_t len)
{
    size_t off = offsetof(struct sockaddr_un, sun_path);
    if (len <= off)
        return 0; /* unnamed */
    size_t n = len - off;
    if (n > sizeof un->sun_path)
        n = sizeof un->sun_path;
    if (un->sun_path[0] == 0) { /* abstract: bytes after the NUL */
        nt_j_raw(b, "@", 1);
        nt_j_escaped(b, un->sun_path + 1, n - 1);
        return 1;
    }
    nt_j_escaped(b, un->sun_path, strnlen(un->sun_path, n));
    return 1;
}

int nt_format_addr(struct nt_jbuf *b, const union nt_addr *a, socklen_t len)
{
    if (len < sizeof(sa_family_t))
        return 0;
    switch (a->sa.sa_family) {
    case AF_INET:
        if (len < sizeof a->in)
            return 0;
        put_ipv4(b, (const uint8_t *)&a->in.sin_addr);
        put_port(b, a->in.sin_port);
        return 1;
    case AF_INET6:
        if (len < sizeof a->in6)
            return 0;
        nt_j_raw(b, "[", 1);
        put_ipv6(b, a->in6.sin6_addr.s6_addr);
        nt_j_raw(b, "]", 1);
        put_port(b, a->in6.sin6_port);
        return 1;
    case AF_UNIX:
        return put_unix(b, &a->un, len);
    }
    return 0;
}

/* ---- the event ---- */

static void put_addr_member(struct nt_jbuf *b, const char *key,
                            const union nt_addr *a, socklen_t len)
{
    struct nt_jmark m = nt_j_mark(b);
    nt_j_key(b, key);
    nt_j_raw(b, "\"", 1);
    if (!nt_format_addr(b, a, len)) {
        nt_j_rollback(b, m); /* nothing known: omit the member */
        return;
    }
    nt_j_raw(b, "\"", 1);
}

static void put_direction(struct nt_jbuf *b, int role)
{
    if (role == NT_ROLE_OUTBOUND)
        nt_j_kstr(b, "dir", "outbound");
    else if (role == NT_ROLE_INBOUND || role == NT_ROLE_INHERITED)
        nt_j_kstr(b, "dir", "inbound");
    if (role == NT_ROLE_INHERITED)
        nt_j_kbool(b, "inherited", 1);
}

/* The connection's story: who, where, which rule, how old, how busy. */
static void put_connection(struct nt_jbuf *b, const struct nt_conn *c,
                           const struct nt_event_facts *f)
{
    put_direction(b, c->role);
    union nt_addr a;
    socklen_t len = nt_conn_addr(c, 0, &a);
    put_addr_member(b, "local", &a, len);
    len = nt_conn_addr(c, 1, &a);
    put_addr_member(b, "remote", &a, len);
    if (c->set && c->set->rule)
        nt_j_kstr(b, "rule", c->set->rule);
    else
        nt_j_kraw(b, "rule", "null");
}

static void put_story(struct nt_jbuf *b, const struct nt_conn *c,
                      const struct nt_event_facts *f)
{
    if (c->t_open)
        nt_j_kms(b, "age_ms", f->now - c->t_open);
    nt_j_ku64(b, "bytes_in", c->bytes_in);
    nt_j_ku64(b, "bytes_out", c->bytes_out);
    nt_ns last = c->t_last ? c->t_last : c->t_open;
    if (last)
        nt_j_kms(b, "idle_ms", f->now - last);
    nt_j_kbool(b, "peer_closed", f->peer_closed);
}

static void put_timeout(struct nt_jbuf *b, const struct nt_event *ev)
{
    nt_j_kstr(b, "timeout", ev->timeout);
    nt_j_kms(b, "limit_ms", ev->limit);
    nt_j_kms(b, "elapsed_ms", ev->elapsed);
    if (ev->action)
        nt_j_kstr(b, "action", ev->action);
}

static void put_header(struct nt_jbuf *b, const struct nt_event *ev,
                       const struct nt_event_facts *f)
{
    char ts[NT_TS_LEN + 1];
    nt_format_ts(ts, &f->wall);
    nt_j_open(b, '{');
    nt_j_kstr(b, "ts", ts);
    nt_j_kstr(b, "event", nt_event_name(ev->kind));
    nt_j_ki64(b, "pid", f->pid);
    nt_j_ki64(b, "tid", f->tid);
    nt_j_kstr(b, "prog", f->prog ? f->prog : "?");
    if (ev->fd >= 0)
        nt_j_ki64(b, "fd", ev->fd);
    if (ev->op)
        nt_j_kstr(b, "op", ev->op);
}

static void put_details(struct nt_jbuf *b, const struct nt_event *ev,
                        const struct nt_event_facts *f)
{
    if (ev->conn)
        put_connection(b, ev->conn, f);
    if (ev->err) {
        char num[12];
        nt_j_kstr(b, "errno", nt_errno_name(ev->err, num));
    }
    if (ev->timeout)
        put_timeout(b, ev);
    if (ev->conn)
        put_story(b, ev->conn, f);
    if (ev->kind == NT_EV_FLUSH_ERROR)
        nt_j_ku64(b, "lost_bytes", ev->lost_bytes);
    if (ev->kind == NT_EV_ABANDONED) {
        nt_j_ku64(b, "request_bytes", ev->request_bytes);
        nt_j_ku64(b, "answer_bytes", ev->answer_bytes);
        nt_j_kms(b, "exchange_ms", ev->elapsed);
    }
    if (ev->kind == NT_EV_SUPPRESSED) {
        nt_j_ku64(b, "count", ev->count);
        if (ev->of_kind)
            nt_j_kstr(b, "suppressed_event", nt_event_name(ev->of_kind));
    }
    if (ev->kind == NT_EV_SANDBOXED) { /* scope: process | thread */
        nt_j_kstr(b, "scope", ev->action ? ev->action : "thread");
        nt_j_ku64(b, "connections", ev->count);
    }
    if (ev->message) {
        nt_j_key(b, "message");
        nt_j_str_fit(b, ev->message);
    }
    if (f->dropped)
        nt_j_ku64(b, "dropped", f->dropped);
    if (f->via)
        nt_j_kstr(b, "via", f->via);
}

/* Frames are optional: each one that does not fit is left out. */
static void put_backtrace(struct nt_jbuf *b, const struct nt_event *ev,
                          const struct nt_event_facts *f)
{
    struct nt_jmark m = nt_j_mark(b);
    nt_j_key(b, "backtrace");
    nt_j_open(b, '[');
    if (b->overflow) {
        nt_j_rollback(b, m);
        return;
    }
    f->frames(b, ev, f->frames_arg);
    if (b->overflow) /* frames must roll themselves back; be safe */
        b->overflow = 0;
    nt_j_close(b, ']');
}

/* Room kept back while building, for "]}\n" and the cut marker. */
#define NT_LINE_RESERVE 32

size_t nt_json_format_event(char *buf, size_t cap, const struct nt_event *ev,
                            const struct nt_event_facts *f)
{
    struct nt_jbuf b;
    nt_j_init(&b, buf, cap - NT_LINE_RESERVE);
    put_header(&b, ev, f);
    put_details(&b, ev, f);
    if (f->frames && !b.overflow)
        put_backtrace(&b, ev, f);
    if (b.overflow) {
        /* Cannot happen with cap >= 4 KiB (every string but the message
         * is bounded, and the message is cut to fit); keep the line valid
         * anyway. */
        nt_j_init(&b, buf, cap - NT_LINE_RESERVE);
        put_header(&b, ev, f);
        nt_j_kbool(&b, "truncated", 1);
        if (b.overflow)
            return 0;
    }
    b.cap = cap;
    nt_j_close(&b, '}');
    nt_j_raw(&b, "\n", 1);
    return b.len;
}
