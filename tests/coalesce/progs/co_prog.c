/* co_prog: the programs the coalesce suite runs under the library. One
 * binary, one mode per scenario; plain libc sockets, no knowledge of the
 * library. Results on stdout as "key=value", exit 0 when the program saw
 * what a program should see.
 *
 *   serve MODE RESPONSES WRITES SIZE     a server on 127.0.0.1 (prints its
 *       port): per 1-byte request, a response in WRITES writes of SIZE
 *       pattern bytes. MODE block | poll | epoll (the last two non-blocking)
 *   pingpong ROUNDS PIECES MODE FAMILY   both ends in one process: the
 *       client writes a 4-byte request in two writes and reads the answer;
 *       the server (MODE block | poll | epoll) answers in PIECES writes
 *   records MODE ADDR N                  numbered records (records.h) around
 *       MODE: plain sleep fork-exit fork-_exit exec _exit spawn dup2 dup
 *       fdopen dprintf system popen wordexp inherit2 stdout
 *   cont FD START COUNT END              (exec/spawn child) more records,
 *       then END: exit | _exit | return
 *   alt FD1 FD2 START COUNT              (exec child) records alternately
 *       on two inherited descriptors of one socket (FD1 first)
 *   stdio START COUNT                    (exec child, socket on fd 1)
 *       records alternately by write(1) and by printf + fflush(stdout)
 *   nbfull ADDR                          non-blocking writer, the peer does
 *       not read: write until EAGAIN, then small writes, then close
 *   evserve TOTAL PIECE                  epoll server (prints its port):
 *       pushes TOTAL pattern bytes in PIECE-byte writes to one client,
 *       then closes; reports the longest write and the close
 *   threads ADDR T N                     T threads, N records each, 1 socket
 *   signals ADDR N                       N records, and more from a SIGALRM
 *       handler every 100 us into the same socket
 *   forkstress ADDR THREADS FORKS        threads write records while the
 *       main thread forks children that _exit at once
 *   hangup ADDR HOW                      bytes buffered when the peer is
 *       gone: HOW rst-timer | rst-wait | fin
 *   nbslow ADDR TOTAL PIECE              non-blocking writer, slow reader,
 *       then waits for input only
 *   oob ADDR / sendfile ADDR FILE        order around MSG_OOB and sendfile
 *   usercork ADDR N                      the program corks by itself
 *   sharedcork ADDR exec|fork            a child process (exec'd or forked)
 *       writes to the socket before and while the parent holds TCP_CORK
 *   corkchild FD                         (exec child of sharedcork)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <wordexp.h>

#include "common.h"
#include "records.h"

extern char **environ;
static const char *self_path;

static void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* One record per write(2), as a program that prints line by line. */
static void write_records(int fd, unsigned w, unsigned start, unsigned n)
{
    char buf[REC_MAX];
    for (unsigned i = start; i < start + n; i++) {
        size_t len = rec_make(buf, w, i);
        ssize_t r = write(fd, buf, len);
        if (r != (ssize_t)len)
            pc_die("write record %u: %zd:", i, r);
    }
}

/* ---- serve ------------------------------------------------------------- */

struct loop {
    int mode; /* 0 block, 1 poll, 2 epoll */
    int ep;
    long eagain;
};

static void wait_for(struct loop *l, int fd, short events)
{
    if (l->mode == 1) {
        struct pollfd p = { .fd = fd, .events = events };
        if (poll(&p, 1, 10000) != 1)
            pc_die("poll timed out");
    } else if (l->mode == 2) {
        struct epoll_event ev = { .events = events == POLLIN ? EPOLLIN
                                                             : EPOLLOUT,
                                  .data.fd = fd };
        struct epoll_event got;
        epoll_ctl(l->ep, EPOLL_CTL_MOD, fd, &ev);
        if (epoll_wait(l->ep, &got, 1, 10000) != 1)
            pc_die("epoll_wait timed out");
    }
}

/* "+nd": the server sets TCP_NODELAY, as servers writing small pieces do */
static int opt_nodelay;

static int loop_mode(const char *s)
{
    size_t n = strcspn(s, "+");
    opt_nodelay = !strcmp(s + n, "+nd");
    if (!strncmp(s, "block", n) && n == 5)
        return 0;
    if (!strncmp(s, "poll", n) && n == 4)
        return 1;
    if (!strncmp(s, "epoll", n) && n == 5)
        return 2;
    pc_die("mode: block | poll | epoll [+nd]");
}

