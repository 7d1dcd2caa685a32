/* End-to-end audit tests: tests/audit/progs/audit_prog.c runs under the
 * library (never this test process) and the log it leaves is checked. */
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "audit_helper.h"

#define PROG AUDIT_PROG
#define RUN_MS 20000

TestSuite(audit, .timeout = 60, .fini = audit_cleanup);

static char *log_text;

static const char *log_path(void)
{
    return audit_path("events.jsonl");
}

/* A config in the test's temp dir: log to a file there, plus `extra`. */
static const char *config(const char *extra)
{
    char body[1024];
    snprintf(body, sizeof body, "log = %s\n%s", log_path(), extra);
    return audit_config("nettimeo.conf", body);
}

static int run_prog(const char *cfg, const char *const argv[])
{
    char env[600];
    snprintf(env, sizeof env, "NETTIMEO_CONFIG=%s", cfg);
    const char *const envv[] = { env, NULL };
    int st = audit_run(argv, envv, audit_path("out"), audit_path("err"),
                       RUN_MS);
    free(log_text);
    log_text = audit_slurp(log_path());
    return st;
}

static char *out_text(void)
{
    return audit_slurp(audit_path("out"));
}

static void assert_exit0(int st)
{
    char *err = audit_slurp(audit_path("err"));
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0,
              "status %#x, stderr: %s", st, err);
    free(err);
}

/* The story of a write to a peer that went away, as SPEC section 5 tells
 * it: the peer, the bytes, the age, who closed first, and where. */
static void assert_write_story(const char *line, const char *err)
{
    char v[4096];
    cr_assert(line, "no event in log:\n%s", log_text);
    cr_assert(audit_get(line, "errno", v, sizeof v) && !strcmp(v, err), "%s", line);
    cr_assert(audit_get(line, "op", v, sizeof v) && !strcmp(v, "write"), "%s", line);
    cr_assert(audit_get(line, "dir", v, sizeof v) && !strcmp(v, "inbound"), "%s", line);
    cr_assert(audit_get(line, "remote", v, sizeof v) &&
              !strncmp(v, "127.0.0.1:", 10), "%s", line);
    cr_assert(audit_get(line, "local", v, sizeof v), "%s", line);
    cr_assert(audit_get(line, "rule", v, sizeof v) && !strcmp(v, "null"), "%s", line);
    cr_assert_gt(audit_get_num(line, "bytes_out"), 0, "%s", line);
    cr_assert_geq(audit_get_num(line, "age_ms"), 0, "%s", line);
    cr_assert_geq(audit_get_num(line, "idle_ms"), 0, "%s", line);
    cr_assert(audit_get(line, "peer_closed", v, sizeof v) && !strcmp(v, "true"),
              "%s", line);
    cr_assert(audit_get(line, "ts", v, sizeof v) && strlen(v) == 27 &&
              v[26] == 'Z', "%s", line);
    cr_assert_gt(audit_get_num(line, "pid"), 0);
    cr_assert(audit_get(line, "prog", v, sizeof v) && !strcmp(v, "nt_audit_prog"),
              "%s", line);
    cr_assert(audit_get(line, "backtrace", v, sizeof v), "%s", line);
    cr_assert(strstr(v, "\"write_response+0x"), "backtrace %s", v);
    cr_assert_null(strstr(v, "libnettimeo"), "library frames in %s", v);
}

Test(audit, fin_then_write_logs_epipe_naming_the_writer)
{
    int st = run_prog(config("sigpipe = ignore"),
                      (const char *const[]){ PROG, "hangup", "fin", NULL });
    assert_exit0(st);
    char *out = out_text();
    cr_assert(strstr(out, "write_response: EPIPE"), "stdout: %s", out);
    free(out);
    cr_assert_eq(audit_count(log_text, "epipe"), 1, "%s", log_text);
    assert_write_story(audit_nth(log_text, "epipe", 0), "EPIPE");
    /* first frame: the program's own call site */
    char bt[4096];
    audit_get(audit_nth(log_text, "epipe", 0), "backtrace", bt, sizeof bt);
#ifndef NT_ASAN_LIB
    cr_assert(!strncmp(bt, "[\"write_response+0x", 19), "%s", bt);
#endif
}

