/* Write coalescing. Buffers are not implemented yet (issue 6): no
 * connection ever holds bytes, so there is nothing to flush. */
#include "coalesce.h"

void nt_coalesce_flush_all(void)
{
}

unsigned nt_coalesce_pending;

void nt_coalesce_flush_for_wait(void)
{
}
