#include "review.h"
#include <signal.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/wait.h>
/* Coalescing: a worker writes "0" and "hello" to TCP connection A (the
 * library may hold them), then sendfile/splice to connection B, which its
 * peer has reset: the kernel's own SIGPIPE kills the worker. Without the
 * library A's bytes were already in the kernel and reach A's peer (this
 * process, which reports). "blocked": the worker blocks SIGPIPE itself;
 * the kernel's signal stays pending for it. */
int main(int argc, char **argv)
{
    const char *m = argc > 1 ? argv[1] : "sendfile";
    int A, sA, B, sB;
    tcp_pair(&A, &sA);
    tcp_pair(&B, &sB);
    pid_t k = fork();
    if (k == 0) {
        close(sA);
        close(sB);
        if (!strcmp(m, "blocked")) {
            sigset_t p;
            sigemptyset(&p);
            sigaddset(&p, SIGPIPE);
            sigprocmask(SIG_BLOCK, &p, NULL);
        }
        int p[2]; /* splice's source, filled before anything is held */
        if (pipe(p) || write(p[1], "abcd", 4) != 4) _exit(3);
        if (write(A, "0", 1) != 1) _exit(3);
        usleep(50000); /* B's peer is gone */
        static char big[20000]; /* not held: the reset comes back */
        if (write(B, big, sizeof big) < 0) _exit(3);
        usleep(50000);
        if (write(A, "hello", 5) != 5) _exit(3);
        ssize_t r;
        if (!strcmp(m, "splice")) {
            r = splice(p[0], NULL, B, NULL, 4, 0);
        } else {
            int f = memfd_create("data", 0);
            if (f < 0 || write(f, "abcd", 4) != 4) _exit(3);
            off_t o = 0;
            r = sendfile(B, f, &o, 4);
        }
        sigset_t pend;
        sigpending(&pend);
        printf("worker: %s -> %zd (%s), SIGPIPE pending %d\n", m, r, r < 0 ? strerror(errno) : "",
               sigismember(&pend, SIGPIPE));
        fflush(stdout);
        exit(0);
    }
    close(A);
    close(B);
    close(sB);
    int st;
    waitpid(k, &st, 0);
    if (WIFSIGNALED(st)) printf("worker killed by signal %d\n", WTERMSIG(st));
    else printf("worker exited %d\n", WEXITSTATUS(st));
    char b[64];
    long n = 0;
    ssize_t r;
    while ((r = read(sA, b + n, sizeof b - 1 - (size_t)n)) > 0) n += r;
    b[n] = 0;
    printf("A's peer received %ld bytes '%s'\n", n, b);
    return 0;
}
