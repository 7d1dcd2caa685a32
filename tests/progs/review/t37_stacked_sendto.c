/* sendto and recvfrom without an address on a connected TCP pair, with
 * the bytes already there: each call is one call of the next library's
 * sendto/recvfrom (tests/progs/wrap_counts.c counts them). */
#include "review.h"
int main(void)
{
    int c, s;
    tcp_pair(&c, &s);
    char b[16];
    for (int i = 0; i < 2; i++) {
        ssize_t w = sendto(c, "hello", 5, 0, NULL, 0);
        ssize_t r = recvfrom(s, b, sizeof b, 0, NULL, NULL);
        printf("sendto=%zd recvfrom=%zd\n", w, r);
    }
    return 0;
}
