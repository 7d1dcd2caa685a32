/* Shared pieces of the test programs in tests/progs.
 *
 * The programs are deliberately ordinary: plain libc sockets, arguments on
 * the command line, results on stdout in "key value" form, meaningful exit
 * codes. The tests run each one with and without libnettimeo.so preloaded
 * and compare what a user would observe.
 *
 * Address syntax (the same as nttest's struct nt_addr.str):
 *   127.0.0.1:PORT    [::1]:PORT    /path/to/unix.sock
 *
 * Exit codes: 0 ok, 1 wrong result (data mismatch, unexpected errno),
 * 2 usage or setup error, 77 cannot run here (skip). */
#ifndef NT_PROGS_COMMON_H
#define NT_PROGS_COMMON_H

#include <stdint.h>
#include <stdnoreturn.h>
#include <sys/socket.h>
#include <sys/types.h>

#define PC_EXIT_FAIL 1
#define PC_EXIT_SETUP 2
#define PC_EXIT_SKIP 77

/* Print "PROG: message[: strerror]" to stderr and exit PC_EXIT_SETUP. A
 * trailing ':' in fmt appends strerror(errno). */
noreturn void pc_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* "65536", "64k", "4m" -> bytes; dies on junk. */
long pc_num(const char *s);

int pc_parse_addr(const char *s, struct sockaddr_storage *ss, socklen_t *len);
/* pc_connect, or die saying which address. */
int pc_connect_or_die(const char *addr);
/* CLOCK_MONOTONIC in milliseconds. */
long long pc_now_ms(void);
/* Blocking connect to an address string; -1 with errno on failure. */
int pc_connect(const char *addr);
/* Bound, listening socket. `shown` receives what a client needs: the port
 * for TCP (resolved when the address asked for port 0) or the unix path. */
int pc_listen(const char *addr, int backlog, char *shown, size_t shown_len);

/* The deterministic byte stream every client sends: byte at stream offset
 * `off` depends on `off` only, and does not repeat with a short period. */
void pc_pattern(unsigned char *buf, size_t len, uint64_t off);
/* Offset of the first byte of buf that differs from the pattern at `off`,
 * or -1 when all match. */
long pc_pattern_check(const unsigned char *buf, size_t len, uint64_t off);

#define PC_FNV_INIT 0xcbf29ce484222325ULL
uint64_t pc_fnv(uint64_t h, const void *buf, size_t len);

/* Blocking helpers that retry EINTR and short transfers. Return the byte
 * count (short only at EOF for pc_read_full) or -1. */
ssize_t pc_write_full(int fd, const void *buf, size_t len);
ssize_t pc_read_full(int fd, void *buf, size_t len);

/* Lockstep echo exchange on a blocking socket: send `total` pattern bytes
 * in `chunk`-sized pieces (at most 16 KiB), reading each piece back and
 * checking it. Adds what came back to *fnv. 0 on success, -1 (message on
 * stderr) otherwise. Allocates nothing: safe in a child of fork(). */
int pc_echo_exchange(int fd, size_t total, size_t chunk, uint64_t *fnv);

/* Echo everything read on a blocking socket back until EOF, then close it.
 * Returns the byte count. Usable as a thread body via pc_echo_thread. */
uint64_t pc_echo_blocking(int fd);
void *pc_echo_thread(void *fd_as_ptr);

/* Start a detached thread that accepts on `lfd` forever and echoes each
 * connection on its own detached thread: an in-process server for programs
 * that want both ends of a connection. */
void pc_start_echo_acceptor(int lfd);

/* A connected stream pair made with listen/connect/accept, so both ends are
 * governed sockets (outbound *c, inbound *s). family: AF_INET, AF_INET6
 * (loopback) or AF_UNIX (autobound abstract name). Dies on failure. */
void pc_pair(int family, int *c, int *s);
/* "tcp4" | "tcp6" | "unix" -> AF_*; dies on junk. */
int pc_family(const char *name);

#endif
