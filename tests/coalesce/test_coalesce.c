/* Write coalescing (SPEC section 6), observed from outside: co_prog runs
 * under the library (never this test process), the test is the peer and
 * counts what arrives, the syscalls the program made (strace -c) and the
 * segments it sent (TCP_INFO of the test's own socket). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "nttest_cr.h"
#include "records.h"

#define PROG NT_PROG("co_prog")
#define BUFFER_OPTS "coalesce=16KiB coalesce_delay=1ms coalesce_mode=buffer"
#define CORK_OPTS "coalesce=16KiB coalesce_delay=1ms coalesce_mode=cork"

TestSuite(coalesce, .timeout = 90);

/* ---- helpers ------------------------------------------------------------ */

/* "NETTIMEO_OPTIONS=..." in a static slot (nt_spawn copies it). */
static const char *opts_env(const char *opts)
{
    static char slots[4][512];
    static unsigned next;
    char *e = slots[next++ % 4];
    snprintf(e, sizeof slots[0], "NETTIMEO_OPTIONS=%s", opts);
    return e;
}

/* "LD_PRELOAD=..." for strace -E. */
static const char *preload_env(void)
{
    static char buf[4200];
    snprintf(buf, sizeof buf, "LD_PRELOAD=%s", nt_preload_value());
    return buf;
}

struct stream {
    int fd;
    char *buf;
    size_t len, cap;
    bool eof;
};

static void stream_add(struct stream *s, const char *p, size_t n)
{
    if (s->len + n > s->cap) {
        s->cap = (s->len + n) * 2 + 65536;
        s->buf = realloc(s->buf, s->cap);
    }
    memcpy(s->buf + s->len, p, n);
    s->len += n;
}

/* Accept `want` connections on lfd (in order) and read each to EOF.
 * Returns how many reached EOF before timeout_ms. */
static int collect(int lfd, struct stream *st, int want, int timeout_ms)
{
    int accepted = 0, done = 0;
    int64_t deadline = nt_now_ms() + timeout_ms;
    char buf[65536];
    while (done < want && nt_now_ms() < deadline) {
        struct pollfd p[9];
        int n = 0, map[9];
        if (accepted < want) {
            p[n] = (struct pollfd){ lfd, POLLIN, 0 };
            map[n++] = -1;
        }
        for (int i = 0; i < accepted && n < 9; i++)
            if (!st[i].eof) {
                p[n] = (struct pollfd){ st[i].fd, POLLIN, 0 };
                map[n++] = i;
            }
        if (poll(p, (nfds_t)n, 100) <= 0)
            continue;
        for (int k = 0; k < n; k++) {
            if (!p[k].revents)
                continue;
            if (map[k] < 0) {
                st[accepted] = (struct stream){ .fd = accept(lfd, NULL, NULL) };
                cr_assert_geq(st[accepted].fd, 0, "accept: %s", strerror(errno));
                accepted++;
                continue;
            }
            struct stream *s = &st[map[k]];
            ssize_t r = read(s->fd, buf, sizeof buf);
            if (r > 0) {
                stream_add(s, buf, (size_t)r);
            } else if (r == 0 || errno != EINTR) {
                s->eof = true;
                close(s->fd);
                done++;
            }
        }
    }
    return done;
}

static void streams_free(struct stream *st, int n)
{
    for (int i = 0; i < n; i++)
        free(st[i].buf);
}

/* The records of one stream, starting at writer 0's record `first`. */
static void assert_records(const struct stream *s, unsigned first,
                           long expect, const char *what)
{
    unsigned next[REC_WRITERS] = { 0 };
    char why[200] = "";
    next[0] = first;
    long n = rec_check(s->buf, s->len, next, why, sizeof why);
    cr_assert_eq(n, expect, "%s: %ld records (%s), expected %ld", what, n,
                 why, expect);
}

/* strace -c -U name,calls: the "total" line. */
static long strace_total(const char *path)
{
    char *text = nt_read_file(path, NULL);
    cr_assert_not_null(text, "no strace output at %s", path);
    long calls = -1;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n"))
        if (sscanf(line, "total %ld", &calls) == 1)
            break;
    free(text);
    return calls;
}

#define STRACE_COUNT "strace", "-f", "-c", "-U", "name,calls", "-e", \
                     "trace=write,sendmsg,sendto,writev"

/* The client side of `co_prog serve`: RESPONSES requests, each answered by
 * `bytes` pattern bytes, checked. Returns segments received (TCP_INFO). */
static long drive_server(const struct nt_server *s, long responses,
                         size_t bytes)
{
    struct nt_addr a;
    nt_addr_from_line(NT_TCP4, s->line, &a);
    int fd = nt_connect(&a, 3000);
    cr_assert_geq(fd, 0, "connect to co_prog serve");
    unsigned char *buf = malloc(bytes);
    uint64_t off = 0;
    for (long r = 0; r < responses; r++) {
        cr_assert_eq(write(fd, "R", 1), 1);
        ssize_t got = pc_read_full(fd, buf, bytes);
        cr_assert_eq(got, (ssize_t)bytes, "response %ld: %zd bytes", r, got);
        long bad = pc_pattern_check(buf, bytes, off);
        cr_assert_lt(bad, 0, "response %ld: byte %ld differs", r, bad);
        off += bytes;
    }
    struct tcp_info ti = { 0 };
    socklen_t len = sizeof ti;
    getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len);
    shutdown(fd, SHUT_WR);
    char c;
    while (read(fd, &c, 1) > 0)
        ;
    close(fd);
    free(buf);
    return (long)ti.tcpi_segs_in;
}

struct serve_result {
    long syscalls;  /* write-family calls (strace), or -1 */
    long segs;      /* segments the test received */
    int64_t ms;     /* the exchanges took */
    char out[256];  /* the server's last words */
};

/* Run a server (argv; prints its port) under the library with opts (NULL:
 * no coalescing keys), optionally under strace -c, and drive it. */
static struct serve_result serve_argv(const char *opts, bool use_strace,
                                      const char *const argv[],
                                      long responses, size_t bytes)
{
    struct serve_result res = { -1, -1, 0, "" };
    char *trace = nt_path("strace.out");
    const char *traced[32] = { STRACE_COUNT, "-o", trace, "-E",
                               preload_env() };
    size_t n = 0;
    while (traced[n])
        n++;
    for (size_t i = 0; argv[i] && n < 31; i++)
        traced[n++] = argv[i];
    traced[n] = NULL;
    struct nt_spawn_opts o = { .no_preload = use_strace,
                               .env = NT_ENV(opts_env(opts ? opts : "")) };
    struct nt_server s;
    cr_assert_eq(nt_server_start(&s, use_strace ? traced : argv, &o, 10000),
                 0, "%s did not start", argv[0]);
    int64_t t0 = nt_now_ms();
    res.segs = drive_server(&s, responses, bytes);
    res.ms = nt_now_ms() - t0;
    int status;
    char *rest = NULL;
    nt_server_stop(&s, 20000, &status, &rest);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "%s: status %#x: %s", argv[0], status, rest ? rest : "");
    snprintf(res.out, sizeof res.out, "%s", rest ? rest : "");
    free(rest);
    if (use_strace)
        res.syscalls = strace_total(trace);
    free(trace);
    return res;
}

