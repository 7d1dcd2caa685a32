#include "review.h"
int main(void)
{
    int c, s;
    tcp_pair(&c, &s);
    write(s, "abc", 3);
    shutdown(s, SHUT_WR);   /* 3 bytes then FIN: a WAITALL peek cannot get 10 */
    usleep(100000);
    char b[10];
    double t0 = now_s();
    ssize_t r = recv(c, b, sizeof b, MSG_PEEK | MSG_WAITALL);
    int e = errno;
    printf("peek|waitall: r=%zd errno=%s after %.1fs\n", r, r < 0 ? strerror(e) : "-", now_s() - t0);
    return 0;
}
