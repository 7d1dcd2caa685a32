/* OpenSSH's sshd under the library (issue 15). sshd always separates
 * privileges: per connection a root monitor, an unprivileged pre-auth
 * child that sets RLIMIT_NOFILE/RLIMIT_FSIZE to 0 and confines itself with
 * prctl(PR_SET_SECCOMP) (allowing read/write, not sendto), then the
 * user's session process, unconfined. Before issue 15 the pre-auth child
 * died of SIGSYS at its first write, even with no config at all.
 *
 * Our own sshd: a config file, host key and authorized_keys in a temp
 * dir, `sshd -D -e -f CONF -p PORT` on 127.0.0.1, root login with a
 * throwaway key. Nothing of the system's ssh setup is read or changed
 * (/run/sshd, sshd's privilege-separation directory, is created if it is
 * missing: sshd refuses to start without it). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nttest_cr.h"

#define SSHD "/usr/sbin/sshd"
#define BIG (20 << 20)

struct sshd {
    char *dir;          /* temp dir: keys, config, files */
    int port;
    pid_t pid;
    int err_rd;         /* sshd's stderr: its log and our events */
    char err[1 << 18];
    size_t err_len;
};

static struct sshd S;

static char *in_dir(const char *name)
{
    char *p;
    cr_assert(asprintf(&p, "%s/%s", S.dir, name) > 0);
    return p;
}

static void keygen(const char *name)
{
    char *path = in_dir(name);
    struct nt_spawn_opts o = { .no_preload = true };
    struct nt_result r;
    cr_assert_eq(nt_run(NT_ARGV("ssh-keygen", "-q", "-t", "ed25519", "-N", "",
                                "-f", path), &o, 20000, &r), 0);
    nt_assert_exit(&r, 0, "ssh-keygen");
    nt_result_free(&r);
    free(path);
}

static void skip_unless_possible(void)
{
    if (access(SSHD, X_OK) != 0)
        cr_skip_test("no %s (scripts/setup installs openssh-server)", SSHD);
    if (geteuid() != 0)
        cr_skip_test("sshd needs root for privilege separation");
#ifdef NT_SANITIZE
    /* The ASan runtime makes calls of its own (and opens files) inside
     * sshd's sandbox: killed with or without nettimeo. */
    cr_skip_test("sshd's sandbox forbids the ASan runtime's own calls");
#endif
}

/* Read what sshd wrote to stderr so far (it never blocks on the pipe). */
static void drain(void)
{
    for (;;) {
        ssize_t n = read(S.err_rd, S.err + S.err_len, sizeof S.err - 1 - S.err_len);
        if (n <= 0)
            break;
        S.err_len += (size_t)n;
    }
    S.err[S.err_len] = 0;
}

/* Drain until `needle` shows up in what sshd wrote (a deadline's event
 * may be written just after the client saw the connection cut). */
static void drain_until(const char *needle, int timeout_ms)
{
    int64_t end = nt_now_ms() + timeout_ms;
    do {
        drain();
        if (strstr(S.err, needle))
            return;
        nt_sleep_ms(20);
    } while (nt_now_ms() < end);
}