/* `co_prog serve MODE RESPONSES WRITES SIZE` */
static struct serve_result serve(const char *opts, bool use_strace,
                                 const char *mode, long responses,
                                 long writes, long size)
{
    char r[16], w[16], z[16];
    snprintf(r, sizeof r, "%ld", responses);
    snprintf(w, sizeof w, "%ld", writes);
    snprintf(z, sizeof z, "%ld", size);
    return serve_argv(opts, use_strace,
                      NT_ARGV(PROG, "serve", mode, r, w, z), responses,
                      (size_t)(writes * size));
}

/* ---- fewer syscalls, same bytes ----------------------------------------- */

Test(coalesce, tiny_writes_tenfold_fewer_syscalls)
{
    const long responses = 20, writes = 2000;
    struct serve_result off = serve(NULL, true, "block", responses, writes, 8);
    struct serve_result on = serve(BUFFER_OPTS, true, "block", responses,
                                   writes, 8);
    cr_log_info("write syscalls for %ld responses: %ld without coalescing, "
                "%ld with coalesce_mode=buffer", responses, off.syscalls,
                on.syscalls);
    /* without coalescing every piece is a syscall: the test can fail */
    cr_assert_geq(off.syscalls, responses * writes);
    cr_assert_gt(on.syscalls, 0);
    cr_assert_leq(on.syscalls * 10, off.syscalls,
                  "%ld syscalls with coalescing, %ld without", on.syscalls,
                  off.syscalls);
    /* 16,000 bytes per response fit one 16 KiB buffer: about one flush */
    cr_assert_leq(on.syscalls, responses * 3);
}

/* Many MB through every server loop, every write size class: small pieces,
 * pieces that straddle the buffer, pieces bigger than the buffer. */
Test(coalesce, bytes_identical_over_many_megabytes)
{
    static const struct { const char *mode; long responses, writes, size; }
    runs[] = {
        { "block", 200, 2000, 8 },      /* 3.2 MB of tiny writes */
        { "poll", 200, 2000, 8 },
        { "epoll", 200, 2000, 8 },
        { "block", 100, 700, 97 },      /* straddles the 16 KiB buffer */
        { "epoll", 100, 700, 97 },
        { "block", 20, 12, 20000 },     /* larger than the buffer */
        { "poll", 40, 300, 1500 },
    };
    for (size_t i = 0; i < sizeof runs / sizeof runs[0]; i++)
        serve(BUFFER_OPTS, false, runs[i].mode, runs[i].responses,
              runs[i].writes, runs[i].size);
    for (size_t i = 0; i < 3; i++)
        serve(CORK_OPTS, false, runs[i].mode, runs[i].responses,
              runs[i].writes, runs[i].size);
}

Test(coalesce, cork_mode_fewer_segments_same_bytes)
{
    const long responses = 50, writes = 2000;
    /* A server that writes in small pieces sets TCP_NODELAY (or it would
     * meet the Nagle/delayed-ACK stall): "block+nd". */
    struct serve_result none = serve(NULL, false, "block+nd", responses,
                                     writes, 8);
    /* 2,000 real sends take a few ms on a busy machine: with a 1 ms delay
     * the timer releases mid-response (as it should); 50 ms measures the
     * release at the program's read */
    struct serve_result cork = serve(
        "coalesce=16KiB coalesce_delay=50ms coalesce_mode=cork", false,
        "block+nd", responses, writes, 8);
    struct serve_result buf = serve(BUFFER_OPTS, false, "block+nd",
                                    responses, writes, 8);
    cr_log_info("segments per response: %.1f without coalescing, %.1f cork, "
                "%.1f buffer", (double)none.segs / responses,
                (double)cork.segs / responses, (double)buf.segs / responses);
    cr_assert_gt(none.segs, responses * 3,
                 "the baseline should need several segments per response");
    cr_assert_leq(cork.segs * 3, none.segs, "cork: %ld segments, none: %ld",
                  cork.segs, none.segs);
    cr_assert_leq(cork.segs, responses * 3);
    cr_assert_leq(buf.segs, responses * 3);
    /* and no stall: a cork never released waits ~200 ms per response */
    cr_assert_lt(cork.ms, 4000, "cork: %ld responses took %lld ms",
                 responses, (long long)cork.ms);
    cr_assert_lt(buf.ms, 4000, "buffer: %ld responses took %lld ms",
                 responses, (long long)buf.ms);
}

/* ---- no Nagle/delayed-ACK stall: reads and waits flush ------------------ */

static void pingpong(const char *mode, const char *family, const char *opts)
{
    struct nt_result r;
    struct nt_spawn_opts o = { .env = NT_ENV(opts_env(opts)) };
    int64_t t0 = nt_now_ms();
    cr_assert_eq(nt_run(NT_ARGV(PROG, "pingpong", "200", "50", mode, family),
                        &o, 30000, &r), 0);
    int64_t ms = nt_now_ms() - t0;
    nt_assert_exit(&r, 0, "pingpong");
    cr_assert_lt(ms, 5000, "200 round trips (%s, %s) took %lld ms", mode,
                 family, (long long)ms);
    nt_result_free(&r);
}

#define SLOW_BUFFER "coalesce=16KiB coalesce_delay=500ms coalesce_mode=buffer"
#define SLOW_CORK "coalesce=16KiB coalesce_delay=500ms coalesce_mode=cork"

Test(coalesce, pingpong_not_slowed_blocking)
{
    pingpong("block", "tcp4", SLOW_BUFFER);
    pingpong("block", "unix", SLOW_BUFFER);
    pingpong("block", "tcp4", SLOW_CORK);
}

Test(coalesce, pingpong_not_slowed_event_loops)
{
    pingpong("poll", "tcp4", SLOW_BUFFER);
    pingpong("epoll", "tcp6", SLOW_BUFFER);
    pingpong("epoll", "tcp4", SLOW_CORK);
}

/* ---- every record exactly once, in order -------------------------------- */

#define REC_BUFFER "coalesce=16KiB coalesce_delay=200ms"
#define REC_CORK "coalesce=16KiB coalesce_delay=200ms coalesce_mode=cork"

/* Run argv ("@ADDR" replaced by the listener's address) under opts and
 * check the records of each connection it makes. */