Test(audit, rst_then_write_logs_econnreset_then_epipe)
{
    int st = run_prog(config("sigpipe = ignore"),
                      (const char *const[]){ PROG, "hangup", "rst", NULL });
    assert_exit0(st);
    char *out = out_text();
    cr_assert(strstr(out, "write_response: ECONNRESET"), "stdout: %s", out);
    free(out);
    assert_write_story(audit_nth(log_text, "econnreset", 0), "ECONNRESET");
    assert_write_story(audit_nth(log_text, "epipe", 0), "EPIPE");
}

Test(audit, sigpipe_keep_dies_of_sigpipe_after_logging)
{
    int st = run_prog(config(""),
                      (const char *const[]){ PROG, "hangup", "fin", NULL });
    cr_assert(st != -1 && WIFSIGNALED(st) && WTERMSIG(st) == SIGPIPE,
              "status %#x", st);
    char *out = out_text();
    cr_assert_null(strstr(out, "write_response:"), "survived: %s", out);
    free(out);
    assert_write_story(audit_nth(log_text, "epipe", 0), "EPIPE");
    cr_assert_eq(audit_validate_jsonl(log_path()), (long)audit_count(log_text, NULL));
}

Test(audit, reader_gets_econnreset)
{
    int st = run_prog(config(""), (const char *const[]){ PROG, "reader", NULL });
    assert_exit0(st);
    const char *line = audit_nth(log_text, "econnreset", 0);
    char v[4096];
    cr_assert(line, "%s", log_text);
    cr_assert(audit_get(line, "op", v, sizeof v) && !strcmp(v, "read"), "%s", line);
    cr_assert(audit_get(line, "dir", v, sizeof v) && !strcmp(v, "outbound"), "%s", line);
    cr_assert_eq(audit_get_num(line, "bytes_in"), 5, "%s", line);
    cr_assert(audit_get(line, "peer_closed", v, sizeof v) && !strcmp(v, "true"));
    cr_assert(audit_get(line, "backtrace", v, sizeof v) &&
              strstr(v, "\"read_reply+0x"), "%s", line);
}

/* Sum of the "count" of every suppressed event for `kind`. */
static long long suppressed_total(const char *kind)
{
    long long total = 0;
    char v[64];
    for (size_t i = 0; audit_nth(log_text, "suppressed", i); i++) {
        const char *line = audit_nth(log_text, "suppressed", i);
        if (audit_get(line, "suppressed_event", v, sizeof v) && !strcmp(v, kind))
            total += audit_get_num(line, "count");
    }
    return total;
}

Test(audit, flood_is_rate_limited_and_counted)
{
    int st = run_prog(config("rate_limit = 20/s"),
                      (const char *const[]){ PROG, "flood", "1000", NULL });
    assert_exit0(st);
    char *out = out_text();
    cr_assert(strstr(out, "epipes: 1000"), "stdout: %s", out);
    free(out);
    long long logged = (long long)audit_count(log_text, "epipe");
    cr_assert_geq(logged, 20);
    cr_assert_leq(logged, 20 * 3, "a 1000-write flood takes well under 2 s");
    cr_assert_geq(audit_count(log_text, "suppressed"), 1);
    cr_assert_eq(logged + suppressed_total("epipe"), 1000, "%s", log_text);
}

static long long hex_after(const char *s, const char *marker)
{
    const char *p = strstr(s, marker);
    return p ? strtoll(p + strlen(marker), NULL, 16) : -1;
}

/* A stripped copy logs module+offset; addr2line on the unstripped binary
 * turns that offset into the writing function. */
Test(audit, stripped_binary_resolves_with_addr2line)
{
    const char *copy = audit_path("stripped_prog");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "objcopy --strip-all '%s' '%s'", PROG, copy);
    cr_assert_eq(system(cmd), 0);
    int st = run_prog(config("sigpipe = ignore"),
                      (const char *const[]){ copy, "hangup", "fin", NULL });
    assert_exit0(st);
    char bt[4096], marker[600];
    cr_assert(audit_get(audit_nth(log_text, "epipe", 0), "backtrace", bt,
                        sizeof bt), "%s", log_text);
    snprintf(marker, sizeof marker, "(%s+0x", copy);
    long long off = hex_after(bt, marker);
    cr_assert_gt(off, 0, "no frame in %s: %s", copy, bt);
    snprintf(cmd, sizeof cmd, "addr2line -f -e '%s' %#llx > '%s'", PROG, off,
             audit_path("a2l"));
    cr_assert_eq(system(cmd), 0);
    char *a2l = audit_slurp(audit_path("a2l"));
    cr_assert(!strncmp(a2l, "write_response\n", 15), "addr2line said %s (bt %s)",
              a2l, bt);
    free(a2l);
}

