#include "review.h"
#include <signal.h>
#include <sys/syscall.h>
/* A blocking recv(MSG_WAITALL) that already has part of its data when a
 * signal (handler installed with SA_RESTART) arrives: the kernel returns
 * the partial count (a restart is impossible once data was copied). */
static void h(int sig) { (void)sig; }
static int c, s;
static void *peer(void *a)
{
    usleep(1000000);
    syscall(SYS_write, s, "4567890", 7);
    return a;
}
int main(void)
{
    tcp_pair(&c, &s);
    struct sigaction sa = { .sa_handler = h, .sa_flags = SA_RESTART };
    sigaction(SIGALRM, &sa, NULL);
    syscall(SYS_write, s, "123", 3);
    pthread_t t; pthread_create(&t, NULL, peer, NULL);
    ualarm(300000, 0);
    char b[10];
    double t0 = now_s();
    ssize_t r = recv(c, b, sizeof b, MSG_WAITALL);
    printf("recv(MSG_WAITALL,10) -> %zd after %.1fs\n", r, now_s() - t0);
    pthread_join(t, NULL);
    return 0;
}
