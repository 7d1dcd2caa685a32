/* The core programs again, now with deadlines configured that are far
 * longer than anything here takes, so they never fire: a governed
 * connection must behave exactly like an ungoverned one until a deadline
 * actually expires (SPEC §4, §7). This catches what the pass-through path
 * cannot: the blocking calls the library now waits for itself. */
#define _GNU_SOURCE
#include "nttest_cr.h"

TestSuite(governed, .timeout = 40);

/* Long enough never to fire, short enough that a wrongly armed deadline
 * would still show within the test timeout. */
static const struct nt_spawn_opts gov = {
    .env = NT_ENV("NETTIMEO_OPTIONS=connect_timeout=10s read_timeout=8s write_timeout=8s "
                  "idle_timeout=20s max_lifetime=60s")};

static const char *const fams[] = {"tcp4", "tcp6", "unix"};

Test(governed, errno_unchanged_on_success)
{
    for (int f = 0; f < 3; f++)
        nt_check_run_both(NT_ARGV(NT_PROG("errno_check"), "-f", fams[f]), &gov, 0, fams[f]);
}

Test(governed, close_vs_blocked_read)
{
    static const char *const modes[] = {"shutdown", "close", "reuse"};
    for (int f = 0; f < 3; f += 2)
        for (int m = 0; m < 3; m++)
            nt_check_run_both(NT_ARGV(NT_PROG("close_race"), "-f", fams[f], "-m", modes[m]),
                              &gov, 0, modes[m]);
}

Test(governed, close_race_rounds)
{
    nt_check_run_both(NT_ARGV(NT_PROG("close_race"), "-m", "race", "-i", "300"), &gov, 0,
                      "close racing read");
}

Test(governed, transfers)
{
    static const char *const modes[] = {"block", "poll", "select", "epoll"};
    static const char *const calls[] = {"rw", "rwv", "msg", "mmsg", "sendfile", "splice"};
    char what[64];
    for (int f = 0; f < 3; f++)
        for (int m = 0; m < 4; m++)
            for (int k = 0; k < 6; k += (m ? 5 : 1)) {   /* every call blocking, two else */
                snprintf(what, sizeof what, "%s %s/%s", fams[f], modes[m], calls[k]);
                nt_check_echo_both(modes[m][0] == 'b' ? "thread" : modes[m], f, 1,
                                   NT_ARGV(NT_PROG("xfer_client"), "-m", modes[m], "-c", calls[k],
                                           "-n", "300k", "-k", "5000", "@ADDR"),
                                   &gov, what);
            }
}

Test(governed, threads_fork_spawn)
{
    nt_check_run_both(NT_ARGV(NT_PROG("thread_stress"), "-t", "8", "-c", "20", "-n", "16k",
                              "-f", "10", "-p", "10"),
                      &gov, 0, "thread_stress with deadlines");
}

Test(governed, dup_family)
{
    for (int f = 0; f < 3; f++)
        nt_check_echo_both("epoll", f, 2, NT_ARGV(NT_PROG("dup_prog"), "@ADDR"), &gov, fams[f]);
}

Test(governed, sigpipe)
{
    static const char *const modes[] = {"default", "ignore", "handler", "nosignal"};
    for (int m = 0; m < 4; m++)
        nt_check_run_both(NT_ARGV(NT_PROG("sigpipe_prog"), "-c", "send", modes[m]), &gov,
                          m ? 0 : -1, modes[m]);   /* default: killed by SIGPIPE */
}
