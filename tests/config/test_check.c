/* The nettimeo-check program, run as a user would, and the shipped
 * examples, which must all pass it. */
#define _GNU_SOURCE
#include "helpers.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

TestSuite(check, .timeout = 30);
TestSuite(examples, .timeout = 30);

extern char **environ;

struct run {
    int status;
    char out[16384], err[16384];
};

static void slurp(FILE *f, char *buf, size_t len)
{
    rewind(f);
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Runs nettimeo-check with args (NULL-terminated) and optional
 * NETTIMEO_OPTIONS, never with anything preloaded. */
static void run_check(struct run *r, const char *options, const char *const *args)
{
    char *argv[8], *envp[4];
    char opt_env[512];
    int n = 0, e = 0;
    FILE *out = tmpfile(), *err = tmpfile();
    posix_spawn_file_actions_t fa;
    pid_t pid;

    argv[n++] = (char *)NT_CHECK_BIN;
    for (; *args && n < 7; args++)
        argv[n++] = (char *)*args;
    argv[n] = NULL;
    envp[e++] = (char *)"PATH=/usr/bin:/bin";
    envp[e++] = (char *)"ASAN_OPTIONS=detect_leaks=1";
    if (options) {
        snprintf(opt_env, sizeof opt_env, "NETTIMEO_OPTIONS=%s", options);
        envp[e++] = opt_env;
    }
    envp[e] = NULL;

    cr_assert(out && err);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fileno(out), 1);
    posix_spawn_file_actions_adddup2(&fa, fileno(err), 2);
    cr_assert_eq(posix_spawn(&pid, NT_CHECK_BIN, &fa, NULL, argv, envp), 0);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(waitpid(pid, &r->status, 0), pid);
    cr_assert(WIFEXITED(r->status), "nettimeo-check died");
    r->status = WEXITSTATUS(r->status);
    slurp(out, r->out, sizeof r->out);
    slurp(err, r->err, sizeof r->err);
}

#define RUN(r, opts, ...) run_check(r, opts, (const char *const[]){ __VA_ARGS__, NULL })

Test(check, good_file)
{
    char path[1024], head[1100];
    struct run r;
    fixture_path("good/match.conf", path, sizeof path);
    RUN(&r, NULL, path);
    cr_expect_eq(r.status, 0);
    cr_expect_str_empty(r.err);
    snprintf(head, sizeof head, "%s: OK\n\n[global]\n", path);
    cr_expect_eq(strncmp(r.out, head, strlen(head)), 0, "%s", r.out);
    cr_expect(strstr(r.out, "\n[rule lan]\ndirection = outbound\n"
                     "remote = 10.0.0.0/8 192.168.1.0/24\n"
                     "remote_port = 5432,6379\n") != NULL, "%s", r.out);
    cr_expect(strstr(r.out, "\n[rule mapped-as-v6]\nremote = 172.16.0.0/12\n")
              != NULL, "%s", r.out);
}

Test(check, bad_file)
{
    char path[512], want[8192];
    struct run r;
    fixture_path("bad/rules.conf", path, sizeof path);
    RUN(&r, NULL, path);
    cr_expect_eq(r.status, 1);
    cr_expect_str_empty(r.out);
    snprintf(want, sizeof want,
             "%1$s:3: section [global] takes no name, got 'extra'\n"
             "%1$s:3: section [global] repeated (first at line 2)\n"
             "%1$s:6: section [defaults] repeated (first at line 5)\n"
             "%1$s:11: missing rule name (write [rule NAME])\n"
             "%1$s:14: bad rule name 'two words': use up to 64 letters, digits, '_', '-' or '.'\n"
             "%1$s:15: duplicate rule name 'web' (first at line 8)\n"
             "%1$s:16: bad duration '5' for 'read_timeout': missing unit (write e.g. 5s or 500ms)\n",
             path);
    cr_expect_str_eq(r.err, want);
}

Test(check, quiet)
{
    char good[1024], bad[1024];
    struct run r;
    fixture_path("good/spec.conf", good, sizeof good);
    fixture_path("bad/keys.conf", bad, sizeof bad);
    RUN(&r, NULL, "--quiet", good);
    cr_expect_eq(r.status, 0);
    cr_expect_str_empty(r.out);
    RUN(&r, NULL, "-q", bad);
    cr_expect_eq(r.status, 1);
    cr_expect_str_empty(r.out);
    cr_expect_str_empty(r.err);
}

Test(check, unusable_paths)
{
    struct run r;
    RUN(&r, NULL, "/tmp");
    cr_expect_eq(r.status, 1);
    cr_expect_str_eq(r.err, "/tmp:0: is a directory, not a regular file\n");
    RUN(&r, NULL, "/nonexistent.conf");
    cr_expect_eq(r.status, 1);
    cr_expect_str_eq(r.err, "/nonexistent.conf:0: cannot open: No such file or directory\n");
}

