#include "review.h"
#include <stdint.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/wait.h>
/* Coalescing: "hello" written to TCP connection A (the library may hold
 * it), then the program talks to a helper process through a channel the
 * library does not govern (a pipe, a unix datagram socket).
 * Output methods: the message must not overtake "hello" (the helper looks
 * at A's peer when it arrives). Input methods: the program blocks reading
 * the channel; the helper answers only once A's peer has "hello" (or
 * after 1 s), so a held "hello" stalls the exchange.
 * "warm-METHOD": the channel was used once before (its slot is known). */
static int dgram(const char *m) { return !strncmp(m, "send", 4) || !strncmp(m, "recv", 4); }
int main(int argc, char **argv)
{
    const char *m = argc > 1 ? argv[1] : "write";
    int warm = !strncmp(m, "warm-", 5);
    if (warm)
        m += 5;
    int out = strcmp(m, "read") && strncmp(m, "recv", 4);
    int A, sA, ch[2];
    /* first: numbers no socket had before (a closed listener's slot is
     * known to the library) */
    if (dgram(m) ? socketpair(AF_UNIX, SOCK_DGRAM, 0, ch) : pipe(ch)) return 2;
    tcp_pair(&A, &sA);
    /* pipe: ch[0] read end; dgram: both ends talk */
    int mine = dgram(m) ? ch[0] : out ? ch[1] : ch[0];
    int theirs = dgram(m) ? ch[1] : out ? ch[0] : ch[1];
    if (write(A, "0", 1) != 1) return 2; /* out at the fork */
    pid_t k = fork();
    if (k == 0) {
        char b[64];
        if (out) {
            if (warm && read(theirs, b, 1) != 1) _exit(3);
            if (read(theirs, b, 1) != 1) _exit(3);
            usleep(2000);
        } else {
            /* "0hello" or 1 s: a held "hello" is not waited for */
            for (int t = 0; t < 1000; t++) {
                if (recv(sA, b, sizeof b, MSG_PEEK | MSG_DONTWAIT) >= 6) break;
                usleep(1000);
            }
        }
        ssize_t r = recv(sA, b, sizeof b - 1, MSG_DONTWAIT);
        if (r < 0) r = 0;
        b[r] = 0;
        if (out) {
            printf("%s: peer had '%s' when the message came\n", m, b);
            fflush(stdout);
        } else if (write(theirs, b, (size_t)r + 1) < 0) {
            _exit(3);
        }
        _exit(0);
    }
    if (warm) {
        if (out) {
            if (write(mine, "w", 1) != 1) return 2;
        } else {
            char b[8];
            /* nothing there: EAGAIN, but the descriptor is now known */
            if (!strcmp(m, "read")) { int fl = fcntl(mine, F_GETFL); fcntl(mine, F_SETFL, fl | O_NONBLOCK); if (read(mine, b, 1) >= 0) return 2; fcntl(mine, F_SETFL, fl); }
            else if (recv(mine, b, 1, MSG_DONTWAIT) >= 0) return 2;
        }
    }
    if (write(A, "hello", 5) != 5) return 2;
    char b[64] = "";
    ssize_t r = 0;
    if (!strcmp(m, "write")) {
        r = write(mine, "m", 1);
    } else if (!strcmp(m, "dprintf")) {
        r = dprintf(mine, "m");
    } else if (!strcmp(m, "sendfile") || !strcmp(m, "splice")) {
        int f = memfd_create("msg", 0);
        if (f < 0 || write(f, "m", 1) != 1) return 2;
        loff_t o = 0;
        r = !strcmp(m, "sendfile") ? sendfile(mine, f, (off_t *)&o, 1) : splice(f, &o, mine, NULL, 1, 0);
    } else if (!strcmp(m, "sendmmsg")) {
        struct iovec v = { "m", 1 };
        struct mmsghdr h = { .msg_hdr = { .msg_iov = &v, .msg_iovlen = 1 } };
        r = sendmmsg(mine, &h, 1, 0);
    } else if (!strcmp(m, "read")) {
        r = read(mine, b, sizeof b);
    } else if (!strcmp(m, "recv")) {
        r = recv(mine, b, sizeof b, 0);
    } else if (!strcmp(m, "recvmsg")) {
        struct iovec v = { b, sizeof b };
        struct msghdr h = { .msg_iov = &v, .msg_iovlen = 1 };
        r = recvmsg(mine, &h, 0);
    } else if (!strcmp(m, "recvmmsg")) {
        struct iovec v = { b, sizeof b };
        struct mmsghdr h = { .msg_hdr = { .msg_iov = &v, .msg_iovlen = 1 } };
        r = recvmmsg(mine, &h, 1, 0, NULL);
    } else {
        return 2;
    }
    if (r < 0) { perror(m); return 2; }
    if (!out)
        printf("%s: peer had '%s' when the program waited\n", m, b);
    fflush(stdout);
    int st;
    waitpid(k, &st, 0);
    return 0;
}
