/* exchange_prog MODE
 *
 * Exchanges and call semantics (SPEC §4): each mode runs both ends of a
 * connection in this process (or a child) and prints what the program
 * saw on one line. The tests run it with request_timeout / idle_timeout
 * well below the pauses here, and compare with the run without the
 * library.
 *
 *   poll-server     keep-alive server: poll() per readiness, one read,
 *                   answer; the client pauses 2 s between requests
 *   eagain-client   non-blocking client reads until EAGAIN after each
 *                   answer; 2 s pause between exchanges
 *   epoll-server    event-loop server: epoll_wait, one read per readiness,
 *                   answer; 2 s pause between requests
 *   epoll2-server   the same, waiting in epoll_pwait2 (glibc 2.35)
 *   slow-connect    blocking connect that completes after about 3 s
 *   peek-waitall    recv(MSG_PEEK|MSG_WAITALL) of 10 bytes sent in 2 parts
 *   zero-read       read(fd, buf, 0) with nothing to read
 *   sendmmsg        blocking sendmmsg of 4 x 256 KiB to a slow reader
 *   errqueue        recvmsg(MSG_ERRQUEUE) on a blocking socket
 *   connect-again   non-blocking connect to a full backlog, poll, then
 *                   connect() again and SO_ERROR (haproxy's way)
 *   fork-cuts       fork-per-connection server: 30 children each block in
 *                   read until EOF, then _exit(0); prints how many ended
 *   sigmix          handlers with and without SA_RESTART both installed;
 *                   a blocked read is interrupted by each in turn
 *   abandon         server reads a request and closes without answering
 *   answer          server reads a request, answers, closes
 */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *en(int e)
{
    static char buf[32];
    const char *n = strerrorname_np(e);
    if (!e)
        return "0";
    if (n)
        return n;
    snprintf(buf, sizeof buf, "%d", e);
    return buf;
}

/* Blocking client: three request/answer exchanges, pausing between. */
static void client_exchanges(int c, int pause_ms)
{
    for (int i = 0; i < 3; i++) {
        if (i)
            poll(NULL, 0, pause_ms);
        char b[16];
        ssize_t w = write(c, "ping", 4);
        ssize_t r = read(c, b, sizeof b);
        printf("exchange %d: write=%zd read=%zd errno=%s\n", i, w, r,
               en(r < 0 ? errno : 0));
        if (r <= 0)
            break;
    }
}

static void *poll_server(void *arg)
{
    int s = (int)(long)arg;
    for (;;) {
        struct pollfd p = { .fd = s, .events = POLLIN };
        if (poll(&p, 1, 10000) != 1)
            break;
        char b[16];
        ssize_t r = read(s, b, sizeof b);
        if (r <= 0)
            break;
        if (write(s, "pong", 4) != 4)
            break;
    }
    close(s);
    return NULL;
}

static int mode_poll_server(void)
{
    int c, s;
    pc_pair(AF_INET, &c, &s);
    pthread_t t;
    pthread_create(&t, NULL, poll_server, (void *)(long)s);
    client_exchanges(c, 2000);
    close(c);
    pthread_join(t, NULL);
    return 0;
}

static void *echo_pong(void *arg)
{
    int s = (int)(long)arg;
    char b[16];
    while (read(s, b, sizeof b) > 0)
        if (write(s, "pong", 4) != 4)
            break;
    close(s);
    return NULL;
}

static int mode_eagain_client(void)
{
    int c, s;
    pc_pair(AF_INET, &c, &s);
    pthread_t t;
    pthread_create(&t, NULL, echo_pong, (void *)(long)s);
    fcntl(c, F_SETFL, fcntl(c, F_GETFL) | O_NONBLOCK);
    for (int i = 0; i < 3; i++) {
        if (i)
            poll(NULL, 0, 2000);
        ssize_t w = write(c, "ping", 4);
        int got = 0, e = 0;
        for (;;) {
            struct pollfd p = { .fd = c, .events = POLLIN };
            poll(&p, 1, 5000);
            char b[16];
            ssize_t r;
            while ((r = read(c, b, sizeof b)) > 0)
                got += (int)r;
            e = r < 0 ? errno : 0;
            if (got >= 4 || (r < 0 && errno != EAGAIN) || r == 0)
                break;
        }
        printf("exchange %d: write=%zd got=%d last=%s\n", i, w, got, en(e));
        if (got < 4)
            break;
    }
    close(c);
    pthread_join(t, NULL);
    return 0;
}

