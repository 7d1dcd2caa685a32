/* fortify_prog ADDR
 *
 * Built with -O2 -D_FORTIFY_SOURCE=2: the buffers below have sizes the
 * compiler knows while the lengths passed come from run time, so glibc's
 * headers route the calls to __read_chk, __recv_chk, __recvfrom_chk,
 * __poll_chk and __ppoll_chk (the test checks with nm -D). ADDR is an echo
 * server; each call family reads back one piece of the pattern.
 * Prints "bytes N fnv HEX"; exit 0, or 1 on a mismatch. */
#define _GNU_SOURCE
#include "common.h"

#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t fnv = PC_FNV_INIT, offset;

/* Hide a value from the optimiser: a length it could bound (after our own
 * range check) would let glibc's headers pick the unchecked call. */
static inline size_t opaque(size_t x)
{
    __asm__("" : "+r"(x));
    return x;
}

static int check(const unsigned char *buf, ssize_t n, const char *call)
{
    if (n <= 0 || pc_pattern_check(buf, n, offset) >= 0) {
        fprintf(stderr, "%s: bad data (%zd)\n", call, n);
        return -1;
    }
    fnv = pc_fnv(fnv, buf, n);
    offset += n;
    return 0;
}

/* A fortified read(), then plain reads for the rest if the echo came back
 * in pieces (an offset into buf would hide its size from the compiler). */
#define read_exact(fd, buf, len)                                              \
    ({                                                                        \
        ssize_t n_ = read((fd), (buf), (len));                                \
        if (n_ > 0 && (size_t)n_ < (len))                                     \
            n_ += pc_read_full((fd), (buf) + n_, (len) - n_);                 \
        n_;                                                                   \
    })

/* Send `len` pattern bytes and wait, fortified, until they are back. */
static int send_and_wait(int fd, size_t len, nfds_t nfds, int use_ppoll)
{
    unsigned char out[256];
    struct pollfd p[2] = {{fd, POLLIN, 0}, {-1, 0, 0}};
    struct timespec ts = {5, 0};
    pc_pattern(out, len, offset);
    if (pc_write_full(fd, out, len) != (ssize_t)len)
        return -1;
    nfds = opaque(nfds);        /* unknown to the compiler: __poll_chk / __ppoll_chk */
    return (use_ppoll ? ppoll(p, nfds, &ts, NULL) : poll(p, nfds, 5000)) == 1 ? 0 : -1;
}

int main(int argc, char **argv)
{
    unsigned char buf[128];
    size_t len = argc > 2 ? strtoul(argv[2], NULL, 0) : 16;
    nfds_t nfds = argc > 3 ? 2 : 1;     /* the second slot is an ignored fd -1 */
    struct sockaddr_storage from;
    socklen_t flen = sizeof from;
    int fd, ok = 1;
    if (argc < 2 || len > sizeof buf)
        pc_die("usage: fortify_prog ADDR [LEN<=128]");
    fd = pc_connect(argv[1]);
    if (fd < 0)
        pc_die("connect %s:", argv[1]);
    len = opaque(len);

    /* The echo of `len` bytes arrives at once on loopback; each read asks
     * for exactly what was sent so the calls return whole pieces. */
    ok &= send_and_wait(fd, len, nfds, 0) == 0 && check(buf, read_exact(fd, buf, len), "read") == 0;
    ok &= send_and_wait(fd, len, nfds, 1) == 0 && check(buf, recv(fd, buf, len, MSG_WAITALL), "recv") == 0;
    ok &= send_and_wait(fd, len, nfds, 0) == 0 &&
          check(buf, recvfrom(fd, buf, len, MSG_WAITALL, (struct sockaddr *)&from, &flen), "recvfrom") == 0;
    close(fd);
    printf("bytes %llu fnv %016llx\n", (unsigned long long)offset, (unsigned long long)fnv);
    return ok ? 0 : PC_EXIT_FAIL;
}
