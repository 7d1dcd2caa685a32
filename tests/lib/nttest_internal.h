/* Shared between nttest's own source files; not part of the API. */
#ifndef NTTEST_INTERNAL_H
#define NTTEST_INTERNAL_H

#include <sys/types.h>

/* Wait up to timeout_ms without killing: 0 exited (reaped, *status set),
 * 1 still running, -1 error. */
int nt_wait_quietly(pid_t pid, int timeout_ms, int *status);

/* nt_listen with socket options applied before bind/listen (rcvbuf,
 * sndbuf: 0 = leave alone) and extra socket() type flags. */
struct nt_addr;
int nt_listen_opts(int fam, int backlog, int rcvbuf, int sndbuf, int type_flags,
                   struct nt_addr *a);

#endif
