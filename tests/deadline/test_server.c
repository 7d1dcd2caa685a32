/* Deadlines that fire by themselves, on servers: silent clients (idle),
 * slowloris (request), slow handlers, keep-alive that must NOT be cut,
 * max_lifetime, expire_action = reset, and a close racing a deadline.
 * The servers run under the library; the test process is the client. */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nttest_cr.h"

#define DEADLINE_MS 1000
#define SLACK_MS 700
#define HANG_MS 2500

TestSuite(server, .timeout = 60);

static struct nt_server start_server(const char *mode, const char *delay,
                                     const char *options, const char *log,
                                     int preload)
{
    static char env_opts[256], env_log[300];
    snprintf(env_opts, sizeof env_opts, "NETTIMEO_OPTIONS=%s", options);
    snprintf(env_log, sizeof env_log, "NETTIMEO_LOG=%s", log ? log : "stderr");
    struct nt_spawn_opts o = { .no_preload = !preload,
                               .env = NT_ENV(env_opts, env_log) };
    struct nt_server s;
    cr_assert_eq(nt_server_start(&s, NT_ARGV(NT_PROG("dl_server"), mode, delay),
                                 &o, 5000),
                 0, "dl_server %s did not start", mode);
    return s;
}

static char *stop_server(struct nt_server *s)
{
    int status;
    char *rest = NULL;
    nt_server_stop(s, 0, &status, &rest);
    return rest ? rest : strdup("");
}

static int connect_port(int port)
{
    struct nt_addr a;
    char line[16];
    snprintf(line, sizeof line, "%d", port);
    nt_addr_from_line(NT_TCP4, line, &a);
    int fd = nt_connect(&a, 2000);
    cr_assert(fd >= 0, "connect to %d", port);
    return fd;
}

/* Read once, waiting at most ms: bytes, 0 at EOF, -1 on error (errno),
 * -2 when nothing happened in time. */
static ssize_t read_within(int fd, char *buf, size_t len, int ms)
{
    struct pollfd p = { .fd = fd, .events = POLLIN };
    if (poll(&p, 1, ms) == 0)
        return -2;
    return read(fd, buf, len);
}

/* A request/answer on a connection; 1 when "ok\n" came back. */
static int exchange(int fd)
{
    char buf[16];
    if (write(fd, "req\n", 4) != 4)
        return 0;
    return read_within(fd, buf, sizeof buf, 3000) == 3 && !memcmp(buf, "ok\n", 3);
}

/* ---- idle_timeout: silent clients ------------------------------------ */

static void silent_client_cut(const char *mode)
{
    struct nt_server s = start_server(mode, "0", "idle_timeout=1s", NULL, 1);
    int fd = connect_port(s.port);
    int64_t t0 = nt_now_ms();
    char buf[16];
    ssize_t r = read_within(fd, buf, sizeof buf, 5000);
    int64_t took = nt_now_ms() - t0;
    cr_assert_eq(r, 0, "the silent client should see EOF (got %zd)", r);
    nt_assert_elapsed(took, DEADLINE_MS, SLACK_MS);
    close(fd);
    /* The server keeps serving, and got its fd back. */
    int fd2 = connect_port(s.port);
    cr_assert(exchange(fd2), "server still serves");
    close(fd2);
    nt_sleep_ms(200);
    char *out = stop_server(&s);
    cr_assert(strstr(out, "closed 1"), "the server closed the cut connection:\n%s", out);
    free(out);

    /* Without the library the silent client is never cut. */
    s = start_server(mode, "0", "idle_timeout=1s", NULL, 0);
    fd = connect_port(s.port);
    cr_assert_eq(read_within(fd, buf, sizeof buf, HANG_MS), -2);
    close(fd);
    free(stop_server(&s));
}

Test(server, idle_timeout_thread_per_connection)
{
    silent_client_cut("threads");
}

Test(server, idle_timeout_epoll)
{
    silent_client_cut("epoll");
}

/* ---- request_timeout: slowloris and healthy keep-alive --------------- */

static void slowloris_cut(const char *mode)
{
    struct nt_server s = start_server(mode, "0", "request_timeout=1s", NULL, 1);
    int fd = connect_port(s.port);
    int64_t t0 = nt_now_ms();
    int64_t cut_at = -1;
    char buf[16];
    for (int i = 0; i < 40 && cut_at < 0; i++) {
        if (write(fd, "x", 1) != 1 || read_within(fd, buf, sizeof buf, 200) != -2)
            cut_at = nt_now_ms() - t0;
    }
    cr_assert(cut_at >= 0, "slowloris was never cut");
    nt_assert_elapsed(cut_at, DEADLINE_MS, SLACK_MS);
    close(fd);
    free(stop_server(&s));
}

Test(server, slowloris_thread_per_connection)
{
    slowloris_cut("threads");
}

Test(server, slowloris_epoll)
{
    slowloris_cut("epoll");
}

