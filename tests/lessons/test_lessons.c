/* One test per bug class of shared/LESSONS.md that no other suite owns:
 * init order (1), RTLD_NEXT (2), unseen closes (3), file flags (5),
 * socket type flags (7), vfork/posix_spawn (12), fail open (17), and the
 * config reload the library does on connection setup. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nttest_cr.h"

TestSuite(lessons, .timeout = 60);

static struct nt_result run_with(const char *const argv[], const char *const *env)
{
    struct nt_spawn_opts o = { .env = env };
    struct nt_result r;
    cr_assert_eq(nt_run(argv, &o, 15000, &r), 0, "could not start %s", argv[0]);
    return r;
}

static void assert_ok(struct nt_result *r, const char *what)
{
    cr_assert(nt_exited(r, 0) && r->out && strstr(r->out, "result=ok"),
              "%s: %s\nstderr:\n%s", what, r->out ? r->out : "", r->err ? r->err : "");
    nt_result_free(r);
}

/* LESSONS 1: another preload does socket I/O in its constructor, before
 * ours has run; both load orders. */
Test(lessons, hooks_before_our_constructor)
{
    char first[1024], second[1024];
#ifdef NT_SANITIZE
    const char *runtime = NT_ASAN_LIB ":"; /* ASan's runtime must come first */
#else
    const char *runtime = "";
#endif
    snprintf(first, sizeof first, "LD_PRELOAD=%s%s:%s", runtime,
             NT_LESSONS_DIR "/libearly_io.so", nt_lib_path());
    snprintf(second, sizeof second, "LD_PRELOAD=%s:%s", nt_preload_value(),
             NT_LESSONS_DIR "/libearly_io.so");
    const char *envs[] = { first, second };
    for (int i = 0; i < 2; i++) {
        struct nt_result r = run_with(NT_ARGV("/bin/true"), NT_ENV(envs[i]));
        cr_assert(nt_exited(&r, 0) && strstr(r.err, "early_io: ok"),
                  "order %d: %s", i, r.err);
        nt_result_free(&r);
    }
}

/* LESSONS 2: a library preloaded after nettimeo still sees the sends
 * nettimeo makes for the program. */
Test(lessons, next_definitions_via_rtld_next)
{
    struct nt_peer *p = nt_peer_start(NT_PEER_ECHO, NT_TCP4, NULL);
    char preload[1024];
    snprintf(preload, sizeof preload, "LD_PRELOAD=%s:%s", nt_preload_value(),
             NT_LESSONS_DIR "/libcount_send.so");
    struct nt_result r = run_with(NT_ARGV(NT_PROG("dl_client"), nt_peer_addr(p)->str,
                                          "keepalive", "5", "0"),
                                  NT_ENV(preload));
    unsigned long n = 0;
    const char *c = strstr(r.err, "count_send: ");
    if (c)
        n = strtoul(c + 12, NULL, 10);
    cr_assert(nt_exited(&r, 0) && n >= 5, "sends seen by the next library: %lu\n%s",
              n, r.err);
    nt_result_free(&r);
    nt_peer_stop(p);
}

/* LESSONS 3: closes no hook sees; the number reused by a file. */
Test(lessons, closes_the_hooks_never_see)
{
    struct nt_result r = run_with(NT_ARGV(NT_LESSONS_DIR "/lessons_prog", "unseen-close"),
                                  NT_ENV("NETTIMEO_OPTIONS=read_timeout=1s idle_timeout=1s"));
    assert_ok(&r, "unseen close");
}

/* LESSONS 4/13: libunwind's pipe takes no number the program expects,
 * and after the program closed it and reused the numbers the unwinder
 * never reads or writes the program's descriptors. */
Test(lessons, unwinder_descriptors)
{
    struct nt_spawn_opts o = { 0 };
    struct nt_result with, without;
    cr_assert(nt_run_both(NT_ARGV(NT_LESSONS_DIR "/lessons_prog", "unwinder-fds"), &o, 15000,
                          &with, &without) == 0);
    nt_assert_same(&with, &without, "unwinder-fds");
    cr_assert(strstr(with.out, "result=ok"), "%s\n%s", with.out, with.err);
    cr_assert(strstr(with.err, "\"event\":\"epipe\""), "an event was logged:\n%s", with.err);
    nt_result_free(&with);
    nt_result_free(&without);
}

/* LESSONS 5: the library's wait never changes the program's file flags. */
Test(lessons, file_flags_untouched)
{
    struct nt_result r = run_with(NT_ARGV(NT_LESSONS_DIR "/lessons_prog", "flags"),
                                  NT_ENV("NETTIMEO_OPTIONS=read_timeout=500ms"));
    assert_ok(&r, "flags");
}

/* LESSONS 7: a socket made with SOCK_NONBLOCK|SOCK_CLOEXEC is governed. */
Test(lessons, socket_type_flags)
{
    struct nt_peer *p = nt_peer_start(NT_PEER_SILENT, NT_TCP4, NULL);
    struct nt_result r = run_with(NT_ARGV(NT_LESSONS_DIR "/lessons_prog", "sockflags",
                                          nt_peer_addr(p)->str),
                                  NT_ENV("NETTIMEO_OPTIONS=read_timeout=1s"));
    cr_assert(nt_exited(&r, 0), "the silent peer's socket was not cut: %s", r.out);
    nt_result_free(&r);
    nt_peer_stop(p);
}

