/* Unit tests of the audit line formatter: json.c and event_format.c are
 * compiled into this test, nothing is preloaded. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "audit/event_format.h"

TestSuite(format, .timeout = 30);

/* ---- timestamps ---- */

static void ts_of(time_t secs, long nsec, char *out)
{
    struct timespec t = { .tv_sec = secs, .tv_nsec = nsec };
    nt_format_ts(out, &t);
}

Test(format, ts_known_values)
{
    char buf[NT_TS_LEN + 1];
    ts_of(0, 0, buf);
    cr_assert_str_eq(buf, "1970-01-01T00:00:00.000000Z");
    struct tm tm = { .tm_year = 126, .tm_mon = 10, .tm_mday = 21,
                     .tm_hour = 14, .tm_min = 20, .tm_sec = 54 };
    ts_of(timegm(&tm), 123456789, buf);
    cr_assert_str_eq(buf, "2026-11-21T14:20:54.123456Z");
    struct tm leap = { .tm_year = 124, .tm_mon = 1, .tm_mday = 29,
                       .tm_hour = 23, .tm_min = 59, .tm_sec = 59 };
    ts_of(timegm(&leap), 999999999, buf);
    cr_assert_str_eq(buf, "2024-02-29T23:59:59.999999Z");
}

/* The arithmetic agrees with gmtime_r everywhere from 1970 to 2400. */
Test(format, ts_matches_gmtime)
{
    srand(42);
    for (int i = 0; i < 200000; i++) {
        time_t t = (time_t)(((uint64_t)rand() << 31 | (uint64_t)rand()) %
                            13569465600ULL);
        char got[NT_TS_LEN + 1], want[64];
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(want, sizeof want, "%Y-%m-%dT%H:%M:%S.000007Z", &tm);
        ts_of(t, 7000, got);
        cr_assert_str_eq(got, want, "t=%lld", (long long)t);
    }
}

/* ---- small pieces ---- */

static char out[16384];

static const char *ms(int64_t ns)
{
    struct nt_jbuf b;
    nt_j_init(&b, out, sizeof out - 1);
    nt_j_ms(&b, ns);
    out[b.len] = 0;
    return out;
}

Test(format, milliseconds)
{
    cr_assert_str_eq(ms(2000000000), "2000");
    cr_assert_str_eq(ms(250000), "0.25");
    cr_assert_str_eq(ms(1500), "0.001");
    cr_assert_str_eq(ms(999), "0");
    cr_assert_str_eq(ms(1234567890), "1234.567");
    cr_assert_str_eq(ms(-5000000), "-5");
}

Test(format, errno_names)
{
    char num[12];
    cr_assert_str_eq(nt_errno_name(EPIPE, num), "EPIPE");
    cr_assert_str_eq(nt_errno_name(ECONNRESET, num), "ECONNRESET");
    cr_assert_str_eq(nt_errno_name(ETIMEDOUT, num), "ETIMEDOUT");
    cr_assert_str_eq(nt_errno_name(4095, num), "4095");
    cr_assert_str_eq(nt_event_name(NT_EV_EPIPE), "epipe");
    cr_assert_str_eq(nt_event_name(NT_EV_CLOSE), "close");
    cr_assert_str_eq(nt_event_name(NT_EV_EPIPE | NT_EV_CLOSE), "?");
}

Test(format, escaping)
{
    struct nt_jbuf b;
    nt_j_init(&b, out, sizeof out - 1);
    nt_j_str(&b, "a\"b\\c\nd\te\x01\xff");
    out[b.len] = 0;
    cr_assert_str_eq(out, "\"a\\\"b\\\\c\\nd\\te\\u0001\\u00ff\"");
}

Test(format, raw_overflow_is_all_or_nothing)
{
    char small[8];
    struct nt_jbuf b;
    nt_j_init(&b, small, sizeof small);
    nt_j_cstr(&b, "12345");
    nt_j_cstr(&b, "6789");
    cr_assert(b.overflow);
    cr_assert_eq(b.len, 5);
}

/* ---- addresses ---- */

static const char *addr(const union nt_addr *a, socklen_t len)
{
    struct nt_jbuf b;
    nt_j_init(&b, out, sizeof out - 1);
    if (!nt_format_addr(&b, a, len))
        return NULL;
    out[b.len] = 0;
    return out;
}

static const char *addr6(const char *text, int port)
{
    union nt_addr a = { .in6 = { .sin6_family = AF_INET6,
                                 .sin6_port = htons((uint16_t)port) } };
    cr_assert_eq(inet_pton(AF_INET6, text, &a.in6.sin6_addr), 1);
    return addr(&a, sizeof a.in6);
}