static void records_argv(const char *const argv[], const char *opts,
                         const char *mode, int conns, const long expect[],
                         const unsigned first[])
{
    struct nt_addr a;
    int lfd = nt_listen(NT_TCP4, 8, &a);
    cr_assert_geq(lfd, 0);
    const char *args[16];
    int k = 0;
    for (; argv[k] && k < 15; k++)
        args[k] = strcmp(argv[k], "@ADDR") ? argv[k] : a.str;
    args[k] = NULL;
    struct nt_spawn_opts o = { .env = NT_ENV(opts_env(opts)) };
    pid_t pid = nt_spawn(args, &o);
    cr_assert_gt(pid, 0);
    struct stream st[4] = { 0 };
    int done = collect(lfd, st, conns, 15000);
    int status;
    cr_assert_eq(nt_wait_timeout(pid, 10000, &status), 0, "%s: hung", mode);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "%s: status %#x", mode, status);
    cr_assert_eq(done, conns, "%s: %d of %d connections ended", mode, done,
                 conns);
    for (int i = 0; i < conns; i++) {
        char what[64];
        snprintf(what, sizeof what, "%s (%s), connection %d", mode, opts,
                 i + 1);
        assert_records(&st[i], first[i], expect[i], what);
    }
    streams_free(st, conns);
    close(lfd);
}

static void records_opts(const char *mode, const char *opts, int conns,
                         const long expect[], const unsigned first[])
{
    records_argv(NT_ARGV(PROG, "records", mode, "@ADDR", "200"), opts, mode,
                 conns, expect, first);
}

static void records_case(const char *mode, int conns, const long expect[],
                         const unsigned first[])
{
    records_opts(mode, REC_BUFFER, conns, expect, first);
}

Test(coalesce, records_close_and_exit)
{
    records_case("plain", 1, (long[]){ 200 }, (unsigned[]){ 0 });
    records_case("_exit", 1, (long[]){ 200 }, (unsigned[]){ 0 });
}

Test(coalesce, records_across_fork)
{
    records_case("fork-exit", 1, (long[]){ 600 }, (unsigned[]){ 0 });
    records_case("fork-_exit", 1, (long[]){ 600 }, (unsigned[]){ 0 });
}

Test(coalesce, records_across_exec_and_spawn)
{
    records_case("exec", 1, (long[]){ 400 }, (unsigned[]){ 0 });
    records_case("spawn", 1, (long[]){ 600 }, (unsigned[]){ 0 });
}

Test(coalesce, records_dup2_over_buffered_fd_and_dup)
{
    records_case("dup2", 2, (long[]){ 200, 200 }, (unsigned[]){ 0, 200 });
    records_case("dup", 1, (long[]){ 400 }, (unsigned[]){ 0 });
}

/* stdio on the socket (fdopen) bypasses the hooks: buffered records must
 * not be overtaken by fprintf'ed ones. */
Test(coalesce, records_fdopen_stdio)
{
    records_case("fdopen", 1, (long[]){ 600 }, (unsigned[]){ 0 });
}

/* Bytes reach the socket within coalesce_delay even if the program makes
 * no further call: it writes, then sleeps far longer than the delay. */
Test(coalesce, delay_flushes_without_any_call)
{
    struct nt_addr a;
    int lfd = nt_listen(NT_TCP4, 1, &a);
    struct nt_spawn_opts o = { .env = NT_ENV(opts_env(
                                   "coalesce=16KiB coalesce_delay=50ms")) };
    pid_t pid = nt_spawn(NT_ARGV(PROG, "records", "sleep", a.str, "200"), &o);
    cr_assert_gt(pid, 0);
    struct pollfd p = { lfd, POLLIN, 0 };
    cr_assert_eq(poll(&p, 1, 10000), 1, "co_prog did not connect");
    int fd = accept(lfd, NULL, NULL);
    size_t want = 0;
    char rec[REC_MAX];
    for (unsigned i = 0; i < 200; i++)
        want += rec_make(rec, 0, i);
    struct stream s = { .fd = fd };
    int64_t t0 = nt_now_ms();
    while (s.len < want && nt_now_ms() - t0 < 2500) {
        struct pollfd q = { fd, POLLIN, 0 };
        char buf[4096];
        if (poll(&q, 1, 100) == 1) {
            ssize_t r = read(fd, buf, sizeof buf);
            if (r <= 0)
                break;
            stream_add(&s, buf, (size_t)r);
        }
    }
    int64_t ms = nt_now_ms() - t0;
    nt_kill(pid);
    close(fd);
    close(lfd);
    cr_assert_eq(s.len, want, "%zu of %zu bytes while the program slept",
                 s.len, want);
    cr_assert_lt(ms, 1000, "bytes took %lld ms (delay 50 ms)", (long long)ms);
    assert_records(&s, 0, 200, "sleep");
    free(s.buf);
}

/* ---- threads writing to one socket -------------------------------------- */

Test(coalesce, threads_records_intact)
{
    struct nt_addr a;
    int lfd = nt_listen(NT_TCP4, 1, &a);
    struct nt_spawn_opts o = { .env = NT_ENV(opts_env(BUFFER_OPTS)) };
    pid_t pid = nt_spawn(NT_ARGV(PROG, "threads", a.str, "8", "3000"), &o);
    struct stream st[1] = { 0 };
    int done = collect(lfd, st, 1, 30000);
    int status;
    cr_assert_eq(nt_wait_timeout(pid, 10000, &status), 0, "threads: hung");
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_assert_eq(done, 1);
    unsigned next[REC_WRITERS] = { 0 };
    char why[200] = "";
    long n = rec_check(st[0].buf, st[0].len, next, why, sizeof why);
    cr_assert_eq(n, 8 * 3000, "%ld records: %s", n, why);
    for (int w = 0; w < 8; w++)
        cr_assert_eq(next[w], 3000, "writer %d: %u records", w, next[w]);
    streams_free(st, 1);
    close(lfd);
}

/* A signal handler writes into the socket while the program is inside the
 * library on it: no deadlock, every record of both writers intact. */
Test(coalesce, signal_handler_writes_same_socket)
{
    struct nt_addr a;
    int lfd = nt_listen(NT_TCP4, 1, &a);
    char *out = nt_path("signals.out");
    struct nt_spawn_opts o = { .env = NT_ENV(opts_env(BUFFER_OPTS)),
                               .out_path = out };
    pid_t pid = nt_spawn(NT_ARGV(PROG, "signals", a.str, "100000"), &o);
    struct stream st[1] = { 0 };
    int done = collect(lfd, st, 1, 60000);
    int status;
    cr_assert_eq(nt_wait_timeout(pid, 10000, &status), 0, "signals: hung");
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_assert_eq(done, 1);
    char *text = nt_read_file(out, NULL);
    long handler = -1;
    const char *h = text ? strstr(text, "handler_records=") : NULL;
    if (h)
        handler = strtol(h + 16, NULL, 10);
    /* The main flow's records in order; the handler's each exactly once
     * and intact (in order too, except when it interrupted the library
     * inside its own critical section on this socket: see coalesce.c). */
    unsigned next[REC_WRITERS] = { 0 };
    static unsigned char seen[20000];
    memset(seen, 0, sizeof seen);
    char why[200] = "";
    long n = rec_check_loose(st[0].buf, st[0].len, next, 1, seen, sizeof seen,
                             why, sizeof why);
    cr_log_info("signals: %ld records from the handler", handler);
    cr_assert_eq(n, 100000 + handler, "%ld records: %s", n, why);
    cr_assert_eq(next[0], 100000);
    cr_assert_eq(next[1], handler);
    streams_free(st, 1);
    free(text);
    free(out);
    close(lfd);
}

