/* Deadlines (SPEC section 4), observed as a user would: a program with no
 * timeouts of its own, run under the library with NETTIMEO_OPTIONS, is cut
 * at the deadline; the same program without the library hangs (it is
 * killed by the test) or behaves differently. Deadlines are 1 s; lower
 * bounds are 0.8 x, upper bounds generous (shared 2-core machines). */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nttest_cr.h"

#define DEADLINE_MS 1000
#define SLACK_MS 700
#define HANG_MS 2500 /* how long "without the library" gets to not hang */

TestSuite(deadline, .timeout = 60);

struct outcome {
    char result[32]; /* ok, eof, or an errno name */
    long n;
    long elapsed_ms;
};

/* dl_client prints "result=R n=N elapsed_ms=T". */
static struct outcome parse_outcome(const struct nt_result *r)
{
    struct outcome o = { "none", -1, -1 };
    const char *p = r->out ? strstr(r->out, "result=") : NULL;
    if (p)
        sscanf(p, "result=%31s n=%ld elapsed_ms=%ld", o.result, &o.n,
               &o.elapsed_ms);
    return o;
}

static struct outcome client(const char *const argv[], const char *options,
                             int preload, int timeout_ms, struct nt_result *r)
{
    char env[256];
    snprintf(env, sizeof env, "NETTIMEO_OPTIONS=%s", options);
    struct nt_spawn_opts o = { .no_preload = !preload, .env = NT_ENV(env) };
    cr_assert_eq(nt_run(argv, &o, timeout_ms, r), 0, "could not start %s",
                 argv[0]);
    return parse_outcome(r);
}

/* Run a client under the library and without it; the latter must hang. */
static struct outcome cut_but_hangs_without(const char *const argv[],
                                            const char *options)
{
    struct nt_result with, without;
    struct outcome o = client(argv, options, 1, 10000, &with);
    cr_assert(!with.timed_out, "hung under the library\n%s", with.err);
    client(argv, options, 0, HANG_MS, &without);
    cr_assert(without.timed_out,
              "without the library it did not hang: %s", without.out);
    nt_result_free(&with);
    nt_result_free(&without);
    return o;
}

static char *log_path(const char *name)
{
    return nt_path(name);
}

/* The log holds a `timeout` event for this deadline with these fields. */
static void assert_timeout_event(const char *path, const char *which,
                                 const char *action)
{
    struct nt_jsonl j;
    cr_assert_eq(nt_jsonl_load(&j, path), 0, "no log at %s", path);
    char v[64];
    int found = 0;
    for (size_t i = 0; i < nt_jsonl_count(&j, "timeout"); i++) {
        const char *line = nt_jsonl_nth(&j, "timeout", i);
        if (nt_json_get(line, "timeout", v, sizeof v) && strcmp(v, which) == 0) {
            found = 1;
            cr_assert(nt_json_get(line, "action", v, sizeof v) &&
                          strcmp(v, action) == 0,
                      "action in %s", line);
            cr_assert(nt_json_get(line, "limit_ms", v, sizeof v) &&
                          atof(v) == DEADLINE_MS,
                      "limit_ms in %s", line);
        }
    }
    cr_assert(found, "no %s event in %s", which, path);
    nt_jsonl_free(&j);
}

/* ---- blocking clients ----------------------------------------------- */

Test(deadline, read_timeout_blocking_client)
{
    struct nt_peer *p = nt_peer_start(NT_PEER_SILENT, NT_TCP4, NULL);
    const char *addr = nt_peer_addr(p)->str;
    struct outcome o = cut_but_hangs_without(
        NT_ARGV(NT_PROG("dl_client"), addr, "read"), "read_timeout=1s");
    cr_assert_str_eq(o.result, "ETIMEDOUT");
    nt_assert_elapsed(o.elapsed_ms, DEADLINE_MS, SLACK_MS);
    nt_peer_stop(p);
}

Test(deadline, timeout_errno_eagain)
{
    struct nt_peer *p = nt_peer_start(NT_PEER_SILENT, NT_TCP6, NULL);
    struct nt_result r;
    struct outcome o = client(
        NT_ARGV(NT_PROG("dl_client"), nt_peer_addr(p)->str, "read"),
        "read_timeout=1s timeout_errno=EAGAIN", 1, 10000, &r);
    cr_assert_str_eq(o.result, "EAGAIN", "%s", r.out);
    nt_assert_elapsed(o.elapsed_ms, DEADLINE_MS, SLACK_MS);
    nt_result_free(&r);
    nt_peer_stop(p);
}

