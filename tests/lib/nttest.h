/* nttest: helpers shared by the nettimeo Criterion suites.
 *
 * Ground rules (see shared/TESTING.md):
 *  - The test process itself is never preloaded. Programs run under the
 *    library are started with nt_spawn()/nt_run(), which put LD_PRELOAD in
 *    the child's environment only.
 *  - Children die with the test (PR_SET_PDEATHSIG) and run in their own
 *    process group, so a timeout kills grandchildren (nginx workers) too.
 *  - Nothing here uses Criterion; nttest_cr.h adds assertion macros.
 *
 * Build-time inputs (from nt_add_criterion_suite via the nttest target):
 *  NT_LIB_PATH   the built libnettimeo.so (env NTTEST_LIB overrides)
 *  NT_PROGS_DIR  where tests/progs programs are; NT_PROG("echo_server")
 *  NT_SANITIZE, NT_ASAN_LIB  ASan build: the runtime is preloaded first
 *                and ASAN_OPTIONS gets detect_leaks=0. */
#ifndef NTTEST_H
#define NTTEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#define NT_PROG(name) NT_PROGS_DIR "/" name
/* A NULL-terminated argv literal: NT_ARGV("curl", "-s", url). */
#define NT_ARGV(...) ((const char *const[]){__VA_ARGS__, NULL})
/* A NULL-terminated "K=V" list literal for nt_spawn_opts.env. */
#define NT_ENV(...) NT_ARGV(__VA_ARGS__)

enum nt_family { NT_TCP4, NT_TCP6, NT_UNIX };

/* ---- Where things are ------------------------------------------------ */

const char *nt_lib_path(void);
/* The LD_PRELOAD value nt_spawn uses ("libasan.so:libnettimeo.so" in
 * sanitizer builds): for tools that set it themselves (strace -E). */
const char *nt_preload_value(void);

/* ---- Processes ------------------------------------------------------- */

/* All fields optional; a zeroed struct (or NULL) means: preload the
 * library, inherit stdin/stdout/stderr, no extra environment. */
struct nt_spawn_opts {
    bool no_preload;            /* the "without the library" run */
    const char *const *env;     /* extra "K=V" (NULL-terminated); these win */
    const char *stdin_data;     /* stdin reads this text (a memfd) */
    /* Redirections: an fd (> 0; 0 = inherit) is dup2'ed onto 0/1/2; a path
     * is opened (stdin read-only, stdout/stderr created and truncated). */
    int in_fd, out_fd, err_fd;
    const char *in_path, *out_path, *err_path;
    const int *pass_fds;        /* kept open, same numbers; every other */
    size_t npass_fds;           /* fd >= 3 is closed in the child */
    const char *cwd;
};

/* fork + exec argv[0] (searched in PATH). The child gets the parent's
 * environment minus LD_PRELOAD and NETTIMEO_* (so a developer's shell
 * cannot skew a test), plus LD_PRELOAD unless no_preload, plus o->env;
 * default signal dispositions for SIGPIPE and an empty signal mask.
 * PR_SET_PDEATHSIG fires when the *thread* that called nt_spawn exits:
 * spawn from the test's own thread. Returns the pid, or -1 with errno
 * (an exec failure shows as exit 127). */
pid_t nt_spawn(const char *const argv[], const struct nt_spawn_opts *o);
/* Wait up to timeout_ms (< 0: forever). Returns 0 when the child exited
 * (status filled in), 1 when it timed out and was killed with SIGKILL,
 * with its process group, and reaped (status says SIGKILL), -1 on error. */
int nt_wait_timeout(pid_t pid, int timeout_ms, int *status);
/* SIGKILL the child and its process group, and reap it. */
void nt_kill(pid_t pid);
/* "exit 3", "signal 13 (SIGPIPE)", "timeout" into buf. */
const char *nt_status_str(int status, char *buf, size_t len);

struct nt_result {
    int status;                 /* waitpid() status */
    bool timed_out;             /* killed after timeout_ms */
    int64_t elapsed_ms;         /* spawn to exit, monotonic */
    char *out, *err;            /* captured stdout/stderr, NUL-terminated */
    size_t out_len, err_len;
};
/* Spawn, wait (timeout_ms), capture stdout and stderr (memfds, so a
 * grandchild holding them open cannot block us) unless o redirects them;
 * stdin is /dev/null unless o says otherwise. Returns 0 when the program
 * ran (whatever its status), -1 when it could not be started. */
int nt_run(const char *const argv[], const struct nt_spawn_opts *o, int timeout_ms,
           struct nt_result *r);