static int use_pwait2; /* epoll2-server */

static void *epoll_server(void *arg)
{
    int s = (int)(long)arg;
    fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = s };
    epoll_ctl(ep, EPOLL_CTL_ADD, s, &ev);
    for (;;) {
        struct epoll_event out;
        struct timespec ten = { .tv_sec = 10 };
        if ((use_pwait2 ? epoll_pwait2(ep, &out, 1, &ten, NULL)
                        : epoll_wait(ep, &out, 1, 10000)) != 1)
            break;
        char b[16];
        ssize_t r = read(s, b, sizeof b); /* once per readiness */
        if (r <= 0)
            break;
        if (write(s, "pong", 4) != 4)
            break;
    }
    close(ep);
    close(s);
    return NULL;
}

/* The client is another process: its own waits (the 2 s pauses) must not
 * be what tells the library that the server went back to its loop. */
static int mode_epoll_server(void)
{
    int c, s;
    pc_pair(AF_INET, &c, &s);
    fflush(stdout);
    pid_t kid = fork();
    if (kid == 0) {
        close(s);
        client_exchanges(c, 2000);
        fflush(stdout);
        _exit(0);
    }
    close(c);
    epoll_server((void *)(long)s);
    waitpid(kid, NULL, 0);
    return 0;
}

/* A listener whose queue is full: SYNs are dropped until we accept. */
static int full_listener(char *addr, size_t len)
{
    char shown[64];
    int l = pc_listen("127.0.0.1:0", 0, shown, sizeof shown);
    snprintf(addr, len, "127.0.0.1:%s", shown);
    struct sockaddr_storage ss;
    socklen_t sl;
    pc_parse_addr(addr, &ss, &sl);
    for (int i = 0; i < 3; i++) { /* fill the queue; kept open */
        int q = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        connect(q, (struct sockaddr *)&ss, sl);
    }
    poll(NULL, 0, 100);
    return l;
}

static int mode_slow_connect(void)
{
    char addr[80];
    int l = full_listener(addr, sizeof addr);
    pid_t pid = fork();
    if (pid == 0) { /* make room after 2.5 s: the SYN retried at 3 s gets in */
        poll(NULL, 0, 2500);
        for (int i = 0; i < 4; i++)
            close(accept(l, NULL, NULL));
        poll(NULL, 0, 5000);
        _exit(0);
    }
    long long t0 = pc_now_ms();
    int c = pc_connect(addr);
    int e = c < 0 ? errno : 0;
    char b = 'x';
    ssize_t w = c >= 0 ? write(c, &b, 1) : -1;
    printf("connect=%s errno=%s write=%zd after_ms=%s\n", c >= 0 ? "ok" : "failed",
           en(e), w, pc_now_ms() - t0 > 2000 ? ">2000" : "<2000");
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return 0;
}

static int mode_peek_waitall(void)
{
    int c, s;
    pc_pair(AF_INET, &c, &s);
    pid_t pid = fork();
    if (pid == 0) {
        if (write(s, "01234", 5) != 5)
            _exit(1);
        poll(NULL, 0, 300);
        if (write(s, "56789", 5) != 5)
            _exit(1);
        _exit(0);
    }
    char b[11] = "";
    ssize_t r = recv(c, b, 10, MSG_PEEK | MSG_WAITALL);
    printf("peek=%zd data=%s\n", r, r > 0 ? b : "-");
    waitpid(pid, NULL, 0);
    return 0;
}

