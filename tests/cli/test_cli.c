/* The nettimeo command: run (deadlines through -o, LD_PRELOAD kept, exit
 * status and signals passed through, warnings), check, report, demo, and
 * the installed layout found from another directory.
 *
 * The script from the source tree runs with NETTIMEO_LIB and
 * NETTIMEO_CHECK naming this build's pieces; the installed copy runs with
 * neither, and must find its own. Nothing here is preloaded into the test
 * process: the command sets LD_PRELOAD for the program it execs. */
#define _GNU_SOURCE
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nttest_cr.h"

#define SCRIPT NT_SCRIPTS_DIR "/nettimeo"

TestSuite(cli_run, .timeout = 60);
TestSuite(cli_report, .timeout = 60);
TestSuite(cli_check, .timeout = 30);
TestSuite(cli_demo, .timeout = 90);
TestSuite(cli_install, .timeout = 120);

/* ---- helpers --------------------------------------------------------- */

/* The library as the command names it in LD_PRELOAD: symlinks resolved. */
static const char *lib(void)
{
    static char real[PATH_MAX];
    if (!real[0] && !realpath(nt_lib_path(), real))
        snprintf(real, sizeof real, "%s", nt_lib_path());
    return real;
}

struct env {
    const char *v[16];
    char s[12][PATH_MAX + 64];
    int n;
};

static void env_put(struct env *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->s[e->n], sizeof e->s[e->n], fmt, ap);
    va_end(ap);
    e->v[e->n] = e->s[e->n];
    e->n++;
    e->v[e->n] = NULL;
}

/* What the runtime of a sanitizer build needs first in LD_PRELOAD, or "". */
static const char *asan_first(void)
{
#ifdef NT_SANITIZE
    return NT_ASAN_LIB;
#else
    return "";
#endif
}

/* Environment for the source-tree script: this build's library and
 * checker; in a sanitizer build the ASan runtime already in LD_PRELOAD
 * (which the command must keep, first). `preload`, when given, is an
 * LD_PRELOAD of the user's, after the runtime. */
static void env_tree(struct env *e, const char *preload)
{
    memset(e, 0, sizeof *e);
    env_put(e, "NETTIMEO_LIB=%s", nt_lib_path());
    env_put(e, "NETTIMEO_CHECK=%s", NT_CHECK_BIN);
    const char *a = asan_first();
    if (*a && preload)
        env_put(e, "LD_PRELOAD=%s:%s", a, preload);
    else if (*a || preload)
        env_put(e, "LD_PRELOAD=%s", *a ? a : preload);
}

/* What LD_PRELOAD was before the command ran, for comparisons. */
static void preload_before(char *buf, size_t len, const char *preload)
{
    const char *a = asan_first();
    snprintf(buf, len, "%s%s%s", a, (*a && preload) ? ":" : "", preload ? preload : "");
}

static int run_in(struct nt_result *r, const struct env *e, const char *cwd,
                  int timeout_ms, const char *const argv[])
{
    struct nt_spawn_opts o = { .no_preload = true, .env = e ? e->v : NULL, .cwd = cwd };
    return nt_run(argv, &o, timeout_ms, r);
}

static int run_cli(struct nt_result *r, int timeout_ms, const char *const argv[])
{
    struct env e;
    env_tree(&e, NULL);
    return run_in(r, &e, NULL, timeout_ms, argv);
}

/* `text` has a line that reads `want` once runs of blanks are squeezed
 * to one and the ends trimmed. */
static bool has_line(const char *text, const char *want)
{
    const char *p = text;
    while (p && *p) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        char line[1024];
        size_t k = 0;
        for (size_t i = 0; i < n && k + 1 < sizeof line; i++) {
            char c = p[i] == '\t' ? ' ' : p[i];
            if (c == ' ' && (k == 0 || line[k - 1] == ' '))
                continue;
            line[k++] = c;
        }
        while (k && line[k - 1] == ' ')
            k--;
        line[k] = 0;
        if (!strcmp(line, want))
            return true;
        p = end ? end + 1 : NULL;
    }
    return false;
}

/* Each of want[] is a (squeezed) line of text, in this order, the first
 * one anywhere and each next one directly after the one before. */
static bool lines_in_order(const char *text, const char *const want[], size_t n)
{
    const char *p = text;
    size_t i = 0;
    while (p && *p && i < n) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char line[1024];
        snprintf(line, sizeof line, "%.*s", (int)len, p);
        if (has_line(line, want[i]))
            i++;
        else if (i > 0)
            return false;
        p = end ? end + 1 : NULL;
    }
    return i == n;
}

