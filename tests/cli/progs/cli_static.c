/* A statically linked program: `nettimeo run` must warn that nothing in
 * it can be governed, and still run it. */
#include <stdio.h>

int main(void)
{
    puts("cli_static ran");
    return 0;
}
