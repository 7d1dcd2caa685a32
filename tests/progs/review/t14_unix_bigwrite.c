#include "review.h"
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <signal.h>
/* One blocking write of 64 MiB over a Unix stream connection to a reader
 * (a child using raw syscalls) that reads steadily at ~16 MiB/s: bytes
 * move the whole time (about 4 s), so idle_timeout=1s must not fire. */
int main(void)
{
    char path[] = "/tmp/review/t14.sock";
    unlink(path);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    strcpy(a.sun_path, path);
    int l = socket(AF_UNIX, SOCK_STREAM, 0);
    bind(l, (void *)&a, sizeof a); listen(l, 1);
    pid_t p = fork();
    if (p == 0) {
        int s = syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
        syscall(SYS_connect, s, &a, sizeof a);
        static char b[16384];
        long tot = 0;
        for (;;) {
            long r = syscall(SYS_read, s, b, sizeof b);
            if (r <= 0) break;
            tot += r;
            usleep(1000);
        }
        printf("reader got %ld bytes\n", tot); fflush(stdout);
        syscall(SYS_exit_group, 0);
    }
    int c = accept(l, NULL, NULL);
    static char big[64 << 20];
    double t0 = now_s();
    ssize_t r = write(c, big, sizeof big);
    int e = errno;
    printf("write -> %zd (%s) after %.1fs\n", r, r < 0 ? strerror(e) : "ok", now_s() - t0); fflush(stdout);
    close(c);
    int st; waitpid(p, &st, 0);
    unlink(path);
    return 0;
}
