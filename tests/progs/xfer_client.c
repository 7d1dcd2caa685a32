/* xfer_client [-m block|poll|select|epoll] [-c CALLS] [-n BYTES] [-k CHUNK]
 *             [-r CONNS] ADDR
 *
 * Connects to an echo server, sends BYTES of the deterministic pattern and
 * reads them back, checking every byte; repeats on CONNS sequential
 * connections. Prints "bytes N fnv HEX" and exits 0, or 1 on a mismatch.
 *
 * CALLS picks the call family used for the data:
 *   rw read/write   rwv readv/writev   sr send/recv   msg sendmsg/recvmsg
 *   to sendto/recvfrom   mmsg sendmmsg/recvmmsg   sendfile sendfile/read
 *   splice splice through pipes both ways
 * block: lockstep CHUNK exchanges on a blocking socket. poll/select/epoll:
 * a non-blocking connect and an event loop that sends and receives as the
 * socket allows (O_NONBLOCK set via SOCK_NONBLOCK, fcntl, ioctl(FIONBIO)). */
#define _GNU_SOURCE
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <unistd.h>

enum mode { M_BLOCK, M_POLL, M_SELECT, M_EPOLL };

static int memfd = -1, spipe[2] = {-1, -1}, rpipe[2] = {-1, -1};
static size_t spipe_fill;   /* bytes already in spipe: the head of the next send */

typedef ssize_t (*io_fn)(int fd, unsigned char *buf, size_t len);

static ssize_t s_rw(int fd, unsigned char *b, size_t n) { return write(fd, b, n); }
static ssize_t r_rw(int fd, unsigned char *b, size_t n) { return read(fd, b, n); }
static ssize_t s_sr(int fd, unsigned char *b, size_t n) { return send(fd, b, n, 0); }
static ssize_t r_sr(int fd, unsigned char *b, size_t n) { return recv(fd, b, n, 0); }
static ssize_t s_to(int fd, unsigned char *b, size_t n) { return sendto(fd, b, n, 0, NULL, 0); }

static ssize_t r_to(int fd, unsigned char *b, size_t n)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    return recvfrom(fd, b, n, 0, (struct sockaddr *)&ss, &len);
}

/* Split the buffer in three so the vector calls really gather/scatter. */
static int split(struct iovec *v, unsigned char *b, size_t n)
{
    size_t a = n > 3 ? 1 : 0, c = n / 2;
    v[0] = (struct iovec){b, a};
    v[1] = (struct iovec){b + a, c - a};
    v[2] = (struct iovec){b + c, n - c};
    return 3;
}

static ssize_t s_rwv(int fd, unsigned char *b, size_t n)
{
    struct iovec v[3];
    return writev(fd, v, split(v, b, n));
}

static ssize_t r_rwv(int fd, unsigned char *b, size_t n)
{
    struct iovec v[3];
    return readv(fd, v, split(v, b, n));
}

static ssize_t s_msg(int fd, unsigned char *b, size_t n)
{
    struct iovec v[3];
    struct msghdr m = {.msg_iov = v, .msg_iovlen = split(v, b, n)};
    return sendmsg(fd, &m, 0);
}

static ssize_t r_msg(int fd, unsigned char *b, size_t n)
{
    struct iovec v[3];
    struct msghdr m = {.msg_iov = v, .msg_iovlen = split(v, b, n)};
    return recvmsg(fd, &m, 0);
}

/* One message with the whole buffer: several messages could interleave
 * partial sends on a non-blocking stream. */
static ssize_t s_mmsg(int fd, unsigned char *b, size_t n)
{
    struct iovec v[3];
    struct mmsghdr m = {.msg_hdr = {.msg_iov = v, .msg_iovlen = split(v, b, n)}};
    int r = sendmmsg(fd, &m, 1, 0);
    return r < 0 ? -1 : (ssize_t)m.msg_len;
}

static ssize_t r_mmsg(int fd, unsigned char *b, size_t n)
{
    struct iovec v[2] = {{b, n / 2}, {b + n / 2, n - n / 2}};
    struct mmsghdr m[2] = {{.msg_hdr = {.msg_iov = &v[0], .msg_iovlen = 1}},
                           {.msg_hdr = {.msg_iov = &v[1], .msg_iovlen = 1}}};
    int r = n < 2 ? recvmmsg(fd, m, 1, 0, NULL) : recvmmsg(fd, m, 2, MSG_WAITFORONE, NULL);
    if (r <= 0)
        return r;
    if (r == 1)
        return m[0].msg_len;
    /* A short first message leaves a gap: the stream continues in m[1]. */
    memmove(b + m[0].msg_len, v[1].iov_base, m[1].msg_len);
    return m[0].msg_len + m[1].msg_len;
}

