/* nt_run (spawn, wait, capture) and servers that announce themselves on
 * their first stdout line. */
#define _GNU_SOURCE
#include "nttest.h"
#include "nttest_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* Everything written to a memfd, NUL-terminated. */
static char *slurp_memfd(int fd, size_t *len)
{
    off_t size = lseek(fd, 0, SEEK_END);
    char *buf = malloc(size > 0 ? size + 1 : 1);
    ssize_t n = size > 0 ? pread(fd, buf, size, 0) : 0;
    *len = n > 0 ? (size_t)n : 0;
    buf[*len] = 0;
    return buf;
}

int nt_run(const char *const argv[], const struct nt_spawn_opts *opts, int timeout_ms,
           struct nt_result *r)
{
    struct nt_spawn_opts o = opts ? *opts : (struct nt_spawn_opts){0};
    int out = -1, err = -1;
    int64_t t0;
    pid_t pid;
    memset(r, 0, sizeof *r);
    if (!o.out_fd && !o.out_path)
        o.out_fd = out = memfd_create("nt_out", MFD_CLOEXEC);
    if (!o.err_fd && !o.err_path)
        o.err_fd = err = memfd_create("nt_err", MFD_CLOEXEC);
    if (!o.in_fd && !o.in_path && !o.stdin_data)
        o.in_path = "/dev/null";
    t0 = nt_now_ms();
    pid = nt_spawn(argv, &o);
    if (pid > 0)
        r->timed_out = nt_wait_timeout(pid, timeout_ms, &r->status) == 1;
    r->elapsed_ms = nt_now_ms() - t0;
    r->out = out >= 0 ? slurp_memfd(out, &r->out_len) : strdup("");
    r->err = err >= 0 ? slurp_memfd(err, &r->err_len) : strdup("");
    if (out >= 0)
        close(out);
    if (err >= 0)
        close(err);
    return pid > 0 ? 0 : -1;
}

int nt_run_both(const char *const argv[], const struct nt_spawn_opts *opts, int timeout_ms,
                struct nt_result *with, struct nt_result *without)
{
    struct nt_spawn_opts o = opts ? *opts : (struct nt_spawn_opts){0};
    int a, b;
    o.no_preload = false;
    a = nt_run(argv, &o, timeout_ms, with);
    o.no_preload = true;
    b = nt_run(argv, &o, timeout_ms, without);
    return a < 0 || b < 0 ? -1 : 0;
}

int nt_run_config(const char *const argv[], const char *options, const char *conf_text,
                  bool preload, int timeout_ms, struct nt_result *r)
{
    char *env_opts = NULL, *env_conf = NULL, *path = NULL;
    int rc = -1;
    if (asprintf(&env_opts, "NETTIMEO_OPTIONS=%s", options ? options : "") < 0)
        return -1;
    if (conf_text && (!(path = nt_write_tmp("run_config.conf", conf_text)) ||
                      asprintf(&env_conf, "NETTIMEO_CONFIG=%s", path) < 0))
        goto out;
    struct nt_spawn_opts o = {
        .no_preload = !preload,
        .env = env_conf ? NT_ENV(env_opts, env_conf) : NT_ENV(env_opts),
    };
    rc = nt_run(argv, &o, timeout_ms, r);
out:
    free(env_opts);
    free(env_conf);
    free(path);
    return rc;
}

void nt_result_free(struct nt_result *r)
{
    free(r->out);
    free(r->err);
    r->out = r->err = NULL;
}

bool nt_exited(const struct nt_result *r, int code)
{
    return !r->timed_out && WIFEXITED(r->status) && WEXITSTATUS(r->status) == code;
}

bool nt_same_result(const struct nt_result *a, const struct nt_result *b)
{
    return !a->timed_out && !b->timed_out && a->status == b->status &&
           a->out_len == b->out_len && !memcmp(a->out, b->out, a->out_len);
}

/* Read one '\n'-terminated line from fd before the deadline. */
static int read_line(int fd, char *buf, size_t len, int64_t deadline)
{
    size_t n = 0;
    while (n + 1 < len) {
        struct pollfd p = {fd, POLLIN, 0};
        int64_t left = deadline - nt_now_ms();
        ssize_t got;
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            return -1;
        got = read(fd, buf + n, 1);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0)
            return -1;
        if (buf[n] == '\n')
            break;
        n++;
    }
    buf[n] = 0;
    return 0;
}

