/* Where audit lines go: stderr, syslog (/dev/log), or a file.
 *
 * Each line is written with one write(2)/send(2), never through stdio.
 * A sink never blocks the program for long and never fails its call: a
 * line that cannot be written now is dropped and counted.
 *
 *  - stderr: fd 2. If fd 2 is a pipe or socket that is full, the line is
 *    dropped (a poll with timeout 0 first), so a program whose stderr
 *    reader stalled is not stalled by the library.
 *  - file: O_WRONLY|O_APPEND|O_CREAT|O_CLOEXEC|O_NOFOLLOW, mode 0600,
 *    moved to a high fd. Before each write the fd's identity (st_dev,
 *    st_ino) is checked, so a program that closed it (closefrom,
 *    close_range) or dup2'ed over it gets a fresh one and the library
 *    never writes into the program's file or closes the program's fd. At
 *    most once a second the path is stat'ed: a rotated file (new inode or
 *    gone) is reopened onto the same fd number.
 *  - syslog: a SOCK_DGRAM socket connected to /dev/log, written with
 *    MSG_DONTWAIT, "<PRI>nettimeo[PID]: LINE", no timestamp (the daemon
 *    adds its own; the line has ts). syslog(3) itself is not used: it is
 *    not async-signal-safe and takes a lock.
 *
 * Under AT_SECURE only an absolute path is accepted (the config then
 * comes from /etc/nettimeo.conf only; settings.c ignores NETTIMEO_CONFIG
 * and NETTIMEO_OPTIONS cannot set [global] keys); otherwise stderr. */
#ifndef NT_LOG_SINK_H
#define NT_LOG_SINK_H

#include <stddef.h>
#include <stdint.h>

enum nt_syslog_level { NT_LOG_ERR = 3, NT_LOG_WARNING = 4, NT_LOG_INFO = 6 };

/* Switch to the sink named by `log` ("stderr", "syslog" or a path). A file
 * that cannot be opened falls back to stderr, with one line saying so. */
void nt_sink_configure(const char *log, int secure);
/* Write one line (ending in '\n'). Returns 0, or -1 if it was dropped. */
int nt_sink_write(const char *line, size_t len, int level);
/* Lines dropped so far and not yet reported; the counter is cleared. */
uint64_t nt_sink_take_dropped(void);
/* Give back a count that could not be reported after all. */
void nt_sink_add_dropped(uint64_t n);
/* fork child: the reopen lock may have been held by another thread. */
void nt_sink_atfork_child(void);

#endif
