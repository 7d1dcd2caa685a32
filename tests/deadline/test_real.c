/* Deadlines on a real, unmodified event-loop server: nginx (epoll,
 * non-blocking, accept4) with silent clients. nginx's own
 * client_header_timeout is 60 s, so without the library a silent client
 * stays connected. */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nttest_cr.h"

TestSuite(real, .timeout = 60);

struct nginx {
    struct nt_server srv;
    char *dir;
    int port;
};

static void write_conf(const char *dir, int port)
{
    char path[1024], conf[4096], www[600];
    snprintf(www, sizeof www, "%s/www", dir);
    mkdir(www, 0755);
    snprintf(path, sizeof path, "%s/index.html", www);
    nt_write_file(path, "hello from nginx\n", 17);
    snprintf(conf, sizeof conf,
             "daemon off; master_process off; worker_processes 1;\n"
             "pid %1$s/nginx.pid; error_log %1$s/error.log;\n"
             "events { worker_connections 64; }\n"
             "http { access_log off; client_body_temp_path %1$s;\n"
             "  proxy_temp_path %1$s; fastcgi_temp_path %1$s;\n"
             "  uwsgi_temp_path %1$s; scgi_temp_path %1$s;\n"
             "  server { listen 127.0.0.1:%2$d; root %1$s/www; } }\n",
             dir, port);
    snprintf(path, sizeof path, "%s/nginx.conf", dir);
    nt_write_file(path, conf, strlen(conf));
}

/* nginx prints nothing when ready: wait until it accepts. */
static void start_nginx(struct nginx *n, const char *options, int preload)
{
    n->dir = nt_mkdtemp();
    n->port = nt_free_port(NT_TCP4);
    write_conf(n->dir, n->port);
    char conf[512], env[256];
    snprintf(conf, sizeof conf, "%s/nginx.conf", n->dir);
    snprintf(env, sizeof env, "NETTIMEO_OPTIONS=%s", options);
    struct nt_spawn_opts o = { .no_preload = !preload, .env = NT_ENV(env),
                               .err_path = "/dev/null" };
    n->srv.pid = nt_spawn(NT_ARGV("nginx", "-c", conf, "-p", n->dir), &o);
    cr_assert(n->srv.pid > 0, "nginx did not start");
    struct nt_addr a;
    char line[16];
    snprintf(line, sizeof line, "%d", n->port);
    nt_addr_from_line(NT_TCP4, line, &a);
    cr_assert_eq(nt_wait_listening(&a, 5000), 0, "nginx is not listening");
}

static void stop_nginx(struct nginx *n)
{
    nt_kill(n->srv.pid);
    nt_rmtree(n->dir);
    free(n->dir);
}

static int connect_nginx(const struct nginx *n)
{
    struct nt_addr a;
    char line[16];
    snprintf(line, sizeof line, "%d", n->port);
    nt_addr_from_line(NT_TCP4, line, &a);
    return nt_connect(&a, 2000);
}

/* Milliseconds until the peer closed (EOF/reset), or -1 if not in ms. */
static int64_t closed_within(int fd, int ms)
{
    int64_t t0 = nt_now_ms();
    struct pollfd p = { .fd = fd, .events = POLLIN };
    if (poll(&p, 1, ms) != 1)
        return -1;
    char c;
    return read(fd, &c, 1) <= 0 ? nt_now_ms() - t0 : -1;
}

/* curl runs without the library and without ASan here: it is only the
 * observer. */
static int fetch(const struct nginx *n)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", n->port);
    struct nt_spawn_opts o = { .no_preload = true };
    struct nt_result r;
    nt_run(NT_ARGV("curl", "-sS", url), &o, 5000, &r);
    int ok = nt_exited(&r, 0) && r.out && strstr(r.out, "hello from nginx");
    nt_result_free(&r);
    return ok;
}

Test(real, nginx_silent_clients_cut_at_idle_timeout)
{
    struct nginx n;
    start_nginx(&n, "idle_timeout=1s", 1);
    int a = connect_nginx(&n), b = connect_nginx(&n);
    cr_assert(a >= 0 && b >= 0);
    int64_t ta = closed_within(a, 5000), tb = closed_within(b, 5000);
    cr_assert(ta >= 0 && tb >= 0, "silent clients were not cut");
    nt_assert_elapsed(ta, 1000, 700);
    cr_assert(fetch(&n), "nginx keeps serving");
    cr_assert(fetch(&n), "and again: its fds came back");
    close(a);
    close(b);
    stop_nginx(&n);

    start_nginx(&n, "idle_timeout=1s", 0);
    a = connect_nginx(&n);
    cr_assert_eq(closed_within(a, 2500), -1, "nginx alone keeps the client");
    close(a);
    stop_nginx(&n);
}

Test(real, nginx_serves_normally_with_deadlines_armed)
{
    struct nginx n;
    start_nginx(&n, "idle_timeout=5s read_timeout=5s request_timeout=5s", 1);
    for (int i = 0; i < 20; i++)
        cr_assert(fetch(&n), "request %d", i);
    stop_nginx(&n);
}