/* The file only grows: sendfile queues references to its pages, so
 * rewriting a page still in flight would change bytes already "sent". */
static ssize_t s_sendfile(int fd, unsigned char *b, size_t n)
{
    static off_t pos;
    off_t off = pos;
    ssize_t s;
    if (pwrite(memfd, b, n, pos) != (ssize_t)n)
        return -1;
    s = sendfile(fd, memfd, &off, n);
    if (s > 0)
        pos += s;
    return s;
}

/* The caller retries with the unsent tail, so bytes left in the pipe by a
 * short splice are the head of the next call's buffer. */
static ssize_t s_splice(int fd, unsigned char *b, size_t n)
{
    ssize_t w, s;
    if (n > 65536)
        n = 65536;
    if (n > spipe_fill) {
        w = write(spipe[1], b + spipe_fill, n - spipe_fill);
        if (w > 0)
            spipe_fill += w;
    }
    s = splice(spipe[0], NULL, fd, NULL, spipe_fill, 0);
    if (s > 0)
        spipe_fill -= s;
    return s;
}

static ssize_t r_splice(int fd, unsigned char *b, size_t n)
{
    ssize_t s = splice(fd, NULL, rpipe[1], NULL, n > 65536 ? 65536 : n, 0);
    if (s <= 0)
        return s;
    return pc_read_full(rpipe[0], b, s);
}

static const struct family {
    const char *name;
    io_fn send, recv;
} families[] = {
    {"rw", s_rw, r_rw},       {"rwv", s_rwv, r_rwv},   {"sr", s_sr, r_sr},
    {"msg", s_msg, r_msg},    {"to", s_to, r_to},      {"mmsg", s_mmsg, r_mmsg},
    {"sendfile", s_sendfile, r_rw}, {"splice", s_splice, r_splice},
};

static const struct family *fam;
static size_t total = 1 << 20, chunk = 16384;
static uint64_t fnv = PC_FNV_INIT;

/* Receive and check up to `want` bytes at stream offset `off`. */
static ssize_t recv_check(int fd, unsigned char *in, size_t want, uint64_t off)
{
    ssize_t n = fam->recv(fd, in, want);
    long bad;
    if (n == 0) {
        fprintf(stderr, "EOF at %llu\n", (unsigned long long)off);
        exit(PC_EXIT_FAIL);
    }
    if (n < 0)
        return -1;
    if ((bad = pc_pattern_check(in, n, off)) >= 0) {
        fprintf(stderr, "mismatch at byte %llu\n", (unsigned long long)(off + bad));
        exit(PC_EXIT_FAIL);
    }
    fnv = pc_fnv(fnv, in, n);
    return n;
}

static void fail_errno(const char *what, uint64_t off)
{
    fprintf(stderr, "%s at %llu: %s\n", what, (unsigned long long)off, strerror(errno));
    exit(PC_EXIT_FAIL);
}

static void xfer_blocking(int fd, unsigned char *out, unsigned char *in)
{
    for (size_t off = 0; off < total; off += chunk) {
        size_t n = total - off < chunk ? total - off : chunk, done;
        pc_pattern(out, n, off);
        for (done = 0; done < n;) {
            ssize_t w = fam->send(fd, out + done, n - done);
            if (w < 0 && errno != EINTR)
                fail_errno("send", off + done);
            done += w > 0 ? w : 0;
        }
        for (done = 0; done < n;) {
            ssize_t r = recv_check(fd, in, n - done, off + done);
            if (r < 0 && errno != EINTR)
                fail_errno("recv", off + done);
            done += r > 0 ? r : 0;
        }
    }
}

/* Wait until fd is readable or (if want_out) writable; returns POLLIN and
 * POLLOUT bits, through the multiplexer the mode asks for. */
static int wait_ready(enum mode m, int fd, int want_out, int ep)
{
    int r = 0;
    if (m == M_POLL) {
        struct pollfd p = {fd, POLLIN | (want_out ? POLLOUT : 0), 0};
        if (poll(&p, 1, -1) < 0)
            return 0;
        r = p.revents & (POLLIN | POLLOUT | POLLERR | POLLHUP);
    } else if (m == M_SELECT) {
        fd_set rs, ws;
        FD_ZERO(&rs);
        FD_ZERO(&ws);
        FD_SET(fd, &rs);
        if (want_out)
            FD_SET(fd, &ws);
        if (select(fd + 1, &rs, &ws, NULL, NULL) < 0)
            return 0;
        r = (FD_ISSET(fd, &rs) ? POLLIN : 0) | (FD_ISSET(fd, &ws) ? POLLOUT : 0);
    } else {
        struct epoll_event ev = {.events = EPOLLIN | (want_out ? EPOLLOUT : 0), .data.fd = fd};
        epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
        if (epoll_wait(ep, &ev, 1, -1) < 1)
            return 0;
        r = ev.events & (EPOLLIN | EPOLLOUT | EPOLLERR | EPOLLHUP);
    }
    return r;
}

