/* A non-blocking client writes 100-byte pieces until EAGAIN, closes and
 * exits while its peer reads only 2 s later. The kernel keeps every byte
 * it acknowledged; with buffer-mode coalescing the library acknowledged up
 * to 16 KiB more than the kernel would take, then lingered 5 s at exit and
 * lost them (flush_error). */
#include "review.h"
int main(void)
{
    int c, s;
    tcp_pair_small(&c, &s, 4096);
    slow_reader(c, s, 2);
    close(s);
    fcntl(c, F_SETFL, O_NONBLOCK);
    write_until_refused(c);
    close(c);
    return 0;
}
