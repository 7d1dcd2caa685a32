/* Programs that confine themselves with a seccomp filter (issue 15): each
 * runs with and without the library, with every deadline armed (values
 * that never fire), and must behave the same; the library logs one
 * `sandboxed` event when the program installs its filter. Run against the
 * library of before this issue (NTTEST_LIB=...), every test here fails:
 * the filter kills the program with SIGSYS at its first governed call. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "nttest_cr.h"

#define PROG NT_PROG("sb_prog")
#ifdef NT_SANITIZE
#define SB_ENV "SB_ASAN=1"
#else
#define SB_ENV "SB_ASAN=0"
#endif

static char *log_path;
static char *conf_path;

static void setup(void)
{
    log_path = nt_path("sandbox.jsonl");
    unlink(log_path);
}

static void teardown(void)
{
    free(log_path);
    free(conf_path);
}

TestSuite(sandbox, .timeout = 60, .init = setup, .fini = teardown);

/* Every deadline armed, none meant to fire; every event logged. */
static const char *config(const char *idle)
{
    char text[1024];
    snprintf(text, sizeof text,
             "[global]\nlog = %s\nevents = all\n"
             "[defaults]\nconnect_timeout = 10s\nread_timeout = 30s\n"
             "write_timeout = 30s\nidle_timeout = %s\nrequest_timeout = 60s\n"
             "max_lifetime = 10m\n",
             log_path, idle);
    free(conf_path);
    conf_path = nt_write_tmp("sandbox.conf", text);
    cr_assert(conf_path);
    return conf_path;
}

/* Run `sb_prog mode` with and without the library; both exit 0 with the
 * same output. Returns the log. */
static void run_mode(const char *mode, const char *idle, const char *const *env,
                     struct nt_jsonl *log)
{
    char cfg[600];
    snprintf(cfg, sizeof cfg, "NETTIMEO_CONFIG=%s", config(idle));
    const char *envv[8] = { cfg, SB_ENV };
    for (int i = 0; env && env[i] && i < 5; i++)
        envv[i + 2] = env[i];
    struct nt_spawn_opts o = { .env = envv };
    struct nt_result with, without;
    cr_assert_eq(nt_run_both(NT_ARGV(PROG, mode), &o, 40000, &with, &without), 0);
    nt_assert_exit(&without, 0, mode);
    nt_assert_exit(&with, 0, mode);
    nt_assert_same(&with, &without, mode);
    nt_result_free(&with);
    nt_result_free(&without);
    cr_assert_eq(nt_jsonl_load(log, log_path), 0, "%s: no log", mode);
}

/* The one `sandboxed` event: op, scope, and the SPEC common fields. */
static const char *one_sandboxed(const struct nt_jsonl *log, const char *op,
                                 const char *scope)
{
    cr_assert_eq(nt_jsonl_count(log, "sandboxed"), 1, "sandboxed events: %zu",
                 nt_jsonl_count(log, "sandboxed"));
    const char *ev = nt_jsonl_nth(log, "sandboxed", 0);
    char v[128];
    cr_assert(nt_json_get(ev, "op", v, sizeof v) && !strcmp(v, op), "%s", ev);
    cr_assert(nt_json_get(ev, "scope", v, sizeof v) && !strcmp(v, scope), "%s", ev);
    cr_assert(nt_json_get(ev, "ts", v, sizeof v), "%s", ev);
    cr_assert(nt_json_num(ev, "pid", 0) > 0 && nt_json_num(ev, "tid", 0) > 0, "%s", ev);
    cr_assert(nt_json_get(ev, "prog", v, sizeof v) && !strcmp(v, "sb_prog"), "%s", ev);
    cr_assert(nt_json_num(ev, "connections", -1) >= 1, "%s", ev);
    cr_assert(nt_json_get(ev, "backtrace", v, sizeof v) && strcmp(v, "[]"), "%s", ev);
    return ev;
}

/* No event of process `pid` after the `sandboxed` one (index `from`),
 * except from thread `tid` (0: none). */
static void quiet_after(const struct nt_jsonl *log, const char *sb, int tid)
{
    int pid = (int)nt_json_num(sb, "pid", 0);
    size_t i = 0;
    while (i < log->n && log->line[i] != sb)
        i++;
    for (i++; i < log->n; i++) {
        if ((int)nt_json_num(log->line[i], "pid", 0) != pid)
            continue;
        cr_assert(tid && (int)nt_json_num(log->line[i], "tid", 0) == tid,
                  "event from the confined process after it stepped back: %s",
                  log->line[i]);
    }
}

Test(sandbox, prctl_filter_single_thread)
{
    struct nt_jsonl log;
    run_mode("prctl", "30s", NULL, &log);
    quiet_after(&log, one_sandboxed(&log, "prctl", "process"), 0);
    nt_jsonl_free(&log);
}

Test(sandbox, seccomp_syscall_single_thread)
{
    struct nt_jsonl log;
    run_mode("seccomp", "30s", NULL, &log);
    quiet_after(&log, one_sandboxed(&log, "seccomp", "process"), 0);
    nt_jsonl_free(&log);
}

/* No config at all (audit-only defaults): before issue 15 this alone got
 * the program killed. */
