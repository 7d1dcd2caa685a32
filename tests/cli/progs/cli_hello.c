/* Never run: `nettimeo report` resolves a "??" frame in it with addr2line
 * (built with -g). */
#include <stdio.h>

int cli_marker(int x);

__attribute__((noinline)) int cli_marker(int x)
{
    printf("%d\n", x);
    return x + 1;
}

int main(int argc, char **argv)
{
    return cli_marker(argc) == 0;
}
