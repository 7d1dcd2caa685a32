#include "review.h"
#include <signal.h>
#include <sys/syscall.h>
/* A blocking send of 4 MiB to a peer that reads only after 1 s; a signal
 * with an SA_RESTART handler at 0.3 s. The kernel returns the bytes sent
 * so far (a write that moved data is never restarted). */
static void h(int sig) { (void)sig; }
static int c, s;
static void *peer(void *a)
{
    usleep(1000000);
    static char b[1 << 16];
    long tot = 0;
    while (tot < (32 << 20)) { long r = syscall(SYS_read, s, b, sizeof b); if (r <= 0) break; tot += r; }
    return a;
}
int main(void)
{
    tcp_pair(&c, &s);
    struct sigaction sa = { .sa_handler = h, .sa_flags = SA_RESTART };
    sigaction(SIGALRM, &sa, NULL);
    pthread_t t; pthread_create(&t, NULL, peer, NULL);
    static char big[32 << 20];
    ualarm(300000, 0);
    double t0 = now_s();
    ssize_t r = send(c, big, sizeof big, 0);
    printf("send(32MiB) -> %s after %.1fs\n", r == (ssize_t)sizeof big ? "all" : "partial", now_s() - t0);
    shutdown(c, SHUT_WR);
    pthread_join(t, NULL);
    return 0;
}
