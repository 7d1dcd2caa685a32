/* Backtraces for audit events, with libunwind loaded on first use.
 *
 * The library does not link libunwind: dlopen("libunwind.so.8") happens on
 * the first event that wants a backtrace (or in nt_backtrace_prepare()), so
 * a program that never logs one pays nothing at exec.
 *
 * Frames are "symbol+0xoff (module+0xoff)", innermost first, starting at
 * the program's own call site: every frame inside libnettimeo.so is left
 * out. symbol comes from unw_get_proc_name (reads .symtab, so static
 * functions of an unstripped binary resolve), else from dladdr (.dynsym),
 * else "??". module is the object's full path (the executable's from
 * /proc/self/exe), as addr2line needs it; its offset is the address minus
 * the object's load bias, i.e. the address addr2line -e MODULE expects for
 * PIE, non-PIE and shared objects alike. Addresses are return addresses,
 * as in gdb and backtrace(3). */
#ifndef NT_BACKTRACE_H
#define NT_BACKTRACE_H

#include "audit/json.h"
#include "core/nt.h"

/* Appends up to max frames as JSON string elements of an open array.
 * caller: the program's call site (the hook's return address); NULL means
 * the timer thread, which never unwinds: nothing is appended. Frames that
 * do not fit in b are left out (b never ends in overflow). If unwinding is
 * unavailable or finds nothing, the caller alone is given. Never unwinds
 * re-entrantly (a signal handler logging while this thread unwinds gets
 * the caller frame only). */
void nt_backtrace_append(struct nt_jbuf *b, int max, void *caller);

/* Appends one frame for a bare address (no unwinding). */
void nt_backtrace_append_addr(struct nt_jbuf *b, void *ip);

/* fork child: a load that another thread had started did not survive. */
void nt_backtrace_atfork_child(void);

/* hooks/pipe.c: pipe2() while this thread unwinds is libunwind's own. */
extern NT_TLS int nt_unwinding;
int nt_backtrace_pipe2(int fds[2], int flags);

#endif
