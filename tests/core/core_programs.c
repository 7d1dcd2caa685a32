/* Real programs, unmodified, under the library: curl against python's
 * http.server and against nginx (itself run under the library, with and
 * without worker processes), with downloads compared byte for byte; socat
 * relaying through an echo peer; and strace showing the library adds no
 * syscalls per call. */
#define _GNU_SOURCE
#include "nttest_cr.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

TestSuite(programs, .timeout = 60);

/* curl hangs in setlocale() with a preloaded ASan runtime, library or not
 * (nttest_cr.h): in sanitizer builds only the servers run under it. */
#ifdef NT_SANITIZE
#define CURL_PRELOAD false
#else
#define CURL_PRELOAD true
#endif

/* A web root with files that take different paths through the servers:
 * empty, small, and large enough for many sendfile/write rounds. */
static const struct {
    const char *name;
    size_t size;
} files[] = {{"empty.txt", 0}, {"small.txt", 1000}, {"big.bin", 8 << 20}};
#define NFILES 3

static char *make_www(void)
{
    char *dir = nt_mkdtemp(), *p;
    for (int i = 0; i < NFILES; i++) {
        char *buf = malloc(files[i].size + 1);
        nt_fill_bytes(buf, files[i].size, i + 1);
        cr_assert(asprintf(&p, "%s/%s", dir, files[i].name) > 0);
        cr_assert(nt_write_file(p, buf, files[i].size) == 0);
        chmod(p, 0644);
        free(buf);
        free(p);
    }
    return dir;
}

/* curl fetches every file (and one 404) on one keep-alive connection into
 * a fresh dir; the files must equal the originals. Returns curl's -w lines. */
static char *fetch_all(const char *base, const char *www, bool preload)
{
    const char *argv[32] = {"curl", "-sS", "-g", "-w", "%{http_code} %{size_download}\\n"};
    char *dl = nt_mkdtemp(), *urls[NFILES + 1], *outs[NFILES + 1], *res;
    int n = 5;
    struct nt_result r;
    for (int i = 0; i <= NFILES; i++) {
        const char *name = i < NFILES ? files[i].name : "missing";
        cr_assert(asprintf(&urls[i], "%s/%s", base, name) > 0);
        cr_assert(asprintf(&outs[i], "%s/%s", dl, name) > 0);
        argv[n++] = "-o";
        argv[n++] = outs[i];
        argv[n++] = urls[i];
    }
    cr_assert(nt_run(argv, &(struct nt_spawn_opts){.no_preload = !preload}, 30000, &r) == 0);
    nt_assert_exit(&r, 0, preload ? "curl (with the library)" : "curl");
    for (int i = 0; i < NFILES; i++) {
        size_t a, b;
        char *orig, *got;
        cr_assert(asprintf(&orig, "%s/%s", www, files[i].name) > 0);
        got = nt_read_file(outs[i], &b);
        cr_assert(got, "%s was not downloaded", urls[i]);
        cr_assert((orig = nt_read_file(orig, &a)) && a == b && !memcmp(orig, got, a),
                  "%s: downloaded %zu bytes differ from the original", urls[i], b);
        free(orig);
        free(got);
    }
    for (int i = 0; i <= NFILES; i++) {
        free(urls[i]);
        free(outs[i]);
    }
    nt_rmtree(dl);
    free(dl);
    res = r.out;
    r.out = NULL;
    nt_result_free(&r);
    return res;
}

static void python_case(bool preload, const char *www, char **curl_out)
{
    struct nt_server s;
    char base[64];
    int port = 0, st;
    struct nt_spawn_opts o = {.no_preload = !preload, .err_path = "/dev/null"};
    cr_assert(nt_server_start(&s, NT_ARGV("python3", "-u", "-m", "http.server", "--bind",
                                          "127.0.0.1", "--directory", www, "0"),
                              &o, 10000) == 0, "python3 -m http.server did not start");
    cr_assert(sscanf(s.line, "Serving HTTP on %*s port %d", &port) == 1, "%s", s.line);
    snprintf(base, sizeof base, "http://127.0.0.1:%d", port);
    *curl_out = fetch_all(base, www, preload && CURL_PRELOAD);
    nt_server_stop(&s, 0, &st, NULL);
}

Test(programs, curl_and_python_http_server)
{
    char *www = make_www(), *with, *without;
    python_case(true, www, &with);
    python_case(false, www, &without);
    cr_assert_str_eq(with, without, "curl's report differs with the library");
    cr_assert(strstr(with, "404 "), "no 404 in: %s", with);
    free(with);
    free(without);
    nt_rmtree(www);
    free(www);
}

/* nginx with everything (pid, logs, temp paths) in `dir`, listening on
 * both loopbacks. With master_process on it forks worker processes, which
 * inherit the library. */
