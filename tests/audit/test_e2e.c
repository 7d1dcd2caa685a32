/* End-to-end audit tests: tests/audit/progs/audit_prog.c runs under the
 * library (never this test process) and the log it leaves is checked. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nttest_cr.h"

#define PROG NT_PROG("nt_audit_prog")
#define RUN_MS 20000

static char *log_path;          /* nt_tmpdir()/events.jsonl */
static char *conf_path;         /* the last config written */
static struct nt_result res;    /* the last run_prog */
static char *log_text;          /* the log after it, "" if none */
static struct nt_jsonl events;  /* its JSON lines */

static void setup(void)
{
    log_path = nt_path("events.jsonl");
}

static void teardown(void)
{
    nt_result_free(&res);
    nt_jsonl_free(&events);
    free(log_text);
    free(conf_path);
    free(log_path);
}

TestSuite(audit, .timeout = 60, .init = setup, .fini = teardown);

/* The file's text, "" if it is missing. */
static char *slurp(const char *path)
{
    char *text = nt_read_file(path, NULL);
    return text ? text : strdup("");
}

/* How many JSON lines of text are `event` (NULL: any). */
static size_t count_events(const char *text, const char *event)
{
    struct nt_jsonl j;
    nt_jsonl_parse(&j, text);
    size_t n = nt_jsonl_count(&j, event);
    nt_jsonl_free(&j);
    return n;
}

/* nettimeo.conf in the test's temp dir with this [global] body. */
static const char *write_config(const char *global_body)
{
    char text[1024];
    snprintf(text, sizeof text, "[global]\n%s\n", global_body);
    free(conf_path);
    conf_path = nt_write_tmp("nettimeo.conf", text);
    cr_assert(conf_path, "cannot write nettimeo.conf");
    return conf_path;
}

/* A config that logs to log_path, plus `extra`. */
static const char *config(const char *extra)
{
    char body[1024];
    snprintf(body, sizeof body, "log = %s\n%s", log_path, extra);
    return write_config(body);
}

/* The log as it is now into log_text and events. */
static void load_log(void)
{
    free(log_text);
    log_text = slurp(log_path);
    nt_jsonl_free(&events);
    nt_jsonl_parse(&events, log_text);
}

/* Run argv under the library with config cfg (NULL: none): its stdout,
 * stderr and status in res, then the log (load_log). */
static void run_prog(const char *cfg, const char *const argv[])
{
    char env[600];
    snprintf(env, sizeof env, "NETTIMEO_CONFIG=%s", cfg ? cfg : "");
    struct nt_spawn_opts o = {.env = cfg ? NT_ENV(env) : NULL};
    nt_result_free(&res);
    cr_assert_eq(nt_run(argv, &o, RUN_MS, &res), 0, "%s not started", argv[0]);
    load_log();
}

static void assert_exit0(void)
{
    nt_assert_exit(&res, 0, "nt_audit_prog");
}

static void assert_died_of_sigpipe(void)
{
    char st[64];
    cr_assert(!res.timed_out && WIFSIGNALED(res.status) && WTERMSIG(res.status) == SIGPIPE,
              "%s, stderr: %s", nt_status_str(res.status, st, sizeof st), res.err);
}

/* Every line of the log is a JSON object, starting at its first column. */
static void assert_log_is_jsonl(void)
{
    char *why;
    size_t lines = 0;
    cr_assert_eq(nt_jsonl_validate(log_path, &why), 0, "%s", why ? why : "python3 failed");
    for (const char *p = log_text; *p; p++)
        lines += *p == '\n';
    cr_assert_eq(lines, nt_jsonl_count(&events, NULL), "some line is broken:\n%s", log_text);
}

/* The story of a write to a peer that went away, as SPEC section 5 tells
 * it: the peer, the bytes, the age, who closed first, and where. */
