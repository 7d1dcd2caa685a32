#include "review.h"
#include <poll.h>
#include <sys/syscall.h>
/* A governed TCP socket passed over a socketpair to ourselves and
 * received with recvmsg (argv[1]="msg") or recvmmsg ("mmsg"); the
 * original descriptor is closed and the connection left idle. With
 * idle_timeout=1s the peer must see EOF (SPEC 2: SCM_RIGHTS arrivals are
 * governed). */
int main(int argc, char **argv)
{
    int use_mmsg = argc > 1 && !strcmp(argv[1], "mmsg");
    int c, s, sp[2];
    tcp_pair(&c, &s);
    socketpair(AF_UNIX, SOCK_STREAM, 0, sp);
    int f = open("/dev/null", O_RDONLY); char z; read(f, &z, 1); close(f); /* slot f: seen, now free */
    char cbuf[CMSG_SPACE(sizeof(int))] = { 0 };
    struct iovec iov = { "x", 1 };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf };
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET; cm->cmsg_type = SCM_RIGHTS; cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &c, sizeof c);
    sendmsg(sp[0], &m, 0);
    close(c);
    char rb; char rc[CMSG_SPACE(sizeof(int))];
    struct iovec ri = { &rb, 1 };
    struct mmsghdr mm = { .msg_hdr = { .msg_iov = &ri, .msg_iovlen = 1, .msg_control = rc, .msg_controllen = sizeof rc } };
    if (use_mmsg) recvmmsg(sp[1], &mm, 1, 0, NULL); else recvmsg(sp[1], &mm.msg_hdr, 0);
    int got; memcpy(&got, CMSG_DATA(CMSG_FIRSTHDR(&mm.msg_hdr)), sizeof got);
    /* one exchange on the received descriptor, then idle */
    write(got, "hello", 5);
    char b[8]; syscall(SYS_read, s, b, sizeof b);
    struct pollfd p = { s, POLLIN, 0 };
    int r = syscall(SYS_poll, &p, 1, 3000);
    printf("received fd %d via %s; peer after 3s idle: %s\n", got, use_mmsg ? "recvmmsg" : "recvmsg",
           r > 0 ? "readable (cut)" : "nothing");
    return 0;
}
