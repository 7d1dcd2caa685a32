#include "review.h"
#include <signal.h>
#include <sys/time.h>
/* Connections made and closed both by the main thread and by a SIGALRM
 * handler firing every 100us. Each open arms the timer (idle_timeout),
 * each close disarms it. Without the library this finishes in a few
 * seconds. */
static struct sockaddr_in la, lb;
static int L1, L2;
static volatile long hcount;
static int mklisten(struct sockaddr_in *a)
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    a->sin_family = AF_INET; a->sin_addr.s_addr = htonl(INADDR_LOOPBACK); a->sin_port = 0;
    socklen_t len = sizeof *a;
    bind(l, (void *)a, sizeof *a); listen(l, 64); getsockname(l, (void *)a, &len);
    return l;
}
static void once(int l, struct sockaddr_in *a)
{
    int c = socket(AF_INET, SOCK_STREAM, 0);
    while (connect(c, (void *)a, sizeof *a) != 0 && errno == EINTR) ;
    int s;
    while ((s = accept(l, NULL, NULL)) < 0 && errno == EINTR) ;
    close(s);
    close(c);
}
static void handler(int sig)
{
    (void)sig;
    int e = errno;
    once(L2, &lb);
    hcount++;
    errno = e;
}
int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 20000;
    L1 = mklisten(&la); L2 = mklisten(&lb);
    struct sigaction sa = { .sa_handler = handler, .sa_flags = SA_RESTART };
    sigaction(SIGALRM, &sa, NULL);
    struct itimerval it = { { 0, 100 }, { 0, 100 } };
    setitimer(ITIMER_REAL, &it, NULL);
    double t0 = now_s();
    for (int i = 0; i < iters; i++)
        once(L1, &la);
    struct itimerval off = { 0 };
    setitimer(ITIMER_REAL, &off, NULL);
    printf("done: %d iterations, %ld in handler, %.1fs\n", iters, hcount, now_s() - t0);
    return 0;
}