#define assert_has_line(text, want)                                            \
    cr_assert(has_line((text), (want)), "no line '%s' in:\n%s", (want), (text))

/* A client that waits forever for an answer from a NT_PEER_SILENT peer:
 * curl, a real unmodified program; in sanitizer builds python3, because
 * curl deadlocks with a preloaded ASan runtime (nttest_cr.h). The argv
 * ends the command line `prefix` starts (NULL-terminated, at most 8). */
#ifdef NT_SANITIZE
#define CLIENT_NAME "python3"
static const char hang_py[] =
    "import socket, sys\n"
    "host, port = sys.argv[1].rsplit(':', 1)\n"
    "s = socket.create_connection((host, int(port)))\n"
    "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n')\n"
    "try:\n"
    "    s.recv(1)\n"
    "except OSError as e:\n"
    "    print('client:', e, file=sys.stderr)\n"
    "    sys.exit(56)\n"
    "sys.exit(52)\n";
#else
#define CLIENT_NAME "curl"
#endif

struct client {
    const char *argv[24];
    char target[160];
};

static const char *const *client_argv(struct client *c, const struct nt_peer *p,
                                      const char *const prefix[])
{
    size_t n = 0;
    while (prefix[n] && n < 16) {
        c->argv[n] = prefix[n];
        n++;
    }
#ifdef NT_SANITIZE
    snprintf(c->target, sizeof c->target, "%s", nt_peer_addr(p)->str);
    c->argv[n++] = "python3";
    c->argv[n++] = "-c";
    c->argv[n++] = hang_py;
#else
    snprintf(c->target, sizeof c->target, "http://%s/", nt_peer_addr(p)->str);
    c->argv[n++] = "curl";
    c->argv[n++] = "-sS";
#endif
    c->argv[n++] = c->target;
    c->argv[n] = NULL;
    return c->argv;
}

/* The client was cut by a 1 s read deadline: the shape of the answer
 * (curl: 52 empty reply, 56 receive error; the python client the same). */
static void assert_cut(const struct nt_result *r)
{
    char st[64];
    cr_assert(!r->timed_out, CLIENT_NAME " hung: not governed\nstderr:\n%s", r->err);
    cr_assert(WIFEXITED(r->status) &&
                  (WEXITSTATUS(r->status) == 52 || WEXITSTATUS(r->status) == 56),
              CLIENT_NAME ": %s, expected exit 52 or 56\nstderr:\n%s",
              nt_status_str(r->status, st, sizeof st), r->err);
    cr_assert(r->elapsed_ms >= 800 && r->elapsed_ms <= 3000,
              "cut after %lld ms, expected 800-3000", (long long)r->elapsed_ms);
}

/* ---- run --------------------------------------------------------------- */

Test(cli_run, option_cuts_a_hanging_client)
{
    struct nt_peer *p = nt_peer_start(NT_PEER_SILENT, NT_TCP4, NULL);
    cr_assert_not_null(p);
    struct client c;
    struct nt_result r;
    cr_assert_eq(run_cli(&r, 15000, client_argv(&c, p, NT_ARGV(SCRIPT, "run", "-o",
                                                               "read_timeout=1s", "--"))), 0);
    assert_cut(&r);
    struct nt_jsonl j;
    nt_jsonl_parse(&j, r.err);
    cr_assert_eq(nt_jsonl_count(&j, "timeout"), 1, "stderr:\n%s", r.err);
    char v[64];
    cr_assert(nt_json_get(nt_jsonl_nth(&j, "timeout", 0), "timeout", v, sizeof v));
    cr_assert_str_eq(v, "read_timeout");
    cr_assert(nt_json_get(nt_jsonl_nth(&j, "timeout", 0), "prog", v, sizeof v));
    cr_assert(!strncmp(v, CLIENT_NAME, strlen(CLIENT_NAME)), "prog %s", v);
    nt_jsonl_free(&j);
    nt_result_free(&r);
    nt_peer_stop(p);
}

Test(cli_run, log_option_writes_the_events_to_a_file)
{
    struct nt_peer *p = nt_peer_start(NT_PEER_SILENT, NT_TCP4, NULL);
    cr_assert_not_null(p);
    struct client c;
    char *dir = nt_mkdtemp();
    struct env e;
    env_tree(&e, NULL);
    struct nt_result r;
    /* A relative path: relative to where the command was started. */
    cr_assert_eq(run_in(&r, &e, dir, 15000,
                        client_argv(&c, p, NT_ARGV(SCRIPT, "run", "--log", "events.jsonl", "-o",
                                                   "read_timeout=1s", "--"))), 0);
    assert_cut(&r);
    cr_assert_null(strstr(r.err, "\"event\""), "events on stderr:\n%s", r.err);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/events.jsonl", dir);
    struct nt_jsonl j;
    cr_assert_eq(nt_jsonl_load(&j, path), 0, "no %s", path);
    cr_assert_eq(nt_jsonl_count(&j, "timeout"), 1);
    nt_jsonl_free(&j);
    nt_result_free(&r);
    nt_rmtree(dir);
    free(dir);
    nt_peer_stop(p);
}

