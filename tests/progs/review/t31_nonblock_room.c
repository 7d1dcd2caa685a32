/* A non-blocking client writes 100-byte pieces until EAGAIN, closes and
 * exits while its peer (a child) reads only 2 s later. The kernel keeps
 * every byte it acknowledged; with buffer-mode coalescing the library
 * acknowledged up to 16 KiB more than the kernel would take, then lingered
 * 5 s at exit and lost them (flush_error). */
#include "review.h"
#include <sys/wait.h>
int main(void)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int small = 4096;
    setsockopt(l, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    socklen_t al = sizeof a;
    if (bind(l, (void *)&a, al) || listen(l, 1) || getsockname(l, (void *)&a, &al)) {
        perror("setup");
        return 2;
    }
    int c = socket(AF_INET, SOCK_STREAM, 0);
    setsockopt(c, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    if (connect(c, (void *)&a, al)) {
        perror("connect");
        return 2;
    }
    int s = accept(l, NULL, NULL);
    if (fork() == 0) {
        close(c);
        sleep(2);
        char b[65536];
        while (read(s, b, sizeof b) > 0)
            ;
        _exit(0);
    }
    close(s);
    close(l);
    fcntl(c, F_SETFL, O_NONBLOCK);
    char buf[100];
    memset(buf, 'x', sizeof buf);
    long acked = 0;
    ssize_t r;
    while ((r = write(c, buf, sizeof buf)) > 0)
        acked += r;
    printf("acknowledged some bytes, then %s\n", strerror(errno));
    close(c);
    return 0;
}
