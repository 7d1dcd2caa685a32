/* What a program can observe besides its data: errno after successful
 * calls, SIGPIPE in each disposition, fortified entry points, inherited
 * sockets, NETTIMEO_DISABLE=1, and that the library really is loaded (so
 * the comparisons elsewhere are not vacuous). */
#define _GNU_SOURCE
#include "nttest_cr.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(semantics, .timeout = 30);

static const char *const fams[] = {"tcp4", "tcp6", "unix"};

Test(semantics, library_is_loaded)
{
    struct nt_result with, without;
    cr_assert(nt_run_both(NT_ARGV("cat", "/proc/self/maps"), NULL, 5000, &with, &without) == 0);
    nt_assert_exit(&with, 0, "cat /proc/self/maps");
    cr_assert(strstr(with.out, "libnettimeo"), "LD_PRELOAD did not load %s", nt_lib_path());
    cr_assert(!strstr(without.out, "libnettimeo"), "the library leaked into a no-preload run");
    nt_result_free(&with);
    nt_result_free(&without);
}

/* SPEC §2's calls are interposed, the fortified ones included, and the
 * library's internals stay hidden. */
Test(semantics, exports)
{
    static const char *const calls[] = {
        "connect", "accept", "accept4", "read", "readv", "recv", "recvfrom", "recvmsg",
        "recvmmsg", "write", "writev", "send", "sendto", "sendmsg", "sendmmsg", "sendfile",
        "splice", "close", "shutdown", "dup", "dup2", "dup3", "fcntl", "ioctl", "poll",
        "ppoll", "select", "pselect", "epoll_wait", "epoll_pwait", "fork", "execve",
        "_exit", "close_range", "closefrom", "posix_spawn", "__read_chk", "__recv_chk",
        "__recvfrom_chk", "__poll_chk", "__ppoll_chk"};
    struct nt_result r;
    char *p, want[64];
    cr_assert(nt_run(NT_ARGV("nm", "-D", "--defined-only", nt_lib_path()),
                     &(struct nt_spawn_opts){.no_preload = true}, 10000, &r) == 0);
    nt_assert_exit(&r, 0, "nm -D");
    for (size_t i = 0; i < sizeof calls / sizeof *calls; i++) {
        snprintf(want, sizeof want, " %s\n", calls[i]);
        cr_expect(strstr(r.out, want), "%s is not exported by the library", calls[i]);
    }
    for (p = r.out; (p = strstr(p, " nt_")); p++)
        cr_expect(0, "internal symbol exported: %.40s", p + 1);
    nt_result_free(&r);
}

Test(semantics, errno_unchanged_on_success)
{
    for (int f = 0; f < 3; f++)
        nt_check_run_both(NT_ARGV(NT_PROG("errno_check"), "-f", fams[f]), NULL, 0, fams[f]);
}

/* One disposition, every call family, TCP and unix: same outcome as
 * without the library, and the outcome the kernel defines. */
static void sigpipe_case(const char *mode, const char *expect)
{
    static const char *const calls[] = {"write", "send", "sendto", "sendmsg", "writev"};
    static const char *const fam2[] = {"tcp4", "unix"};
    for (int f = 0; f < 2; f++)
        for (int c = 0; c < 5; c++) {
            struct nt_result with, without;
            char what[96], st[64];
            snprintf(what, sizeof what, "SIGPIPE %s, %s via %s", mode, fam2[f], calls[c]);
            cr_assert(nt_run_both(NT_ARGV(NT_PROG("sigpipe_prog"), "-f", fam2[f], "-c", calls[c],
                                          mode), NULL, 10000, &with, &without) == 0);
            nt_assert_same(&with, &without, what);
            if (!expect)
                cr_assert(WIFSIGNALED(with.status) && WTERMSIG(with.status) == SIGPIPE,
                          "%s: %s, expected death by SIGPIPE", what,
                          nt_status_str(with.status, st, sizeof st));
            else
                cr_assert(nt_exited(&with, 0) && strstr(with.out, expect),
                          "%s: %s, stdout '%s', expected '%s'", what,
                          nt_status_str(with.status, st, sizeof st), with.out, expect);
            nt_result_free(&with);
            nt_result_free(&without);
        }
}

Test(semantics, sigpipe_default_kills)
{
    sigpipe_case("default", NULL);
}

Test(semantics, sigpipe_ignored_gives_epipe)
{
    sigpipe_case("ignore", "errno EPIPE handler 0");
}

Test(semantics, sigpipe_handler_runs)
{
    sigpipe_case("handler", "errno EPIPE handler 1");
}

Test(semantics, sigpipe_msg_nosignal)
{
    sigpipe_case("nosignal", "errno EPIPE handler 0");
}