Test(coalesce, fork_while_threads_write)
{
    struct nt_addr a;
    int lfd = nt_listen(NT_TCP4, 1, &a);
    struct nt_spawn_opts o = { .env = NT_ENV(opts_env(BUFFER_OPTS)) };
    pid_t pid = nt_spawn(NT_ARGV(PROG, "forkstress", a.str, "4", "50"), &o);
    struct stream st[1] = { 0 };
    int done = collect(lfd, st, 1, 60000);
    int status;
    cr_assert_eq(nt_wait_timeout(pid, 10000, &status), 0, "forkstress: hung");
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    cr_assert_eq(done, 1);
    unsigned next[REC_WRITERS] = { 0 };
    char why[200] = "";
    long n = rec_check(st[0].buf, st[0].len, next, why, sizeof why);
    cr_assert_eq(n, 4 * 4000, "%ld records: %s", n, why);
    streams_free(st, 1);
    close(lfd);
}

/* ---- order around MSG_OOB and sendfile ---------------------------------- */

static struct stream one_connection(const char *const argv[], const char *opts,
                                    bool oobinline)
{
    struct nt_addr a;
    int lfd = nt_listen(NT_TCP4, 1, &a);
    const char *args[8];
    int n = 0;
    for (; argv[n]; n++)
        args[n] = strcmp(argv[n], "@ADDR") ? argv[n] : a.str;
    args[n] = NULL;
    struct nt_spawn_opts o = { .env = NT_ENV(opts_env(opts)) };
    pid_t pid = nt_spawn(args, &o);
    struct pollfd p = { lfd, POLLIN, 0 };
    cr_assert_eq(poll(&p, 1, 10000), 1, "%s did not connect", argv[1]);
    int fd = accept(lfd, NULL, NULL);
    int one = 1;
    if (oobinline)
        setsockopt(fd, SOL_SOCKET, SO_OOBINLINE, &one, sizeof one);
    struct stream s = { .fd = fd };
    char buf[65536];
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0)
        stream_add(&s, buf, (size_t)r);
    close(fd);
    close(lfd);
    int status;
    cr_assert_eq(nt_wait_timeout(pid, 10000, &status), 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "%s: status %#x", argv[1], status);
    return s;
}

static char *repeat(const char *unit, int times)
{
    size_t u = strlen(unit);
    char *s = malloc(u * (size_t)times + 1);
    for (int i = 0; i < times; i++)
        memcpy(s + u * (size_t)i, unit, u);
    s[u * (size_t)times] = 0;
    return s;
}

Test(coalesce, oob_keeps_its_place)
{
    char *a = repeat("abc", 100), *d = repeat("def", 100), *want;
    cr_assert(asprintf(&want, "%sX%s", a, d) > 0);
    struct stream s = one_connection(NT_ARGV(PROG, "oob", "@ADDR"),
                                     BUFFER_OPTS, true);
    cr_assert_eq(s.len, strlen(want), "%zu bytes", s.len);
    cr_assert(memcmp(s.buf, want, s.len) == 0,
              "the OOB byte is out of place: %.*s", (int)s.len, s.buf);
    free(s.buf);
    free(want);
    free(a);
    free(d);
}

Test(coalesce, sendfile_after_buffered_bytes)
{
    char *path = nt_path("sendfile.data");
    unsigned char data[100000];
    pc_pattern(data, sizeof data, 7);
    cr_assert_eq(nt_write_file(path, data, sizeof data), 0);
    struct stream s = one_connection(NT_ARGV(PROG, "sendfile", "@ADDR", path),
                                     BUFFER_OPTS, false);
    char *h = repeat("head", 100), *t = repeat("tail", 100);
    cr_assert_eq(s.len, 400 + sizeof data + 400);
    cr_assert(memcmp(s.buf, h, 400) == 0, "header out of place");
    cr_assert(memcmp(s.buf + 400, data, sizeof data) == 0, "file out of place");
    cr_assert(memcmp(s.buf + 400 + sizeof data, t, 400) == 0);
    free(s.buf);
    free(path);
    free(h);
    free(t);
}

/* The program corks by itself: its writes pass straight through (what it
 * asked the kernel for stays in force), bytes identical. */
Test(coalesce, program_cork_passes_through)
{
    struct nt_addr a;
    int lfd = nt_listen(NT_TCP4, 1, &a);
    char *trace = nt_path("strace.usercork");
    const char *preload = preload_env();
    struct nt_spawn_opts o = { .no_preload = true,
                               .env = NT_ENV(opts_env(BUFFER_OPTS)) };
    pid_t pid = nt_spawn(NT_ARGV(STRACE_COUNT, "-o", trace, "-E", preload,
                                 PROG, "usercork", a.str, "500"), &o);
    struct stream st[1] = { 0 };
    cr_assert_eq(collect(lfd, st, 1, 15000), 1);
    int status;
    cr_assert_eq(nt_wait_timeout(pid, 10000, &status), 0);
    cr_assert_eq(st[0].len, 4000);
    cr_assert_lt(pc_pattern_check((unsigned char *)st[0].buf, 4000, 0), 0);
    long calls = strace_total(trace);
    cr_assert_geq(calls, 500, "%ld write calls: the program's cork was "
                  "replaced by the library's buffer", calls);
    streams_free(st, 1);
    free(trace);
    close(lfd);
}

/* A child process (system(), popen(), a spawned or forked helper) shares
 * the socket and corks its writes, while the parent holds TCP_CORK over a
 * partial record of its own. The child's cork release must leave that
 * cork alone: without the library, the kernel holds the parent's record
 * and the child's later bytes until the parent uncorks (400 ms later
 * here). A release by TCP_NODELAY pushed them at once. */
static void shared_cork_case(const char *how, bool preload)
{
    struct nt_addr a;
    int lfd = nt_listen(NT_TCP4, 1, &a);
    struct nt_spawn_opts o = { .no_preload = !preload,
                               .env = NT_ENV(opts_env(CORK_OPTS)) };
    pid_t pid = nt_spawn(NT_ARGV(PROG, "sharedcork", a.str, how), &o);
    struct pollfd p = { lfd, POLLIN, 0 };
    cr_assert_eq(poll(&p, 1, 10000), 1, "sharedcork did not connect");
    int fd = accept(lfd, NULL, NULL);
    struct stream s = { .fd = fd };
    char buf[256];
    int64_t t20 = -1, t40 = -1;
    ssize_t r;
    while ((r = read(fd, buf, sizeof buf)) > 0) {
        stream_add(&s, buf, (size_t)r);
        if (t20 < 0 && s.len >= 20)
            t20 = nt_now_ms();
        if (t40 < 0 && s.len >= 40)
            t40 = nt_now_ms();
    }
    close(fd);
    close(lfd);
    int status;
    cr_assert_eq(nt_wait_timeout(pid, 10000, &status), 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "sharedcork %s: status %#x", how, status);
    const char *want = "aaaaaaaaaabbbbbbbbbbPPPPPPPPPPcccccccccc";
    cr_assert_eq(s.len, 40, "%s: %zu bytes", how, s.len);
    cr_assert(memcmp(s.buf, want, 40) == 0, "%s: %.40s", how, s.buf);
    cr_assert_geq(t40 - t20, 200, "%s child%s: the corked bytes came %lld ms "
                  "after the first 20, not when the parent uncorked "
                  "(400 ms)", how, preload ? "" : " (no library)",
                  (long long)(t40 - t20));
    free(s.buf);
}

