#include "review.h"
#include <linux/close_range.h>
/* Thread A: connect + close_range(fd, fd). Thread B: connect + hold 1 ms
 * + close. With events=all every governed outbound connection has a
 * "connect" and a "close" event; a B connection whose slot A's
 * close_range bookkeeping detached loses its governance (no close event,
 * no deadlines). */
static struct sockaddr_in la; static int L;
static volatile int stop;
static void *A(void *x)
{
    while (!stop) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        connect(fd, (void *)&la, sizeof la);
        close_range(fd, fd, 0);
    }
    return x;
}
static void *B(void *x)
{
    long n = 0;
    while (!stop) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        connect(fd, (void *)&la, sizeof la);
        usleep(200);
        close(fd);
        n++;
    }
    *(long *)x = n;
    return x;
}
static void *acceptor(void *x)
{
    while (!stop) { int s = accept(L, NULL, NULL); if (s >= 0) close(s); }
    return x;
}
int main(void)
{
    L = socket(AF_INET, SOCK_STREAM, 0);
    la.sin_family = AF_INET; la.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof la;
    bind(L, (void *)&la, sizeof la); listen(L, 512); getsockname(L, (void *)&la, &len);
    pthread_t a, b, ac; long nb = 0;
    pthread_create(&ac, NULL, acceptor, NULL);
    pthread_create(&a, NULL, A, NULL);
    pthread_create(&b, NULL, B, &nb);
    sleep(3);
    stop = 1;
    pthread_join(a, NULL); pthread_join(b, NULL);
    printf("B connections: %ld\n", nb);
    _exit(0);
}
