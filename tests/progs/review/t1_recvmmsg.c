#include "review.h"
int main(void)
{
    int c, s;
    tcp_pair(&c, &s);
    /* 1: data then EOF, blocking recvmmsg of 3 messages */
    write(s, "abc", 3);
    shutdown(s, SHUT_WR);
    usleep(100000);
    char b[3][16];
    struct iovec iov[3];
    struct mmsghdr v[3];
    memset(v, 0, sizeof v);
    for (int i = 0; i < 3; i++) {
        iov[i].iov_base = b[i]; iov[i].iov_len = 16;
        v[i].msg_hdr.msg_iov = &iov[i]; v[i].msg_hdr.msg_iovlen = 1;
        v[i].msg_len = 99;
    }
    int r = recvmmsg(c, v, 3, 0, NULL);
    printf("eof case: recvmmsg=%d lens=%u,%u,%u\n", r, v[0].msg_len, v[1].msg_len, v[2].msg_len);
    /* 2: errno after a successful MSG_WAITFORONE call */
    int c2, s2;
    tcp_pair(&c2, &s2);
    write(s2, "x", 1);
    usleep(100000);
    errno = 1234;
    r = recvmmsg(c2, v, 3, MSG_WAITFORONE, NULL);
    printf("waitforone: recvmmsg=%d errno=%d\n", r, errno);
    /* 3: sendmmsg with MSG_DONTWAIT into a full buffer: errno after partial success */
    int one = 4096;
    setsockopt(c2, SOL_SOCKET, SO_SNDBUF, &one, sizeof one);
    static char big[1 << 20];
    struct iovec wi[2] = { { "hello", 5 }, { big, sizeof big } };
    struct mmsghdr w[2];
    memset(w, 0, sizeof w);
    w[0].msg_hdr.msg_iov = &wi[0]; w[0].msg_hdr.msg_iovlen = 1;
    w[1].msg_hdr.msg_iov = &wi[1]; w[1].msg_hdr.msg_iovlen = 1;
    /* fill the buffer first */
    while (send(c2, big, sizeof big, MSG_DONTWAIT) > 0) ;
    /* now drain a little so 5 bytes fit but not 1 MiB */
    char sink[65536]; usleep(50000);
    recv(s2, sink, sizeof sink, MSG_DONTWAIT);
    usleep(50000);
    errno = 1234;
    r = sendmmsg(c2, w, 2, MSG_DONTWAIT);
    printf("sendmmsg dontwait: r=%d lens=%u,%u errno=%d\n", r, w[0].msg_len, w[1].msg_len, errno);
    return 0;
}
