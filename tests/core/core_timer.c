/* The timer task (issue 17; deadline/timer.c): deadlines fire by
 * themselves without making the program multi-threaded in glibc's eyes,
 * and the task is invisible to the program: fork, exec, exit, vfork,
 * signals, errno, privilege drops. Each test runs one mode of
 * tests/progs/timer_prog (single-threaded, idle_timeout=200ms) under the
 * library and asserts on what it printed. */
#define _GNU_SOURCE
#include "nttest_cr.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

TestSuite(timer, .timeout = 60);

#define OPTS "idle_timeout=200ms"

static void run_mode(const char *const argv[], struct nt_result *r)
{
    cr_assert(nt_run_config(argv, OPTS, NULL, true, 30000, r) == 0, "%s: not started",
              argv[1]);
    nt_assert_exit(r, 0, argv[1]);
}

static void expect_out(const struct nt_result *r, const char *want)
{
    cr_assert(r->out && strstr(r->out, want), "expected \"%s\" in stdout:\n%s\nstderr:\n%s",
              want, r->out ? r->out : "", r->err ? r->err : "");
}

/* Run one mode, expect its line. */
static void check(const char *mode, const char *want)
{
    struct nt_result r;
    run_mode(NT_ARGV(NT_PROG("timer_prog"), mode), &r);
    expect_out(&r, want);
    nt_result_free(&r);
}

/* The point of the task: glibc keeps its single-threaded paths (fails
 * with a pthread timer: __libc_single_threaded drops to 0). The parked
 * connection is cut while the program sleeps in a call no hook sees. */
Test(timer, program_stays_single_threaded)
{
#ifdef NT_SANITIZE
    check("single", "single=0 tasks=2 cut=1"); /* the sanitizer build keeps a pthread */
#else
    check("single", "single=1 tasks=2 cut=1");
#endif
}

/* Another preload wraps shutdown, which the timer calls: its wrapper may
 * allocate or lock, so the timer is a pthread there (deadlines fire the
 * same). */
Test(timer, foreign_wrapper_gets_a_pthread)
{
    char preload[2048];
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s:%s", nt_preload_value(),
             NT_PROG("libwrap_shutdown.so"));
    struct nt_spawn_opts o = { .env = NT_ENV("NETTIMEO_OPTIONS=" OPTS, preload) };
    struct nt_result r;
    cr_assert(nt_run(NT_ARGV(NT_PROG("timer_prog"), "single"), &o, 30000, &r) == 0);
    nt_assert_exit(&r, 0, "single, wrapped");
    expect_out(&r, "single=0 tasks=2 cut=1");
    nt_result_free(&r);
}

Test(timer, fork_child_gets_own_timer)
{
    check("fork", "forked=40 bad=0 parent_cut=1");
}

Test(timer, exec_leaves_no_task)
{
    check("exec", "exec_tasks=1");
}

Test(timer, exit_while_firing)
{
    check("exit", "exits=24 bad=0");
}

Test(timer, signals_never_reach_the_task)
{
    check("signals", "pending=1 early=0 unblocked=1 restart_read=1/0 "
                   "norestart_read=-1/EINTR handled_gt=1 foreign=0");
}

Test(timer, program_errno_untouched)
{
    check("errno", "errno=4242 changed=0");
}

/* glibc's allocator and stdio run unlocked in the program while the
 * timer fires and logs 160 events: the timer never touches them. */
Test(timer, program_heap_and_stdio_undisturbed)
{
    struct nt_result r;
    struct nt_spawn_opts o = { .env = NT_ENV("NETTIMEO_OPTIONS=" OPTS) };
    cr_assert(nt_run(NT_ARGV(NT_PROG("timer_prog"), "heap"), &o, 30000, &r) == 0);
    nt_assert_exit(&r, 0, "heap");
    expect_out(&r, "heap_rounds_gt=1");
    cr_assert(r.err && strstr(r.err, "\"idle_timeout\""), "no timeout events:\n%s", r.err);
    nt_result_free(&r);
}

Test(timer, vfork_child_leaves_timer)
{
    check("vfork", "vfork_status=0 tasks=2 cut=1");
}

/* Confined by the program's own filter: the library makes no call there,
 * and its timer must not linger as the one unconfined thread. */
Test(timer, seccomp_stops_the_timer)
{
    check("seccomp", "before=2 after=1 later=1");
}

/* A privilege drop by the program (root only): mode, way, expected line
 * after "how=WAY tasks=2 ". */
static void drop(const char *mode, const char *how, const char *rest)
{
    if (geteuid() != 0)
        cr_skip_test("needs root");
    struct nt_result r;
    run_mode(NT_ARGV(NT_PROG("timer_prog"), mode, how), &r);
    char want[160];
    snprintf(want, sizeof want, "how=%s tasks=2 %s", how, rest);
    expect_out(&r, want);
    nt_result_free(&r);
}

#define UID_OK "bad_uid=0 cut=1 bad_uid_later=0 cut_later=1"
/* glibc changes only the threads it knows: a task started as root must
 * not stay root. */
Test(timer, setuid_reaches_every_task) { drop("setuid", "setuid", UID_OK); }
Test(timer, setresuid_reaches_every_task) { drop("setuid", "setresuid", UID_OK); }
Test(timer, raw_syscall_setresuid_reaches_every_task) { drop("setuid", "syscall", UID_OK); }
Test(timer, setgroups_initgroups_setreuid_reach_every_task) { drop("setuid", "groups", UID_OK); }

/* Capabilities are per thread as well (even for glibc): uid 0 without
 * them. */
Test(timer, capset_reaches_every_task) { drop("capset", "libc", "with_caps=0 cut=1"); }
Test(timer, raw_syscall_capset_reaches_every_task)
{
    drop("capset", "syscall", "with_caps=0 cut=1");
}

/* The task has no dtv of glibc's making: nothing in the library may use
 * general-dynamic TLS (__tls_get_addr), all of it is initial-exec. */
Test(timer, library_uses_no_dynamic_tls)
{
    struct nt_result r;
    cr_assert(nt_run(NT_ARGV("readelf", "-rW", "--dyn-syms", nt_lib_path()), &(struct nt_spawn_opts){ .no_preload = true }, 30000, &r) == 0);
    nt_assert_exit(&r, 0, "readelf");
    cr_assert(r.out && strstr(r.out, "TPOFF64"), "no initial-exec TLS at all?\n%s", r.out);
    cr_assert(!strstr(r.out, "DTPMOD64") && !strstr(r.out, "__tls_get_addr"),
              "general-dynamic TLS in the library:\n%s", r.out);
    nt_result_free(&r);
}
