/* A non-blocking client writes 100-byte pieces until EAGAIN, closes and
 * exits while its peer (a child) reads only 2 s later. The kernel keeps
 * every byte it acknowledged; with buffer-mode coalescing the library
 * acknowledged up to 16 KiB more than the kernel would take, then lingered
 * 5 s at exit and lost them (flush_error). */
#include "review.h"
#include <sys/wait.h>
int main(void)
{
    int c, s;
    tcp_pair_small(&c, &s, 4096);
    if (fork() == 0) {
        close(c);
        sleep(2);
        char b[65536];
        while (read(s, b, sizeof b) > 0)
            ;
        _exit(0);
    }
    close(s);
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