Test(cli_run, existing_preload_is_kept_and_ours_appended)
{
    struct env e;
    env_tree(&e, NT_DUMMY_PRELOAD);
    struct nt_result r;
    cr_assert_eq(run_in(&r, &e, NULL, 10000,
                        NT_ARGV(SCRIPT, "run", "--", "printenv", "LD_PRELOAD")), 0);
    nt_assert_exit(&r, 0, "printenv");
    char before[2 * PATH_MAX], want[3 * PATH_MAX];
    preload_before(before, sizeof before, NT_DUMMY_PRELOAD);
    snprintf(want, sizeof want, "%s:%s\n", before, lib());
    cr_assert_str_eq(r.out, want);
    /* And both were really loaded into the program. */
    cr_assert_not_null(strstr(r.err, "cli_dummy_preload: loaded"), "stderr:\n%s", r.err);
    nt_result_free(&r);

    cr_assert_eq(run_in(&r, &e, NULL, 10000,
                        NT_ARGV(SCRIPT, "run", "--", "cat", "/proc/self/maps")), 0);
    nt_assert_exit(&r, 0, "cat");
    cr_assert_not_null(strstr(r.out, lib()), "libnettimeo.so not mapped:\n%s", r.out);
    cr_assert_not_null(strstr(r.out, NT_DUMMY_PRELOAD), "dummy not mapped:\n%s", r.out);
    nt_result_free(&r);
}

Test(cli_run, library_already_preloaded_is_not_added_twice)
{
    struct env e;
    env_tree(&e, lib());
    struct nt_result r;
    cr_assert_eq(run_in(&r, &e, NULL, 10000,
                        NT_ARGV(SCRIPT, "run", "--", "printenv", "LD_PRELOAD")), 0);
    nt_assert_exit(&r, 0, "printenv");
    char want[2 * PATH_MAX];
    preload_before(want, sizeof want - 1, lib());
    strcat(want, "\n");
    cr_assert_str_eq(r.out, want);
    nt_result_free(&r);
}

Test(cli_run, exit_status_passes_through)
{
    struct nt_result r;
    cr_assert_eq(run_cli(&r, 10000, NT_ARGV(SCRIPT, "run", "--", "sh", "-c", "exit 7")), 0);
    nt_assert_exit(&r, 7, "sh -c 'exit 7'");
    nt_result_free(&r);
    cr_assert_eq(run_cli(&r, 10000, NT_ARGV(SCRIPT, "run", "true")), 0);
    nt_assert_exit(&r, 0, "true");
    cr_assert_str_empty(r.err, "a dynamic program gets no warning:\n%s", r.err);
    nt_result_free(&r);
}

Test(cli_run, signal_passes_through)
{
    struct nt_result r;
    char st[64];
    cr_assert_eq(run_cli(&r, 10000, NT_ARGV(SCRIPT, "run", "--", "sh", "-c", "kill -TERM $$")), 0);
    cr_assert(!r.timed_out && WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGTERM,
              "%s, expected killed by SIGTERM", nt_status_str(r.status, st, sizeof st));
    nt_result_free(&r);
}

Test(cli_run, program_keeps_the_pid)
{
    char *out = nt_path("pid.txt");
    struct env e;
    env_tree(&e, NULL);
    struct nt_spawn_opts o = { .no_preload = true, .env = e.v, .out_path = out,
                               .in_path = "/dev/null" };
    pid_t pid = nt_spawn(NT_ARGV(SCRIPT, "run", "--", "sh", "-c", "echo $$"), &o);
    cr_assert_gt(pid, 0);
    int status;
    cr_assert_eq(nt_wait_timeout(pid, 10000, &status), 0);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    char *text = nt_read_file(out, NULL);
    cr_assert_not_null(text);
    cr_assert_eq(atoi(text), pid, "program pid %s, command pid %d", text, (int)pid);
    free(text);
    free(out);
}