Test(check, usage)
{
    struct run r;
    run_check(&r, NULL, (const char *const[]){ NULL });
    cr_expect_eq(r.status, 2);
    cr_expect(strstr(r.err, "usage: nettimeo-check") != NULL);
    RUN(&r, NULL, "--bogus", "x");
    cr_expect_eq(r.status, 2);
    RUN(&r, NULL, "a", "b");
    cr_expect_eq(r.status, 2);
    RUN(&r, NULL, "--help");
    cr_expect_eq(r.status, 0);
    cr_expect(strstr(r.out, "usage: nettimeo-check") != NULL);
}

Test(check, env_options)
{
    char path[1024];
    struct run r;
    fixture_path("good/inherit.conf", path, sizeof path);
    RUN(&r, "read_timeout=9s", "--env", path);
    cr_expect_eq(r.status, 0, "%s", r.err);
    cr_expect(strstr(r.out, "[rule sets-nothing]\nprogram = n\n"
                     "connect_timeout = 3s            # from [defaults]\n"
                     "read_timeout = 9s               # from [defaults]\n") != NULL,
              "%s", r.out);
    RUN(&r, "read_timeout=9", "--env", path);
    cr_expect_eq(r.status, 1);
    cr_expect_str_eq(r.err, "NETTIMEO_OPTIONS:0: bad duration '9' for 'read_timeout': "
                     "missing unit (write e.g. 5s or 500ms)\n");
    RUN(&r, "read_timeout=9", path);
    cr_expect_eq(r.status, 0, "without --env the environment is not read");
    RUN(&r, "idle_timeout=1m", "--env");
    cr_expect_eq(r.status, 0);
    cr_expect(strstr(r.out, "NETTIMEO_OPTIONS: OK\n") == r.out, "%s", r.out);
    cr_expect(strstr(r.out, "idle_timeout = 1m\n") != NULL, "%s", r.out);
}

/* ---- examples ---- */

Test(examples, all_pass_the_checker)
{
    DIR *d = opendir(NT_EXAMPLES);
    struct dirent *e;
    int seen = 0;
    cr_assert_not_null(d);
    while ((e = readdir(d)) != NULL) {
        size_t n = strlen(e->d_name);
        if (n < 5 || strcmp(e->d_name + n - 5, ".conf") != 0)
            continue;
        char path[1024];
        struct run r;
        snprintf(path, sizeof path, "%s/%s", NT_EXAMPLES, e->d_name);
        RUN(&r, NULL, path);
        cr_expect_eq(r.status, 0, "%s:\n%s", e->d_name, r.err);
        seen++;
    }
    closedir(d);
    cr_expect_geq(seen, 3, "http-server, batch-client and mixed at least");
}

static struct nt_config *example(const char *name)
{
    char path[1024];
    struct diags d = { 0 };
    snprintf(path, sizeof path, "%s/%s", NT_EXAMPLES, name);
    struct nt_config *cfg = nt_config_parse_file(path, diags_collect, &d);
    cr_assert_not_null(cfg, "%s does not parse", name);
    return cfg;
}

Test(examples, http_server)
{
    struct nt_config *cfg = example("http-server.conf");
    const struct nt_settings *s = match(cfg, NT_DIR_INBOUND, "0.0.0.0:8080",
                                        "198.51.100.7:40000", "httpd");
    cr_expect_not_null(s->rule);
    cr_expect_gt(s->idle_timeout, 0);
    cr_expect_gt(s->request_timeout, 0);
    cr_expect_gt(s->read_timeout, 0);
    cr_expect_gt(s->write_timeout, 0);
    nt_config_free(cfg);
}

Test(examples, batch_client)
{
    struct nt_config *cfg = example("batch-client.conf");
    const struct nt_settings *s = match(cfg, NT_DIR_OUTBOUND, NULL,
                                        "192.0.2.10:443", "nightly-export");
    cr_expect_gt(s->connect_timeout, 0);
    cr_expect_gt(s->read_timeout, 0);
    cr_expect_gt(s->max_lifetime, 0);
    s = match(cfg, NT_DIR_INBOUND, "0.0.0.0:9000", "192.0.2.10:443", "x");
    cr_expect_null(s->rule, "outbound rules only");
    nt_config_free(cfg);
}

Test(examples, mixed)
{
    struct nt_config *cfg = example("mixed.conf");
    const char *in = match_name(cfg, NT_DIR_INBOUND, "0.0.0.0:8080",
                                "198.51.100.7:40000", "legacy-app");
    const char *out = match_name(cfg, NT_DIR_OUTBOUND, NULL, "10.2.3.4:5432",
                                 "legacy-app");
    const char *sock = match_name(cfg, NT_DIR_OUTBOUND, NULL,
                                  "unix:/run/app/cache.sock", "legacy-app");
    cr_expect_str_neq(in, "-");
    cr_expect_str_neq(out, "-");
    cr_expect_str_neq(sock, "-");
    cr_expect_str_neq(in, out);
    cr_expect_str_neq(sock, out);
    nt_config_free(cfg);
}
