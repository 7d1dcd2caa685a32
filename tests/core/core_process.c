/* Process-level situations the fd table and the hooks must survive without
 * changing anything: threads, fork/vfork/posix_spawn from a busy
 * multi-threaded program, dup'ed sockets, close racing a blocked read,
 * very high fds, and daemons that close every fd at start-up. */
#define _GNU_SOURCE
#include "nttest_cr.h"

#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

TestSuite(process, .timeout = 40);

static const char *const fams[] = {"tcp4", "tcp6", "unix"};

Test(process, threads_against_server)
{
    /* 16 threads x 10 connections; the server runs a thread per connection */
    nt_check_echo_both("thread", NT_TCP4, 160,
                       NT_ARGV(NT_PROG("thread_stress"), "-t", "16", "-c", "10", "-n", "32k",
                               "@ADDR"),
                       NULL, "thread_stress vs echo_server");
}

Test(process, threads_both_ends_in_process)
{
    nt_check_run_both(NT_ARGV(NT_PROG("thread_stress"), "-t", "24", "-c", "20", "-n", "16k"),
                      NULL, 0, "thread_stress, in-process server");
}

/* LESSONS 11/12: children made while other threads are mid-transfer (and
 * possibly inside the library, holding its locks) must not deadlock. */
Test(process, fork_and_spawn_from_threads)
{
    nt_check_run_both(NT_ARGV(NT_PROG("thread_stress"), "-t", "8", "-c", "30", "-n", "16k",
                              "-f", "20", "-p", "20"),
                      NULL, 0, "fork/vfork/posix_spawn while busy");
}

Test(process, dup_family)
{
    for (int f = 0; f < 3; f++)
        nt_check_echo_both("poll", f, 2, NT_ARGV(NT_PROG("dup_prog"), "@ADDR"), NULL, fams[f]);
}

/* shutdown, close, and close with the fd number taken by a pipe, while
 * another thread is blocked in read on the socket. */
Test(process, close_vs_blocked_read)
{
    static const char *const modes[] = {"shutdown", "close", "reuse"};
    for (int f = 0; f < 3; f++)
        for (int m = 0; m < 3; m++)
            nt_check_run_both(NT_ARGV(NT_PROG("close_race"), "-f", fams[f], "-m", modes[m]),
                              NULL, 0, modes[m]);
}

Test(process, close_race_rounds)
{
    nt_check_run_both(NT_ARGV(NT_PROG("close_race"), "-f", "tcp4", "-m", "race", "-i", "300"),
                      NULL, 0, "close racing read, tcp4");
    nt_check_run_both(NT_ARGV(NT_PROG("close_race"), "-f", "unix", "-m", "race", "-i", "300"),
                      NULL, 0, "close racing read, unix");
}

/* The highest fd the limit allows, above 65536 wherever the hard limit
 * can be raised that far; skipped (after testing what it can) elsewhere. */
Test(process, high_fds)
{
    struct rlimit rl = {200000, 200000};
    nt_check_echo_both("epoll", NT_TCP4, 2, NT_ARGV(NT_PROG("high_fd"), "@ADDR"), NULL, "high fd");
    /* what high_fd could do, asked the same way in this (throwaway) worker */
    if (setrlimit(RLIMIT_NOFILE, &rl) < 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0 &&
        rl.rlim_max <= 65537)
        cr_skip_test("RLIMIT_NOFILE hard limit is %llu: fds above 65536 cannot exist here; "
                     "fd %llu was tested instead", (unsigned long long)rl.rlim_max,
                     (unsigned long long)rl.rlim_max - 1);
}

Test(process, closeall_at_startup)
{
    static const char *const modes[] = {"range", "from", "loop", "syscall", "dup2"};
    for (int m = 0; m < 5; m++)
        nt_check_echo_both("thread", NT_TCP4, 1,
                           NT_ARGV(NT_PROG("closeall"), "-m", modes[m], "@ADDR"), NULL, modes[m]);
}

/* With a log file configured the library holds an fd of its own: a daemon
 * closing every fd, or writing /dev/null over it with dup2, must behave
 * exactly as without the library (LESSONS 4). */
Test(process, closeall_with_log_fd)
{
    static const char *const modes[] = {"range", "loop", "syscall", "dup2"};
    char *conf = nt_path("closeall.conf"), *log = nt_path("closeall.jsonl"), *text, *env;
    cr_assert(asprintf(&text, "[global]\nlog = %s\nevents = all\n", log) > 0);
    cr_assert(asprintf(&env, "NETTIMEO_CONFIG=%s", conf) > 0);
    cr_assert(nt_write_file(conf, text, strlen(text)) == 0);
    for (int m = 0; m < 4; m++)
        nt_check_echo_both("thread", NT_TCP4, 1,
                           NT_ARGV(NT_PROG("closeall"), "-m", modes[m], "@ADDR"),
                           &(struct nt_spawn_opts){.env = NT_ENV(env)}, modes[m]);
    free(text);
    free(env);
    free(conf);
    free(log);
}