static int mode_zero_read(void)
{
    int c, s;
    pc_pair(AF_INET, &c, &s);
    char b[1];
    long long t0 = pc_now_ms();
    ssize_t r = read(c, b, 0);
    printf("read0=%zd errno=%s quick=%s\n", r, en(r < 0 ? errno : 0),
           pc_now_ms() - t0 < 500 ? "yes" : "no");
    return 0;
}

static int mode_sendmmsg(void)
{
    int c, s;
    pc_pair(AF_INET, &c, &s);
    enum { N = 4, SZ = 256 * 1024 };
    static char data[N][SZ];
    pid_t pid = fork();
    if (pid == 0) { /* a slow reader */
        static char b[65536];
        size_t total = 0;
        ssize_t r;
        while (total < (size_t)N * SZ && (r = read(s, b, sizeof b)) > 0) {
            total += (size_t)r;
            poll(NULL, 0, 2);
        }
        _exit(total == (size_t)N * SZ ? 0 : 1);
    }
    struct iovec v[N];
    struct mmsghdr m[N];
    memset(m, 0, sizeof m);
    for (int i = 0; i < N; i++) {
        v[i] = (struct iovec){ data[i], SZ };
        m[i].msg_hdr.msg_iov = &v[i];
        m[i].msg_hdr.msg_iovlen = 1;
    }
    int r = sendmmsg(c, m, N, 0);
    printf("sendmmsg=%d lens=%u,%u,%u,%u\n", r, m[0].msg_len, m[1].msg_len, m[2].msg_len,
           m[3].msg_len);
    int st;
    waitpid(pid, &st, 0);
    printf("reader=%s\n", WIFEXITED(st) && !WEXITSTATUS(st) ? "all" : "short");
    return 0;
}

static int mode_errqueue(void)
{
    int c, s;
    pc_pair(AF_INET, &c, &s);
    char b[16], ctl[64];
    struct iovec v = { b, sizeof b };
    struct msghdr m = { .msg_iov = &v, .msg_iovlen = 1, .msg_control = ctl,
                        .msg_controllen = sizeof ctl };
    long long t0 = pc_now_ms();
    ssize_t r = recvmsg(c, &m, MSG_ERRQUEUE);
    printf("errqueue=%zd errno=%s quick=%s\n", r, en(r < 0 ? errno : 0),
           pc_now_ms() - t0 < 500 ? "yes" : "no");
    return 0;
}

static int mode_connect_again(void)
{
    char addr[80];
    full_listener(addr, sizeof addr);
    struct sockaddr_storage ss;
    socklen_t len;
    pc_parse_addr(addr, &ss, &len);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int r = connect(fd, (struct sockaddr *)&ss, len);
    int e = r < 0 ? errno : 0;
    struct pollfd p = { .fd = fd, .events = POLLOUT };
    int n = poll(&p, 1, 4000);
    int r2 = connect(fd, (struct sockaddr *)&ss, len);
    int e2 = r2 < 0 ? errno : 0;
    int soerr = -1;
    socklen_t sl = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl);
    printf("first=%s poll=%d again=%s so_error=%s\n", en(e), n, en(e2), en(soerr));
    return 0;
}

static int mode_fork_cuts(void)
{
    enum { N = 30 };
    char shown[64], addr[80];
    int l = pc_listen("127.0.0.1:0", N, shown, sizeof shown);
    snprintf(addr, sizeof addr, "127.0.0.1:%s", shown);
    int clients[N];
    pid_t kids[N];
    for (int i = 0; i < N; i++) {
        clients[i] = pc_connect_or_die(addr);
        int s = accept(l, NULL, NULL);
        kids[i] = fork();
        if (kids[i] == 0) {
            char b[16];
            while (read(s, b, sizeof b) > 0)
                ;
            _exit(0); /* at once: no time for anything else */
        }
        close(s);
    }
    int ended = 0;
    for (int i = 0; i < N; i++) {
        int st;
        if (waitpid(kids[i], &st, 0) == kids[i] && WIFEXITED(st))
            ended++;
    }
    printf("children ended=%d\n", ended);
    for (int i = 0; i < N; i++)
        close(clients[i]);
    return 0;
}