Test(cli_run, static_binary_gets_the_warning_and_still_runs)
{
#if !NT_CAN_LINK_STATIC
    cr_skip_test("no static libc here (libc6-dev's libc.a)");
#else
    struct nt_result r;
    /* Automatically, kernel mode takes over where it can run (as root
     * with BPF); either way the program runs and the user is told. */
    cr_assert_eq(run_cli(&r, 10000, NT_ARGV(SCRIPT, "run", "--", NT_PROG("cli_static"))), 0);
    nt_assert_exit(&r, 0, "cli_static");
    cr_assert_str_eq(r.out, "cli_static ran\n");
    cr_assert(strstr(r.err, "using kernel mode") || strstr(r.err, "nothing will be governed"),
              "stderr:\n%s", r.err);
    nt_result_free(&r);
    /* --no-kernel: the library's warning. */
    cr_assert_eq(run_cli(&r, 10000, NT_ARGV(SCRIPT, "run", "--no-kernel", "--", NT_PROG("cli_static"))), 0);
    nt_assert_exit(&r, 0, "cli_static");
    cr_assert_str_eq(r.out, "cli_static ran\n");
    cr_assert_not_null(strstr(r.err, "warning"), "stderr:\n%s", r.err);
    cr_assert_not_null(strstr(r.err, "statically linked"), "stderr:\n%s", r.err);
    cr_assert_not_null(strstr(r.err, "nothing will be governed"), "stderr:\n%s", r.err);
    nt_result_free(&r);
    /* -q: the same, silently. */
    cr_assert_eq(run_cli(&r, 10000, NT_ARGV(SCRIPT, "run", "-q", "--", NT_PROG("cli_static"))), 0);
    nt_assert_exit(&r, 0, "cli_static");
    cr_assert_str_empty(r.err);
    nt_result_free(&r);
#endif
}

Test(cli_run, setuid_program_gets_the_warning)
{
    if (geteuid() != 0)
        cr_skip_test("needs root to make a set-user-ID file owned by someone else");
    char *copy = nt_path("suid-true");
    char *data;
    size_t len;
    cr_assert_not_null(data = nt_read_file("/bin/true", &len));
    cr_assert_eq(nt_write_file(copy, data, len), 0);
    free(data);
    cr_assert_eq(chown(copy, 65534, 65534), 0);    /* nobody; before chmod */
    cr_assert_eq(chmod(copy, 04755), 0);
    struct nt_result r;
    cr_assert_eq(run_cli(&r, 10000, NT_ARGV(SCRIPT, "run", "--", copy)), 0);
    nt_assert_exit(&r, 0, "suid true");
    cr_assert_not_null(strstr(r.err, "set-user-ID"), "stderr:\n%s", r.err);
    cr_assert_not_null(strstr(r.err, "nothing will be governed"), "stderr:\n%s", r.err);
    nt_result_free(&r);
    free(copy);
}

Test(cli_run, bad_option_is_refused)
{
    struct nt_result r;
    cr_assert_eq(run_cli(&r, 10000, NT_ARGV(SCRIPT, "run", "-o", "read_timout=1s", "--", "true")), 0);
    nt_assert_exit(&r, 125, "run -o read_timout=1s");
    cr_assert_not_null(strstr(r.err, "read_timeout"), "no suggestion:\n%s", r.err);
    nt_result_free(&r);
    cr_assert_eq(run_cli(&r, 10000, NT_ARGV(SCRIPT, "run", "-o", "read_timeout", "true")), 0);
    nt_assert_exit(&r, 125, "run -o read_timeout");
    nt_result_free(&r);
    cr_assert_eq(run_cli(&r, 10000, NT_ARGV(SCRIPT, "run", "--bogus", "true")), 0);
    nt_assert_exit(&r, 125, "run --bogus");
    nt_result_free(&r);
    cr_assert_eq(run_cli(&r, 10000, NT_ARGV(SCRIPT, "run")), 0);
    nt_assert_exit(&r, 125, "run with no program");
    nt_result_free(&r);
    cr_assert_eq(run_cli(&r, 10000, NT_ARGV(SCRIPT, "run", "--", "nettimeo-no-such-program")), 0);
    nt_assert_exit(&r, 127, "run of a missing program");
    nt_result_free(&r);
}

Test(cli_run, bad_config_file_warns_and_runs)
{
    struct nt_result r;
    cr_assert_eq(run_cli(&r, 10000, NT_ARGV(SCRIPT, "run", "-c", NT_FIXTURES "/bad.conf",
                                            "--", "sh", "-c", "exit 3")), 0);
    nt_assert_exit(&r, 3, "run -c bad.conf");
    cr_assert_not_null(strstr(r.err, "bad.conf:3:"), "stderr:\n%s", r.err);
    cr_assert_not_null(strstr(r.err, "pass-through"), "stderr:\n%s", r.err);
    nt_result_free(&r);
}