Test(deadline, read_timeout_unix_socket_and_event)
{
    struct nt_peer *p = nt_peer_start(NT_PEER_SILENT, NT_UNIX, NULL);
    char *log = log_path("unix.jsonl");
    char opts[512];
    struct nt_result r;
    char env_log[300];
    snprintf(env_log, sizeof env_log, "NETTIMEO_LOG=%s", log);
    snprintf(opts, sizeof opts, "NETTIMEO_OPTIONS=read_timeout=1s");
    struct nt_spawn_opts so = { .env = NT_ENV(opts, env_log) };
    cr_assert_eq(nt_run(NT_ARGV(NT_PROG("dl_client"), nt_peer_addr(p)->str,
                                "read"),
                        &so, 10000, &r),
                 0);
    struct outcome o = parse_outcome(&r);
    cr_assert_str_eq(o.result, "ETIMEDOUT", "%s %s", r.out, r.err);
    assert_timeout_event(log, "read_timeout", "error");
    nt_result_free(&r);
    free(log);
    nt_peer_stop(p);
}

Test(deadline, connect_timeout_blocking)
{
    struct nt_peer *p = nt_peer_start(NT_PEER_NOACCEPT, NT_TCP4, NULL);
    struct outcome o = cut_but_hangs_without(
        NT_ARGV(NT_PROG("dl_client"), nt_peer_addr(p)->str, "connect"),
        "connect_timeout=1s");
    cr_assert_str_eq(o.result, "ETIMEDOUT");
    nt_assert_elapsed(o.elapsed_ms, DEADLINE_MS, SLACK_MS);
    nt_peer_stop(p);
}

/* A blocking write (or writev: its fast path tries without blocking,
 * then the engine waits for the rest of the vector) to a peer that never
 * reads, cut at write_timeout (limit_ms) with the bytes sent, `slack_ms`
 * late at most (the deadline restarts while the peer's kernel still takes
 * bytes: the first second or so). */
static void write_cut_returns_what_was_sent(const char *call, long limit_ms,
                                            long slack_ms)
{
    struct nt_peer_opts po = { .rcvbuf = 4096 };
    struct nt_peer *p = nt_peer_start(NT_PEER_NOREAD, NT_TCP4, &po);
    char opts[64];
    snprintf(opts, sizeof opts, "write_timeout=%ldms", limit_ms);
    struct outcome o = cut_but_hangs_without(
        NT_ARGV(NT_PROG("dl_client"), nt_peer_addr(p)->str, call, "64m"),
        opts);
    if (strcmp(call, "splice") == 0) /* on a full socket: maybe nothing */
        cr_assert(strcmp(o.result, "ok") == 0 || strcmp(o.result, "ETIMEDOUT") == 0,
                  "splice: %s", o.result);
    else
        cr_assert_str_eq(o.result, "ok", "a %s that sent bytes returns them", call);
    cr_assert(o.n < 64L * 1024 * 1024, "sent %ld", o.n);
    cr_assert(o.n > 0 || strcmp(call, "splice") == 0, "sent %ld", o.n);
    nt_assert_elapsed(o.elapsed_ms, limit_ms, slack_ms);
    nt_peer_stop(p);
}

Test(deadline, write_timeout_returns_what_was_sent)
{
    write_cut_returns_what_was_sent("write", DEADLINE_MS, SLACK_MS);
}

Test(deadline, writev_timeout_returns_what_was_sent)
{
    write_cut_returns_what_was_sent("writev", DEADLINE_MS, SLACK_MS);
}

/* sendfile and splice take no MSG_DONTWAIT: the library calls them only
 * once the socket is ready, with what the send buffer is sure to take.
 * Longer than the engine's 1 s wait slice, too: a slice that ends with the
 * socket not ready is no progress (the space the kernel still had let a
 * call trickle a few bytes each second, restarting the deadline for ever:
 * it hung). */
Test(deadline, sendfile_timeout_returns_what_was_sent)
{
    write_cut_returns_what_was_sent("sendfile", DEADLINE_MS, SLACK_MS);
    write_cut_returns_what_was_sent("sendfile", 2500, 2500);
}

Test(deadline, splice_timeout_returns_what_was_sent)
{
    write_cut_returns_what_was_sent("splice", DEADLINE_MS, SLACK_MS);
    write_cut_returns_what_was_sent("splice", 2500, 2500);
}

Test(deadline, python_client)
{
    struct nt_peer *p = nt_peer_start(NT_PEER_SILENT, NT_TCP4, NULL);
    char script[256];
    snprintf(script, sizeof script,
             "import socket,errno\n"
             "s=socket.create_connection(('127.0.0.1',%d))\n"
             "try: s.recv(10)\n"
             "except OSError as e: print('result=' + errno.errorcode[e.errno])\n",
             nt_peer_addr(p)->port);
    struct outcome o = cut_but_hangs_without(NT_ARGV("python3", "-c", script),
                                             "read_timeout=1s");
    cr_assert_str_eq(o.result, "ETIMEDOUT");
    nt_peer_stop(p);
}