Test(audit, concurrent_processes_write_whole_lines)
{
    enum { PROCS = 8, EACH = 300 };
    char env[600];
    snprintf(env, sizeof env, "NETTIMEO_CONFIG=%s",
             config("rate_limit = off\nbacktrace = 64"));
    const char *const envv[] = { env, NULL };
    pid_t pids[PROCS];
    for (int i = 0; i < PROCS; i++)
        pids[i] = audit_spawn((const char *const[]){ PROG, "flood", "300", NULL },
                              envv, NULL, NULL);
    for (int i = 0; i < PROCS; i++) {
        int st = audit_wait(pids[i], RUN_MS);
        cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    log_text = audit_slurp(log_path());
    long lines = audit_validate_jsonl(log_path());
    cr_assert_eq(lines, (long)audit_count(log_text, NULL), "some line is broken");
    cr_assert_eq(audit_count(log_text, "epipe"), PROCS * EACH);
    struct stat sb;
    cr_assert_eq(stat(log_path(), &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0600);
}

Test(audit, closefrom_does_not_silence_the_log)
{
    int st = run_prog(config("sigpipe = ignore"),
                      (const char *const[]){ PROG, "closefrom", NULL });
    assert_exit0(st);
    assert_write_story(audit_nth(log_text, "epipe", 0), "EPIPE");
}

Test(audit, dup2_over_the_log_fd_is_noticed_and_left_alone)
{
    int st = run_prog(config("sigpipe = ignore"),
                      (const char *const[]){ PROG, "dup2", log_path(), NULL });
    assert_exit0(st);
    char *out = out_text();
    cr_assert(strstr(out, " kept\n"), "stdout: %s", out);
    free(out);
    assert_write_story(audit_nth(log_text, "epipe", 0), "EPIPE");
}

static void assert_close_totals(const char *dir, long long in, long long out)
{
    char v[256];
    for (size_t i = 0; audit_nth(log_text, "close", i); i++) {
        const char *line = audit_nth(log_text, "close", i);
        if (audit_get(line, "dir", v, sizeof v) && !strcmp(v, dir)) {
            cr_assert_eq(audit_get_num(line, "bytes_in"), in, "%s", line);
            cr_assert_eq(audit_get_num(line, "bytes_out"), out, "%s", line);
            return;
        }
    }
    cr_assert_fail("no %s close in %s", dir, log_text);
}

static void lifecycle(const char *fam, const char *addr_prefix)
{
    int st = run_prog(config("events = all"),
                      (const char *const[]){ PROG, "lifecycle", fam, NULL });
    assert_exit0(st);
    cr_assert_eq(audit_count(log_text, "connect"), 1, "%s", log_text);
    cr_assert_eq(audit_count(log_text, "accept"), 1, "%s", log_text);
    cr_assert_eq(audit_count(log_text, "close"), 2, "%s", log_text);
    assert_close_totals("outbound", 200, 100);
    assert_close_totals("inbound", 100, 200);
    char v[512];
    const char *conn = audit_nth(log_text, "connect", 0);
    cr_assert(audit_get(conn, "remote", v, sizeof v) &&
              !strncmp(v, addr_prefix, strlen(addr_prefix)), "%s", conn);
    cr_assert(audit_get(conn, "backtrace", v, sizeof v) &&
              strstr(v, "\"make_pair+0x"), "%s", conn);
}

Test(audit, events_all_traces_a_tcp4_connection)
{
    lifecycle("tcp4", "127.0.0.1:");
}

Test(audit, events_all_traces_a_tcp6_connection)
{
    lifecycle("tcp6", "[::1]:");
}

Test(audit, events_all_traces_a_unix_connection)
{
    lifecycle("unix", "/tmp/audit_prog.");
}

/* No config at all: events go to stderr, never stdout. */
Test(audit, default_sink_is_stderr)
{
    if (access("/etc/nettimeo.conf", F_OK) == 0)
        cr_skip_test("/etc/nettimeo.conf exists here");
    const char *const envv[] = { NULL };
    int st = audit_run((const char *const[]){ PROG, "hangup", "fin", NULL },
                       envv, audit_path("out"), audit_path("err"), RUN_MS);
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGPIPE, "status %#x", st);
    char *err = audit_slurp(audit_path("err"));
    char *out = out_text();
    cr_assert_eq(audit_count(err, "epipe"), 1, "stderr: %s", err);
    cr_assert_null(strchr(out, '{'), "stdout: %s", out);
    free(err);
    free(out);
}

/* A deadline that fires on the timer thread: no call site, so an empty
 * backtrace, and the thread's own tid. */
Test(audit, timer_event_has_no_call_site)
{
    const char *cfg = audit_config("nettimeo.conf", "");
    FILE *f = fopen(cfg, "w");
    cr_assert(f);
    fprintf(f, "[global]\nlog = %s\n[defaults]\nidle_timeout = 200ms\n",
            log_path());
    fclose(f);
    int st = run_prog(cfg, (const char *const[]){ PROG, "idle", "1000", NULL });
    assert_exit0(st);
    const char *line = audit_nth(log_text, "timeout", 0);
    char v[256];
    cr_assert(line, "%s", log_text);
    cr_assert(audit_get(line, "op", v, sizeof v) && !strcmp(v, "timer"), "%s", line);
    cr_assert(audit_get(line, "timeout", v, sizeof v) &&
              !strcmp(v, "idle_timeout"), "%s", line);
    cr_assert_eq(audit_get_num(line, "limit_ms"), 200, "%s", line);
    cr_assert(audit_get(line, "backtrace", v, sizeof v) && !strcmp(v, "[]"),
              "%s", line);
    cr_assert_neq(audit_get_num(line, "tid"), audit_get_num(line, "pid"));
}

Test(audit, log_fd_is_close_on_exec)
{
    int st = run_prog(config(""),
                      (const char *const[]){ PROG, "cloexec", log_path(), NULL });
    assert_exit0(st);
    char *out = out_text();
    cr_assert_str_eq(out, "cloexec yes\n");
    free(out);
}

static bool wait_for_event(const char *event, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 20) {
        char *text = audit_slurp(log_path());
        size_t n = audit_count(text, event);
        free(text);
        if (n)
            return true;
        usleep(20000);
    }
    return false;
}

