/* One connection per socket, safe across fork, vfork, signals and threads
 * (issue 12; SPEC §2, §4, §7; LESSONS 19-22). Each test runs
 * tests/progs/lifecycle_prog in one mode with a config for it, and asserts
 * on what the program saw: the same as without the library, or what
 * SPEC §4 says when a deadline fires. */
#define _GNU_SOURCE
#include "nttest_cr.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

TestSuite(lifecycle, .timeout = 60);

static void run_mode(const char *mode, const char *opts, const char *conf, bool preload,
                     struct nt_result *r)
{
    cr_assert(nt_run_config(NT_ARGV(NT_PROG("lifecycle_prog"), mode), opts, conf, preload, 30000, r) == 0,
              "%s: not started", mode);
}

static void expect_out(const struct nt_result *r, const char *want, const char *what)
{
    cr_assert(r->out && strstr(r->out, want), "%s: expected \"%s\" in stdout:\n%s\nstderr:\n%s",
              what, want, r->out ? r->out : "", r->err ? r->err : "");
}

static long out_num(const struct nt_result *r, const char *key)
{
    const char *p = r->out ? strstr(r->out, key) : NULL;
    cr_assert(p, "no %s in stdout:\n%s\nstderr:\n%s", key, r->out ? r->out : "",
              r->err ? r->err : "");
    return strtol(p + strlen(key), NULL, 10);
}

/* Python's subprocess: vfork, close_range in the child, exec. The child
 * must not erase the parent's connections: the recv still times out. */
Test(lifecycle, vfork_child_leaves_parent_deadlines)
{
    struct nt_result r;
    run_mode("vfork-close-range", "read_timeout=1s", NULL, true, &r);
    nt_assert_exit(&r, 0, "vfork-close-range");
    expect_out(&r, "recv=-1 errno=ETIMEDOUT", "recv after vfork+close_range");
    nt_assert_elapsed(out_num(&r, "elapsed_ms="), 1000, 3000);
    nt_result_free(&r);
}

/* The same through the real thing. */
Test(lifecycle, python_subprocess_keeps_deadlines)
{
    const char *script =
        "import socket, subprocess, time\n"
        "l = socket.socket(); l.bind(('127.0.0.1', 0)); l.listen(4)\n"
        "c = socket.create_connection(l.getsockname()); s, _ = l.accept()\n"
        "subprocess.run(['/bin/true'])\n"
        "t = time.monotonic()\n"
        "try:\n"
        "    c.recv(10); print('no timeout')\n"
        "except OSError as e:\n"
        "    print('errno', e.errno, 'after', round(time.monotonic() - t, 1))\n";
    struct nt_spawn_opts o = { .env = NT_ENV("NETTIMEO_OPTIONS=read_timeout=1s") };
    struct nt_result r;
    cr_assert(nt_run(NT_ARGV("/usr/bin/python3", "-c", script), &o, 20000, &r) == 0);
    cr_assert(!r.timed_out, "python hung in recv after subprocess.run:\n%s", r.err);
    nt_assert_exit(&r, 0, "python");
    expect_out(&r, "errno 110 after", "python recv after subprocess.run");
    nt_result_free(&r);
}

/* A fork child that only waits never cuts its parent's busy connection. */
Test(lifecycle, fork_child_never_cuts_parent)
{
    struct nt_result r;
    run_mode("fork-idle", "idle_timeout=1s", NULL, true, &r);
    nt_assert_exit(&r, 0, "fork-idle");
    expect_out(&r, "rounds=30 errno=0", "parent traffic while the child sleeps");
    nt_result_free(&r);
}

/* fork() from a program whose threads coalesce and have request_timeout:
 * one fork handler, one lock order, no deadlock. */
Test(lifecycle, fork_from_coalescing_threads)
{
    struct nt_result r;
    run_mode("fork-threads", "coalesce=16k request_timeout=60s idle_timeout=60s", NULL, true,
             &r);
    nt_assert_exit(&r, 0, "fork-threads");
    expect_out(&r, "forks=200", "200 forks");
    nt_result_free(&r);
}