void nt_result_free(struct nt_result *r);
/* nt_run with NETTIMEO_OPTIONS=options and, when conf_text is not NULL, a
 * config file with that text (NETTIMEO_CONFIG); preload or not. */
int nt_run_config(const char *const argv[], const char *options, const char *conf_text,
                  bool preload, int timeout_ms, struct nt_result *r);
/* nt_run twice, same options except the preload: with the library, then
 * without. 0 when both ran. */
int nt_run_both(const char *const argv[], const struct nt_spawn_opts *o, int timeout_ms,
                struct nt_result *with, struct nt_result *without);
/* Exited normally with this code. */
bool nt_exited(const struct nt_result *r, int code);
/* Same status and stdout: what the comparison tests ask of the library. */
bool nt_same_result(const struct nt_result *a, const struct nt_result *b);

/* A server that prints one line (its port or path) when ready. */
struct nt_server {
    pid_t pid;
    int out_fd;                 /* rest of its stdout */
    char line[256];             /* first line, without the newline */
    int port;                   /* strtol(line) when it is a number, else 0 */
};
/* Spawn with stdout on a pipe and read the first line within timeout_ms.
 * o->out_* are ignored; stdin defaults to /dev/null. Read the rest of its
 * stdout through out_fd (or at nt_server_stop): a server that prints a lot
 * meanwhile blocks on the pipe. 0 on success; -1 (child killed) otherwise. */
int nt_server_start(struct nt_server *s, const char *const argv[],
                    const struct nt_spawn_opts *o, int timeout_ms);
/* Give the server grace_ms to exit by itself, then SIGTERM, then after 2 s
 * SIGKILL. Fills *status and (if rest != NULL) the rest of its stdout,
 * malloc'ed. Returns 0 when it exited within grace_ms by itself. */
int nt_server_stop(struct nt_server *s, int grace_ms, int *status, char **rest);

/* Run `client` against tests/progs/echo_server: the server is started in
 * `server_mode` (thread|poll|select|epoll) on a fresh address of family f,
 * told to exit after `conns` connections, and every "@ADDR" element of
 * client is replaced by its address. o (preload or not, env) applies to
 * both processes; the client gets timeout_ms. Returns -1 when the server
 * did not start. */
struct nt_echo_run {
    struct nt_result client;
    int server_status;
    bool server_exited;         /* by itself, after `conns` connections */
    char *server_out;           /* its stdout after the first line */
};
int nt_echo_run(const char *server_mode, enum nt_family f, long conns,
                const char *const client[], const struct nt_spawn_opts *o, int timeout_ms,
                struct nt_echo_run *r);
void nt_echo_run_free(struct nt_echo_run *r);
/* nt_echo_run with the library (in both processes), then without. */
int nt_echo_run_both(const char *server_mode, enum nt_family f, long conns,
                     const char *const client[], const struct nt_spawn_opts *o, int timeout_ms,
                     struct nt_echo_run *with, struct nt_echo_run *without);
/* Both runs: clients exited 0 with the same stdout, servers exited 0 by
 * themselves with the same stdout. */
bool nt_echo_run_same(const struct nt_echo_run *a, const struct nt_echo_run *b);

/* ---- Time -------------------------------------------------------------- */

int64_t nt_now_ms(void);        /* CLOCK_MONOTONIC */
int64_t nt_now_us(void);
void nt_sleep_ms(int ms);
/* elapsed in [0.8 * expected, expected + slack]: the shape of every
 * deadline assertion on a shared machine. */
bool nt_elapsed_ok(int64_t elapsed_ms, int64_t expected_ms, int64_t slack_ms);

/* ---- Files and temp dirs ----------------------------------------------- */

/* This process's scratch dir (created on first use, 0755 so daemons that
 * drop privileges can read it, removed at exit). */
const char *nt_tmpdir(void);
/* nt_tmpdir()/name, malloc'ed. */
char *nt_path(const char *name);
/* A new dir of its own; remove with nt_rmtree. malloc'ed. */
char *nt_mkdtemp(void);
int nt_rmtree(const char *path);
int nt_write_file(const char *path, const void *data, size_t len);
/* Whole file, NUL-terminated, malloc'ed; *len may be NULL. */
char *nt_read_file(const char *path, size_t *len);
/* nt_path(name) with `text` written to it (a config file, say): the path,
 * malloc'ed, or NULL. */
char *nt_write_tmp(const char *name, const char *text);
/* Bytes of a deterministic pseudo-random file (for download tests). */
void nt_fill_bytes(void *buf, size_t len, uint32_t seed);

/* ---- Sockets in the test process --------------------------------------- */