/* Start sshd under the library with these [defaults] deadlines. */
static void start(const char *deadlines)
{
    skip_unless_possible();
    memset(&S, 0, sizeof S);
    S.dir = nt_mkdtemp();
    cr_assert(S.dir);
    chmod(S.dir, 0755);
    keygen("hostkey");
    keygen("userkey");
    char *pub = in_dir("userkey.pub"), *auth = in_dir("authorized_keys");
    size_t len;
    char *key = nt_read_file(pub, &len);
    cr_assert(key && nt_write_file(auth, key, len) == 0);
    free(key);
    char text[2048];
    snprintf(text, sizeof text,
             "ListenAddress 127.0.0.1\nHostKey %s/hostkey\nPidFile none\n"
             "AuthorizedKeysFile %s\nPermitRootLogin prohibit-password\n"
             "PasswordAuthentication no\nKbdInteractiveAuthentication no\n"
             "UsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\n"
             "LogLevel INFO\n", S.dir, auth);
    char *conf = in_dir("sshd_config");
    cr_assert(nt_write_file(conf, text, strlen(text)) == 0);
    snprintf(text, sizeof text, "[global]\nlog = stderr\nevents = all\n"
             "[defaults]\n%s\n", deadlines);
    char *ntconf = in_dir("nettimeo.conf");
    cr_assert(nt_write_file(ntconf, text, strlen(text)) == 0);
    if (access("/run/sshd", F_OK) != 0)
        mkdir("/run/sshd", 0755);

    S.port = nt_free_port(NT_TCP4);
    char port[16], env[600];
    snprintf(port, sizeof port, "%d", S.port);
    snprintf(env, sizeof env, "NETTIMEO_CONFIG=%s", ntconf);
    int p[2];
    cr_assert(pipe2(p, O_CLOEXEC) == 0);
    S.err_rd = p[0];
    fcntl(S.err_rd, F_SETFL, O_NONBLOCK);
    struct nt_spawn_opts o = { .env = NT_ENV(env), .err_fd = p[1] };
    S.pid = nt_spawn(NT_ARGV(SSHD, "-D", "-e", "-f", conf, "-p", port), &o);
    close(p[1]);
    cr_assert(S.pid > 0);
    struct nt_addr a;
    nt_addr_from_line(NT_TCP4, port, &a);
    cr_assert_eq(nt_wait_listening(&a, 10000), 0, "sshd did not start");
    free(pub);
    free(auth);
    free(conf);
    free(ntconf);
}

static void stop(void)
{
    if (S.pid > 0)
        nt_kill(S.pid);
    drain();
    close(S.err_rd);
    nt_rmtree(S.dir);
    free(S.dir);
}