Test(coalesce, cork_child_release_keeps_parent_tcp_cork)
{
    shared_cork_case("exec", false); /* the kernel's own behaviour */
    shared_cork_case("exec", true);
    shared_cork_case("fork", true);
}

/* ---- non-blocking writer, slow reader ------------------------------------ */

Test(coalesce, nonblocking_slow_reader_back_pressure)
{
    struct nt_addr a;
    int lfd = nt_listen(NT_TCP4, 1, &a);
    int small = 16384;
    setsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    const size_t total = 2u << 20;
    char *out = nt_path("nbslow.out");
    struct nt_spawn_opts o = { .env = NT_ENV(opts_env(BUFFER_OPTS)),
                               .out_path = out };
    pid_t pid = nt_spawn(NT_ARGV(PROG, "nbslow", a.str, "2097152", "100"), &o);
    struct pollfd p = { lfd, POLLIN, 0 };
    cr_assert_eq(poll(&p, 1, 10000), 1);
    int fd = accept(lfd, NULL, NULL);
    unsigned char *buf = malloc(total);
    size_t got = 0;
    int64_t deadline = nt_now_ms() + 40000;
    while (got < total && nt_now_ms() < deadline) {
        struct pollfd q = { fd, POLLIN, 0 };
        if (poll(&q, 1, 100) != 1)
            continue;
        size_t want = total - got < 8192 ? total - got : 8192;
        ssize_t r = read(fd, buf + got, want);
        if (r <= 0)
            break;
        got += (size_t)r;
        if (got < total / 2)
            nt_sleep_ms(1); /* slow at first: the writer meets back-pressure */
    }
    cr_assert_eq(got, total, "%zu of %zu bytes arrived", got, total);
    cr_assert_lt(pc_pattern_check(buf, total, 0), 0, "bytes differ");
    cr_assert_eq(write(fd, "D", 1), 1);
    int status;
    cr_assert_eq(nt_wait_timeout(pid, 10000, &status), 0);
    char *text = nt_read_file(out, NULL);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "nbslow: %s",
              text ? text : "");
    long eagain = -1;
    const char *e = text ? strstr(text, "eagain=") : NULL;
    if (e)
        eagain = strtol(e + 7, NULL, 10);
    cr_log_info("nbslow: %s", text ? text : "");
    cr_assert_gt(eagain, 0, "the writer never saw back-pressure: %s", text);
    free(text);
    free(buf);
    free(out);
    close(fd);
    close(lfd);
}

/* ---- the peer hangs up while bytes are buffered ------------------------- */

struct hangup_result {
    char out[256];
    struct nt_jsonl log;
};

static void hangup(const char *how, bool rst, struct hangup_result *res)
{
    struct nt_addr a;
    int lfd = nt_listen(NT_TCP4, 1, &a);
    char *log = nt_path(rst ? "hangup-rst.jsonl" : "hangup-fin.jsonl");
    char *conf = nt_path("hangup.conf");
    unlink(log);
    char *text;
    cr_assert(asprintf(&text, "[global]\nlog = %s\n[defaults]\n"
                              "coalesce = 16KiB\ncoalesce_delay = 500ms\n",
                       log) > 0);
    cr_assert_eq(nt_write_file(conf, text, strlen(text)), 0);
    char *env_conf;
    cr_assert(asprintf(&env_conf, "NETTIMEO_CONFIG=%s", conf) > 0);
    char *out = nt_path("hangup.out");
    struct nt_spawn_opts o = { .env = NT_ENV(env_conf), .out_path = out };
    pid_t pid = nt_spawn(NT_ARGV(PROG, "hangup", a.str, how), &o);
    struct pollfd p = { lfd, POLLIN, 0 };
    cr_assert_eq(poll(&p, 1, 10000), 1);
    int fd = accept(lfd, NULL, NULL);
    char hello[6];
    cr_assert_eq(pc_read_full(fd, hello, 6), 6);
    cr_assert_eq(write(fd, "x", 1), 1);
    usleep(100000); /* the program's writes come before the hangup */
    if (rst) {
        struct linger lg = { 1, 0 };
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    close(fd);
    close(lfd);
    int status;
    cr_assert_eq(nt_wait_timeout(pid, 10000, &status), 0);
    char *got = nt_read_file(out, NULL);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0,
              "hangup %s: status %#x: %s", how, status, got ? got : "");
    snprintf(res->out, sizeof res->out, "%s", got ? got : "");
    cr_assert_eq(nt_jsonl_load(&res->log, log), 0, "no log at %s", log);
    free(got);
    free(text);
    free(env_conf);
    free(out);
    free(conf);
    free(log);
}

/* One flush_error with the expected errno and lost bytes (10 records of
 * writer 0 from `first`), and the next call failed with it. */
static void assert_flush_error(struct hangup_result *r, const char *err,
                               unsigned first, const char *op)
{
    cr_assert_geq(nt_jsonl_count(&r->log, "flush_error"), 1,
                  "no flush_error event; program said %s", r->out);
    const char *line = nt_jsonl_nth(&r->log, "flush_error", 0);
    char v[64];
    cr_assert(nt_json_get(line, "errno", v, sizeof v) && !strcmp(v, err),
              "flush_error errno %s, expected %s: %s", v, err, line);
    long lost = 0;
    char rec[REC_MAX];
    for (unsigned i = first; i < first + 10; i++)
        lost += (long)rec_make(rec, 0, i);
    cr_assert(nt_json_get(line, "lost_bytes", v, sizeof v) &&
                  atol(v) == lost,
              "lost_bytes %s, expected %ld: %s", v, lost, line);
    cr_assert(nt_json_get(line, "op", v, sizeof v) && !strcmp(v, op),
              "op %s, expected %s", v, op);
    char next[80];
    snprintf(next, sizeof next, "next=%s", err);
    cr_assert(strstr(r->out, next), "the next call did not fail with %s: %s",
              err, r->out);
}

Test(coalesce, peer_reset_while_buffered_timer_flush)
{
    struct hangup_result r;
    hangup("rst-timer", true, &r);
    cr_assert(strstr(r.out, "writes_ok=10 "), "%s", r.out);
    assert_flush_error(&r, "ECONNRESET", 0, "timer");
    cr_assert(strstr(r.out, "sigpipe=0"), "%s", r.out);
    nt_jsonl_free(&r.log);
}