struct nt_addr {
    enum nt_family fam;
    struct sockaddr_storage ss;
    socklen_t len;
    int port;                   /* 0 for unix */
    char str[120];              /* "127.0.0.1:P", "[::1]:P" or the unix path:
                                   the address syntax tests/progs take */
};

const char *nt_family_name(enum nt_family f);       /* "tcp4", "tcp6", "unix" */
/* Address for a listener: loopback port 0, or a fresh path in nt_tmpdir. */
void nt_addr_any(enum nt_family f, struct nt_addr *a);
/* The address a prog should use to reach a server that printed `line`
 * (a port or a path). */
void nt_addr_from_line(enum nt_family f, const char *line, struct nt_addr *a);
/* Listening socket (O_CLOEXEC) on a fresh address; *a gets the real one. */
int nt_listen(enum nt_family f, int backlog, struct nt_addr *a);
/* Blocking connected socket within timeout_ms, or -1 (a unix listener
 * with a full queue is retried until then, as a blocking connect waits). */
int nt_connect(const struct nt_addr *a, int timeout_ms);
/* Retry connecting until something listens (a just-spawned daemon);
 * 0 on success, -1 after timeout_ms. */
int nt_wait_listening(const struct nt_addr *a, int timeout_ms);
/* A loopback TCP port that was free a moment ago (for programs that need
 * one in a config file). */
int nt_free_port(enum nt_family f);

/* ---- Peers: servers on a background thread of the test process --------- */

enum nt_peer_kind {
    NT_PEER_ECHO,       /* echoes everything back */
    NT_PEER_SILENT,     /* accepts, reads and discards, never writes */
    NT_PEER_NOACCEPT,   /* backlog full, never accepts: connect() hangs */
    NT_PEER_NOREAD,     /* accepts, never reads (small SO_RCVBUF): writes stall */
    NT_PEER_FIN,        /* accepts, then close(): the client sees EOF */
    NT_PEER_RST,        /* accepts, then SO_LINGER {1,0} + close(): RST */
};

struct nt_peer_opts {
    int rcvbuf;         /* SO_RCVBUF on the listener (NOREAD default 4096) */
    int sndbuf;         /* SO_SNDBUF on the listener */
    int delay_ms;       /* FIN/RST: wait this long before closing */
    bool read_first;    /* FIN/RST: wait for the first data (and read it) */
};

struct nt_peer;
/* NULL on failure. The listener lives until nt_peer_stop. */
struct nt_peer *nt_peer_start(enum nt_peer_kind kind, enum nt_family f,
                              const struct nt_peer_opts *o);
const struct nt_addr *nt_peer_addr(const struct nt_peer *p);
int nt_peer_accepted(struct nt_peer *p);            /* connections so far */
uint64_t nt_peer_bytes_in(struct nt_peer *p);       /* bytes read so far */
/* Until at least n connections were accepted: 0, or -1 after timeout_ms. */
int nt_peer_wait_accepted(struct nt_peer *p, int n, int timeout_ms);
/* Stops the thread, closes every socket, removes a unix path, frees. */
void nt_peer_stop(struct nt_peer *p);

/* ---- JSON Lines (the audit log) ---------------------------------------- */

struct nt_jsonl {
    char *buf;                  /* owned copy of the text */
    char **line;                /* lines that start with '{' */
    size_t n;
};
/* Keep the lines of text that look like JSON objects (stderr mixes them
 * with a program's own messages). */
int nt_jsonl_parse(struct nt_jsonl *j, const char *text);
int nt_jsonl_load(struct nt_jsonl *j, const char *path);
void nt_jsonl_free(struct nt_jsonl *j);
/* Lines whose "event" is `event` (NULL: all). */
size_t nt_jsonl_count(const struct nt_jsonl *j, const char *event);
/* The nth (from 0) such line, or NULL. */
const char *nt_jsonl_nth(const struct nt_jsonl *j, const char *event, size_t nth);
/* Top-level member `key` of a one-line object: strings are unescaped
 * (\uXXXX kept as is), numbers/literals/arrays/objects copied raw. false
 * when absent or malformed. */
bool nt_json_get(const char *line, const char *key, char *out, size_t outlen);
/* Member `key` as a number (age_ms is 0.102); dflt when line is NULL or
 * the member is absent or not a number. */
double nt_json_num(const char *line, const char *key, double dflt);
/* Every line of the file parses as a JSON object (python3's json module);
 * 0 when valid, else -1 and *why (malloc'ed, may be NULL) says where. */
int nt_jsonl_validate(const char *path, char **why);

#endif