static void loop_init(struct loop *l, int fd, int mode)
{
    l->mode = mode;
    l->eagain = 0;
    if (mode) {
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
        if (mode == 2) {
            struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
            l->ep = epoll_create1(EPOLL_CLOEXEC);
            epoll_ctl(l->ep, EPOLL_CTL_ADD, fd, &ev);
        }
    }
}

static void loop_write(struct loop *l, int fd, const unsigned char *p,
                       size_t n)
{
    while (n) {
        ssize_t r = write(fd, p, n);
        if (r > 0) {
            p += r;
            n -= (size_t)r;
        } else if (r < 0 && errno == EAGAIN && l->mode) {
            l->eagain++;
            wait_for(l, fd, POLLOUT);
        } else if (r < 0 && errno == EINTR) {
            continue;
        } else {
            pc_die("write:");
        }
    }
}

/* 0 at EOF */
static ssize_t loop_read(struct loop *l, int fd, void *buf, size_t n)
{
    for (;;) {
        if (l->mode)
            wait_for(l, fd, POLLIN);
        ssize_t r = read(fd, buf, n);
        if (r >= 0)
            return r;
        if (errno != EAGAIN && errno != EINTR)
            pc_die("read:");
    }
}

static int do_serve(int argc, char **argv)
{
    if (argc != 6)
        pc_die("serve MODE RESPONSES WRITES SIZE");
    int mode = loop_mode(argv[2]);
    long responses = pc_num(argv[3]), writes = pc_num(argv[4]);
    size_t size = (size_t)pc_num(argv[5]);
    char shown[64];
    int lfd = pc_listen("127.0.0.1:0", 1, shown, sizeof shown);
    printf("%s\n", shown);
    fflush(stdout);
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        pc_die("accept:");
    close(lfd);
    int one = 1;
    if (opt_nodelay)
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct loop l;
    loop_init(&l, fd, mode);
    unsigned char *resp = malloc((size_t)writes * size);
    uint64_t off = 0;
    char req[64];
    long done = 0;
    for (; done < responses; done++) {
        if (loop_read(&l, fd, req, sizeof req) <= 0)
            break;
        pc_pattern(resp, (size_t)writes * size, off);
        for (long i = 0; i < writes; i++)
            loop_write(&l, fd, resp + (size_t)i * size, size);
        off += (uint64_t)writes * size;
    }
    while (loop_read(&l, fd, req, sizeof req) > 0)
        ;
    close(fd);
    printf("served=%ld eagain=%ld\n", done, l.eagain);
    return done == responses ? 0 : PC_EXIT_FAIL;
}

/* ---- pingpong ---------------------------------------------------------- */

struct pp {
    int fd, mode;
    long rounds, pieces;
};

static void *pp_server(void *arg)
{
    struct pp *p = arg;
    struct loop l;
    loop_init(&l, p->fd, p->mode);
    unsigned char piece[8];
    uint64_t off = 0;
    for (long r = 0; r < p->rounds; r++) {
        char req[4];
        size_t got = 0;
        while (got < sizeof req) {
            ssize_t n = loop_read(&l, p->fd, req + got, sizeof req - got);
            if (n <= 0)
                pc_die("server: early EOF");
            got += (size_t)n;
        }
        for (long i = 0; i < p->pieces; i++) {
            pc_pattern(piece, sizeof piece, off);
            off += sizeof piece;
            loop_write(&l, p->fd, piece, sizeof piece);
        }
    }
    return NULL;
}

static int do_pingpong(int argc, char **argv)
{
    if (argc != 6)
        pc_die("pingpong ROUNDS PIECES MODE FAMILY");
    struct pp p = { .rounds = pc_num(argv[2]), .pieces = pc_num(argv[3]),
                    .mode = loop_mode(argv[4]) };
    int c;
    pc_pair(pc_family(argv[5]), &c, &p.fd);
    pthread_t t;
    long long t0 = pc_now_ms();
    pthread_create(&t, NULL, pp_server, &p);
    size_t resp_len = (size_t)p.pieces * 8;
    unsigned char *resp = malloc(resp_len);
    uint64_t off = 0;
    for (long r = 0; r < p.rounds; r++) {
        if (write(c, "RQ", 2) != 2 || write(c, "st", 2) != 2)
            pc_die("client write:");
        if (pc_read_full(c, resp, resp_len) != (ssize_t)resp_len)
            pc_die("client: short response");
        if (pc_pattern_check(resp, resp_len, off) >= 0)
            pc_die("client: response %ld corrupt", r);
        off += resp_len;
    }
    pthread_join(t, NULL);
    printf("rounds=%ld elapsed_ms=%lld\n", p.rounds, pc_now_ms() - t0);
    return 0;
}