static void assert_write_story(const char *line, const char *err)
{
    char v[4096];
    cr_assert(line, "no event in log:\n%s", log_text);
    cr_assert(nt_json_get(line, "errno", v, sizeof v) && !strcmp(v, err), "%s", line);
    cr_assert(nt_json_get(line, "op", v, sizeof v) && !strcmp(v, "write"), "%s", line);
    cr_assert(nt_json_get(line, "dir", v, sizeof v) && !strcmp(v, "inbound"), "%s", line);
    cr_assert(nt_json_get(line, "remote", v, sizeof v) &&
              !strncmp(v, "127.0.0.1:", 10), "%s", line);
    cr_assert(nt_json_get(line, "local", v, sizeof v), "%s", line);
    cr_assert(nt_json_get(line, "rule", v, sizeof v) && !strcmp(v, "null"), "%s", line);
    cr_assert_gt(nt_json_num(line, "bytes_out", -1), 0, "%s", line);
    cr_assert_geq(nt_json_num(line, "age_ms", -1), 0, "%s", line);
    cr_assert_geq(nt_json_num(line, "idle_ms", -1), 0, "%s", line);
    cr_assert(nt_json_get(line, "peer_closed", v, sizeof v) && !strcmp(v, "true"),
              "%s", line);
    cr_assert(nt_json_get(line, "ts", v, sizeof v) && strlen(v) == 27 &&
              v[26] == 'Z', "%s", line);
    cr_assert_gt(nt_json_num(line, "pid", -1), 0, "%s", line);
    cr_assert(nt_json_get(line, "prog", v, sizeof v) && !strcmp(v, "nt_audit_prog"),
              "%s", line);
    cr_assert(nt_json_get(line, "backtrace", v, sizeof v), "%s", line);
    cr_assert(strstr(v, "\"write_response+0x"), "backtrace %s", v);
    cr_assert_null(strstr(v, "libnettimeo"), "library frames in %s", v);
}

Test(audit, fin_then_write_logs_epipe_naming_the_writer)
{
    run_prog(config("sigpipe = ignore"), NT_ARGV(PROG, "hangup", "fin"));
    assert_exit0();
    cr_assert(strstr(res.out, "write_response: EPIPE"), "stdout: %s", res.out);
    cr_assert_eq(nt_jsonl_count(&events, "epipe"), 1, "%s", log_text);
    assert_write_story(nt_jsonl_nth(&events, "epipe", 0), "EPIPE");
#ifndef NT_SANITIZE
    /* first frame: the program's own call site */
    char bt[4096];
    nt_json_get(nt_jsonl_nth(&events, "epipe", 0), "backtrace", bt, sizeof bt);
    cr_assert(!strncmp(bt, "[\"write_response+0x", 19), "%s", bt);
#endif
}

Test(audit, rst_then_write_logs_econnreset_then_epipe)
{
    run_prog(config("sigpipe = ignore"), NT_ARGV(PROG, "hangup", "rst"));
    assert_exit0();
    cr_assert(strstr(res.out, "write_response: ECONNRESET"), "stdout: %s", res.out);
    assert_write_story(nt_jsonl_nth(&events, "econnreset", 0), "ECONNRESET");
    assert_write_story(nt_jsonl_nth(&events, "epipe", 0), "EPIPE");
}

Test(audit, sigpipe_keep_dies_of_sigpipe_after_logging)
{
    run_prog(config(""), NT_ARGV(PROG, "hangup", "fin"));
    assert_died_of_sigpipe();
    cr_assert_null(strstr(res.out, "write_response:"), "survived: %s", res.out);
    assert_write_story(nt_jsonl_nth(&events, "epipe", 0), "EPIPE");
    assert_log_is_jsonl();
}

Test(audit, reader_gets_econnreset)
{
    run_prog(config(""), NT_ARGV(PROG, "reader"));
    assert_exit0();
    const char *line = nt_jsonl_nth(&events, "econnreset", 0);
    char v[4096];
    cr_assert(line, "%s", log_text);
    cr_assert(nt_json_get(line, "op", v, sizeof v) && !strcmp(v, "read"), "%s", line);
    cr_assert(nt_json_get(line, "dir", v, sizeof v) && !strcmp(v, "outbound"), "%s", line);
    cr_assert_eq(nt_json_num(line, "bytes_in", -1), 5, "%s", line);
    cr_assert(nt_json_get(line, "peer_closed", v, sizeof v) && !strcmp(v, "true"), "%s", line);
    cr_assert(nt_json_get(line, "backtrace", v, sizeof v) &&
              strstr(v, "\"read_reply+0x"), "%s", line);
}

/* Sum of the "count" of every suppressed event for `kind`. */
static long long suppressed_total(const char *kind)
{
    long long total = 0;
    char v[64];
    for (size_t i = 0; i < nt_jsonl_count(&events, "suppressed"); i++) {
        const char *line = nt_jsonl_nth(&events, "suppressed", i);
        if (nt_json_get(line, "suppressed_event", v, sizeof v) && !strcmp(v, kind))
            total += (long long)nt_json_num(line, "count", -1);
    }
    return total;
}