/* Run a client (ssh or scp) with the throwaway key against our sshd. */
static int client(const char *prog, const char *const *args, int timeout_ms,
                  struct nt_result *r)
{
    char *key = in_dir("userkey");
    char port[16];
    snprintf(port, sizeof port, "%d", S.port);
    const char *argv[32] = { prog, "-i", key, "-o", "BatchMode=yes",
                             "-o", "StrictHostKeyChecking=no",
                             "-o", "UserKnownHostsFile=/dev/null",
                             "-o", "LogLevel=ERROR",
                             strcmp(prog, "scp") ? "-p" : "-P", port };
    size_t n = 13;
    for (size_t i = 0; args[i] && n < 31; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    struct nt_spawn_opts o = { .no_preload = true };
    int rc = nt_run(argv, &o, timeout_ms, r);
    free(key);
    drain();
    return rc;
}

TestSuite(sshd, .timeout = 90);

/* Every deadline armed (never firing): two logins, a command, and a
 * 20 MB file copied up and back byte for byte. Each login's pre-auth
 * child logs its `sandboxed` event (stderr is a pipe here; sshd's
 * RLIMIT_FSIZE=0 would drop a line bound for a file). */
Test(sshd, login_command_and_scp, .fini = stop)
{
    start("connect_timeout = 10s\nread_timeout = 60s\nwrite_timeout = 60s\n"
          "idle_timeout = 60s\nrequest_timeout = 120s\nmax_lifetime = 10m");
    struct nt_result r;
    cr_assert_eq(client("ssh", NT_ARGV("root@127.0.0.1", "echo hello; echo $((6*7))"),
                        30000, &r), 0);
    nt_assert_exit(&r, 0, "ssh command");
    cr_assert_str_eq(r.out, "hello\n42\n");
    nt_result_free(&r);

    char *src = in_dir("big.src"), *dst = in_dir("big.dst"), *back = in_dir("big.back");
    char *buf = malloc(BIG);
    nt_fill_bytes(buf, BIG, 15);
    cr_assert(nt_write_file(src, buf, BIG) == 0);
    char remote[600];
    snprintf(remote, sizeof remote, "root@127.0.0.1:%s", dst);
    cr_assert_eq(client("scp", NT_ARGV(src, remote), 60000, &r), 0);
    nt_assert_exit(&r, 0, "scp upload");
    nt_result_free(&r);
    cr_assert_eq(client("scp", NT_ARGV(remote, back), 60000, &r), 0);
    nt_assert_exit(&r, 0, "scp download");
    nt_result_free(&r);
    const char *names[] = { dst, back };
    for (int i = 0; i < 2; i++) {
        size_t len = 0;
        char *got = nt_read_file(names[i], &len);
        cr_assert(got && len == BIG && memcmp(got, buf, BIG) == 0,
                  "%s: %zu bytes, not the 20 MB sent", names[i], len);
        free(got);
    }
    free(buf);
    free(src);
    free(dst);
    free(back);

    struct nt_jsonl log;
    nt_jsonl_parse(&log, S.err);
    cr_assert_eq(nt_jsonl_count(&log, "sandboxed"), 3,
                 "one sandboxed event per login, got %zu:\n%s",
                 nt_jsonl_count(&log, "sandboxed"), S.err);
    cr_assert_eq(nt_jsonl_count(&log, "timeout"), 0, "%s", S.err);
    char v[64];
    const char *ev = nt_jsonl_nth(&log, "sandboxed", 0);
    cr_assert(nt_json_get(ev, "op", v, sizeof v) && !strcmp(v, "prctl"), "%s", ev);
    cr_assert(nt_json_get(ev, "prog", v, sizeof v) && !strcmp(v, "sshd"), "%s", ev);
    nt_jsonl_free(&log);
}

/* With no config at all (audit-only defaults) a login works: before
 * issue 15 this alone killed the pre-auth child. */
Test(sshd, login_no_config, .fini = stop)
{
    start("");
    struct nt_result r;
    cr_assert_eq(client("ssh", NT_ARGV("root@127.0.0.1", "echo ok"), 30000, &r), 0);
    nt_assert_exit(&r, 0, "ssh with no deadlines");
    cr_assert_str_eq(r.out, "ok\n");
    nt_result_free(&r);
}

/* The session process is not sandboxed, so the library still governs
 * the connection there: an idle session (`sleep 30`, nothing moving) is
 * cut at idle_timeout. */
Test(sshd, idle_session_cut, .fini = stop)
{
    start("read_timeout = 60s\nwrite_timeout = 60s\nidle_timeout = 2s\n"
          "max_lifetime = 10m");
    struct nt_result r;
    cr_assert_eq(client("ssh", NT_ARGV("root@127.0.0.1", "sleep 30; echo late"),
                        40000, &r), 0);
    cr_assert(!r.timed_out && !nt_exited(&r, 0), "the idle session was not cut");
    cr_assert(r.elapsed_ms >= 1600 && r.elapsed_ms < 20000,
              "cut after %lld ms, idle_timeout is 2 s", (long long)r.elapsed_ms);
    cr_assert(!strstr(r.out, "late"));
    nt_result_free(&r);
    drain_until("\"idle_timeout\"", 3000);
    struct nt_jsonl log;
    nt_jsonl_parse(&log, S.err);
    bool idle = false;
    for (size_t i = 0; i < nt_jsonl_count(&log, "timeout"); i++) {
        char v[64];
        const char *ev = nt_jsonl_nth(&log, "timeout", i);
        if (nt_json_get(ev, "timeout", v, sizeof v) && !strcmp(v, "idle_timeout"))
            idle = true;
    }
    cr_assert(idle, "no idle_timeout event:\n%s", S.err);
    cr_assert_eq(nt_jsonl_count(&log, "sandboxed"), 1, "%s", S.err);
    nt_jsonl_free(&log);
}
