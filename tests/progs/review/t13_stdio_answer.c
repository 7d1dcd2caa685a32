#include "review.h"
#include <sys/syscall.h>
#include <sys/wait.h>
/* A keep-alive server that reads requests with read() and answers with
 * stdio (fdopen + fprintf + fflush), a common inetd/CGI shape. The client
 * (a child using raw syscalls, so the library never governs it) sends a
 * request every 0.5 s for 4 s; every answer comes at once. With
 * request_timeout=2s no exchange lasts more than a few ms, so nothing may
 * be cut. */
int main(void)
{
    int c, s;
    tcp_pair(&c, &s);
    pid_t p = fork();
    if (p == 0) {
        char b[64];
        for (int i = 0; i < 8; i++) {
            syscall(SYS_write, c, "REQ\n", 4);
            long r = syscall(SYS_read, c, b, sizeof b);
            if (r <= 0) { printf("client: request %d -> %s\n", i, r == 0 ? "EOF (cut)" : "error"); fflush(stdout); syscall(SYS_exit_group, 1); }
            usleep(500000);
        }
        printf("client: 8 requests answered\n"); fflush(stdout);
        syscall(SYS_exit_group, 0);
    }
    close(c);
    FILE *f = fdopen(s, "w");
    char b[64];
    for (;;) {
        ssize_t r = read(s, b, sizeof b);
        if (r <= 0) break;
        fprintf(f, "OK\n");
        fflush(f);
    }
    int st; waitpid(p, &st, 0);
    return 0;
}