Test(audit, flood_is_rate_limited_and_counted)
{
    run_prog(config("rate_limit = 20/s"), NT_ARGV(PROG, "flood", "1000"));
    assert_exit0();
    cr_assert(strstr(res.out, "epipes: 1000"), "stdout: %s", res.out);
    long long logged = (long long)nt_jsonl_count(&events, "epipe");
    cr_assert_geq(logged, 20);
    cr_assert_leq(logged, 20 * 3, "a 1000-write flood takes well under 2 s");
    cr_assert_geq(nt_jsonl_count(&events, "suppressed"), 1);
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
    const struct nt_spawn_opts plain = {.no_preload = true};
    struct nt_result tool;
    char *copy = nt_path("stripped_prog");
    cr_assert_eq(nt_run(NT_ARGV("objcopy", "--strip-all", PROG, copy), &plain, RUN_MS, &tool), 0);
    nt_assert_exit(&tool, 0, "objcopy");
    nt_result_free(&tool);
    run_prog(config("sigpipe = ignore"), NT_ARGV(copy, "hangup", "fin"));
    assert_exit0();
    char bt[4096], marker[600], off_str[32];
    cr_assert(nt_json_get(nt_jsonl_nth(&events, "epipe", 0), "backtrace", bt, sizeof bt),
              "%s", log_text);
    snprintf(marker, sizeof marker, "(%s+0x", copy);
    long long off = hex_after(bt, marker);
    cr_assert_gt(off, 0, "no frame in %s: %s", copy, bt);
    snprintf(off_str, sizeof off_str, "%#llx", off);
    cr_assert_eq(nt_run(NT_ARGV("addr2line", "-f", "-e", PROG, off_str), &plain, RUN_MS, &tool),
                 0);
    nt_assert_exit(&tool, 0, "addr2line");
    cr_assert(!strncmp(tool.out, "write_response\n", 15), "addr2line said %s (bt %s)",
              tool.out, bt);
    nt_result_free(&tool);
    free(copy);
}

Test(audit, concurrent_processes_write_whole_lines)
{
    enum { PROCS = 8, EACH = 300 };
    char env[600];
    snprintf(env, sizeof env, "NETTIMEO_CONFIG=%s",
             config("rate_limit = off\nbacktrace = 64"));
    const struct nt_spawn_opts o = {.env = NT_ENV(env), .out_path = "/dev/null",
                                    .err_path = "/dev/null"};
    pid_t pids[PROCS];
    for (int i = 0; i < PROCS; i++) {
        pids[i] = nt_spawn(NT_ARGV(PROG, "flood", "300"), &o);
        cr_assert_gt(pids[i], 0);
    }
    for (int i = 0; i < PROCS; i++) {
        int st = 0;
        cr_assert(nt_wait_timeout(pids[i], RUN_MS, &st) == 0 && WIFEXITED(st) &&
                  WEXITSTATUS(st) == 0, "flood %d: status %#x", i, st);
    }
    load_log();
    assert_log_is_jsonl();
    cr_assert_eq(nt_jsonl_count(&events, "epipe"), PROCS * EACH);
    struct stat sb;
    cr_assert_eq(stat(log_path, &sb), 0);
    cr_assert_eq(sb.st_mode & 0777, 0600);
}

Test(audit, closefrom_does_not_silence_the_log)
{
    run_prog(config("sigpipe = ignore"), NT_ARGV(PROG, "closefrom"));
    assert_exit0();
    assert_write_story(nt_jsonl_nth(&events, "epipe", 0), "EPIPE");
}

Test(audit, dup2_over_the_log_fd_is_noticed_and_left_alone)
{
    run_prog(config("sigpipe = ignore"), NT_ARGV(PROG, "dup2", log_path));
    assert_exit0();
    cr_assert(strstr(res.out, " kept\n"), "stdout: %s", res.out);
    assert_write_story(nt_jsonl_nth(&events, "epipe", 0), "EPIPE");
}

static void assert_close_totals(const char *dir, long long in, long long out)
{
    char v[256];
    for (size_t i = 0; i < nt_jsonl_count(&events, "close"); i++) {
        const char *line = nt_jsonl_nth(&events, "close", i);
        if (nt_json_get(line, "dir", v, sizeof v) && !strcmp(v, dir)) {
            cr_assert_eq(nt_json_num(line, "bytes_in", -1), in, "%s", line);
            cr_assert_eq(nt_json_num(line, "bytes_out", -1), out, "%s", line);
            return;
        }
    }
    cr_assert_fail("no %s close in %s", dir, log_text);
}