/* ---- records around process and descriptor events ---------------------- */

static void end_as(const char *how)
{
    if (!strcmp(how, "_exit"))
        _exit(0);
    if (!strcmp(how, "exit"))
        exit(0);
    /* "return": main returns, libc's exit runs the destructors */
}

static int do_cont(int argc, char **argv)
{
    if (argc != 6)
        pc_die("cont FD START COUNT END");
    write_records((int)pc_num(argv[2]), 0, (unsigned)pc_num(argv[3]),
                  (unsigned)pc_num(argv[4]));
    end_as(argv[5]);
    return 0;
}

int __dprintf_chk(int fd, int flag, const char *fmt, ...);

static int vdprintf_of(int fd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vdprintf(fd, fmt, ap);
    va_end(ap);
    return r;
}

/* Records start..start+n-1 by the dprintf family, rotating through its
 * entry points; the last call prints 40 records at once (more than the
 * library's 1 KiB stack buffer). */
static void dprintf_records(int fd, unsigned start, unsigned n)
{
    char rec[REC_MAX];
    unsigned i = start;
    for (; i < start + n - 40; i++) {
        size_t len = rec_make(rec, 0, i);
        rec[len - 1] = 0; /* the newline comes from the format */
        int r = i % 3 == 0 ? dprintf(fd, "%s\n", rec)
              : i % 3 == 1 ? __dprintf_chk(fd, 1, "%s\n", rec)
                           : vdprintf_of(fd, "%.*s\n", (int)len - 1, rec);
        if (r != (int)len)
            pc_die("dprintf record %u: %d:", i, r);
    }
    char *big = malloc(40 * REC_MAX + 1);
    size_t off = 0;
    for (; i < start + n; i++)
        off += rec_make(big + off, 0, i);
    big[off] = 0;
    if (dprintf(fd, "%s", big) != (int)off)
        pc_die("dprintf of %zu bytes:", off);
    free(big);
}

static int do_alt(int argc, char **argv)
{
    if (argc != 6)
        pc_die("alt FD1 FD2 START COUNT");
    int fd[2] = { (int)pc_num(argv[2]), (int)pc_num(argv[3]) };
    unsigned start = (unsigned)pc_num(argv[4]), n = (unsigned)pc_num(argv[5]);
    for (unsigned i = start; i < start + n; i++)
        write_records(fd[(i - start) % 2], 0, i, 1);
    close(fd[1]);
    close(fd[0]);
    return 0;
}

static int do_stdio(int argc, char **argv)
{
    if (argc != 4)
        pc_die("stdio START COUNT");
    unsigned start = (unsigned)pc_num(argv[2]), n = (unsigned)pc_num(argv[3]);
    setvbuf(stdout, NULL, _IOFBF, 8192); /* as for any non-tty stdout */
    char rec[REC_MAX];
    for (unsigned i = start; i < start + n; i++) {
        if (i % 2) {
            write_records(1, 0, i, 1);
        } else {
            size_t len = rec_make(rec, 0, i);
            if (fwrite(rec, 1, len, stdout) != len || fflush(stdout) != 0)
                pc_die("stdout record %u:", i);
        }
    }
    close(1);
    _exit(0);
}