/* logrotate renames the file away: later lines go to a new file at the
 * path (noticed within a second), none is lost. */
Test(audit, rotated_log_is_reopened)
{
    char env[600];
    snprintf(env, sizeof env, "NETTIMEO_CONFIG=%s", config("rate_limit = off"));
    const char *const envv[] = { env, NULL };
    pid_t pid = audit_spawn((const char *const[]){ PROG, "slow", "4", "500", NULL },
                            envv, NULL, NULL);
    cr_assert(wait_for_event("epipe", 5000));
    const char *old = audit_path("events.jsonl.1");
    cr_assert_eq(rename(log_path(), old), 0);
    int st = audit_wait(pid, RUN_MS);
    cr_assert(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    char *before = audit_slurp(old), *after = audit_slurp(log_path());
    size_t n_before = audit_count(before, "epipe");
    size_t n_after = audit_count(after, "epipe");
    cr_assert_geq(n_after, 1, "nothing in the new file; old: %s", before);
    cr_assert_eq(n_before + n_after, 4);
    free(before);
    free(after);
}

/* A log file that cannot be opened: say so once, then log to stderr. */
Test(audit, unopenable_log_falls_back_to_stderr)
{
    const char *cfg = audit_config("nettimeo.conf",
                                   "log = /nonexistent/dir/events.jsonl\n"
                                   "sigpipe = ignore");
    int st = run_prog(cfg, (const char *const[]){ PROG, "hangup", "fin", NULL });
    assert_exit0(st);
    char *err = audit_slurp(audit_path("err"));
    cr_assert(strstr(err, "cannot open log /nonexistent/dir/events.jsonl"),
              "stderr: %s", err);
    cr_assert_eq(audit_count(err, "epipe"), 1, "stderr: %s", err);
    free(err);
}

/* syslog with no daemon listening: lines are dropped, the program is
 * unaffected. */
Test(audit, syslog_without_a_daemon_is_harmless)
{
    if (access("/dev/log", F_OK) == 0)
        cr_skip_test("a syslog daemon listens here");
    const char *cfg = audit_config("nettimeo.conf", "log = syslog\n"
                                                    "sigpipe = ignore");
    int st = run_prog(cfg, (const char *const[]){ PROG, "hangup", "fin", NULL });
    assert_exit0(st);
    char *out = out_text(), *err = audit_slurp(audit_path("err"));
    cr_assert(strstr(out, "write_response: EPIPE"), "stdout: %s", out);
    cr_assert_null(strchr(err, '{'), "stderr: %s", err);
    free(out);
    free(err);
}
