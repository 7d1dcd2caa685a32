/* A blocking write starts a buffer (no room limit: a blocking write waits
 * for space); the program then sets O_NONBLOCK and writes 100-byte pieces
 * until EAGAIN, closes and exits. Its peer reads only 2 s later. */
#include "review.h"
int main(void)
{
    int c, s;
    tcp_pair_small(&c, &s, 4096);
    slow_reader(c, s, 2);
    close(s);
    if (write(c, "0123456789", 10) != 10) /* blocking: the buffer starts */
        return 2;
    fcntl(c, F_SETFL, O_NONBLOCK);
    write_until_refused(c);
    close(c);
    return 0;
}