static int do_records(int argc, char **argv)
{
    if (argc != 5)
        pc_die("records MODE ADDR N");
    const char *mode = argv[2];
    unsigned n = (unsigned)pc_num(argv[4]);
    int fd = pc_connect_or_die(argv[3]);
    char fdstr[16], a[16], b[16];
    snprintf(fdstr, sizeof fdstr, "%d", fd);
    snprintf(a, sizeof a, "%u", n);
    snprintf(b, sizeof b, "%u", n);
    write_records(fd, 0, 0, n);
    if (!strcmp(mode, "plain")) {
        close(fd);
    } else if (!strcmp(mode, "sleep")) {
        sleep_ms(3000); /* no call at all: only the timer can flush */
    } else if (!strcmp(mode, "_exit")) {
        _exit(0);
    } else if (!strncmp(mode, "fork-", 5)) {
        pid_t pid = fork();
        if (pid < 0)
            pc_die("fork:");
        if (pid == 0) {
            write_records(fd, 0, n, n);
            end_as(mode + 5);
            return 0;
        }
        int st;
        waitpid(pid, &st, 0);
        write_records(fd, 0, 2 * n, n);
    } else if (!strcmp(mode, "exec")) {
        execl(self_path, "co_prog", "cont", fdstr, a, b, "return",
              (char *)NULL);
        pc_die("exec:");
    } else if (!strcmp(mode, "spawn")) {
        char *args[] = { "co_prog", "cont", fdstr, a, b, "_exit", NULL };
        pid_t pid;
        int e = posix_spawn(&pid, self_path, NULL, NULL, args, environ);
        if (e)
            pc_die("posix_spawn: %s", strerror(e));
        int st;
        waitpid(pid, &st, 0);
        write_records(fd, 0, 2 * n, n);
    } else if (!strcmp(mode, "dup2")) {
        /* fd's socket holds buffered records when dup2 replaces it */
        int other = pc_connect_or_die(argv[3]);
        if (dup2(other, fd) < 0)
            pc_die("dup2:");
        write_records(fd, 0, n, n); /* now on the second connection */
        close(other);
        close(fd);
    } else if (!strcmp(mode, "fdopen")) {
        /* stdio writes through glibc's internal calls, unseen */
        FILE *f = fdopen(fd, "w");
        char rec[REC_MAX];
        for (unsigned i = n; i < 2 * n; i++) {
            size_t len = rec_make(rec, 0, i);
            fwrite(rec, 1, len, f);
        }
        fflush(f);
        write_records(fd, 0, 2 * n, n);
        fclose(f);
    } else if (!strcmp(mode, "dprintf")) {
        dprintf_records(fd, n, n);
        write_records(fd, 0, 2 * n, n);
        close(fd);
    } else if (!strcmp(mode, "wordexp")) {
        /* command substitution: glibc runs a shell internally */
        char words[4200];
        snprintf(words, sizeof words, "$('%s' cont %s %s %s _exit)",
                 self_path, fdstr, a, b);
        wordexp_t we;
        if (wordexp(words, &we, 0) != 0)
            pc_die("wordexp");
        wordfree(&we);
        write_records(fd, 0, 2 * n, n);
        close(fd);
    } else if (!strcmp(mode, "system") || !strcmp(mode, "popen")) {
        /* glibc spawns the shell internally: no hook sees it */
        char cmd[4200];
        snprintf(cmd, sizeof cmd, "exec '%s' cont %s %s %s _exit", self_path,
                 fdstr, a, b);
        if (!strcmp(mode, "system")) {
            if (system(cmd) != 0)
                pc_die("system:");
        } else {
            FILE *p = popen(cmd, "r");
            if (!p || pclose(p) != 0)
                pc_die("popen:");
        }
        write_records(fd, 0, 2 * n, n);
        close(fd);
    } else if (!strcmp(mode, "inherit2")) {
        /* inetd-style: an exec'd program gets one socket on two fds */
        int twin = dup(fd);
        char twinstr[16];
        snprintf(twinstr, sizeof twinstr, "%d", twin);
        execl(self_path, "co_prog", "alt", fdstr, twinstr, a, b,
              (char *)NULL);
        pc_die("exec:");
    } else if (!strcmp(mode, "stdout")) {
        /* the socket is the exec'd program's stdout */
        if (dup2(fd, 1) < 0)
            pc_die("dup2:");
        close(fd);
        execl(self_path, "co_prog", "stdio", a, b, (char *)NULL);
        pc_die("exec:");
    } else if (!strcmp(mode, "dup")) {
        int twin = dup(fd);
        for (unsigned i = n; i < 2 * n; i++)
            write_records(i % 2 ? fd : twin, 0, i, 1); /* twin first */
        close(twin);
        close(fd);
    } else {
        pc_die("unknown records mode %s", mode);
    }
    return 0;
}

/* ---- threads ------------------------------------------------------------ */

struct tw {
    int fd;
    unsigned w, n;
};

static void *thread_writer(void *arg)
{
    struct tw *t = arg;
    write_records(t->fd, t->w, 0, t->n);
    return NULL;
}

static int do_threads(int argc, char **argv)
{
    if (argc != 5)
        pc_die("threads ADDR T N");
    int fd = pc_connect_or_die(argv[2]);
    unsigned nt = (unsigned)pc_num(argv[3]), n = (unsigned)pc_num(argv[4]);
    if (nt > REC_WRITERS)
        pc_die("at most %d threads", REC_WRITERS);
    struct tw tw[REC_WRITERS];
    pthread_t t[REC_WRITERS];
    for (unsigned i = 0; i < nt; i++) {
        tw[i] = (struct tw){ fd, i, n };
        pthread_create(&t[i], NULL, thread_writer, &tw[i]);
    }
    for (unsigned i = 0; i < nt; i++)
        pthread_join(t[i], NULL);
    close(fd);
    return 0;
}