/* LESSONS 12: vfork and posix_spawn children while deadlines are armed. */
Test(lessons, vfork_and_posix_spawn)
{
    struct nt_result r = run_with(NT_ARGV(NT_LESSONS_DIR "/lessons_prog", "vfork"),
                                  NT_ENV("NETTIMEO_OPTIONS=idle_timeout=30s read_timeout=5s"));
    assert_ok(&r, "vfork");
}

/* ---- LESSONS 17: fail open --------------------------------------------- */

static char *write_conf(const char *name, const char *text)
{
    char *path = nt_path(name);
    nt_write_file(path, text, strlen(text));
    return path;
}

Test(lessons, bad_config_fails_open)
{
    struct nt_peer *p = nt_peer_start(NT_PEER_ECHO, NT_TCP4, NULL);
    char *conf = write_conf("bad.conf", "[defaults]\nread_timout = 1s\n");
    char env[600];
    snprintf(env, sizeof env, "NETTIMEO_CONFIG=%s", conf);
    struct nt_result r = run_with(NT_ARGV(NT_PROG("dl_client"), nt_peer_addr(p)->str,
                                          "keepalive", "3", "0"),
                                  NT_ENV(env));
    cr_assert(nt_exited(&r, 0) && strstr(r.out, "result=ok"),
              "the program runs unchanged: %s", r.out);
    char where[700];
    snprintf(where, sizeof where, "%s:2: unknown key 'read_timout'", conf);
    cr_assert(strstr(r.err, where), "FILE:LINE message on stderr:\n%s", r.err);
    cr_assert(strstr(r.err, "\"event\":\"config_error\""), "config_error event:\n%s",
              r.err);
    nt_result_free(&r);

    char strict[] = "NETTIMEO_STRICT=1";
    r = run_with(NT_ARGV(NT_PROG("dl_client"), nt_peer_addr(p)->str, "keepalive",
                         "3", "0"),
                 NT_ENV(env, strict));
    cr_assert(nt_exited(&r, 78), "NETTIMEO_STRICT=1 exits 78");
    cr_assert(strstr(r.err, where));
    nt_result_free(&r);
    free(conf);
    nt_peer_stop(p);
}

/* ---- reload: on connection setup, at most once a second ---------------- */

struct driver {
    pid_t pid;
    FILE *in, *out;
};

/* python3 under the library: each line on stdin opens a connection to the
 * silent peer and reports how its read ended and after how long. */
static void start_driver(struct driver *d, const char *conf, int port)
{
    int to[2], from[2];
    cr_assert(pipe(to) == 0 && pipe(from) == 0);
    char script[600], env[600];
    snprintf(script, sizeof script,
             "import socket,sys,time,errno\n"
             "for line in sys.stdin:\n"
             "  t=time.time(); s=socket.create_connection(('127.0.0.1',%d))\n"
             "  try:\n    s.recv(1); r='eof'\n"
             "  except OSError as e: r=errno.errorcode[e.errno]\n"
             "  print(r, int((time.time()-t)*1000), flush=True); s.close()\n",
             port);
    snprintf(env, sizeof env, "NETTIMEO_CONFIG=%s", conf);
    struct nt_spawn_opts o = { .env = NT_ENV(env), .in_fd = to[0], .out_fd = from[1] };
    d->pid = nt_spawn(NT_ARGV("python3", "-c", script), &o);
    close(to[0]);
    close(from[1]);
    d->in = fdopen(to[1], "w");
    d->out = fdopen(from[0], "r");
}

/* One connection; returns how long its read took, in ms. */
static long connection(struct driver *d, char *how, size_t len)
{
    fputs("go\n", d->in);
    fflush(d->in);
    char line[128];
    long ms = -1;
    cr_assert(fgets(line, sizeof line, d->out), "driver died");
    cr_assert_eq(sscanf(line, "%31s %ld", how, &ms), 2, "%s", line);
    (void)len;
    return ms;
}

static void rewrite(const char *path, const char *text)
{
    nt_sleep_ms(1100); /* the library looks at most once a second */
    char tmp[700];
    snprintf(tmp, sizeof tmp, "%s.new", path);
    nt_write_file(tmp, text, strlen(text));
    rename(tmp, path);
}

Test(lessons, reload_good_bad_removed)
{
    struct nt_peer *p = nt_peer_start(NT_PEER_SILENT, NT_TCP4, NULL);
    char *conf = write_conf("reload.conf", "[defaults]\nread_timeout = 400ms\n");
    struct driver d;
    start_driver(&d, conf, nt_peer_addr(p)->port);
    char how[32];
    long ms = connection(&d, how, sizeof how);
    cr_assert_str_eq(how, "ETIMEDOUT");
    cr_assert(ms >= 320 && ms < 1000, "first rules: %ld ms", ms);

    rewrite(conf, "[defaults]\nread_timeout = 1200ms\n");
    connection(&d, how, sizeof how); /* this setup notices the change */
    ms = connection(&d, how, sizeof how);
    cr_assert(ms >= 960 && ms < 2000, "good -> good: new rules, %ld ms", ms);

    rewrite(conf, "[defaults]\nread_timeout = soon\n");
    connection(&d, how, sizeof how);
    ms = connection(&d, how, sizeof how);
    cr_assert(ms >= 960 && ms < 2000, "good -> bad keeps the old rules: %ld ms", ms);

    nt_sleep_ms(1100);
    unlink(conf);
    connection(&d, how, sizeof how);
    ms = connection(&d, how, sizeof how);
    cr_assert(ms >= 960 && ms < 2000, "file removed keeps the rules: %ld ms", ms);

    fclose(d.in);
    int st;
    nt_wait_timeout(d.pid, 5000, &st);
    fclose(d.out);
    free(conf);
    nt_peer_stop(p);
}