static pid_t nginx_start(const char *dir, const char *www, bool master, bool preload, int *port)
{
    char *conf, *text, portstr[16];
    pid_t pid;
    struct nt_addr a;
    *port = nt_free_port(NT_TCP4);
    cr_assert(asprintf(&text,
        "daemon off;\nmaster_process %s;\nworker_processes 2;\npid %s/nginx.pid;\n"
        "error_log %s/error.log info;\nevents { worker_connections 64; }\n"
        "http {\n  access_log %s/access.log;\n  client_body_temp_path %s/body;\n"
        "  proxy_temp_path %s/proxy;\n  fastcgi_temp_path %s/fastcgi;\n"
        "  uwsgi_temp_path %s/uwsgi;\n  scgi_temp_path %s/scgi;\n"
        "  sendfile on;\n  tcp_nopush on;\n  keepalive_timeout 10;\n"
        "  server {\n    listen 127.0.0.1:%d;\n    listen [::1]:%d;\n    root %s;\n  }\n}\n",
        master ? "on" : "off", dir, dir, dir, dir, dir, dir, dir, dir, *port, *port, www) > 0);
    cr_assert(asprintf(&conf, "%s/nginx.conf", dir) > 0);
    cr_assert(nt_write_file(conf, text, strlen(text)) == 0);
    pid = nt_spawn(NT_ARGV("nginx", "-p", dir, "-e", "stderr", "-c", conf),
                   &(struct nt_spawn_opts){.no_preload = !preload, .in_path = "/dev/null"});
    cr_assert(pid > 0);
    snprintf(portstr, sizeof portstr, "%d", *port);
    nt_addr_from_line(NT_TCP4, portstr, &a);
    if (nt_wait_listening(&a, 10000) < 0) {
        nt_kill(pid);
        cr_assert_fail("nginx did not listen on %d", *port);
    }
    free(text);
    free(conf);
    return pid;
}

/* Graceful stop (SIGQUIT); nginx must exit 0 as it does without us. */
static void nginx_stop(pid_t pid, const char *what)
{
    int st;
    char buf[64];
    kill(pid, SIGQUIT);
    cr_assert(nt_wait_timeout(pid, 10000, &st) == 0, "%s: nginx did not stop", what);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: nginx %s", what,
              nt_status_str(st, buf, sizeof buf));
}

static char *nginx_case(bool master, bool nginx_preload, bool curl_preload, bool v6,
                        const char *www)
{
    char *dir = nt_mkdtemp(), base[64], *out;
    int port;
    pid_t pid = nginx_start(dir, www, master, nginx_preload, &port);
    snprintf(base, sizeof base, v6 ? "http://[::1]:%d" : "http://127.0.0.1:%d", port);
    out = fetch_all(base, www, curl_preload && CURL_PRELOAD);
    nginx_stop(pid, nginx_preload ? "with the library" : "without the library");
    nt_rmtree(dir);
    free(dir);
    return out;
}

Test(programs, nginx_single_process)
{
    char *www = make_www(), *a, *b, *c;
    a = nginx_case(false, true, true, false, www);      /* both under the library */
    b = nginx_case(false, false, false, false, www);    /* neither */
    c = nginx_case(false, true, false, true, www);      /* nginx only, over IPv6 */
    cr_assert_str_eq(a, b, "curl's report differs with the library");
    cr_assert_str_eq(c, b, "curl's report differs with nginx under the library (IPv6)");
    free(a);
    free(b);
    free(c);
    nt_rmtree(www);
    free(www);
}

Test(programs, nginx_master_and_workers)
{
    char *www = make_www(), *a, *b;
    a = nginx_case(true, true, true, true, www);
    b = nginx_case(true, false, false, true, www);
    cr_assert_str_eq(a, b, "curl's report differs with the library");
    free(a);
    free(b);
    nt_rmtree(www);
    free(www);
}

/* socat (a select() loop) relays stdin to an echo peer and the echo back to
 * stdout, over each address family. */
Test(programs, socat_relay)
{
    static const char *const kinds[] = {"TCP4", "TCP6", "UNIX-CONNECT"};
    size_t len = 1 << 20;
    char *text = malloc(len + 1), target[160];
    for (size_t i = 0; i < len; i++)
        text[i] = "abcdefghijklmnopqrstuvwxyz0123456789\n"[i % 37];
    text[len] = 0;
    for (int f = 0; f < 3; f++) {
        struct nt_peer *p = nt_peer_start(NT_PEER_ECHO, f, NULL);
        struct nt_result with, without;
        snprintf(target, sizeof target, "%s:%s", kinds[f], nt_peer_addr(p)->str);
        cr_assert(nt_run_both(NT_ARGV("socat", "-b", "65536", "-", target),
                              &(struct nt_spawn_opts){.stdin_data = text}, 20000, &with,
                              &without) == 0);
        nt_assert_exit(&with, 0, target);
        nt_assert_same(&with, &without, target);
        cr_assert(with.out_len == len && !memcmp(with.out, text, len),
                  "%s: %zu bytes came back changed or short", target, with.out_len);
        nt_result_free(&with);
        nt_result_free(&without);
        nt_peer_stop(p);
    }
    free(text);
}