/* ---- signal handlers and fork from a busy process ----------------------- */

#define SIG_RECS 20000
static char *sig_recs[SIG_RECS];
static size_t sig_lens[SIG_RECS];
static volatile sig_atomic_t sig_next;
static int sig_fd;

/* Writer 1, from a SIGALRM handler, into the socket writer 0 is using. */
static void on_alarm(int sig)
{
    (void)sig;
    int saved = errno;
    if (sig_next < SIG_RECS &&
        write(sig_fd, sig_recs[sig_next], sig_lens[sig_next]) ==
            (ssize_t)sig_lens[sig_next])
        sig_next++;
    errno = saved;
}

static int do_signals(int argc, char **argv)
{
    if (argc != 4)
        pc_die("signals ADDR N");
    sig_fd = pc_connect_or_die(argv[2]);
    unsigned n = (unsigned)pc_num(argv[3]);
    for (unsigned i = 0; i < SIG_RECS; i++) {
        sig_recs[i] = malloc(REC_MAX);
        sig_lens[i] = rec_make(sig_recs[i], 1, i);
    }
    struct sigaction sa = { .sa_handler = on_alarm, .sa_flags = SA_RESTART };
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = { { 0, 100 }, { 0, 100 } };
    setitimer(ITIMER_REAL, &it, NULL);
    write_records(sig_fd, 0, 0, n);
    struct itimerval off = { { 0, 0 }, { 0, 0 } };
    setitimer(ITIMER_REAL, &off, NULL);
    printf("handler_records=%d\n", (int)sig_next);
    close(sig_fd);
    return 0;
}

struct fw {
    int fd;
    unsigned w, n;
    volatile int *stop;
};

/* Threads keep writing while the main thread forks: no byte twice. */
static int do_forkstress(int argc, char **argv)
{
    if (argc != 5)
        pc_die("forkstress ADDR THREADS FORKS");
    int fd = pc_connect_or_die(argv[2]);
    unsigned nt = (unsigned)pc_num(argv[3]), forks = (unsigned)pc_num(argv[4]);
    struct tw tw[REC_WRITERS];
    pthread_t t[REC_WRITERS];
    for (unsigned i = 0; i < nt && i < REC_WRITERS; i++) {
        tw[i] = (struct tw){ fd, i, 4000 };
        pthread_create(&t[i], NULL, thread_writer, &tw[i]);
    }
    for (unsigned i = 0; i < forks; i++) {
        pid_t pid = fork();
        if (pid == 0)
            _exit(0); /* inherits buffers mid-write: must send none */
        if (pid > 0)
            waitpid(pid, NULL, 0);
        sleep_ms(1);
    }
    for (unsigned i = 0; i < nt && i < REC_WRITERS; i++)
        pthread_join(t[i], NULL);
    close(fd);
    return 0;
}

/* ---- the peer goes away while bytes are buffered ------------------------ */

static volatile sig_atomic_t sigpipes;
static void on_sigpipe(int sig)
{
    (void)sig;
    sigpipes++;
}

static int do_hangup(int argc, char **argv)
{
    if (argc != 4)
        pc_die("hangup ADDR rst-timer|rst-wait|fin|rst-before");
    const char *how = argv[3];
    signal(SIGPIPE, on_sigpipe);
    int fd = pc_connect_or_die(argv[2]);
    char c;
    if (write(fd, "hello\n", 6) != 6 || read(fd, &c, 1) != 1)
        pc_die("handshake:");
    /* rst-before: the peer's reset is here before the writes (the kernel
     * refuses them); else the writes are held (coalesce_delay is long)
     * when the peer's RST or FIN comes, 100 ms after its 'x' */
    if (!strcmp(how, "rst-before"))
        sleep_ms(300);
    int ok = 0, first = 0;
    char rec[REC_MAX];
    for (unsigned i = 0; i < 10; i++) {
        size_t len = rec_make(rec, 0, i);
        ssize_t r = write(fd, rec, len);
        ok += r == (ssize_t)len;
        if (r < 0 && !first)
            first = errno;
    }
    sleep_ms(300);
    if (!strcmp(how, "fin")) {
        /* the timer's flush after the FIN still goes through (the peer
         * answers with RST); the kernel refuses the next writes */
        sleep_ms(700);
        for (unsigned i = 10; i < 20; i++) {
            size_t len = rec_make(rec, 0, i);
            ssize_t r = write(fd, rec, len);
            ok += r == (ssize_t)len;
            if (r < 0 && !first)
                first = errno;
        }
    } else if (!strcmp(how, "rst-wait")) {
        poll(NULL, 0, 0); /* a wait: flushes (and fails) */
    } else {
        sleep_ms(700); /* coalesce_delay passes: the timer flushes */
    }
    ssize_t r = write(fd, "next\n", 5);
    int e = r < 0 ? errno : 0;
    printf("writes_ok=%d first=%s next=%s sigpipe=%d\n", ok,
           first ? strerrorname_np(first) : "none",
           e ? strerrorname_np(e) : "ok", (int)sigpipes);
    return 0;
}