static void lifecycle(const char *fam, const char *addr_prefix)
{
    run_prog(config("events = all"), NT_ARGV(PROG, "lifecycle", fam));
    assert_exit0();
    cr_assert_eq(nt_jsonl_count(&events, "connect"), 1, "%s", log_text);
    cr_assert_eq(nt_jsonl_count(&events, "accept"), 1, "%s", log_text);
    cr_assert_eq(nt_jsonl_count(&events, "close"), 2, "%s", log_text);
    assert_close_totals("outbound", 200, 100);
    assert_close_totals("inbound", 100, 200);
    char v[512];
    const char *conn = nt_jsonl_nth(&events, "connect", 0);
    cr_assert(nt_json_get(conn, "remote", v, sizeof v) &&
              !strncmp(v, addr_prefix, strlen(addr_prefix)), "%s", conn);
    cr_assert(nt_json_get(conn, "backtrace", v, sizeof v) &&
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
    run_prog(NULL, NT_ARGV(PROG, "hangup", "fin"));
    assert_died_of_sigpipe();
    cr_assert_eq(count_events(res.err, "epipe"), 1, "stderr: %s", res.err);
    cr_assert_null(strchr(res.out, '{'), "stdout: %s", res.out);
}

/* A deadline that fires on the timer thread: no call site, so an empty
 * backtrace, and the thread's own tid. */
Test(audit, timer_event_has_no_call_site)
{
    run_prog(config("[defaults]\nidle_timeout = 200ms"), NT_ARGV(PROG, "idle", "1000"));
    assert_exit0();
    const char *line = nt_jsonl_nth(&events, "timeout", 0);
    char v[256];
    cr_assert(line, "%s", log_text);
    cr_assert(nt_json_get(line, "op", v, sizeof v) && !strcmp(v, "timer"), "%s", line);
    cr_assert(nt_json_get(line, "timeout", v, sizeof v) &&
              !strcmp(v, "idle_timeout"), "%s", line);
    cr_assert_eq(nt_json_num(line, "limit_ms", -1), 200, "%s", line);
    cr_assert(nt_json_get(line, "backtrace", v, sizeof v) && !strcmp(v, "[]"),
              "%s", line);
    cr_assert_neq(nt_json_num(line, "tid", -1), nt_json_num(line, "pid", -1), "%s", line);
}

Test(audit, log_fd_is_close_on_exec)
{
    run_prog(config(""), NT_ARGV(PROG, "cloexec", log_path));
    assert_exit0();
    cr_assert_str_eq(res.out, "cloexec yes\n");
}

static bool wait_for_event(const char *event, int timeout_ms)
{
    for (int t = 0; t < timeout_ms; t += 20) {
        char *text = slurp(log_path);
        size_t n = count_events(text, event);
        free(text);
        if (n)
            return true;
        nt_sleep_ms(20);
    }
    return false;
}

/* logrotate renames the file away: later lines go to a new file at the
 * path (noticed within a second), none is lost. */
Test(audit, rotated_log_is_reopened)
{
    char env[600];
    snprintf(env, sizeof env, "NETTIMEO_CONFIG=%s", config("rate_limit = off"));
    const struct nt_spawn_opts o = {.env = NT_ENV(env), .out_path = "/dev/null",
                                    .err_path = "/dev/null"};
    pid_t pid = nt_spawn(NT_ARGV(PROG, "slow", "4", "500"), &o);
    cr_assert_gt(pid, 0);
    cr_assert(wait_for_event("epipe", 5000));
    char *old = nt_path("events.jsonl.1");
    cr_assert_eq(rename(log_path, old), 0);
    int st = 0;
    cr_assert(nt_wait_timeout(pid, RUN_MS, &st) == 0 && WIFEXITED(st) &&
              WEXITSTATUS(st) == 0, "status %#x", st);
    char *before = slurp(old), *after = slurp(log_path);
    size_t n_before = count_events(before, "epipe");
    size_t n_after = count_events(after, "epipe");
    cr_assert_geq(n_after, 1, "nothing in the new file; old: %s", before);
    cr_assert_eq(n_before + n_after, 4);
    free(before);
    free(after);
    free(old);
}

/* A log file that cannot be opened: say so once, then log to stderr. */
Test(audit, unopenable_log_falls_back_to_stderr)
{
    run_prog(write_config("log = /nonexistent/dir/events.jsonl\n"
                          "sigpipe = ignore"),
             NT_ARGV(PROG, "hangup", "fin"));
    assert_exit0();
    cr_assert(strstr(res.err, "cannot open log /nonexistent/dir/events.jsonl"),
              "stderr: %s", res.err);
    cr_assert_eq(count_events(res.err, "epipe"), 1, "stderr: %s", res.err);
}

/* syslog with no daemon listening: lines are dropped, the program is
 * unaffected. */
Test(audit, syslog_without_a_daemon_is_harmless)
{
    if (access("/dev/log", F_OK) == 0)
        cr_skip_test("a syslog daemon listens here");
    run_prog(write_config("log = syslog\n"
                          "sigpipe = ignore"),
             NT_ARGV(PROG, "hangup", "fin"));
    assert_exit0();
    cr_assert(strstr(res.out, "write_response: EPIPE"), "stdout: %s", res.out);
    cr_assert_null(strchr(res.err, '{'), "stderr: %s", res.err);
}
