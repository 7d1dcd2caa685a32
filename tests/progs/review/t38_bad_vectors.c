/* Vectored calls with arguments the kernel refuses, on a governed TCP
 * connection: a NULL array or message, a count below 0 or above IOV_MAX
 * (1024), an entry longer than SSIZE_MAX, a NULL or unmapped iov_base or
 * buffer, while a coalescing buffer holds bytes. The kernel answers EFAULT,
 * EINVAL or EMSGSIZE before it moves a byte; the library read the
 * program's array first to size the call and crashed (SIGSEGV), or, once
 * it had added MSG_NOSIGNAL by turning writev into sendmsg, got EMSGSIZE
 * for 1025 entries where writev says EINVAL; coalescing summed an entry of
 * SIZE_MAX into a 4-byte write, acknowledged it, and later sent garbage
 * (or the process's memory) or crashed. Each case prints what the
 * call returned; the connection then still works. (A non-NULL array at
 * an address that is not readable is a documented limit: shim/core/io.h,
 * nt_iov_size.) */
#include "review.h"

#include <limits.h>
#include <stdint.h>

static void show(const char *what, ssize_t r)
{
    printf("%s: %zd %s\n", what, r, r < 0 ? strerror(errno) : "-");
}

/* argv[1] = N: start at case N (to look past a crash); "vectors": leave
 * out the unmapped buffers (coalescing copies a buffer it holds: a
 * documented limit, shim/coalesce/coalesce.c "Limits") */
static int from, k, vectors_only;
#define CASE(what, call)                                                    \
    do {                                                                     \
        if (k++ >= from)                                                     \
            show(what, call);                                                \
    } while (0)
#define BUFCASE(what, call)                                                 \
    do {                                                                     \
        if (!vectors_only)                                                   \
            CASE(what, call);                                                \
    } while (0)

int main(int argc, char **argv)
{
    vectors_only = argc > 1 && !strcmp(argv[1], "vectors");
    from = argc > 1 ? atoi(argv[1]) : 0;
    setvbuf(stdout, NULL, _IONBF, 0); /* a crash keeps what came before */
    int c, s;
    tcp_pair(&c, &s);
    char x = 'x', buf[4096];
    static struct iovec v[IOV_MAX + 2];
    for (int i = 0; i < IOV_MAX + 2; i++) {
        v[i].iov_base = &x;
        v[i].iov_len = 1;
    }
    struct iovec badbase[2] = { { &x, 1 }, { (void *)8, 10 } };
    struct msghdr m = { 0 };
    /* volatile: the compiler would refuse what the kernel must answer */
    struct iovec *volatile none = NULL;
    struct msghdr *volatile nomsg = NULL;
    volatile int neg = -1;
    void *volatile bad = (void *)8;

    /* bytes a coalescing buffer holds while the refused calls come */
    show("write first", write(c, "hello", 5));
    show("write held", write(c, "there", 5));
    CASE("writev NULL", writev(c, none, 1));
    CASE("writev -1", writev(c, v, neg));
    CASE("writev 1025", writev(c, v, IOV_MAX + 1));
    BUFCASE("writev bad base", writev(c, badbase + 1, 1));
    CASE("writev 0", writev(c, none, 0));
    struct iovec huge[2] = { { .iov_base = &x, .iov_len = 1 }, { .iov_base = &x, .iov_len = SIZE_MAX } };
    CASE("writev SIZE_MAX entry", writev(c, huge, 2));
    struct iovec nullbase[2] = { { .iov_base = &x, .iov_len = 1 }, { .iov_base = NULL, .iov_len = 5 } };
    CASE("writev NULL base", writev(c, nullbase, 2));
    void *volatile nobuf = NULL;
    CASE("write NULL buffer", write(c, nobuf, 5));
    CASE("send NULL buffer", send(c, nobuf, 5, MSG_NOSIGNAL));
    m.msg_iov = none;
    m.msg_iovlen = 1;
    CASE("sendmsg NULL iov", sendmsg(c, &m, 0));
    m.msg_iov = v;
    m.msg_iovlen = IOV_MAX + 1;
    CASE("sendmsg 1025", sendmsg(c, &m, 0));
    CASE("sendmsg NULL msg", sendmsg(c, nomsg, 0));
    m.msg_iov = nullbase;
    m.msg_iovlen = 2;
    CASE("sendmsg NULL base", sendmsg(c, &m, 0));
    m.msg_iov = huge;
    CASE("sendmsg SIZE_MAX entry", sendmsg(c, &m, 0));
    struct mmsghdr mm[2] = { 0 };
    mm[0].msg_hdr.msg_iov = none;
    mm[0].msg_hdr.msg_iovlen = 1;
    CASE("sendmmsg first NULL iov", sendmmsg(c, mm, 2, 0));
    mm[0].msg_hdr.msg_iov = v;
    mm[1].msg_hdr.msg_iov = none;
    mm[1].msg_hdr.msg_iovlen = 1;
    CASE("sendmmsg second NULL iov", sendmmsg(c, mm, 2, 0));
    BUFCASE("send bad buffer", send(c, bad, 10, 0));
    BUFCASE("write bad buffer", write(c, bad, 10));

    /* the input side: the peer sent a byte, so each call has data */
    if (write(s, "y", 1) != 1)
        return 3;
    usleep(20000);
    CASE("readv NULL", readv(c, none, 1));
    CASE("readv -1", readv(c, v, neg));
    CASE("readv 1025", readv(c, v, IOV_MAX + 1));
    m.msg_iov = none;
    m.msg_iovlen = 1;
    CASE("recvmsg NULL iov", recvmsg(c, &m, 0));
    CASE("recvmsg NULL msg", recvmsg(c, nomsg, 0));
    mm[0].msg_hdr.msg_iov = none;
    CASE("recvmmsg NULL iov", recvmmsg(c, mm, 2, MSG_DONTWAIT, NULL));
    BUFCASE("read bad buffer", read(c, bad, 10));

    /* still a working connection, in order */
    show("write after", write(c, "ok", 2));
    /* everything, whatever Nagle holds: up to the FIN */
    shutdown(c, SHUT_WR);
    ssize_t n = 0, r;
    while ((r = read(s, buf + n, sizeof buf - (size_t)n)) > 0)
        n += r;
    printf("peer got %zd bytes, ends \"%.*s\"\n", n, n >= 2 ? 2 : 0, n >= 2 ? buf + n - 2 : "");
    n = read(c, buf, sizeof buf);
    printf("program got %zd\n", n);
    return 0;
}