/* A signal handler that dup()s and close()s a governed socket while the
 * interrupted code may hold the library's locks. */
Test(lifecycle, signal_handler_dup_close)
{
    struct nt_result r;
    run_mode("signal-dup-close", "idle_timeout=30s request_timeout=30s", NULL, true, &r);
    nt_assert_exit(&r, 0, "signal-dup-close");
    expect_out(&r, "done bad=0 handled=yes", "connections while the handler runs");
    nt_result_free(&r);
}

/* An unused dup shares the socket's clocks: the busy connection is not
 * idle. */
Test(lifecycle, dup_twin_shares_idle_clock)
{
    struct nt_result r;
    run_mode("dup-idle", "idle_timeout=1s", NULL, true, &r);
    nt_assert_exit(&r, 0, "dup-idle");
    expect_out(&r, "dup rounds=15 errno=0", "traffic on a dup'ed socket");
    nt_result_free(&r);
}

/* inetd-style: one socket inherited on two descriptors is one connection. */
Test(lifecycle, inherited_twins_are_one_connection)
{
    struct nt_result r;
    run_mode("twins-exec", "idle_timeout=1s", NULL, true, &r);
    nt_assert_exit(&r, 0, "twins-exec");
    expect_out(&r, "twins rounds=15 errno=0", "traffic on fd 3");
    expect_out(&r, "fd4 write=1 errno=0", "write on fd 4");
    nt_result_free(&r);
}

/* A socket received with SCM_RIGHTS on a socketpair lands on a number a
 * file had: it is governed from its first use. */
Test(lifecycle, scm_rights_on_reused_number_is_governed)
{
    struct nt_result r;
    run_mode("scm-reused", "read_timeout=1s", NULL, true, &r);
    nt_assert_exit(&r, 0, "scm-reused");
    expect_out(&r, "landed=same recv=-1 errno=ETIMEDOUT", "recv on the received socket");
    nt_assert_elapsed(out_num(&r, "elapsed_ms="), 1000, 3000);
    nt_result_free(&r);
}

/* fclose(fdopen()) closes behind the hooks' back; a socket that lands on
 * that number later carries nothing over. */
Test(lifecycle, fclose_leaves_nothing_behind)
{
    struct nt_result r;
    run_mode("fclose-reused", "idle_timeout=1s", NULL, true, &r);
    nt_assert_exit(&r, 0, "fclose-reused");
    expect_out(&r, "landed=same write=1 errno=0 peer_read=1", "write on the new socket");
    nt_result_free(&r);
}

/* The library's waits cost the program no descriptors. */
Test(lifecycle, blocked_calls_take_no_descriptors)
{
    struct nt_result with, without;
    run_mode("rlimit-threads", "read_timeout=60s", NULL, true, &with);
    run_mode("rlimit-threads", "read_timeout=60s", NULL, false, &without);
    nt_assert_exit(&with, 0, "rlimit-threads");
    nt_assert_same(&with, &without, "connections accepted under RLIMIT_NOFILE 40");
    nt_result_free(&with);
    nt_result_free(&without);
}

/* inherit = no reaches the children glibc spawns itself. */
Test(lifecycle, inherit_no_for_system_and_popen)
{
    struct nt_result r;
    run_mode("spawn-env", "", "[global]\ninherit = no\n", true, &r);
    nt_assert_exit(&r, 0, "spawn-env");
    expect_out(&r, "system=\n", "system() child's LD_PRELOAD");
    expect_out(&r, "popen=\n", "popen() child's LD_PRELOAD");
    nt_result_free(&r);
    run_mode("spawn-env", "", NULL, true, &r);
    expect_out(&r, "system=preloaded", "inherit = yes (default)");
    nt_result_free(&r);
}

/* ---- the timer thread and glibc (core/libc_threads.c) ----------------
 * With deadlines armed the library runs a timer thread. A single-threaded
 * program must still be one to glibc (its fast paths; libstdc++ reads
 * __libc_single_threaded too), and what needs glibc to know every thread
 * must still see the timer: the program's own threads, fork, set*id.
 * Each runs with and without the library: same stdout. */

#include <gnu/libc-version.h>