Test(cli_run, dry_run_shows_the_environment)
{
    char *dir = nt_mkdtemp();
    struct env e;
    env_tree(&e, NULL);
    struct nt_result r;
    cr_assert_eq(run_in(&r, &e, dir, 10000,
                        NT_ARGV(SCRIPT, "run", "-n", "-c", "app.conf", "-o", "read_timeout=2s",
                                "-o", "connect_timeout=1s", "--", "curl", "a b")), 0);
    nt_assert_exit(&r, 0, "run -n");
    char want[3 * PATH_MAX], before[PATH_MAX];
    preload_before(before, sizeof before, NULL);
    snprintf(want, sizeof want,
             "LD_PRELOAD=%s%s%s NETTIMEO_CONFIG=%s/app.conf "
             "NETTIMEO_OPTIONS='read_timeout=2s connect_timeout=1s' curl 'a b'\n",
             before, *before ? ":" : "", lib(), dir);
    cr_assert_str_eq(r.out, want);
    nt_result_free(&r);
    nt_rmtree(dir);
    free(dir);
}

/* ---- help ---------------------------------------------------------------- */

Test(cli_run, help_for_every_command)
{
    struct nt_result r;
    cr_assert_eq(run_cli(&r, 10000, NT_ARGV(SCRIPT, "--help")), 0);
    nt_assert_exit(&r, 0, "--help");
    const char *cmds[] = { "run", "check", "report", "demo" };
    for (size_t i = 0; i < 4; i++) {
        char want[32];
        snprintf(want, sizeof want, "  %s ", cmds[i]);
        cr_assert_not_null(strstr(r.out, want), "--help lacks %s:\n%s", cmds[i], r.out);
    }
    nt_result_free(&r);
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(run_cli(&r, 20000, NT_ARGV(SCRIPT, cmds[i], "--help")), 0);
        nt_assert_exit(&r, 0, cmds[i]);
        cr_assert_not_null(strstr(r.out, "usage: nettimeo"), "%s --help:\n%s", cmds[i], r.out);
        nt_result_free(&r);
    }
    cr_assert_eq(run_cli(&r, 10000, NT_ARGV(SCRIPT, "frobnicate")), 0);
    nt_assert_exit(&r, 2, "unknown command");
    nt_result_free(&r);
    cr_assert_eq(run_cli(&r, 10000, NT_ARGV(SCRIPT)), 0);
    nt_assert_exit(&r, 2, "no command");
    nt_result_free(&r);
}

/* ---- check ------------------------------------------------------------------ */

Test(cli_check, good_and_bad_files)
{
    struct nt_result r;
    cr_assert_eq(run_cli(&r, 10000, NT_ARGV(SCRIPT, "check", NT_EXAMPLES "/http-server.conf")), 0);
    nt_assert_exit(&r, 0, "check http-server.conf");
    cr_assert_not_null(strstr(r.out, "http-server.conf: OK"), "%s", r.out);
    nt_result_free(&r);
    cr_assert_eq(run_cli(&r, 10000, NT_ARGV(SCRIPT, "check", NT_FIXTURES "/bad.conf")), 0);
    nt_assert_exit(&r, 1, "check bad.conf");
    cr_assert_not_null(strstr(r.err, "bad.conf:3: unknown key 'read_timout'"), "%s", r.err);
    nt_result_free(&r);
    cr_assert_eq(run_cli(&r, 10000, NT_ARGV(SCRIPT, "check", "-q", NT_FIXTURES "/bad.conf")), 0);
    nt_assert_exit(&r, 1, "check -q bad.conf");
    cr_assert_str_empty(r.err);
    nt_result_free(&r);
    cr_assert_eq(run_cli(&r, 10000, NT_ARGV(SCRIPT, "check")), 0);
    nt_assert_exit(&r, 2, "check without a file");
    nt_result_free(&r);
}

/* ---- report ------------------------------------------------------------------- */

/* fixtures/report.jsonl: 11 events of legacy-httpd (pids 100, 101), a
 * line of program output, a truncated line, a blank line. */
