/* Growable arrays in mmap'ed memory, for the library's own tables that are
 * filled from inside hooks (where malloc is off limits: a signal handler or
 * a vfork child may be the caller). */
#include <sys/mman.h>

#include "core/nt.h"

int nt_mmap_grow(void **base, size_t *cap, size_t elem, size_t first)
{
    size_t ncap = *cap ? *cap * 2 : first;
    void *m = *cap ? mremap(*base, *cap * elem, ncap * elem, MREMAP_MAYMOVE)
                   : mmap(NULL, ncap * elem, PROT_READ | PROT_WRITE,
                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return -1;
    *base = m;
    *cap = ncap;
    return 0;
}
