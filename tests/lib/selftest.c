/* Tests of nttest itself: the fixtures must misbehave exactly as
 * documented, or the suites built on them prove nothing. */
#define _GNU_SOURCE
#include "nttest_cr.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(nttest, .timeout = 30);

Test(nttest, run_captures_env_and_stdin)
{
    struct nt_result r;
    struct nt_spawn_opts o = {.no_preload = true, .stdin_data = "from stdin\n",
                              .env = NT_ENV("NT_SELFTEST=42")};
    setenv("NETTIMEO_CONFIG", "/nonexistent", 1);      /* must not reach the child */
    cr_assert(nt_run(NT_ARGV("sh", "-c", "cat; echo \"$NT_SELFTEST ${NETTIMEO_CONFIG-unset} "
                             "${LD_PRELOAD-none}\"; echo err >&2; exit 3"),
                     &o, 5000, &r) == 0);
    unsetenv("NETTIMEO_CONFIG");
    nt_assert_exit(&r, 3, "sh");
    cr_assert_str_eq(r.out, "from stdin\n42 unset none\n");
    cr_assert_str_eq(r.err, "err\n");
    nt_result_free(&r);
}

Test(nttest, preload_only_in_child)
{
    struct nt_result r;
    cr_assert(nt_run(NT_ARGV("sh", "-c", "echo \"$LD_PRELOAD\""), NULL, 5000, &r) == 0);
    cr_assert(strstr(r.out, nt_lib_path()), "%s", r.out);
    cr_assert(!getenv("LD_PRELOAD") || !strstr(getenv("LD_PRELOAD"), "nettimeo"));
    nt_result_free(&r);
}

/* Alive and not a zombie (an orphan waits for a slow init to reap it). */
static bool running(pid_t pid)
{
    char path[64], *stat, *p;
    bool alive;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    nt_sleep_ms(50);
    if (!(stat = nt_read_file(path, NULL)))
        return false;
    p = strrchr(stat, ')');
    alive = p && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
    free(stat);
    return alive;
}

/* A timeout kills the whole process group (a grandchild too) at once. */
Test(nttest, timeout_kills_group)
{
    struct nt_result r;
    char *mark = nt_path("grandchild.pid"), cmd[256], *pid;
    snprintf(cmd, sizeof cmd, "sleep 30 & echo $! > %s; wait", mark);
    cr_assert(nt_run(NT_ARGV("sh", "-c", cmd), &(struct nt_spawn_opts){.no_preload = true}, 300,
                     &r) == 0);
    cr_assert(r.timed_out && WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGKILL);
    cr_assert(r.elapsed_ms < 3000, "took %lld ms", (long long)r.elapsed_ms);
    pid = nt_read_file(mark, NULL);
    cr_assert(pid);
    cr_assert(!running(atoi(pid)), "grandchild %d survived", atoi(pid));
    free(pid);
    free(mark);
    nt_result_free(&r);
}

Test(nttest, pass_fds_and_close_others)
{
    int p[2], keep;
    struct nt_result r;
    char cmd[128];
    cr_assert(pipe(p) == 0);               /* not O_CLOEXEC: must still be closed */
    keep = fcntl(p[1], F_DUPFD_CLOEXEC, 50);
    snprintf(cmd, sizeof cmd, "ls /proc/self/fd/%d /proc/self/fd/%d 2>/dev/null | wc -l", keep,
             p[0]);
    cr_assert(nt_run(NT_ARGV("sh", "-c", cmd),
                     &(struct nt_spawn_opts){.no_preload = true, .pass_fds = &keep,
                                             .npass_fds = 1}, 5000, &r) == 0);
    cr_assert_str_eq(r.out, "1\n");
    nt_result_free(&r);
}

Test(nttest, server_first_line)
{
    struct nt_server s;
    int st;
    char *rest;
    cr_assert(nt_server_start(&s, NT_ARGV("sh", "-c", "echo 1234; read x; echo bye"),
                              &(struct nt_spawn_opts){.no_preload = true, .stdin_data = "\n"},
                              5000) == 0);
    cr_assert_eq(s.port, 1234);
    cr_assert(nt_server_stop(&s, 5000, &st, &rest) == 0);
    cr_assert_str_eq(rest, "bye\n");
    free(rest);
}

Test(nttest, peer_echo_and_fin)
{
    for (int f = 0; f < 3; f++) {
        struct nt_peer *p = nt_peer_start(NT_PEER_ECHO, f, NULL);
        int fd = nt_connect(nt_peer_addr(p), 2000);
        char b[5] = {0};
        cr_assert(fd >= 0, "%s", nt_peer_addr(p)->str);
        cr_assert(write(fd, "ping", 4) == 4 && read(fd, b, 4) == 4 && !strcmp(b, "ping"));
        cr_assert(nt_peer_wait_accepted(p, 1, 1000) == 0);
        cr_assert_eq(nt_peer_bytes_in(p), 4);
        close(fd);
        nt_peer_stop(p);
    }
    struct nt_peer *p = nt_peer_start(NT_PEER_FIN, NT_TCP4, &(struct nt_peer_opts){.read_first = true});
    int fd = nt_connect(nt_peer_addr(p), 2000);
    char c;
    cr_assert(write(fd, "x", 1) == 1 && read(fd, &c, 1) == 0);
    close(fd);
    nt_peer_stop(p);
}

/* TESTING.md's oracle: RST -> read ECONNRESET, then 0, then write EPIPE. */
Test(nttest, peer_rst)
{
    struct nt_peer *p = nt_peer_start(NT_PEER_RST, NT_TCP4, &(struct nt_peer_opts){.delay_ms = 20});
    int fd = nt_connect(nt_peer_addr(p), 2000);
    char c;
    cr_assert(read(fd, &c, 1) < 0 && errno == ECONNRESET);
    cr_assert(read(fd, &c, 1) == 0);
    cr_assert(send(fd, "x", 1, MSG_NOSIGNAL) < 0 && errno == EPIPE);
    close(fd);
    nt_peer_stop(p);
}