static void assert_fixture_summary(const char *out)
{
    assert_has_line(out, "events 11 (and 17 more held back by rate_limit, counted in 'suppressed' events)");
    assert_has_line(out, "time range 2026-03-01 10:00:00.000 -> 10:04:00.000 UTC (4m 0s)");
    assert_has_line(out, "programs legacy-httpd (11 events, 2 processes)");
    assert_has_line(out, "skipped 1 line not JSON (program output?)");
    /* By kind, in order, the held back counted in the ordering. */
    const char *order[] = { "By kind", "3 epipe +17 held back", "4 timeout", "2 econnreset",
                            "1 config_loaded", "1 suppressed" };
    cr_assert(lines_in_order(out, order, sizeof order / sizeof *order),
              "By kind is not in this order: %s, %s, %s, %s, %s\n%s", order[1], order[2],
              order[3], order[4], order[5], out);
    assert_has_line(out, "3 read_timeout limit 10s; action shutdown 3");
    assert_has_line(out, "1 connect_timeout limit 5s; action error 1");
    /* Call sites: the program's own frames, innermost first. */
    assert_has_line(out, "3 epipe (+17 held back) in legacy-httpd");
    assert_has_line(out, "send_reply+0x3c (legacy-httpd+0x1a2c)");
    assert_has_line(out, "<- handle_conn+0x88 (legacy-httpd+0x1b40)");
    assert_has_line(out, "3 timeout in legacy-httpd");
    assert_has_line(out, "(no call in progress: the deadline fired by itself)");
    assert_has_line(out, "2 econnreset in legacy-httpd");
    assert_has_line(out, "?? (legacy-httpd+0x1d00)");
    assert_has_line(out, "connect_db+0x20 (legacy-httpd+0x2000)");
    /* Peers: clients by address (and the port they came to), servers by
     * address:port. */
    assert_has_line(out, "7 198.51.100.7 -> :8080 inbound timeout 3, epipe 2, econnreset 2");
    assert_has_line(out, "1 203.0.113.9 -> :8080 inbound epipe");
    assert_has_line(out, "1 10.0.0.5:5432 outbound timeout");
    assert_has_line(out, "8 web");
    assert_has_line(out, "1 db");
}

Test(cli_report, fixture_counts_and_call_sites)
{
    struct nt_result r;
    cr_assert_eq(run_cli(&r, 20000, NT_ARGV(SCRIPT, "report", NT_FIXTURES "/report.jsonl")), 0);
    nt_assert_exit(&r, 0, "report");
    assert_has_line(r.out, "skipped 1 malformed line (first at " NT_FIXTURES "/report.jsonl:9)");
    assert_fixture_summary(r.out);
    cr_assert_str_empty(r.err);
    nt_result_free(&r);
}

Test(cli_report, stdin_and_dash)
{
    struct env e;
    env_tree(&e, NULL);
    struct nt_spawn_opts o = { .no_preload = true, .env = e.v,
                               .in_path = NT_FIXTURES "/report.jsonl" };
    struct nt_result r;
    cr_assert_eq(nt_run(NT_ARGV(SCRIPT, "report"), &o, 20000, &r), 0);
    nt_assert_exit(&r, 0, "report < log");
    assert_has_line(r.out, "skipped 1 malformed line (first at <stdin>:9)");
    assert_fixture_summary(r.out);
    nt_result_free(&r);
    cr_assert_eq(nt_run(NT_ARGV(SCRIPT, "report", "-", NT_FIXTURES "/report.jsonl"), &o, 20000, &r), 0);
    nt_assert_exit(&r, 0, "report - log");
    assert_has_line(r.out, "events 22 (and 34 more held back by rate_limit, counted in 'suppressed' events)");
    nt_result_free(&r);
}

/* --json parses, and says the same; python3 is the JSON parser. */
Test(cli_report, json_summary)
{
    char *json = nt_path("summary.json");
    struct env e;
    env_tree(&e, NULL);
    struct nt_spawn_opts o = { .no_preload = true, .env = e.v, .out_path = json,
                               .in_path = "/dev/null" };
    struct nt_result r;
    cr_assert_eq(nt_run(NT_ARGV(SCRIPT, "report", "--json", "--top", "2",
                                NT_FIXTURES "/report.jsonl"), &o, 20000, &r), 0);
    nt_assert_exit(&r, 0, "report --json");
    nt_result_free(&r);
    static const char check[] =
        "import json, sys\n"
        "d = json.load(open(sys.argv[1]), parse_constant=lambda c: 1 / 0)\n"
        "assert d['events'] == 11 and d['held_back'] == 17, d\n"
        "assert d['malformed_lines'] == 1 and d['other_lines'] == 1, d\n"
        "assert d['time_range']['first'] == '2026-03-01T10:00:00.000001Z', d['time_range']\n"
        "assert [(x['event'], x['count'], x['held_back']) for x in d['by_event']] == "
        "[('epipe', 3, 17), ('timeout', 4, 0)], d['by_event']\n"
        "assert d['omitted']['by_event'] == 3, d['omitted']\n"
        "s = d['by_call_site'][0]\n"
        "assert s['count'] == 3 and s['events'] == {'epipe': 3}, s\n"
        "assert [f['function'] for f in s['frames']] == ['send_reply', 'handle_conn', 'main'], s\n"
        "assert s['frames'][0]['module'] == '/opt/legacy/bin/legacy-httpd', s\n"
        "assert s['frames'][0]['module_offset'] == 0x1a2c, s\n"
        "p = d['by_peer'][0]\n"
        "assert (p['peer'], p['dir'], p['count']) == ('198.51.100.7 -> :8080', 'inbound', 7), p\n"
        "assert d['by_rule'] == [{'rule': 'web', 'count': 8}, {'rule': 'db', 'count': 1}], d['by_rule']\n"
        "assert [x['timeout'] for x in d['by_timeout']] == ['read_timeout', 'connect_timeout']\n"
        "print('ok')\n";
    cr_assert_eq(nt_run(NT_ARGV("python3", "-c", check, json), &(struct nt_spawn_opts){
                            .no_preload = true }, 20000, &r), 0);
    nt_assert_exit(&r, 0, "the JSON summary");
    nt_result_free(&r);
    free(json);
}

