/* A socket received back through SCM_RIGHTS is another descriptor of the
 * same connection: dup2'ing it over the original, or closing the original,
 * leaves the connection open, so nothing is "abandoned" until the last
 * descriptor goes. Prints the descriptors' fate; the library's events go
 * to stderr, where the test counts them. */
#include "review.h"
#include <sys/wait.h>

static int pass_twin(int fd)
{
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    char m = 'm';
    struct iovec io = {&m, 1};
    union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } u;
    memset(&u, 0, sizeof u);
    struct msghdr msg = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = u.b,
                         .msg_controllen = sizeof u.b};
    struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    sendmsg(sv[0], &msg, 0);
    memset(&u, 0, sizeof u);
    msg.msg_controllen = sizeof u.b;
    recvmsg(sv[1], &msg, 0);
    int twin = -1;
    memcpy(&twin, CMSG_DATA(CMSG_FIRSTHDR(&msg)), sizeof twin);
    close(sv[0]);
    close(sv[1]);
    return twin;
}

int main(void)
{
    int c, s;
    /* dup2 the twin over the original, then close both */
    tcp_pair(&c, &s);
    write(c, "request", 7); /* an exchange in progress */
    int d = pass_twin(c);
    printf("dup2: %d\n", dup2(d, c) == c);
    printf("close twin: %d\n", close(d));
    printf("write after: %zd\n", write(c, "more", 4));
    printf("close last: %d\n", close(c));
    close(s);
    /* close the original, then the twin */
    tcp_pair(&c, &s);
    write(c, "request", 7);
    d = pass_twin(c);
    printf("close original: %d\n", close(c));
    printf("write twin: %zd\n", write(d, "more", 4));
    printf("close last: %d\n", close(d));
    close(s);
    return 0;
}