Test(nttest, peer_noaccept_connect_hangs)
{
    for (int f = 0; f < 3; f += 2) {
        struct nt_peer *p = nt_peer_start(NT_PEER_NOACCEPT, f, NULL);
        int64_t t0 = nt_now_ms();
        cr_assert(nt_connect(nt_peer_addr(p), 300) < 0, "%s: connect completed", nt_family_name(f));
        cr_assert(nt_now_ms() - t0 >= 250, "%s: gave up early", nt_family_name(f));
        cr_assert_eq(nt_peer_accepted(p), 0);
        nt_peer_stop(p);
    }
}

Test(nttest, peer_silent_and_noread)
{
    struct nt_peer *s = nt_peer_start(NT_PEER_SILENT, NT_TCP4, NULL);
    struct nt_peer *n = nt_peer_start(NT_PEER_NOREAD, NT_TCP4, NULL);
    int a = nt_connect(nt_peer_addr(s), 2000), b = nt_connect(nt_peer_addr(n), 2000);
    struct pollfd pa = {a, POLLIN, 0};
    char buf[65536] = {0};
    size_t sent = 0;
    ssize_t w;
    cr_assert(write(a, "req", 3) == 3 && poll(&pa, 1, 200) == 0, "silent peer answered");
    fcntl(b, F_SETFL, O_NONBLOCK);
    while ((w = write(b, buf, sizeof buf)) > 0 && sent < (64u << 20))
        sent += w;
    cr_assert(w < 0 && errno == EAGAIN, "never blocked after %zu bytes", sent);
    cr_assert(sent < (8u << 20), "%zu bytes buffered: SO_RCVBUF not small", sent);
    close(a);
    close(b);
    nt_peer_stop(s);
    nt_peer_stop(n);
}

Test(nttest, jsonl)
{
    const char *text =
        "not json\n"
        "{\"ts\":\"t\",\"event\":\"epipe\",\"fd\":4,\"bt\":[\"a,}\",\"b\"],\"s\":\"q\\\"x\\n\"}\n"
        "{\"event\":\"timeout\",\"o\":{\"event\":\"inner\"},\"limit_ms\":50}\n"
        "{\"event\":\"epipe\",\"age_ms\":0.102}\n";
    struct nt_jsonl j;
    char v[64], *path = nt_path("log.jsonl"), *why;
    nt_jsonl_parse(&j, text);
    cr_assert_eq(j.n, 3);
    cr_assert_eq(nt_jsonl_count(&j, "epipe"), 2);
    cr_assert_eq(nt_jsonl_count(&j, "inner"), 0);
    cr_assert_eq(nt_jsonl_count(&j, NULL), 3);
    cr_assert(nt_json_get(nt_jsonl_nth(&j, "epipe", 0), "fd", v, sizeof v) && !strcmp(v, "4"));
    cr_assert(nt_json_get(nt_jsonl_nth(&j, "epipe", 0), "s", v, sizeof v) && !strcmp(v, "q\"x\n"));
    cr_assert(nt_json_get(nt_jsonl_nth(&j, "epipe", 0), "bt", v, sizeof v) &&
              !strcmp(v, "[\"a,}\",\"b\"]"));
    cr_assert(nt_json_get(nt_jsonl_nth(&j, "timeout", 0), "limit_ms", v, sizeof v) &&
              !strcmp(v, "50"));
    cr_assert(!nt_json_get(nt_jsonl_nth(&j, "epipe", 1), "fd", v, sizeof v));
    cr_assert_eq(nt_json_num(nt_jsonl_nth(&j, "epipe", 0), "fd", -1), 4);
    cr_assert_eq(nt_json_num(nt_jsonl_nth(&j, "timeout", 0), "limit_ms", -1), 50);
    cr_assert_eq(nt_json_num(nt_jsonl_nth(&j, "epipe", 0), "s", -1), -1);
    cr_assert_eq(nt_json_num(nt_jsonl_nth(&j, "epipe", 1), "fd", -1), -1);
    cr_assert_eq(nt_json_num(nt_jsonl_nth(&j, "epipe", 1), "age_ms", -1), 0.102);
    cr_assert_eq(nt_json_num(NULL, "fd", -1), -1);
    nt_jsonl_free(&j);
    nt_write_file(path, text + 9, strlen(text + 9));
    cr_assert(nt_jsonl_validate(path, &why) == 0, "%s", why ? why : "");
    nt_write_file(path, text, strlen(text));
    cr_assert(nt_jsonl_validate(path, &why) < 0 && why && strstr(why, "line 1"));
    free(why);
    free(path);
}

Test(nttest, elapsed_window)
{
    cr_assert(nt_elapsed_ok(80, 100, 50) && nt_elapsed_ok(150, 100, 50));
    cr_assert(!nt_elapsed_ok(79, 100, 50) && !nt_elapsed_ok(151, 100, 50));
}

Test(nttest, tmpdir_is_private_and_readable)
{
    struct stat st;
    cr_assert(stat(nt_tmpdir(), &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0755);
    cr_assert(strncmp(nt_tmpdir(), "/tmp/nttest.", 12) == 0);
    char *p = nt_write_tmp("t.conf", "[global]\n"), *text = p ? nt_read_file(p, NULL) : NULL;
    cr_assert(p && !strncmp(p, nt_tmpdir(), strlen(nt_tmpdir())) && text &&
              !strcmp(text, "[global]\n"));
    free(text);
    free(p);
}