Test(sandbox, no_config)
{
    struct nt_spawn_opts o = { .env = NT_ENV(SB_ENV) };
    struct nt_result with, without;
    cr_assert_eq(nt_run_both(NT_ARGV(PROG, "prctl"), &o, 40000, &with, &without), 0);
    nt_assert_exit(&with, 0, "no config");
    nt_assert_same(&with, &without, "no config");
    nt_result_free(&with);
    nt_result_free(&without);
}

/* TSYNC while three threads do socket I/O; a 1 s idle_timeout makes the
 * (then confined) timer thread wake up under the filter. */
Test(sandbox, tsync_busy_threads)
{
    struct nt_jsonl log;
    run_mode("tsync", "1s", NULL, &log);
    quiet_after(&log, one_sandboxed(&log, "seccomp", "process"), 0);
    cr_assert_eq(nt_jsonl_count(&log, "timeout"), 0);
    nt_jsonl_free(&log);
}

/* A filter on one thread: it and the thread it creates (found by the
 * lazy check: openat answers EACCES) pass through; the main thread,
 * unconfined, is still governed: its close is logged. */
Test(sandbox, per_thread_filter)
{
    struct nt_jsonl log;
    run_mode("thread", "30s", NULL, &log);
    const char *sb = one_sandboxed(&log, "prctl", "thread");
    int pid = (int)nt_json_num(sb, "pid", 0);
    bool main_close = false;
    bool after = false;
    for (size_t i = 0; i < log.n; i++) {
        if (log.line[i] == sb)
            after = true;
        char ev[32];
        if (after && (int)nt_json_num(log.line[i], "pid", 0) == pid &&
            (int)nt_json_num(log.line[i], "tid", 0) == pid &&
            nt_json_get(log.line[i], "event", ev, sizeof ev) &&
            !strcmp(ev, "close"))
            main_close = true;
    }
    cr_assert(main_close, "no close event from the unconfined main thread");
    quiet_after(&log, sb, pid);
    nt_jsonl_free(&log);
}

/* A thread blocked in a governed read (read_timeout armed, so the
 * library waits for it) while another thread confines itself: the
 * library lets go of its connections, and the blocked read still returns
 * the bytes that come afterwards (it failed with EBADF: the connection
 * object was retired under the waiting call). */
Test(sandbox, blocked_read_survives_letting_go)
{
    struct nt_jsonl log;
    run_mode("blocked", "30s", NULL, &log);
    cr_assert(one_sandboxed(&log, "prctl", "thread"));
    nt_jsonl_free(&log);
}

/* A program exec'd under a filter (a launcher set NoNewPrivs and the
 * filter, then exec'd it): the library stands back from its start and
 * writes nothing (the launcher logged the event when it installed it). */
Test(sandbox, inherited_filter)
{
    struct nt_jsonl log;
    run_mode("launch", "30s", NULL, &log);
    const char *sb = one_sandboxed(&log, "prctl", "process");
    quiet_after(&log, sb, 0);
    nt_jsonl_free(&log);
}

/* NETTIMEO_SECCOMP=govern: the operator vouches for the inherited filter;
 * this one does not allow the library's calls, so the program dies as
 * it did before this issue: the switch really switches. */
Test(sandbox, inherited_filter_govern_opt_in)
{
    char cfg[600];
    snprintf(cfg, sizeof cfg, "NETTIMEO_CONFIG=%s", config("30s"));
    struct nt_spawn_opts o = { .env = NT_ENV(cfg, SB_ENV, "NETTIMEO_SECCOMP=govern") };
    struct nt_result r;
    cr_assert_eq(nt_run(NT_ARGV(PROG, "launch"), &o, 40000, &r), 0);
    cr_assert(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGSYS,
              "expected SIGSYS, got status 0x%x\n%s", r.status, r.err);
    nt_result_free(&r);
}

/* The close events of process `pid` after line `from` (the launcher's
 * own closes before its exec share the pid). */
static size_t closes_of(const struct nt_jsonl *log, const char *from, int pid)
{
    size_t n = 0, i = 0;
    while (i < log->n && log->line[i] != from)
        i++;
    for (; i < log->n; i++) {
        char ev[32];
        n += (int)nt_json_num(log->line[i], "pid", 0) == pid &&
             nt_json_get(log->line[i], "event", ev, sizeof ev) &&
             !strcmp(ev, "close");
    }
    return n;
}

/* A broad inherited filter (allows everything, like docker's default
 * profile for these calls): by default the library still stands back
 * (it cannot read the filter); with NETTIMEO_SECCOMP=govern it governs
 * the program: its close is logged. */
Test(sandbox, inherited_broad_filter_govern)
{
    struct nt_jsonl log;
    run_mode("launch-broad", "30s", NULL, &log);
    const char *sb = one_sandboxed(&log, "prctl", "process");
    int pid = (int)nt_json_num(sb, "pid", 0);
    cr_assert_eq(closes_of(&log, sb, pid), 0, "governed without the opt-in");
    nt_jsonl_free(&log);
    unlink(log_path);
    run_mode("launch-broad", "30s", NT_ENV("NETTIMEO_SECCOMP=govern"), &log);
    sb = one_sandboxed(&log, "prctl", "process");
    pid = (int)nt_json_num(sb, "pid", 0);
    cr_assert_eq(closes_of(&log, sb, pid), 1, "not governed with NETTIMEO_SECCOMP=govern");
    nt_jsonl_free(&log);
}