Test(format, addresses)
{
    union nt_addr a = { .in = { .sin_family = AF_INET,
                                .sin_port = htons(8080) } };
    inet_pton(AF_INET, "10.0.0.5", &a.in.sin_addr);
    cr_assert_str_eq(addr(&a, sizeof a.in), "10.0.0.5:8080");
    cr_assert_str_eq(addr6("::1", 443), "[::1]:443");
    cr_assert_str_eq(addr6("2001:db8::1", 80), "[2001:db8::1]:80");
    cr_assert_str_eq(addr6("2001:db8:0:0:1:0:0:1", 1),
                     "[2001:db8::1:0:0:1]:1");
    cr_assert_str_eq(addr6("2001:db8:0:1:1:1:1:1", 1),
                     "[2001:db8:0:1:1:1:1:1]:1");
    cr_assert_str_eq(addr6("::ffff:1.2.3.4", 9), "[::ffff:1.2.3.4]:9");
    cr_assert_str_eq(addr6("::", 9), "[::]:9");
    cr_assert_str_eq(addr6("fe80::", 9), "[fe80::]:9");
}

/* RFC 5952 text is what glibc's inet_ntop writes too (outside ::/96). */
Test(format, ipv6_matches_inet_ntop)
{
    srand(7);
    for (int i = 0; i < 100000; i++) {
        union nt_addr a = { .in6 = { .sin6_family = AF_INET6 } };
        uint8_t *p = a.in6.sin6_addr.s6_addr;
        for (int g = 0; g < 8; g++) {
            uint16_t v = rand() % 3 ? 0 : (uint16_t)rand();
            p[2 * g] = (uint8_t)(v >> 8);
            p[2 * g + 1] = (uint8_t)v;
        }
        if (p[0] == 0 && p[1] == 0)
            p[1] = 1; /* ::/96 prints as ::a.b.c.d in glibc */
        char want[INET6_ADDRSTRLEN + 16], text[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, p, text, sizeof text);
        snprintf(want, sizeof want, "[%s]:0", text);
        cr_assert_str_eq(addr(&a, sizeof a.in6), want);
    }
}

Test(format, unix_addresses)
{
    union nt_addr a = { .un = { .sun_family = AF_UNIX,
                                .sun_path = "/run/app.sock" } };
    socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 14);
    cr_assert_str_eq(addr(&a, len), "/run/app.sock");
    memcpy(a.un.sun_path, "\0abs\"x", 6);
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 6);
    cr_assert_str_eq(addr(&a, len), "@abs\\\"x");
    cr_assert_null(addr(&a, sizeof(sa_family_t))); /* unnamed */
    cr_assert_null(addr(&a, 0));
}

/* ---- whole events ---- */

static struct nt_event_facts facts(void)
{
    struct nt_event_facts f = {
        .wall = { .tv_sec = 1795270854, .tv_nsec = 123456000 },
        .now = 10000000000LL, .pid = 42, .tid = 43, .prog = "srv",
        .peer_closed = 1,
    };
    return f;
}

static void two_frames(struct nt_jbuf *b, const struct nt_event *ev,
                       void *arg)
{
    nt_j_elem(b);
    nt_j_str(b, "write_response+0x37 (/usr/bin/srv+0x13a0)");
    nt_j_elem(b);
    nt_j_str(b, "main+0x15f (/usr/bin/srv+0x1c75)");
}

static struct nt_conn conn(void)
{
    static const struct nt_settings set = { .rule = "web" };
    struct nt_conn c = { .role = NT_ROLE_INBOUND, .family = AF_INET,
                         .t_open = 7500000000LL, .t_last = 9000000000LL,
                         .bytes_in = 120, .bytes_out = 65555, .set = &set };
    union nt_addr a = { .in = { .sin_family = AF_INET,
                                .sin_port = htons(8080),
                                .sin_addr = { htonl(0x7f000001) } } };
    nt_conn_set_addr(&c, 0, &a, sizeof a.in);
    a.in = (struct sockaddr_in){ .sin_family = AF_INET,
                                 .sin_port = htons(5555),
                                 .sin_addr = { htonl(0x0a000005) } };
    nt_conn_set_addr(&c, 1, &a, sizeof a.in);
    return c;
}

static const char *format(const struct nt_event *ev,
                          const struct nt_event_facts *f, size_t cap)
{
    size_t n = nt_json_format_event(out, cap, ev, f);
    cr_assert(n > 0 && n < cap);
    out[n] = 0;
    return out;
}

