/* byte_loop COUNT
 *
 * COUNT one-byte reads and writes on non-socket fds: /dev/zero to
 * /dev/null, and through a pipe. The library must pass these straight
 * through; the tests count syscalls at two COUNTs (like dd bs=1, which an
 * ASan runtime refuses to run: dd asks aligned_alloc for odd sizes).
 * Prints "bytes N". */
#define _GNU_SOURCE
#include "common.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    long n;
    int in, out, p[2];
    char c;
    if (argc != 2)
        pc_die("usage: byte_loop COUNT");
    n = pc_num(argv[1]);
    in = open("/dev/zero", O_RDONLY);
    out = open("/dev/null", O_WRONLY);
    if (in < 0 || out < 0 || pipe(p) < 0)
        pc_die("open:");
    for (long i = 0; i < n; i++)
        if (read(in, &c, 1) != 1 || write(out, &c, 1) != 1 || write(p[1], &c, 1) != 1 ||
            read(p[0], &c, 1) != 1)
            pc_die("byte %ld:", i);
    printf("bytes %ld\n", n);
    return 0;
}
