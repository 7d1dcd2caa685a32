#include "review.h"
#include <sys/syscall.h>
#include <signal.h>
/* An outbound exchange whose answer stalls half-way: request_timeout
 * (2s) should end the client's blocked read (SPEC 4: the exchange ends
 * only when the program has read the answer). The server is a child that
 * uses raw syscalls, so the library never governs its side. */
int main(void)
{
    int c, s;
    tcp_pair(&c, &s);
    pid_t pid = fork();
    if (pid == 0) {
        char b[256];
        syscall(SYS_read, s, b, sizeof b);
        syscall(SYS_write, s, "HTTP/1.1 200 OK\r\n", 17); /* half an answer */
        sleep(6);
        syscall(SYS_exit_group, 0);
    }
    close(s);
    write(c, "GET / HTTP/1.1\r\n\r\n", 18);
    char b[256];
    double t0 = now_s();
    size_t got = 0;
    for (;;) {
        ssize_t r = read(c, b, sizeof b);
        if (r <= 0) {
            printf("client read -> %zd (%s) after %.1fs, %zu bytes of answer\n", r,
                   r < 0 ? strerror(errno) : "EOF", now_s() - t0, got);
            kill(pid, SIGKILL);
            return 0;
        }
        got += (size_t)r;
    }
}