int nt_server_start(struct nt_server *s, const char *const argv[],
                    const struct nt_spawn_opts *opts, int timeout_ms)
{
    struct nt_spawn_opts o = opts ? *opts : (struct nt_spawn_opts){0};
    int p[2];
    char *end;
    memset(s, 0, sizeof *s);
    s->out_fd = -1;
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    o.out_fd = p[1];
    o.out_path = NULL;
    if (!o.in_fd && !o.in_path && !o.stdin_data)
        o.in_path = "/dev/null";
    s->pid = nt_spawn(argv, &o);
    close(p[1]);
    if (s->pid < 0 || read_line(p[0], s->line, sizeof s->line, nt_now_ms() + timeout_ms) < 0) {
        if (s->pid > 0)
            nt_kill(s->pid);
        close(p[0]);
        s->pid = -1;
        return -1;
    }
    s->out_fd = p[0];
    s->port = (int)strtol(s->line, &end, 10);
    if (*end)
        s->port = 0;
    return 0;
}

/* What is left on the pipe; stops after 1 s in case a grandchild keeps it. */
static char *drain(int fd)
{
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    int64_t deadline = nt_now_ms() + 1000;
    for (;;) {
        struct pollfd p = {fd, POLLIN, 0};
        int64_t left = deadline - nt_now_ms();
        ssize_t got;
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        if (n + 1024 > cap)
            buf = realloc(buf, cap *= 2);
        got = read(fd, buf + n, cap - n - 1);
        if (got <= 0)
            break;
        n += got;
    }
    buf[n] = 0;
    return buf;
}

int nt_server_stop(struct nt_server *s, int grace_ms, int *status, char **rest)
{
    int st = 0, rc = 0;
    if (s->pid <= 0)
        return -1;
    if (nt_wait_quietly(s->pid, grace_ms, &st) != 0) {
        rc = -1;
        kill(s->pid, SIGTERM);
        if (nt_wait_quietly(s->pid, 2000, &st) != 0)
            nt_wait_timeout(s->pid, 0, &st);
    }
    if (status)
        *status = st;
    if (rest)
        *rest = drain(s->out_fd);
    close(s->out_fd);
    s->out_fd = -1;
    s->pid = -1;
    return rc;
}

int nt_echo_run(const char *server_mode, enum nt_family f, long conns,
                const char *const client[], const struct nt_spawn_opts *o, int timeout_ms,
                struct nt_echo_run *r)
{
    struct nt_addr a;
    struct nt_server s;
    char n[32];
    size_t argc = 0;
    const char **argv;
    memset(r, 0, sizeof *r);
    nt_addr_any(f, &a);
    snprintf(n, sizeof n, "%ld", conns);
    if (nt_server_start(&s, NT_ARGV(NT_PROG("echo_server"), "-m", server_mode, "-n", n, a.str),
                        o, 5000) < 0)
        return -1;
    nt_addr_from_line(f, s.line, &a);
    while (client[argc])
        argc++;
    argv = calloc(argc + 1, sizeof *argv);
    for (size_t i = 0; i < argc; i++)
        argv[i] = strcmp(client[i], "@ADDR") ? client[i] : a.str;
    nt_run(argv, o, timeout_ms, &r->client);
    free(argv);
    /* A failed client may leave the server waiting for connections. */
    r->server_exited = nt_server_stop(&s, nt_exited(&r->client, 0) ? 5000 : 0,
                                      &r->server_status, &r->server_out) == 0;
    if (f == NT_UNIX)
        unlink(a.str);
    return 0;
}

int nt_echo_run_both(const char *server_mode, enum nt_family f, long conns,
                     const char *const client[], const struct nt_spawn_opts *opts, int timeout_ms,
                     struct nt_echo_run *with, struct nt_echo_run *without)
{
    struct nt_spawn_opts o = opts ? *opts : (struct nt_spawn_opts){0};
    int a, b;
    o.no_preload = false;
    a = nt_echo_run(server_mode, f, conns, client, &o, timeout_ms, with);
    o.no_preload = true;
    b = nt_echo_run(server_mode, f, conns, client, &o, timeout_ms, without);
    return a < 0 || b < 0 ? -1 : 0;
}

void nt_echo_run_free(struct nt_echo_run *r)
{
    nt_result_free(&r->client);
    free(r->server_out);
    r->server_out = NULL;
}

bool nt_echo_run_same(const struct nt_echo_run *a, const struct nt_echo_run *b)
{
    return nt_exited(&a->client, 0) && nt_same_result(&a->client, &b->client) &&
           a->server_exited && b->server_exited && a->server_status == 0 &&
           b->server_status == 0 && !strcmp(a->server_out, b->server_out);
}