Test(format, epipe_event_exact)
{
    struct nt_conn c = conn();
    struct nt_event ev = { .kind = NT_EV_EPIPE, .fd = 5, .op = "write",
                           .conn = &c, .err = EPIPE };
    struct nt_event_facts f = facts();
    f.frames = two_frames;
    cr_assert_str_eq(format(&ev, &f, 8192),
        "{\"ts\":\"2026-11-21T14:20:54.123456Z\",\"event\":\"epipe\","
        "\"pid\":42,\"tid\":43,\"prog\":\"srv\",\"fd\":5,\"op\":\"write\","
        "\"dir\":\"inbound\",\"local\":\"127.0.0.1:8080\","
        "\"remote\":\"10.0.0.5:5555\",\"rule\":\"web\",\"errno\":\"EPIPE\","
        "\"age_ms\":2500,\"bytes_in\":120,\"bytes_out\":65555,"
        "\"idle_ms\":1000,\"peer_closed\":true,\"backtrace\":["
        "\"write_response+0x37 (/usr/bin/srv+0x13a0)\","
        "\"main+0x15f (/usr/bin/srv+0x1c75)\"]}\n");
}

Test(format, timeout_event_and_defaults_rule)
{
    struct nt_conn c = conn();
    c.set = NULL;
    c.role = NT_ROLE_INHERITED;
    struct nt_event ev = { .kind = NT_EV_TIMEOUT, .fd = 3, .op = "timer",
                           .conn = &c, .err = ETIMEDOUT,
                           .timeout = "idle_timeout", .limit = 60000000000LL,
                           .elapsed = 60001500000LL, .action = "shutdown" };
    struct nt_event_facts f = facts();
    f.frames = two_frames;
    const char *line = format(&ev, &f, 8192);
    cr_assert(strstr(line, "\"dir\":\"inbound\",\"inherited\":true,"));
    cr_assert(strstr(line, "\"rule\":null,\"errno\":\"ETIMEDOUT\","
                           "\"timeout\":\"idle_timeout\",\"limit_ms\":60000,"
                           "\"elapsed_ms\":60001.5,\"action\":\"shutdown\","));
}

Test(format, config_event_has_no_connection_fields)
{
    struct nt_event ev = { .kind = NT_EV_CONFIG_ERROR, .fd = -1,
                           .message = "x.conf:3: unknown key \"foo\"" };
    struct nt_event_facts f = facts();
    f.dropped = 3;
    const char *line = format(&ev, &f, 8192);
    cr_assert(strstr(line, "\"event\":\"config_error\",\"pid\":42,\"tid\":43,"
                           "\"prog\":\"srv\",\"message\":\"x.conf:3: "
                           "unknown key \\\"foo\\\"\",\"dropped\":3}\n"));
    cr_assert_null(strstr(line, "\"fd\""));
    cr_assert_null(strstr(line, "backtrace"));
}

Test(format, suppressed_event)
{
    struct nt_event ev = { .kind = NT_EV_SUPPRESSED, .fd = -1, .op = "send",
                           .count = 950, .of_kind = NT_EV_EPIPE };
    struct nt_event_facts f = facts();
    const char *line = format(&ev, &f, 8192);
    cr_assert(strstr(line, "\"op\":\"send\",\"count\":950,"
                           "\"suppressed_event\":\"epipe\"}\n"));
}

static void many_frames(struct nt_jbuf *b, const struct nt_event *ev,
                        void *arg)
{
    for (int i = 0; i < 1000; i++) {
        struct nt_jmark m = nt_j_mark(b);
        nt_j_elem(b);
        nt_j_str(b, "some_rather_long_function_name+0x1234 (/usr/lib/x.so+0x5678)");
        if (b->overflow) {
            nt_j_rollback(b, m);
            return;
        }
    }
}

/* A line that cannot hold every frame keeps as many as fit and stays a
 * valid object. */
Test(format, frames_are_cut_not_the_line)
{
    struct nt_conn c = conn();
    struct nt_event ev = { .kind = NT_EV_EPIPE, .fd = 5, .op = "write",
                           .conn = &c, .err = EPIPE };
    struct nt_event_facts f = facts();
    f.frames = many_frames;
    const char *line = format(&ev, &f, 1024);
    size_t n = strlen(line);
    cr_assert(n <= 1024);
    cr_assert_str_eq(line + n - 5, ")\"]}\n");
    cr_assert(strstr(line, "\"backtrace\":[\"some_rather"));
}

Test(format, huge_message_is_cut_validly)
{
    static char msg[20000];
    memset(msg, '"', sizeof msg - 1);
    struct nt_event ev = { .kind = NT_EV_CONFIG_ERROR, .fd = -1,
                           .message = msg };
    struct nt_event_facts f = facts();
    const char *line = format(&ev, &f, 8192);
    size_t n = strlen(line);
    cr_assert(n <= 8192);
    cr_assert_str_eq(line + n - 8, "\\\"...\"}\n");
}