/* ---- non-blocking writer, slow reader ----------------------------------- */

static int do_nbslow(int argc, char **argv)
{
    if (argc != 5)
        pc_die("nbslow ADDR TOTAL PIECE");
    /* a small send buffer, so the slow reader is felt soon */
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (pc_parse_addr(argv[2], &ss, &sslen) < 0)
        pc_die("bad address");
    int fd = socket(ss.ss_family, SOCK_STREAM, 0), sndbuf = 32768;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    if (connect(fd, (struct sockaddr *)&ss, sslen) < 0)
        pc_die("connect:");
    size_t total = (size_t)pc_num(argv[3]), piece = (size_t)pc_num(argv[4]);
    unsigned char *data = malloc(total);
    pc_pattern(data, total, 0);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    size_t off = 0;
    long eagain = 0, partial = 0;
    while (off < total) {
        size_t n = total - off < piece ? total - off : piece;
        ssize_t r = write(fd, data + off, n);
        if (r > 0) {
            partial += (size_t)r < n;
            off += (size_t)r;
        } else if (r < 0 && errno == EAGAIN) {
            eagain++;
            struct pollfd p = { .fd = fd, .events = POLLOUT };
            if (poll(&p, 1, 20000) != 1)
                pc_die("no POLLOUT in 20 s (off %zu)", off);
        } else {
            pc_die("write:");
        }
    }
    /* Everything was accepted. Now only input matters to this program:
     * the reader says "D" once it has every byte. */
    struct pollfd p = { .fd = fd, .events = POLLIN };
    int pr = poll(&p, 1, 30000);
    char d = 0;
    if (pr == 1)
        read(fd, &d, 1);
    printf("eagain=%ld partial=%ld done=%c\n", eagain, partial, d ? d : '-');
    return d == 'D' ? 0 : PC_EXIT_FAIL;
}

/* ---- never acknowledge what the kernel refuses; close never waits -------- */

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static int do_nbfull(int argc, char **argv)
{
    if (argc != 3)
        pc_die("nbfull ADDR");
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (pc_parse_addr(argv[2], &ss, &sslen) < 0)
        pc_die("bad address");
    int fd = socket(ss.ss_family, SOCK_STREAM, 0), sndbuf = 16384;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    if (connect(fd, (struct sockaddr *)&ss, sslen) < 0)
        pc_die("connect:");
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    unsigned char piece[1000];
    uint64_t off = 0;
    long writes = 0;
    /* until the kernel (or the library) says EAGAIN twice, 50 ms apart:
     * by then the peer's receive window is closed for good */
    for (int round = 0; round < 2; round++) {
        for (;;) {
            pc_pattern(piece, sizeof piece, off);
            ssize_t r = write(fd, piece, sizeof piece);
            if (r > 0) {
                off += (uint64_t)r;
                writes++;
            } else if (r < 0 && errno == EAGAIN) {
                break;
            } else {
                pc_die("write:");
            }
            if (writes > 100000)
                pc_die("no EAGAIN after %ld writes", writes);
        }
        sleep_ms(50);
    }
    /* The kernel has no room: a small write gets the kernel's answer. It
     * may take one (room at the tail of its queue), or refuse it; what it
     * takes shows in its send queue (SIOCOUTQ: the peer's window is
     * closed, so nothing leaves it). Bytes acknowledged beyond that are
     * held by someone else: held_growth must be <= 0 (0 without the
     * library; negative if held bytes went to the kernel meanwhile). */
    int outq0 = 0, outq1 = 0;
    uint64_t acc0 = off;
    ioctl(fd, SIOCOUTQ, &outq0);
    int after_ok = 0;
    for (int i = 0; i < 5; i++) {
        pc_pattern(piece, 10, off);
        ssize_t r = write(fd, piece, 10);
        if (r > 0) {
            off += (uint64_t)r;
            after_ok++;
        } else if (r < 0 && errno != EAGAIN) {
            pc_die("small write:");
        }
    }
    ioctl(fd, SIOCOUTQ, &outq1);
    long long growth = (long long)(off - acc0) - (outq1 - outq0);
    long long t0 = now_us();
    close(fd);
    long long close_us = now_us() - t0;
    printf("accepted=%llu after_ok=%d held_growth=%lld close_us=%lld\n",
           (unsigned long long)off, after_ok, growth, close_us);
    fflush(stdout);
    sleep_ms(500); /* the peer reads now, the process still alive */
    return 0;
}

