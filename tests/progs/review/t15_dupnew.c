#include "review.h"
#include <sys/un.h>
#include <sys/syscall.h>
#include <sys/wait.h>
/* Unix stream client: the socket is dup()ed before connect(), connected
 * through the original, then used through the twin: one request/answer
 * every 0.3 s for 3 s. idle_timeout=1s must not cut a connection that
 * carries traffic every 0.3 s (SPEC 2: dup twins share one clock). */
int main(void)
{
    char path[] = "/tmp/review/t15.sock";
    unlink(path);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    strcpy(a.sun_path, path);
    int l = syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
    syscall(SYS_bind, l, &a, sizeof a); syscall(SYS_listen, l, 1);
    pid_t p = fork();
    if (p == 0) { /* echo server, invisible to the library */
        int s = syscall(SYS_accept, l, NULL, NULL);
        char b[64]; long r;
        while ((r = syscall(SYS_read, s, b, sizeof b)) > 0) syscall(SYS_write, s, b, r);
        syscall(SYS_exit_group, 0);
    }
    int c = socket(AF_UNIX, SOCK_STREAM, 0);
    int twin = dup(c);
    if (connect(c, (void *)&a, sizeof a)) { perror("connect"); return 1; }
    char b[8];
    for (int i = 0; i < 10; i++) {
        if (write(twin, "ping", 4) != 4 || read(twin, b, sizeof b) != 4) {
            printf("exchange %d failed (%s)\n", i, strerror(errno)); goto out;
        }
        usleep(300000);
    }
    printf("10 exchanges over 3s ok\n");
out:
    close(twin); close(c);
    int st; waitpid(p, &st, 0); unlink(path);
    return 0;
}