/* ---- strace: no syscalls added per call --------------------------------- */

struct sc_count {
    char name[32];
    long calls[2][2];           /* [preload][size] */
};

/* Add the "calls" column of an `strace -c` summary to counts[][p][k]. */
static int add_summary(struct sc_count *sc, int n, const char *text, int p, int k)
{
    char *copy = strdup(text), *save, *line;
    for (line = strtok_r(copy, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *tok[8], *s2, *t;
        int nt = 0, i;
        for (t = strtok_r(line, " ", &s2); t && nt < 8; t = strtok_r(NULL, " ", &s2))
            tok[nt++] = t;
        if (nt < 5 || !strchr("0123456789", tok[0][0]) || !strcmp(tok[nt - 1], "total"))
            continue;
        for (i = 0; i < n && strcmp(sc[i].name, tok[nt - 1]); i++)
            ;
        if (i == n && n < 128)
            snprintf(sc[n++].name, sizeof sc->name, "%s", tok[nt - 1]);
        if (i < 128)
            sc[i].calls[p][k] += atol(tok[3]);
    }
    free(copy);
    return n;
}

/* Run argv(size k) under strace -f -c, with and without the preload, at
 * two sizes; the growth from the small to the large run must be the same:
 * the library makes no syscalls of its own per call. by_name: the same for
 * every syscall; otherwise only in total (on sockets the library may send
 * a write() as send(MSG_NOSIGNAL), LESSONS 14). */
static void strace_slopes(const char *const argv[2][16], bool by_name, const char *what)
{
    long total[2] = {0, 0};
    static struct sc_count sc[128];
    int n = 0;
    for (int p = 0; p < 2; p++)
        for (int k = 0; k < 2; k++) {
            const char *cmd[32] = {"strace", "-f", "-c", "-o"};
            char *out = nt_path("strace.txt"), *env = NULL, *text;
            int c = 4, i;
            struct nt_result r;
            cmd[c++] = out;
            if (p) {
                cr_assert(asprintf(&env, "LD_PRELOAD=%s", nt_preload_value()) > 0);
                cmd[c++] = "-E";
                cmd[c++] = env;
                cmd[c++] = "-E";
                cmd[c++] = "ASAN_OPTIONS=detect_leaks=0";
            }
            for (i = 0; argv[k][i]; i++)
                cmd[c++] = argv[k][i];
            cmd[c] = NULL;
            cr_assert(nt_run(cmd, &(struct nt_spawn_opts){.no_preload = true}, 30000, &r) == 0);
            nt_assert_exit(&r, 0, what);
            text = nt_read_file(out, NULL);
            cr_assert(text, "no strace output");
            n = add_summary(sc, n, text, p, k);
            free(text);
            free(env);
            free(out);
            nt_result_free(&r);
        }
    for (int i = 0; i < n; i++) {
        long without = sc[i].calls[0][1] - sc[i].calls[0][0];
        long with = sc[i].calls[1][1] - sc[i].calls[1][0];
        total[0] += without;
        total[1] += with;
        if (with != without)
            cr_log(by_name ? CR_LOG_ERROR : CR_LOG_INFO,
                   "%s: %s grows by %ld calls with the library, %ld without", what, sc[i].name,
                   with, without);
        cr_expect(!by_name || with == without, "%s: %s differs", what, sc[i].name);
    }
    cr_expect(total[1] == total[0], "%s: syscalls grow by %ld with the library, %ld without",
              what, total[1], total[0]);
}

Test(programs, strace_no_extra_syscalls_on_files)
{
    const char *const argv[2][16] = {{NT_PROG("byte_loop"), "3000"},
                                     {NT_PROG("byte_loop"), "6000"}};
    strace_slopes(argv, true, "1-byte reads and writes on files and a pipe");
}

Test(programs, strace_no_extra_syscalls_on_sockets)
{
    struct nt_peer *p = nt_peer_start(NT_PEER_ECHO, NT_TCP4, NULL);
    const char *addr = nt_peer_addr(p)->str;
    const char *const argv[2][16] = {
        {NT_PROG("xfer_client"), "-c", "rw", "-k", "1000", "-n", "200k", addr},
        {NT_PROG("xfer_client"), "-c", "rw", "-k", "1000", "-n", "400k", addr}};
    strace_slopes(argv, false, "xfer_client rw");
    nt_peer_stop(p);
}