Test(coalesce, peer_reset_while_buffered_wait_flush)
{
    struct hangup_result r;
    hangup("rst-wait", true, &r);
    assert_flush_error(&r, "ECONNRESET", 0, "wait");
    nt_jsonl_free(&r.log);
}

/* The program's output says `expect`, and no byte was held to lose. */
static void assert_kernel_answers(const char *how, bool rst,
                                  const char *expect)
{
    struct hangup_result r;
    hangup(how, rst, &r);
    cr_assert(strstr(r.out, expect), "%s: %s, expected %s", how, r.out,
              expect);
    cr_assert_eq(nt_jsonl_count(&r.log, "flush_error"), 0);
    nt_jsonl_free(&r.log);
}

/* Bytes held when a FIN comes are acknowledged, as the kernel would (the
 * flush goes through; the peer answers with RST). Later writes get the
 * kernel's own answers at once: EPIPE with SIGPIPE (a reset in
 * CLOSE_WAIT is reported as EPIPE: tcp_reset). */
Test(coalesce, peer_closed_then_kernel_refuses_next_writes)
{
    assert_kernel_answers("fin", false,
                          "writes_ok=10 first=EPIPE next=EPIPE sigpipe=11");
}

/* SPEC 6: nothing acknowledged that the kernel would refuse. A reset
 * that is already there when the program writes fails the write with
 * ECONNRESET, then EPIPE, exactly as without the library; nothing is
 * buffered, so nothing is lost. */
Test(coalesce, peer_reset_before_write_kernel_answers)
{
    assert_kernel_answers("rst-before", true,
                          "writes_ok=0 first=ECONNRESET next=EPIPE sigpipe=10");
}

/* ---- real programs -------------------------------------------------------- */

static bool have(const char *prog)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", prog);
    return system(cmd) == 0;
}

/* CPython's asyncio (epoll): 2,000 transport.write() calls per response. */
Test(coalesce, real_asyncio_server)
{
    if (!have("python3"))
        cr_skip_test("python3 is not installed");
    const char *const argv[] = { "python3", CO_SRC_DIR "/progs/tiny_asyncio.py",
                                 "2000", "8", NULL };
    struct serve_result off = serve_argv(NULL, true, argv, 5, 16000);
    struct serve_result on = serve_argv(BUFFER_OPTS, true, argv, 5, 16000);
    struct serve_result cork = serve_argv(CORK_OPTS, false, argv, 5, 16000);
    cr_log_info("asyncio: %ld write-family syscalls without coalescing, %ld "
                "with; cork mode %lld ms", off.syscalls, on.syscalls,
                (long long)cork.ms);
    cr_assert_geq(off.syscalls, 5 * 2000);
    cr_assert_leq(on.syscalls * 10, off.syscalls);
}

/* redis-server: an epoll event loop. Under both modes it answers a
 * benchmark without errors and returns a large value intact. */
static void redis_case(const char *opts)
{
    int port = nt_free_port(NT_TCP4);
    char p[16];
    snprintf(p, sizeof p, "%d", port);
    struct nt_spawn_opts o = { .env = NT_ENV(opts_env(opts)),
                               .out_path = "/dev/null" };
    pid_t pid = nt_spawn(NT_ARGV("redis-server", "--port", p, "--save", "",
                                 "--appendonly", "no", "--bind", "127.0.0.1"),
                         &o);
    struct nt_addr a;
    nt_addr_from_line(NT_TCP4, p, &a);
    cr_assert_eq(nt_wait_listening(&a, 10000), 0, "redis-server (%s)", opts);
    struct nt_spawn_opts plain = { .no_preload = true };
    struct nt_result r;
    nt_run(NT_ARGV("redis-benchmark", "-p", p, "-n", "20000", "-c", "10", "-q",
                   "-t", "set,get,lpush,lrange_100"), &plain, 60000, &r);
    nt_assert_exit(&r, 0, "redis-benchmark");
    cr_assert(strstr(r.out, "LRANGE_100") && !strstr(r.out, "rror"),
              "%s: %s", opts, r.out);
    nt_result_free(&r);
    /* a 200 kB value in, the same value out */
    char *val = malloc(200001);
    for (int i = 0; i < 200000; i++)
        val[i] = (char)('a' + i % 26);
    val[200000] = 0;
    struct nt_result set, get;
    nt_run(NT_ARGV("redis-cli", "-p", p, "-x", "set", "big"),
           &(struct nt_spawn_opts){ .no_preload = true, .stdin_data = val },
           10000, &set);
    nt_run(NT_ARGV("redis-cli", "-p", p, "get", "big"), &plain, 10000, &get);
    cr_assert(get.out && strncmp(get.out, val, 200000) == 0,
              "%s: the value came back different", opts);
    nt_result_free(&set);
    nt_result_free(&get);
    free(val);
    nt_kill(pid);
}

Test(coalesce, real_redis_event_loop)
{
    if (!have("redis-server") || !have("redis-benchmark") || !have("redis-cli"))
        cr_skip_test("redis is not installed");
    redis_case(BUFFER_OPTS);
    redis_case(CORK_OPTS);
}

/* ---- writers the library cannot see (LESSONS 24) ------------------------- */

/* write() then dprintf()/__dprintf_chk()/vdprintf() then write(): glibc's
 * dprintf writes with its internal write, which overtook buffered bytes. */
Test(coalesce, records_dprintf_family_in_order)
{
    records_opts("dprintf", REC_BUFFER, 1, (long[]){ 600 }, (unsigned[]){ 0 });
    records_opts("dprintf", REC_CORK, 1, (long[]){ 600 }, (unsigned[]){ 0 });
}

/* Records, then a helper run by system() (popen(), wordexp()'s command
 * substitution) writes more to the same socket, then more records: glibc
 * spawns the shell internally. */
Test(coalesce, records_system_and_popen_children_come_after)
{
    const char *modes[] = { "system", "popen", "wordexp" };
    for (int i = 0; i < 3; i++) {
        records_opts(modes[i], REC_BUFFER, 1, (long[]){ 600 },
                     (unsigned[]){ 0 });
        records_opts(modes[i], REC_CORK, 1, (long[]){ 600 },
                     (unsigned[]){ 0 });
    }
}

/* An inherited socket that is the exec'd program's stdout: write(1) and
 * printf/fflush(stdout) alternate; stdio writes bypass every hook. */
Test(coalesce, records_stdout_socket_write_and_stdio)
{
    records_opts("stdout", REC_BUFFER, 1, (long[]){ 400 }, (unsigned[]){ 0 });
    records_opts("stdout", REC_CORK, 1, (long[]){ 400 }, (unsigned[]){ 0 });
}

/* inetd-style: an exec'd program holds one socket on two descriptors it
 * did not dup itself and writes A on one, B on the other, C on the first.
 * One socket, one buffer (SPEC section 2): needs the per-socket
 * connection model; fails ("ACB") with one buffer per fd number. */
Test(coalesce, records_inherited_twin_descriptors_one_buffer)
{
    records_opts("inherit2", REC_BUFFER, 1, (long[]){ 400 },
                 (unsigned[]){ 0 });
}