/* A "??" frame in a binary with debug info gets its name and line from
 * addr2line; a missing module stays "??". */
Test(cli_report, symbolises_unknown_frames)
{
    struct nt_result r;
    cr_assert_eq(nt_run(NT_ARGV("nm", NT_PROG("cli_hello")),
                        &(struct nt_spawn_opts){ .no_preload = true }, 10000, &r), 0);
    if (!nt_exited(&r, 0))
        cr_skip_test("no nm (binutils)");
    const char *m = strstr(r.out, " T cli_marker\n");
    cr_assert_not_null(m, "cli_marker not in nm output:\n%s", r.out);
    const char *bol = m;
    while (bol > r.out && bol[-1] != '\n')
        bol--;
    unsigned long addr = strtoul(bol, NULL, 16);
    nt_result_free(&r);

    char *log = nt_path("sym.jsonl");
    char line[2 * PATH_MAX];
    int n = snprintf(line, sizeof line,
                     "{\"ts\":\"2026-03-01T10:00:00.000000Z\",\"event\":\"epipe\",\"pid\":1,"
                     "\"tid\":1,\"prog\":\"cli_hello\",\"fd\":3,\"op\":\"write\",\"dir\":\"outbound\","
                     "\"local\":\"127.0.0.1:1\",\"remote\":\"127.0.0.1:2\",\"rule\":null,"
                     "\"errno\":\"EPIPE\",\"backtrace\":[\"?? (%s+0x%lx)\","
                     "\"?? (/nonexistent/prog+0x10)\"]}\n",
                     NT_PROG("cli_hello"), addr + 8);
    cr_assert_eq(nt_write_file(log, line, (size_t)n), 0);
    cr_assert_eq(run_cli(&r, 20000, NT_ARGV(SCRIPT, "report", log)), 0);
    nt_assert_exit(&r, 0, "report");
    cr_assert_not_null(strstr(r.out, "cli_marker at cli_hello.c:"), "not symbolised:\n%s", r.out);
    assert_has_line(r.out, "<- ?? (prog+0x10)");
    nt_result_free(&r);
    cr_assert_eq(run_cli(&r, 20000, NT_ARGV(SCRIPT, "report", "--no-symbolize", log)), 0);
    cr_assert_null(strstr(r.out, "cli_marker"), "symbolised anyway:\n%s", r.out);
    nt_result_free(&r);
    free(log);
}

Test(cli_report, bad_input_is_counted_not_fatal)
{
    char *log = nt_path("junk.jsonl");
    static const char junk[] =
        "\x01\x02\xff\xfe garbage\n[1,2]\n{}\n{\"event\":5}\n{\"event\":\"epipe\",\"pid\":[1],"
        "\"backtrace\":[1,null,\"x\"],\"remote\":7,\"ts\":\"yesterday\",\"rule\":{}}\n{\"ev\n";
    cr_assert_eq(nt_write_file(log, junk, sizeof junk - 1), 0);
    struct nt_result r;
    cr_assert_eq(run_cli(&r, 20000, NT_ARGV(SCRIPT, "report", log)), 0);
    nt_assert_exit(&r, 0, "report junk");
    assert_has_line(r.out, "events 1");
    cr_assert_null(strstr(r.err, "Traceback"), "%s", r.err);
    nt_result_free(&r);
    cr_assert_eq(run_cli(&r, 20000, NT_ARGV(SCRIPT, "report", "/nonexistent/log.jsonl")), 0);
    nt_assert_exit(&r, 2, "report of a missing file");
    cr_assert_not_null(strstr(r.err, "No such file"), "%s", r.err);
    nt_result_free(&r);
    free(log);
}