static void check_libc_threads_in(const char *mode, int timeout_ms)
{
    if (strcmp(gnu_get_libc_version(), "2.36") != 0)
        cr_skip_test("the timer is hidden from glibc 2.36 only (this is %s)",
                     gnu_get_libc_version());
    struct nt_spawn_opts o = {
        .env = NT_ENV("NETTIMEO_OPTIONS=connect_timeout=10s read_timeout=8s "
                      "write_timeout=8s idle_timeout=20s max_lifetime=60s")};
    struct nt_result with, without;
    cr_assert(nt_run_both(NT_ARGV(NT_PROG("libc_threads_prog"), mode), &o, timeout_ms,
                          &with, &without) == 0, "%s: not started", mode);
    if (nt_exited(&without, 77))
        cr_skip_test("%s: %s", mode, without.out);
    nt_assert_exit(&with, 0, mode);
    cr_assert(with.err && strstr(with.err, "tasks=2"),
              "%s: the timer thread did not start:\n%s", mode, with.err ? with.err : "");
    nt_assert_same(&with, &without, mode);
    nt_result_free(&with);
    nt_result_free(&without);
}

static void check_libc_threads(const char *mode)
{
    check_libc_threads_in(mode, 60000);
}

Test(lifecycle, glibc_counts_one_thread_while_timer_runs)
{
    check_libc_threads("flag");
}

Test(lifecycle, program_threads_after_timer_started)
{
    check_libc_threads("threads");
}

Test(lifecycle, fork_child_after_timer_started)
{
    check_libc_threads("fork");
}

/* A timer left with the old credentials would keep root in a program
 * that dropped it. */
Test(lifecycle, dropped_privileges_reach_timer_thread)
{
    check_libc_threads("setid");
}

/* A thread made inside fork (an atfork handler's helper) may still be on
 * its way out, in free(), when glibc's count has dropped: telling glibc
 * the process is single-threaded then corrupted the heap (review of
 * 26de2ea: SIGABRT in about a second). */
Test(lifecycle, fork_whose_atfork_handler_runs_a_thread)
{
    check_libc_threads("atfork-thread");
}

/* glibc ends the process when its last counted thread leaves through
 * pthread_exit; counted, the timer kept it alive for ever. */
Test(lifecycle, main_pthread_exit_ends_the_process)
{
    check_libc_threads_in("main-exit", 15000);
}

/* A signal handler's set*id that lands while the library lets glibc see
 * the timer must reach the timer too (review of 39f474a: a handler at the
 * window's edge left the timer with the old egid, 8 runs in 10). */
Test(lifecycle, setid_in_signal_handlers_reaches_timer_thread)
{
    check_libc_threads("setid-signals");
}

/* initgroups runs NSS modules, which may block (a FIFO stands in for
 * /etc/group, in a mount namespace of its own): the program's signals
 * must still interrupt it, as without the library (review of 19d420c:
 * the set*id window blocked them for the whole call, and it hung). */
Test(lifecycle, initgroups_stays_interruptible)
{
    if (geteuid() != 0)
        cr_skip_test("needs root (a mount namespace)");
    char *fifo = nt_path("group.fifo");
    cr_assert(mkfifo(fifo, 0600) == 0, "mkfifo %s", fifo);
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mount --bind %s /etc/group || exit 77; exec %s initgroups-alarm",
             fifo, NT_PROG("libc_threads_prog"));
    struct nt_spawn_opts o = {
        .env = NT_ENV("NETTIMEO_OPTIONS=connect_timeout=10s read_timeout=8s "
                      "write_timeout=8s idle_timeout=20s max_lifetime=60s")};
    struct nt_result with, without;
    cr_assert(nt_run_both(NT_ARGV("unshare", "-m", "sh", "-c", cmd), &o, 10000,
                          &with, &without) == 0, "not started");
    if (nt_exited(&without, 77) || nt_exited(&without, 1))
        cr_skip_test("no private mount namespace here: %s", without.err);
    nt_assert_exit(&with, 0, "initgroups-alarm");
    nt_assert_same(&with, &without, "initgroups-alarm");
    nt_result_free(&with);
    nt_result_free(&without);
}