static int do_evserve(int argc, char **argv)
{
    if (argc != 4)
        pc_die("evserve TOTAL PIECE");
    size_t total = (size_t)pc_num(argv[2]), piece = (size_t)pc_num(argv[3]);
    char shown[64];
    int lfd = pc_listen("127.0.0.1:0", 1, shown, sizeof shown);
    printf("%s\n", shown);
    fflush(stdout);
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0)
        pc_die("accept:");
    close(lfd);
    int sndbuf = 32768;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLOUT, .data.fd = fd };
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    unsigned char *buf = malloc(piece);
    uint64_t off = 0;
    long long max_us = 0, worst_at = 0;
    long eagain = 0, calls = 0;
    while (off < total) {
        size_t n = total - off < piece ? total - off : piece;
        pc_pattern(buf, n, off);
        long long t0 = now_us();
        ssize_t r = write(fd, buf, n);
        long long us = now_us() - t0;
        calls++;
        if (us > max_us) {
            max_us = us;
            worst_at = (long long)off;
        }
        if (r > 0) {
            off += (uint64_t)r;
        } else if (r < 0 && errno == EAGAIN) {
            eagain++;
            struct epoll_event got;
            if (epoll_wait(ep, &got, 1, 20000) != 1)
                pc_die("no EPOLLOUT in 20 s at %llu",
                       (unsigned long long)off);
        } else {
            pc_die("write:");
        }
    }
    long long t0 = now_us();
    close(fd);
    long long close_us = now_us() - t0;
    printf("calls=%ld eagain=%ld max_write_us=%lld worst_at=%lld "
           "close_us=%lld\n", calls, eagain, max_us, worst_at, close_us);
    fflush(stdout);
    return 0;
}

/* ---- order around MSG_OOB, sendfile, and the program's own cork --------- */

static int do_oob(int argc, char **argv)
{
    if (argc != 3)
        pc_die("oob ADDR");
    int fd = pc_connect_or_die(argv[2]);
    for (int i = 0; i < 100; i++)
        write(fd, "abc", 3);
    if (send(fd, "X", 1, MSG_OOB) != 1)
        pc_die("send MSG_OOB:");
    for (int i = 0; i < 100; i++)
        write(fd, "def", 3);
    close(fd);
    return 0;
}

static int do_sendfile(int argc, char **argv)
{
    if (argc != 4)
        pc_die("sendfile ADDR FILE");
    int fd = pc_connect_or_die(argv[2]);
    int in = open(argv[3], O_RDONLY);
    struct stat st;
    if (in < 0 || fstat(in, &st) < 0)
        pc_die("open %s:", argv[3]);
    for (int i = 0; i < 100; i++)
        write(fd, "head", 4);
    off_t off = 0;
    while (off < st.st_size)
        if (sendfile(fd, in, &off, (size_t)(st.st_size - off)) <= 0)
            pc_die("sendfile:");
    for (int i = 0; i < 100; i++)
        write(fd, "tail", 4);
    close(fd);
    return 0;
}

static int do_usercork(int argc, char **argv)
{
    if (argc != 4)
        pc_die("usercork ADDR N");
    int fd = pc_connect_or_die(argv[2]);
    long n = pc_num(argv[3]);
    int one = 1, zero = 0;
    unsigned char piece[8];
    setsockopt(fd, IPPROTO_TCP, TCP_CORK, &one, sizeof one);
    for (long i = 0; i < n; i++) {
        pc_pattern(piece, sizeof piece, (uint64_t)i * 8);
        write(fd, piece, sizeof piece);
    }
    setsockopt(fd, IPPROTO_TCP, TCP_CORK, &zero, sizeof zero);
    close(fd);
    return 0;
}

