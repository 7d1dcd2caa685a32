/* What the library knows of the program's signal handlers (hooks/signal.c):
 * whether a wait of ours was interrupted by a handler with SA_RESTART. */
#ifndef NT_SIGNALS_H
#define NT_SIGNALS_H

#include <signal.h>

#include "core/nt.h"

enum { NT_SIG_NONE = 0, NT_SIG_RESTART, NT_SIG_EINTR };
/* Set by the trampoline of a handler installed with sigaction(): clear it
 * before a wait, read it after EINTR. */
extern NT_TLS int nt_signal_seen;
/* The handler for sig as the program installed it. */
int nt_signal_action(int sig, struct sigaction *a);

#endif