/* ---- demo ------------------------------------------------------------------------ */

Test(cli_demo, succeeds)
{
    NT_SKIP_CURL_UNDER_ASAN();
    struct nt_result r;
    cr_assert_eq(run_cli(&r, 60000, NT_ARGV(SCRIPT, "demo")), 0);
    nt_assert_exit(&r, 0, "demo");
    cr_assert_not_null(strstr(r.out, "Demo passed"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "cut at its 2 s read deadline"), "%s", r.out);
    cr_assert_not_null(strstr(r.out, "event=epipe"), "%s", r.out);
    nt_result_free(&r);
}

/* ---- the installed layout ----------------------------------------------------------- */

Test(cli_install, installed_command_finds_the_installed_library)
{
    char *prefix = nt_mkdtemp();
    struct nt_result r;
    cr_assert_eq(nt_run(NT_ARGV(NT_CMAKE, "--install", NT_BUILD_DIR, "--prefix", prefix),
                        &(struct nt_spawn_opts){ .no_preload = true }, 60000, &r), 0);
    nt_assert_exit(&r, 0, "cmake --install");
    nt_result_free(&r);

    char bin[PATH_MAX], path[PATH_MAX];
    snprintf(bin, sizeof bin, "%s/bin/nettimeo", prefix);
    cr_assert_eq(access(bin, X_OK), 0,
                 "%s not installed: does the top-level CMakeLists.txt include(cmake/install.cmake)?", bin);
    const char *files[] = { "share/man/man1/nettimeo.1", "share/man/man5/nettimeo.conf.5",
                            "share/doc/nettimeo/examples/systemd-dropin.conf",
                            "share/doc/nettimeo/examples/logrotate-nettimeo",
                            "share/doc/nettimeo/examples/http-server.conf" };
    for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
        snprintf(path, sizeof path, "%s/%s", prefix, files[i]);
        cr_assert_eq(access(path, R_OK), 0, "%s not installed", path);
    }

    /* From another directory, with nothing telling it where things are. */
    struct env e;
    memset(&e, 0, sizeof e);
    if (*asan_first())
        env_put(&e, "LD_PRELOAD=%s", asan_first());
    cr_assert_eq(run_in(&r, &e, "/", 10000, NT_ARGV(bin, "run", "-n", "--", "true")), 0);
    nt_assert_exit(&r, 0, "installed run -n");
    char want[2 * PATH_MAX];
    snprintf(want, sizeof want, "LD_PRELOAD=%s%s%s/lib", asan_first(),
             *asan_first() ? ":" : "", prefix);
    cr_assert(!strncmp(r.out, want, strlen(want)) && strstr(r.out, "/libnettimeo.so true\n"),
              "not the installed library: %s", r.out);
    nt_result_free(&r);

    struct nt_peer *p = nt_peer_start(NT_PEER_SILENT, NT_TCP4, NULL);
    cr_assert_not_null(p);
    struct client c;
    cr_assert_eq(run_in(&r, &e, "/", 15000,
                        client_argv(&c, p, NT_ARGV(bin, "run", "-o", "read_timeout=1s", "--"))), 0);
    assert_cut(&r);
    cr_assert_not_null(strstr(r.err, "\"event\":\"timeout\""), "stderr:\n%s", r.err);
    nt_result_free(&r);
    nt_peer_stop(p);

    /* check and report find their helpers too. */
    snprintf(path, sizeof path, "%s/share/doc/nettimeo/examples/http-server.conf", prefix);
    cr_assert_eq(run_in(&r, &e, "/", 10000, NT_ARGV(bin, "check", path)), 0);
    nt_assert_exit(&r, 0, "installed check");
    nt_result_free(&r);
    cr_assert_eq(run_in(&r, &e, "/", 20000, NT_ARGV(bin, "report", NT_FIXTURES "/report.jsonl")), 0);
    nt_assert_exit(&r, 0, "installed report");
    assert_fixture_summary(r.out);
    nt_result_free(&r);
    cr_assert_eq(run_in(&r, &e, "/", 10000, NT_ARGV(bin, "--version")), 0);
    nt_assert_exit(&r, 0, "installed --version");
    cr_assert_not_null(strstr(r.out, "nettimeo "), "%s", r.out);
    cr_assert_null(strstr(r.out, "source tree"), "%s", r.out);
    nt_result_free(&r);

    nt_rmtree(prefix);
    free(prefix);
}