static bool have(const char *prog);

/* CPython's subprocess.run: vfork() in the parent, exec in the child. */
Test(coalesce, records_python_subprocess_vfork)
{
    if (!have("python3"))
        cr_skip_test("python3 is not installed");
    const char *script = CO_SRC_DIR "/progs/vfork_sub.py";
    records_argv(NT_ARGV("python3", script, "@ADDR", "200", PROG), REC_BUFFER,
                 "python vfork", 1, (long[]){ 600 }, (unsigned[]){ 0 });
    records_argv(NT_ARGV("python3", script, "@ADDR", "200", PROG), REC_CORK,
                 "python vfork", 1, (long[]){ 600 }, (unsigned[]){ 0 });
}

/* The same, traced: the buffered records leave in a send of the parent's
 * before its vfork (a vfork child must not flush for its parent: it shares
 * the parent's memory). */
Test(coalesce, python_vfork_parent_flushes_before_vfork)
{
    if (!have("python3") || !have("strace"))
        cr_skip_test("python3 or strace is not installed");
    struct nt_addr a;
    int lfd = nt_listen(NT_TCP4, 8, &a);
    char *trace = nt_path("strace.vfork");
    struct nt_spawn_opts o = { .no_preload = true,
                               .env = NT_ENV(opts_env(REC_BUFFER)) };
    pid_t pid = nt_spawn(NT_ARGV("strace", "-f", "-s", "64", "-e",
                                 "trace=vfork,sendmsg,sendto,write", "-o",
                                 trace, "-E", preload_env(), "python3",
                                 CO_SRC_DIR "/progs/vfork_sub.py", a.str,
                                 "200", PROG), &o);
    struct stream st[1] = { 0 };
    cr_assert_eq(collect(lfd, st, 1, 30000), 1);
    int status;
    cr_assert_eq(nt_wait_timeout(pid, 20000, &status), 0);
    assert_records(&st[0], 0, 600, "python vfork under strace");
    char *text = nt_read_file(trace, NULL);
    cr_assert_not_null(text);
    /* record 0 is "00000000000\n": the first flush starts with it */
    long parent = -1, sender = -1;
    bool before = false;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        long p = strtol(line, NULL, 10);
        if (parent < 0 && strstr(line, "vfork(")) {
            parent = p;
            break;
        }
        if (sender < 0 && strstr(line, "\"00000000000\\n") &&
            (strstr(line, "sendmsg(") || strstr(line, "sendto(") ||
             strstr(line, "write("))) {
            sender = p;
            before = true;
        }
    }
    cr_assert_gt(parent, 0, "no vfork in the trace: %s", trace);
    cr_assert(before, "the buffered records were not sent before vfork");
    cr_assert_eq(sender, parent, "the buffered records were sent by %ld, "
                 "not the parent %ld", sender, parent);
    free(text);
    free(trace);
    streams_free(st, 1);
    close(lfd);
}

/* ---- non-blocking: the kernel's answer, and a close that never waits ------ */

static const char *log_env(const char *name)
{
    static char buf[4][600];
    static unsigned next;
    char *e = buf[next++ % 4];
    char *path = nt_path(name);
    unlink(path);
    snprintf(e, sizeof buf[0], "NETTIMEO_LOG=%s", path);
    free(path);
    return e;
}

static long out_num(const char *text, const char *key)
{
    const char *p = text ? strstr(text, key) : NULL;
    return p ? strtol(p + strlen(key), NULL, 10) : -1;
}

/* The peer stops reading: once the kernel has said EAGAIN, every small
 * write gets the kernel's own answer (nothing acknowledged that its send
 * queue did not take), close() returns at once, and every byte the
 * program was told was written arrives after the close, intact, with no
 * flush_error. */
static void nbfull_case_delay(const char *opts, int peer_delay_ms,
                              long *accepted_out, size_t *got_out,
                              long *lost_out, int *events_out);

static void nbfull_case(const char *opts)
{
    long accepted, lost;
    size_t got;
    int events;
    nbfull_case_delay(opts, 0, &accepted, &got, &lost, &events);
    cr_assert_eq((long)got, accepted, "%s: %zu bytes arrived, %ld were "
                 "acknowledged", opts, got, accepted);
    cr_assert_eq(events, 0, "%s: flush_error logged", opts);
}

/* The same, with a peer that waits peer_delay_ms after the close before it
 * reads anything. */