static void xfer_nonblocking(enum mode m, int fd, unsigned char *out, unsigned char *in, int ep)
{
    size_t sent = 0, got = 0;
    while (got < total) {
        int ready = wait_ready(m, fd, sent < total, ep);
        if (ready & (POLLIN | POLLERR | POLLHUP)) {
            ssize_t r = recv_check(fd, in, chunk, got);
            if (r < 0 && errno != EAGAIN && errno != EINTR)
                fail_errno("recv", got);
            got += r > 0 ? r : 0;
        }
        if ((ready & POLLOUT) && sent < total) {
            size_t n = total - sent < chunk ? total - sent : chunk;
            ssize_t w;
            pc_pattern(out, n, sent);
            w = fam->send(fd, out, n);
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                fail_errno("send", sent);
            sent += w > 0 ? w : 0;
        }
    }
}

/* Non-blocking connect; each mode sets O_NONBLOCK its own way. */
static int connect_nb(enum mode m, const char *addr)
{
    struct sockaddr_storage ss;
    socklen_t len;
    int one = 1, err = 0, fd;
    struct pollfd p;
    if (pc_parse_addr(addr, &ss, &len) < 0)
        pc_die("bad address '%s'", addr);
    fd = socket(ss.ss_family, SOCK_STREAM | (m == M_POLL ? SOCK_NONBLOCK : 0), 0);
    if (fd < 0)
        pc_die("socket:");
    if (m == M_SELECT)
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    else if (m == M_EPOLL)
        ioctl(fd, FIONBIO, &one);
    if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
        if (errno != EINPROGRESS && errno != EAGAIN)
            pc_die("connect %s:", addr);
        p = (struct pollfd){fd, POLLOUT, 0};
        poll(&p, 1, -1);
        len = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) {
            errno = err;
            pc_die("connect %s:", addr);
        }
    }
    return fd;
}

int main(int argc, char **argv)
{
    static const char *modes[] = {"block", "poll", "select", "epoll"};
    enum mode m = M_BLOCK;
    long conns = 1;
    unsigned char *out, *in;
    int opt;
    fam = &families[0];
    while ((opt = getopt(argc, argv, "m:c:n:k:r:")) != -1) {
        switch (opt) {
        case 'm':
            for (m = 0; m < 4 && strcmp(optarg, modes[m]); m++)
                ;
            if (m == 4)
                pc_die("bad mode '%s'", optarg);
            break;
        case 'c':
            for (fam = families; fam < families + 8 && strcmp(optarg, fam->name); fam++)
                ;
            if (fam == families + 8)
                pc_die("bad call family '%s'", optarg);
            break;
        case 'n': total = pc_num(optarg); break;
        case 'k': chunk = pc_num(optarg); break;
        case 'r': conns = pc_num(optarg); break;
        default: pc_die("usage: see the comment at the top of xfer_client.c");
        }
    }
    if (optind != argc - 1 || chunk == 0)
        pc_die("usage: xfer_client [-m MODE] [-c CALLS] [-n BYTES] [-k CHUNK] [-r CONNS] ADDR");
    if (!strcmp(fam->name, "sendfile") && (memfd = memfd_create("xfer", MFD_CLOEXEC)) < 0)
        pc_die("memfd_create:");
    if (!strcmp(fam->name, "splice") && (pipe(spipe) < 0 || pipe(rpipe) < 0))
        pc_die("pipe:");
    out = malloc(chunk);
    in = malloc(chunk);
    for (long c = 0; c < conns; c++) {
        if (m == M_BLOCK) {
            int fd = pc_connect(argv[optind]);
            if (fd < 0)
                pc_die("connect %s:", argv[optind]);
            xfer_blocking(fd, out, in);
            close(fd);
        } else {
            int fd = connect_nb(m, argv[optind]), ep = -1;
            struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
            if (m == M_EPOLL && ((ep = epoll_create1(0)) < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0))
                pc_die("epoll:");
            xfer_nonblocking(m, fd, out, in, ep);
            close(fd);
            if (ep >= 0)
                close(ep);
        }
    }
    printf("bytes %llu fnv %016llx\n", (unsigned long long)(total * conns), (unsigned long long)fnv);
    free(out);
    free(in);
    return 0;
}
