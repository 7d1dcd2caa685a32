#include "review.h"
#include <signal.h>
#include <sys/syscall.h>
/* SIGALRM's handler has SA_RESTART; SIGUSR1 has a handler without it but
 * never arrives. A blocking read interrupted by SIGALRM must be restarted
 * (SPEC 4: judged by the handler of the signal that actually arrived). */
static void h(int sig) { (void)sig; }
static int c, s;
static void *peer(void *a) { usleep(1000000); syscall(SYS_write, s, "data", 4); return a; }
int main(void)
{
    tcp_pair(&c, &s);
    struct sigaction ra = { .sa_handler = h, .sa_flags = SA_RESTART };
    struct sigaction na = { .sa_handler = h, .sa_flags = 0 };
    sigaction(SIGALRM, &ra, NULL);
    sigaction(SIGUSR1, &na, NULL);
    pthread_t t; pthread_create(&t, NULL, peer, NULL);
    ualarm(300000, 0);
    char b[16];
    double t0 = now_s();
    ssize_t r = read(c, b, sizeof b);
    printf("read -> %zd (%s) after %.1fs\n", r, r < 0 ? strerror(errno) : "data", now_s() - t0);
    pthread_join(t, NULL);
    return 0;
}