/* The timer thread does not survive fork; the child restarts it. The
 * parent closes its copy at once, so only the child's timer can cut the
 * connection the child waits on. */
Test(deadline, fork_child_gets_working_deadlines)
{
    struct nt_peer *p = nt_peer_start(NT_PEER_SILENT, NT_TCP4, NULL);
    char script[640];
    snprintf(script, sizeof script,
             "import os,socket,time\n"
             "s=socket.create_connection(('127.0.0.1',%d))\n"
             "pid=os.fork()\n"
             "if pid:\n"
             "  s.close(); os.waitpid(pid,0)\n"
             "else:\n"
             "  t=time.time(); r=s.recv(1)\n"
             "  print('result=%%s n=0 elapsed_ms=%%d' %% ('eof' if r==b'' else 'ok',"
             " int((time.time()-t)*1000)), flush=True)\n"
             "  os._exit(0)\n",
             nt_peer_addr(p)->port);
    struct outcome o = cut_but_hangs_without(NT_ARGV("python3", "-c", script),
                                             "idle_timeout=1s");
    cr_assert_str_eq(o.result, "eof", "the child's idle deadline fired");
    nt_assert_elapsed(o.elapsed_ms, DEADLINE_MS, SLACK_MS);
    nt_peer_stop(p);
}

/* ---- signals -------------------------------------------------------- */

Test(deadline, eintr_without_sa_restart)
{
    struct nt_peer *p = nt_peer_start(NT_PEER_SILENT, NT_TCP4, NULL);
    const char *const *argv = NT_ARGV(NT_PROG("dl_client"),
                                      nt_peer_addr(p)->str, "alarm", "300",
                                      "norestart");
    struct nt_result with, without;
    struct outcome a = client(argv, "read_timeout=2s", 1, 10000, &with);
    struct outcome b = client(argv, "", 0, 10000, &without);
    cr_assert_str_eq(b.result, "EINTR", "the kernel's answer");
    cr_assert_str_eq(a.result, "EINTR", "the library's answer: %s", with.err);
    nt_assert_elapsed(a.elapsed_ms, 300, SLACK_MS);
    nt_result_free(&with);
    nt_result_free(&without);
    nt_peer_stop(p);
}

Test(deadline, sa_restart_restarts)
{
    struct nt_peer *p = nt_peer_start(NT_PEER_SILENT, NT_TCP4, NULL);
    struct outcome o = cut_but_hangs_without(
        NT_ARGV(NT_PROG("dl_client"), nt_peer_addr(p)->str, "alarm", "300",
                "restart"),
        "read_timeout=1s");
    /* restarted after the alarm, then cut by the deadline */
    cr_assert_str_eq(o.result, "ETIMEDOUT");
    nt_assert_elapsed(o.elapsed_ms, DEADLINE_MS, SLACK_MS);
    nt_peer_stop(p);
}

/* ---- event-loop clients: curl (non-blocking, poll) ------------------ */

/* curl, non-blocking and polling, against a peer that stalls it: cut at
 * the deadline with one of the exit codes given; alone, it hangs. */
static void curl_cut(enum nt_peer_kind kind, const char *options, int code_a,
                     int code_b)
{
    NT_SKIP_CURL_UNDER_ASAN();
    struct nt_peer *p = nt_peer_start(kind, NT_TCP4, NULL);
    char url[128];
    snprintf(url, sizeof url, "http://%s/", nt_peer_addr(p)->str);
    const char *const *argv = NT_ARGV("curl", "-sS", "-o", "/dev/null", url);
    struct nt_result r, without;
    client(argv, options, 1, 10000, &r);
    cr_assert(nt_exited(&r, code_a) || nt_exited(&r, code_b), "curl: %s", r.err);
    nt_assert_elapsed(r.elapsed_ms, DEADLINE_MS, SLACK_MS);
    client(argv, "", 0, HANG_MS, &without);
    cr_assert(without.timed_out, "curl alone should hang");
    nt_result_free(&r);
    nt_result_free(&without);
    nt_peer_stop(p);
}

/* 52 "Empty reply" / 56 "Recv failure": the library shut the silent
 * server's connection down at the read deadline. */
Test(deadline, curl_read_timeout)
{
    curl_cut(NT_PEER_SILENT, "read_timeout=1s", 52, 56);
}

/* 28 "Failed to connect": the loop saw the socket ready and SO_ERROR said
 * ETIMEDOUT (7 if a curl reports it as a plain connect failure). */
Test(deadline, curl_connect_timeout)
{
    curl_cut(NT_PEER_NOACCEPT, "connect_timeout=1s", 28, 7);
}