static void nbfull_case_delay(const char *opts, int peer_delay_ms,
                              long *accepted_out, size_t *got_out,
                              long *lost_out, int *events_out)
{
    struct nt_addr a;
    int lfd = nt_listen(NT_TCP4, 1, &a);
    int small = 16384;
    setsockopt(lfd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    char *out = nt_path("nbfull.out");
    unlink(out);
    const char *logv = log_env("nbfull.jsonl");
    struct nt_spawn_opts o = { .no_preload = opts == NULL,
                               .env = NT_ENV(opts_env(opts ? opts : ""),
                                             logv),
                               .out_path = out };
    pid_t pid = nt_spawn(NT_ARGV(PROG, "nbfull", a.str), &o);
    struct pollfd p = { lfd, POLLIN, 0 };
    cr_assert_eq(poll(&p, 1, 10000), 1);
    int fd = accept(lfd, NULL, NULL);
    char *text = NULL;
    int64_t deadline = nt_now_ms() + 20000;
    while (nt_now_ms() < deadline) {
        free(text);
        text = nt_read_file(out, NULL);
        if (text && strstr(text, "close_us="))
            break;
        nt_sleep_ms(20);
    }
    cr_assert(text && strstr(text, "close_us="), "nbfull (%s) did not get "
              "to close: %s", opts ? opts : "no library", text ? text : "");
    long accepted = out_num(text, "accepted="),
         growth = out_num(text, "held_growth="),
         close_us = out_num(text, "close_us=");
    if (peer_delay_ms)
        nt_sleep_ms(peer_delay_ms);
    unsigned char *buf = malloc((size_t)accepted + 65536);
    size_t got = 0;
    for (;;) {
        struct pollfd q = { fd, POLLIN, 0 };
        if (poll(&q, 1, 10000) != 1)
            break;
        ssize_t r = read(fd, buf + got, (size_t)accepted + 65536 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    int status;
    cr_assert_eq(nt_wait_timeout(pid, 10000, &status), 0);
    cr_log_info("nbfull (%s): %s", opts ? opts : "no library", text);
    cr_assert(text && strstr(text, "held_growth=") && growth <= 0,
              "%s: after EAGAIN the library acknowledged bytes the kernel "
              "did not take: %s", opts, text);
    cr_assert_lt(close_us, 300000, "%s: close() took %ld us", opts, close_us);
    cr_assert_lt(pc_pattern_check(buf, got, 0), 0, "%s: bytes differ", opts);
    *accepted_out = accepted;
    *got_out = got;
    *lost_out = 0;
    *events_out = 0;
    struct nt_jsonl log;
    if (nt_jsonl_load(&log, strchr(logv, '=') + 1) == 0) {
        *events_out = (int)nt_jsonl_count(&log, "flush_error");
        for (int i = 0; i < *events_out; i++) {
            char v[64];
            const char *line = nt_jsonl_nth(&log, "flush_error", i);
            if (nt_json_get(line, "lost_bytes", v, sizeof v))
                *lost_out += atol(v);
            cr_assert(nt_json_get(line, "errno", v, sizeof v) &&
                          !strcmp(v, "ETIMEDOUT"),
                      "%s: flush_error %s", opts, line);
        }
        nt_jsonl_free(&log);
    }
    free(buf);
    free(text);
    free(out);
    close(fd);
    close(lfd);
}

Test(coalesce, nonblocking_full_socket_kernel_answers_close_never_waits)
{
    nbfull_case(NULL); /* the reference: what the kernel does */
    nbfull_case(BUFFER_OPTS);
    nbfull_case(CORK_OPTS);
}

/* The peer reads nothing for 3 s after the close, and write_timeout is
 * 1 s: bytes the library still held at the close are given up after 1 s
 * without progress; what did not arrive is exactly what flush_error
 * reported lost (ETIMEDOUT), nothing else is missing. */
Test(coalesce, closed_with_held_bytes_loss_is_reported)
{
    long accepted, lost;
    size_t got;
    int events;
    nbfull_case_delay(BUFFER_OPTS " write_timeout=1s", 3000, &accepted, &got,
                      &lost, &events);
    cr_log_info("held at close: %ld acknowledged, %zu arrived, %ld reported "
                "lost in %d flush_error", accepted, got, lost, events);
    cr_assert_eq((long)got + lost, accepted, "%ld acknowledged, %zu arrived, "
                 "%ld reported lost", accepted, got, lost);
}

/* An epoll server pushes 4 MB in 100-byte writes to a client that reads
 * slowly and pauses near the end: no call of the server's, close
 * included, blocks (generous bound: 300 ms); the bytes arrive intact. */
static void evserve_case(const char *opts)
{
    const size_t total = 4u << 20;
    const char *logv = log_env("evserve.jsonl");
    struct nt_spawn_opts o = { .env = NT_ENV(opts_env(opts), logv) };
    struct nt_server s;
    cr_assert_eq(nt_server_start(&s, NT_ARGV(PROG, "evserve", "4194304",
                                             "100"), &o, 10000), 0);
    struct nt_addr a;
    nt_addr_from_line(NT_TCP4, s.line, &a);
    int fd = nt_connect(&a, 3000);
    cr_assert_geq(fd, 0);
    int small = 32768;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    unsigned char *buf = malloc(total);
    size_t got = 0;
    bool paused = false;
    int64_t deadline = nt_now_ms() + 60000;
    while (got < total && nt_now_ms() < deadline) {
        struct pollfd q = { fd, POLLIN, 0 };
        if (poll(&q, 1, 100) != 1)
            continue;
        size_t want = total - got < 16384 ? total - got : 16384;
        ssize_t r = read(fd, buf + got, want);
        if (r <= 0)
            break;
        got += (size_t)r;
        if (!paused && got >= total - (256u << 10)) {
            paused = true; /* the server writes its last bytes, and closes */
            nt_sleep_ms(1500);
        } else if (got % (64u << 10) < (size_t)r) {
            nt_sleep_ms(2);
        }
    }
    char c;
    cr_assert_eq(read(fd, &c, 1), 0, "no EOF after the data");
    close(fd);
    int status;
    char *rest = NULL;
    nt_server_stop(&s, 20000, &status, &rest);
    char *text = rest;
    cr_log_info("evserve (%s): %s", opts, text ? text : "");
    cr_assert_eq(got, total, "%s: %zu of %zu bytes", opts, got, total);
    cr_assert_lt(pc_pattern_check(buf, total, 0), 0, "%s: bytes differ",
                 opts);
    long max_write = out_num(text, "max_write_us="),
         close_us = out_num(text, "close_us=");
    cr_assert(max_write >= 0 && close_us >= 0, "%s: %s", opts, text);
    cr_assert_lt(max_write, 300000, "%s: a write took %ld us", opts,
                 max_write);
    cr_assert_lt(close_us, 300000, "%s: close() took %ld us", opts, close_us);
    struct nt_jsonl log;
    if (nt_jsonl_load(&log, strchr(logv, '=') + 1) == 0) {
        cr_assert_eq(nt_jsonl_count(&log, "flush_error"), 0,
                     "%s: flush_error logged", opts);
        nt_jsonl_free(&log);
    }
    free(text);
    free(buf);
}

Test(coalesce, event_loop_slow_reader_no_call_blocks)
{
    evserve_case(BUFFER_OPTS);
    evserve_case(CORK_OPTS);
}

/* ---- coalescing that does not pay costs nothing ------------------------- */

#define STRACE_WRITES_OPTS "strace", "-f", "-c", "-U", "name,calls", "-e", \
                     "trace=write,sendmsg,sendto,writev,setsockopt"

static long strace_calls(const char *path, const char *name)
{
    char *text = nt_read_file(path, NULL);
    cr_assert_not_null(text, "no strace output at %s", path);
    long calls = 0;
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char n[64];
        long c;
        if (sscanf(line, "%63s %ld", n, &c) == 2 && !strcmp(n, name))
            calls = c;
    }
    free(text);
    return calls;
}

/* A server that answers each request with one write: coalescing saves
 * nothing there, so it must add nothing: no buffering round trip, and in
 * cork mode no setsockopt per response. */
Test(coalesce, one_write_per_response_passes_through)
{
    const char *modes[] = { BUFFER_OPTS, CORK_OPTS };
    for (int m = 0; m < 2; m++) {
        char *trace = nt_path("strace.single");
        const long responses = 400;
        struct nt_spawn_opts o = { .no_preload = true,
                                   .env = NT_ENV(opts_env(modes[m])) };
        struct nt_server s;
        cr_assert_eq(nt_server_start(&s, NT_ARGV(STRACE_WRITES_OPTS, "-o",
                                                 trace, "-E", preload_env(),
                                                 PROG, "serve", "epoll",
                                                 "400", "1", "300"),
                                     &o, 10000), 0);
        drive_server(&s, responses, 300);
        int status;
        char *rest = NULL;
        nt_server_stop(&s, 20000, &status, &rest);
        cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s",
                  rest ? rest : "");
        long sets = strace_calls(trace, "setsockopt");
        long writes = strace_calls(trace, "write") +
                      strace_calls(trace, "sendmsg");
        cr_log_info("one write per response (%s): %ld writes, %ld "
                    "setsockopt for %ld responses", modes[m], writes, sets,
                    responses);
        cr_assert_leq(sets, 40, "%s: %ld setsockopt calls for %ld "
                      "responses", modes[m], sets, responses);
        cr_assert_leq(writes, responses + 20, "%s: %ld writes", modes[m],
                      writes);
        free(rest);
        free(trace);
    }
}