/* The child's part of sharedcork: 10 bytes, then (when told, while the
 * parent holds TCP_CORK) 10 more; each step acknowledged on fd 1. */
static int corkchild(int fd)
{
    char c;
    if (write(fd, "bbbbbbbbbb", 10) != 10 || write(1, "1", 1) != 1)
        pc_die("corkchild: first write:");
    if (read(0, &c, 1) != 1)
        pc_die("corkchild: no go");
    if (write(fd, "cccccccccc", 10) != 10 || write(1, "2", 1) != 1)
        pc_die("corkchild: second write:");
    while (read(0, &c, 1) > 0) /* until the parent is done */
        ;
    return 0;
}

static int do_corkchild(int argc, char **argv)
{
    if (argc != 3)
        pc_die("corkchild FD");
    return corkchild((int)pc_num(argv[2]));
}

static int do_sharedcork(int argc, char **argv)
{
    if (argc != 4)
        pc_die("sharedcork ADDR exec|fork");
    int fd = pc_connect_or_die(argv[2]);
    int ctl[2], rep[2], one = 1, zero = 0;
    char c, fdbuf[16];
    if (write(fd, "aaaaaaaaaa", 10) != 10 || pipe(ctl) || pipe(rep))
        pc_die("sharedcork: setup:");
    pid_t pid = fork();
    if (pid == 0) {
        dup2(ctl[0], 0);
        dup2(rep[1], 1);
        close(ctl[1]);
        close(rep[0]);
        if (!strcmp(argv[3], "fork"))
            _exit(corkchild(fd));
        snprintf(fdbuf, sizeof fdbuf, "%d", fd);
        execl(self_path, self_path, "corkchild", fdbuf, (char *)NULL);
        _exit(127);
    }
    close(ctl[0]);
    close(rep[1]);
    if (read(rep[0], &c, 1) != 1)
        pc_die("sharedcork: child 1");
    /* the parent corks its own partial record: nothing of it, nor of what
     * the child queues behind it, may leave before the cork comes off */
    setsockopt(fd, IPPROTO_TCP, TCP_CORK, &one, sizeof one);
    if (write(fd, "PPPPPPPPPP", 10) != 10 || write(ctl[1], "g", 1) != 1)
        pc_die("sharedcork: corked write:");
    if (read(rep[0], &c, 1) != 1)
        pc_die("sharedcork: child 2");
    sleep_ms(400);
    setsockopt(fd, IPPROTO_TCP, TCP_CORK, &zero, sizeof zero);
    close(ctl[1]);
    int st;
    waitpid(pid, &st, 0);
    close(fd);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    static char path[4096];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    self_path = n > 0 ? (path[n] = 0, path) : argv[0];
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2)
        pc_die("usage: co_prog MODE ...");
    const char *m = argv[1];
    if (!strcmp(m, "serve"))
        return do_serve(argc, argv);
    if (!strcmp(m, "pingpong"))
        return do_pingpong(argc, argv);
    if (!strcmp(m, "records"))
        return do_records(argc, argv);
    if (!strcmp(m, "cont"))
        return do_cont(argc, argv);
    if (!strcmp(m, "alt"))
        return do_alt(argc, argv);
    if (!strcmp(m, "stdio"))
        return do_stdio(argc, argv);
    if (!strcmp(m, "nbfull"))
        return do_nbfull(argc, argv);
    if (!strcmp(m, "evserve"))
        return do_evserve(argc, argv);
    if (!strcmp(m, "threads"))
        return do_threads(argc, argv);
    if (!strcmp(m, "signals"))
        return do_signals(argc, argv);
    if (!strcmp(m, "forkstress"))
        return do_forkstress(argc, argv);
    if (!strcmp(m, "hangup"))
        return do_hangup(argc, argv);
    if (!strcmp(m, "nbslow"))
        return do_nbslow(argc, argv);
    if (!strcmp(m, "oob"))
        return do_oob(argc, argv);
    if (!strcmp(m, "sendfile"))
        return do_sendfile(argc, argv);
    if (!strcmp(m, "usercork"))
        return do_usercork(argc, argv);
    if (!strcmp(m, "sharedcork"))
        return do_sharedcork(argc, argv);
    if (!strcmp(m, "corkchild"))
        return do_corkchild(argc, argv);
    pc_die("unknown mode %s", m);
}
