/* Shared between nttest's own source files; not part of the API. */
#ifndef NTTEST_INTERNAL_H
#define NTTEST_INTERNAL_H

#include <sys/types.h>

/* Wait up to timeout_ms without killing: 0 exited (reaped, *status set),
 * 1 still running, -1 error. */
int nt_wait_quietly(pid_t pid, int timeout_ms, int *status);

#endif
