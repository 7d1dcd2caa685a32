/* A non-blocking client with TCP_NOTSENT_LOWAT = 2048 (as HTTP/2 servers
 * set it) and a 1 MiB send buffer writes 100-byte pieces until EAGAIN: the
 * kernel refuses once 2 KiB sit unsent, far below the buffer's size. Then
 * it closes and exits; its peer reads only 2 s later. */
#include "review.h"
#include <netinet/tcp.h>
int main(void)
{
    int c, s;
    tcp_pair_small(&c, &s, 4096);
    slow_reader(c, s, 2);
    close(s);
    int big = 1 << 20, low = 2048;
    setsockopt(c, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    setsockopt(c, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &low, sizeof low);
    fcntl(c, F_SETFL, O_NONBLOCK);
    write_until_refused(c);
    close(c);
    return 0;
}
