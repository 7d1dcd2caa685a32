/* scripts/bench: the memory a governed connection costs the library, as
 * the library is built (struct nt_conn, its free-list link, and the
 * side-table entry only a named Unix socket uses). */
#include <stdio.h>

#include "core/conn.h"

int main(void)
{
    printf("%zu %zu %zu\n", sizeof(struct nt_conn), sizeof(uint32_t),
           2 * (sizeof(socklen_t) + sizeof(union nt_addr)));
    return 0;
}