Test(semantics, fortified_entry_points)
{
    static const char *const chk[] = {"__read_chk", "__recv_chk", "__recvfrom_chk",
                                      "__poll_chk", "__ppoll_chk"};
    struct nt_result r;
    cr_assert(nt_run(NT_ARGV("nm", "-D", NT_PROG("fortify_prog")),
                     &(struct nt_spawn_opts){.no_preload = true}, 10000, &r) == 0);
    for (int i = 0; i < 5; i++)
        cr_assert(strstr(r.out, chk[i]), "fortify_prog does not call %s: fortification is "
                  "not in effect, so this test would prove nothing", chk[i]);
    nt_result_free(&r);
    nt_check_echo_both("poll", NT_TCP4, 1, NT_ARGV(NT_PROG("fortify_prog"), "@ADDR"), NULL,
                       "fortified calls, tcp4");
    nt_check_echo_both("epoll", NT_UNIX, 1, NT_ARGV(NT_PROG("fortify_prog"), "@ADDR", "100", "2"),
                       NULL, "fortified calls, unix, 2 pollfds");
}

/* Exchange `len` bytes with a child whose stdin and stdout are one end of
 * a TCP connection (a socket it inherited, never saw created): it must
 * echo them unchanged. */
static void inherited_socket_run(bool preload, const char *const argv[], size_t len)
{
    struct nt_addr a;
    int lfd = nt_listen(NT_TCP4, 1, &a), c = nt_connect(&a, 2000), s, st;
    unsigned char *out = malloc(len), *in = malloc(len);
    size_t sent = 0, got = 0;
    pid_t pid;
    cr_assert(lfd >= 0 && c >= 0 && (s = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0);
    nt_fill_bytes(out, len, 7);
    pid = nt_spawn(argv, &(struct nt_spawn_opts){.no_preload = !preload, .in_fd = s, .out_fd = s});
    cr_assert(pid > 0);
    close(s);
    fcntl(c, F_SETFL, O_NONBLOCK);
    while (got < len) {          /* write and read together: no buffer deadlock */
        struct pollfd p = {c, POLLIN | (sent < len ? POLLOUT : 0), 0};
        ssize_t n;
        cr_assert(poll(&p, 1, 10000) == 1, "stalled at %zu/%zu bytes", got, len);
        if ((p.revents & POLLOUT) && (n = write(c, out + sent, len - sent)) > 0 &&
            (sent += n) == len)
            shutdown(c, SHUT_WR);
        if (p.revents & (POLLIN | POLLHUP)) {
            n = read(c, in + got, len - got);
            cr_assert(n > 0, "EOF or error after %zu/%zu bytes", got, len);
            got += n;
        }
    }
    cr_assert(!memcmp(in, out, len), "the bytes came back changed");
    cr_assert(nt_wait_timeout(pid, 10000, &st) == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(c);
    close(lfd);
    free(in);
    free(out);
}

Test(semantics, inherited_socket_as_stdio)
{
    inherited_socket_run(true, NT_ARGV("cat"), 4 << 20);
    inherited_socket_run(false, NT_ARGV("cat"), 4 << 20);
    inherited_socket_run(true, NT_ARGV("python3", "-c", "import shutil, sys; shutil.copyfileobj("
                                       "sys.stdin.buffer, sys.stdout.buffer, 1000)"), 1 << 20);
}

/* NETTIMEO_DISABLE=1 wins over a config that would change behaviour: a
 * 50 ms read_timeout fails close_race's 200 ms blocked read (checked
 * first, so this test cannot pass vacuously). */
Test(semantics, disable_is_passthrough)
{
    struct nt_spawn_opts o = {.env = NT_ENV("NETTIMEO_DISABLE=1",
                                            "NETTIMEO_OPTIONS=read_timeout=50ms write_timeout=50ms")};
    struct nt_result r;
    cr_assert(nt_run(NT_ARGV(NT_PROG("close_race"), "-m", "close"),
                     &(struct nt_spawn_opts){.env = o.env + 1}, 10000, &r) == 0);
    cr_assert(!strstr(r.out, "read=1"), "control: read_timeout=50ms did not change close_race "
              "(%s), so NETTIMEO_DISABLE=1 cannot be told apart", r.out);
    nt_result_free(&r);
    nt_check_run_both(NT_ARGV(NT_PROG("close_race"), "-m", "close"), &o, 0, "close_race");
    for (int f = 0; f < 3; f++)
        nt_check_echo_both("epoll", f, 1,
                           NT_ARGV(NT_PROG("xfer_client"), "-m", "select", "-c", "msg", "-n",
                                   "1m", "@ADDR"),
                           &o, fams[f]);
}
