/* nettimeo configuration: parser, validator and rule matcher.
 *
 * Pure C, no interposition and no global state: the shim owns the current
 * `struct nt_config *` and swaps it on reload; `nettimeo check` links the
 * same code. Format and semantics: shared/SPEC.md section 3.
 *
 * Lifetime rule the shim relies on: a published config is never freed while
 * connections may point into it (the shim keeps old configs on reload), so
 * `const struct nt_settings *` returned by nt_config_match() stays valid.
 */
#ifndef NT_CONFIG_H
#define NT_CONFIG_H

#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

typedef int64_t nt_ns; /* duration in nanoseconds; 0 = off */

enum nt_dir { NT_DIR_ANY = 0, NT_DIR_INBOUND = 1, NT_DIR_OUTBOUND = 2 };
enum nt_coalesce_mode { NT_COALESCE_BUFFER = 0, NT_COALESCE_CORK = 1 };
enum nt_expire_action { NT_EXPIRE_SHUTDOWN = 0, NT_EXPIRE_RESET = 1 };

/* Event kinds, as bits for nt_global.events. */
enum nt_event_kind {
    NT_EV_EPIPE = 1u << 0,
    NT_EV_ECONNRESET = 1u << 1,
    NT_EV_TIMEOUT = 1u << 2,
    NT_EV_FLUSH_ERROR = 1u << 3,
    NT_EV_CONFIG_ERROR = 1u << 4,
    NT_EV_CONFIG_LOADED = 1u << 5,
    NT_EV_SUPPRESSED = 1u << 6,
    NT_EV_CONNECT = 1u << 7,
    NT_EV_ACCEPT = 1u << 8,
    NT_EV_CLOSE = 1u << 9,
    NT_EV_ABANDONED = 1u << 10,
    NT_EV_SANDBOXED = 1u << 11, /* always on: the library stepped back (seccomp) */
};
/* Default `events` set (SPEC section 3); "all" = NT_EV_ALL adds the
 * lifecycle and config_loaded. config_error/suppressed are always on: they
 * report on nettimeo itself. */
#define NT_EV_DEFAULT (NT_EV_EPIPE | NT_EV_ECONNRESET | NT_EV_TIMEOUT | \
                       NT_EV_ABANDONED | \
                       NT_EV_FLUSH_ERROR | NT_EV_CONFIG_ERROR |         \
                       NT_EV_SUPPRESSED)
#define NT_EV_ALL (NT_EV_DEFAULT | NT_EV_CONFIG_LOADED | NT_EV_CONNECT | \
                   NT_EV_ACCEPT | NT_EV_CLOSE)

/* [global] */
struct nt_global {
    char log[512];        /* "stderr", "syslog" or an absolute/relative path */
    uint32_t events;      /* NT_EV_* bits */
    int backtrace;        /* frames per event, 0 = none; default 16, max 64 */
    int sigpipe_ignore;   /* sigpipe = ignore */
    uint32_t rate_limit;  /* events per call site per second; 0 = unlimited; default 50 */
    int inherit;          /* inherit = yes (default) | no */
};

/* Settings a connection resolves once, at connect/accept (or first use). */
struct nt_settings {
    nt_ns connect_timeout, read_timeout, write_timeout;
    nt_ns idle_timeout, request_timeout, max_lifetime;
    uint32_t coalesce;      /* bytes; 0 = off */
    nt_ns coalesce_delay;   /* default 1ms */
    uint8_t coalesce_mode;  /* enum nt_coalesce_mode */
    uint8_t expire_action;  /* enum nt_expire_action */
    int timeout_errno;      /* ETIMEDOUT (default) or EAGAIN */
    const char *rule;       /* "NAME" of the matching rule, or NULL: [defaults] */
};

/* What a connection looks like when it is matched. */
struct nt_conn_key {
    int dir;                         /* NT_DIR_INBOUND / NT_DIR_OUTBOUND */
    const struct sockaddr *local;    /* may be NULL */
    socklen_t local_len;
    const struct sockaddr *remote;   /* may be NULL (unknown) */
    socklen_t remote_len;
    const char *prog;                /* program name (basename of argv[0]) */
};

struct nt_config; /* opaque */

/* Called once per problem found, in file order. `line` is 0 for problems
 * with no line (unreadable file, NETTIMEO_OPTIONS). `file` is the path as
 * given, or "NETTIMEO_OPTIONS". */
typedef void (*nt_diag_fn)(void *ctx, const char *file, int line,
                           const char *msg);

/* Parse a file. Never blocks on a FIFO or device (opens O_NONBLOCK, refuses
 * anything but a regular file). Reports every problem through `diag` and
 * returns NULL if there was any: a bad file is never half-used. */
struct nt_config *nt_config_parse_file(const char *path, nt_diag_fn diag,
                                       void *ctx);
/* The same for text in memory; `name` stands for the file name in messages. */
struct nt_config *nt_config_parse_string(const char *text, size_t len,
                                         const char *name, nt_diag_fn diag,
                                         void *ctx);
/* Audit-only defaults: no deadlines, log = stderr. Never NULL unless OOM. */
struct nt_config *nt_config_default(void);
/* NETTIMEO_OPTIONS="key=value key=value": [defaults] keys overriding the
 * file's. Returns 0, or -1 after reporting through diag (cfg unchanged). */
int nt_config_apply_options(struct nt_config *cfg, const char *options,
                            nt_diag_fn diag, void *ctx);
void nt_config_free(struct nt_config *cfg);

const struct nt_global *nt_config_global(const struct nt_config *cfg);
/* First matching rule in file order, else [defaults]. Never NULL. */
const struct nt_settings *nt_config_match(const struct nt_config *cfg,
                                          const struct nt_conn_key *key);
/* True if any rule or [defaults] sets any deadline or coalescing: lets the
 * shim skip per-connection work entirely for audit-only configs. */
int nt_config_governs(const struct nt_config *cfg);

/* Human-readable effective configuration, for `nettimeo check`. */
void nt_config_dump(const struct nt_config *cfg, FILE *out);

/* Value parsers, exposed for tests and for the shim's own use. Return 0 on
 * success, -1 on a bad value. */
int nt_parse_duration(const char *s, nt_ns *out);
int nt_parse_size(const char *s, uint64_t *out);

#endif