static void keepalive_survives(const char *mode)
{
    /* 16 requests 250 ms apart: 4 s on one connection, each exchange far
     * shorter than request_timeout; a connection-wide deadline would cut
     * it after 1 s. */
    struct nt_server s = start_server(mode, "0",
                                      "request_timeout=1s idle_timeout=2s", NULL, 1);
    int fd = connect_port(s.port);
    for (int i = 0; i < 16; i++) {
        cr_assert(exchange(fd), "keep-alive request %d was cut", i);
        nt_sleep_ms(250);
    }
    close(fd);
    free(stop_server(&s));
}

Test(server, keepalive_never_cut_thread_per_connection)
{
    keepalive_survives("threads");
}

Test(server, keepalive_never_cut_epoll)
{
    keepalive_survives("epoll");
}

Test(server, slow_handler_cut_and_late_write_fails)
{
    char *log = nt_path("slow.jsonl");
    struct nt_server s = start_server("threads", "2500", "request_timeout=1s",
                                      log, 1);
    int fd = connect_port(s.port);
    int64_t t0 = nt_now_ms();
    char buf[16];
    cr_assert_eq(write(fd, "req\n", 4), 4);
    ssize_t r = read_within(fd, buf, sizeof buf, 5000);
    int64_t took = nt_now_ms() - t0;
    cr_assert_eq(r, 0, "the client learns at the deadline (EOF)");
    nt_assert_elapsed(took, DEADLINE_MS, SLACK_MS);
    nt_sleep_ms(2000); /* the handler wakes and writes */
    close(fd);
    char *out = stop_server(&s);
    cr_assert(strstr(out, "closed 1 ETIMEDOUT"),
              "the server's late write fails with ETIMEDOUT:\n%s", out);
    char *text = nt_read_file(log, NULL);
    cr_assert(text && strstr(text, "\"timeout\":\"request_timeout\""),
              "event: %s", text ? text : "(no log)");
    free(text);
    free(out);
    free(log);
}

/* ---- max_lifetime, reset --------------------------------------------- */

Test(server, max_lifetime_cuts_a_busy_connection)
{
    struct nt_server s = start_server("threads", "0", "max_lifetime=1s", NULL, 1);
    int fd = connect_port(s.port);
    int64_t t0 = nt_now_ms();
    int n = 0;
    while (n < 40 && exchange(fd)) {
        n++;
        nt_sleep_ms(100);
    }
    int64_t took = nt_now_ms() - t0;
    cr_assert(n < 40, "never cut");
    nt_assert_elapsed(took, DEADLINE_MS, SLACK_MS);
    close(fd);
    free(stop_server(&s));
}

/* TIME_WAIT sockets whose local port is `port`, from /proc/net/tcp. */
static int time_wait_on_port(int port)
{
    FILE *f = fopen("/proc/net/tcp", "r");
    char line[512];
    int n = 0;
    while (f && fgets(line, sizeof line, f)) {
        char local[64];
        unsigned state;
        if (sscanf(line, " %*d: %63s %*s %x", local, &state) != 2)
            continue;
        const char *colon = strchr(local, ':');
        if (colon && strtol(colon + 1, NULL, 16) == port && state == 6)
            n++;
    }
    if (f)
        fclose(f);
    return n;
}

Test(server, expire_action_reset)
{
    struct nt_server s = start_server("threads", "0",
                                      "idle_timeout=1s expire_action=reset", NULL, 1);
    int fd = connect_port(s.port);
    char buf[16];
    int64_t t0 = nt_now_ms();
    ssize_t r = read_within(fd, buf, sizeof buf, 5000);
    int e = errno;
    cr_assert(r == -1 && e == ECONNRESET, "peer sees a reset (got %zd)", r);
    nt_assert_elapsed(nt_now_ms() - t0, DEADLINE_MS, SLACK_MS);
    close(fd);
    nt_sleep_ms(100);
    cr_assert_eq(time_wait_on_port(s.port), 0, "no TIME_WAIT left");
    free(stop_server(&s));
}

/* ---- a deadline racing the program's own close ----------------------- */

Test(server, deadline_never_hits_a_reused_fd)
{
    struct nt_peer *p = nt_peer_start(NT_PEER_ECHO, NT_TCP4, NULL);
    char env[64] = "NETTIMEO_OPTIONS=idle_timeout=1s";
    struct nt_spawn_opts o = { .env = NT_ENV(env) };
    struct nt_result r;
    cr_assert_eq(nt_run(NT_ARGV(NT_PROG("dl_client"), nt_peer_addr(p)->str,
                                "reuse", "1000"),
                        &o, 10000, &r),
                 0);
    cr_assert(r.out && strstr(r.out, "result=ok"),
              "the new connection on the reused fd was cut: %s %s", r.out, r.err);
    nt_result_free(&r);
    nt_peer_stop(p);
}