static void on_sig(int sig)
{
    (void)sig;
}

struct sig_reader { int fd; ssize_t r[2]; int e[2]; volatile int stage; };

static void *sig_reader_main(void *arg)
{
    struct sig_reader *sr = arg;
    for (int i = 0; i < 2; i++) {
        char b[8];
        sr->stage = i + 1;
        sr->r[i] = read(sr->fd, b, sizeof b);
        sr->e[i] = sr->r[i] < 0 ? errno : 0;
    }
    sr->stage = 3;
    return NULL;
}

static int mode_sigmix(void)
{
    struct sigaction restart = { .sa_handler = on_sig, .sa_flags = SA_RESTART };
    struct sigaction eintr = { .sa_handler = on_sig, .sa_flags = 0 };
    sigaction(SIGUSR1, &restart, NULL);
    sigaction(SIGUSR2, &eintr, NULL);
    struct sigaction back;
    sigaction(SIGUSR1, NULL, &back);
    int c, s;
    pc_pair(AF_INET, &c, &s);
    struct sig_reader sr = { .fd = c };
    pthread_t t;
    pthread_create(&t, NULL, sig_reader_main, &sr);
    poll(NULL, 0, 300);
    pthread_kill(t, SIGUSR1); /* SA_RESTART: the read goes on */
    poll(NULL, 0, 300);
    if (write(s, "a", 1) != 1)
        pc_die("write:");
    while (sr.stage < 2)
        poll(NULL, 0, 10);
    poll(NULL, 0, 300);
    pthread_kill(t, SIGUSR2); /* no SA_RESTART: EINTR */
    pthread_join(t, NULL);
    printf("handler=%s flags=%#x first=%zd/%s second=%zd/%s\n",
           back.sa_handler == on_sig ? "program's" : "other", (unsigned)back.sa_flags,
           sr.r[0], en(sr.e[0]), sr.r[1], en(sr.e[1]));
    return 0;
}

__attribute__((noinline)) static int server_story(int answer)
{
    int c, s;
    pc_pair(AF_INET, &c, &s);
    char b[16];
    if (write(c, "GET", 3) != 3 || read(s, b, sizeof b) != 3)
        pc_die("request:");
    if (answer && write(s, "OK", 2) != 2)
        pc_die("answer:");
    close(s); /* the server is done */
    ssize_t r = read(c, b, sizeof b);
    ssize_t r2 = answer ? read(c, b, sizeof b) : r;
    printf("client read=%zd then=%zd\n", r, r2);
    close(c);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        pc_die("usage: exchange_prog MODE");
    setvbuf(stdout, NULL, _IOLBF, 0);
    signal(SIGPIPE, SIG_IGN);
    const char *m = argv[1];
    if (!strcmp(m, "poll-server")) return mode_poll_server();
    if (!strcmp(m, "eagain-client")) return mode_eagain_client();
    if (!strcmp(m, "epoll-server")) return mode_epoll_server();
    if (!strcmp(m, "epoll2-server")) return use_pwait2 = 1, mode_epoll_server();
    if (!strcmp(m, "slow-connect")) return mode_slow_connect();
    if (!strcmp(m, "peek-waitall")) return mode_peek_waitall();
    if (!strcmp(m, "zero-read")) return mode_zero_read();
    if (!strcmp(m, "sendmmsg")) return mode_sendmmsg();
    if (!strcmp(m, "errqueue")) return mode_errqueue();
    if (!strcmp(m, "connect-again")) return mode_connect_again();
    if (!strcmp(m, "fork-cuts")) return mode_fork_cuts();
    if (!strcmp(m, "sigmix")) return mode_sigmix();
    if (!strcmp(m, "abandon")) return server_story(0);
    if (!strcmp(m, "answer")) return server_story(1);
    pc_die("unknown mode %s", m);
}
