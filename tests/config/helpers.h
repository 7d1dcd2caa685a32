/* Shared helpers of the config tests: collecting diagnostics, building
 * connection keys from strings, and parsing fixtures. */
#ifndef NT_TEST_CONFIG_HELPERS_H
#define NT_TEST_CONFIG_HELPERS_H

#include "nt_config.h"

#include <sys/socket.h>

#define DIAG_MAX 64

struct diag {
    char file[256];
    int line;
    char msg[512];
};

struct diags {
    int n;
    struct diag d[DIAG_MAX];
};

/* An nt_diag_fn that appends to a struct diags. */
void diags_collect(void *ctx, const char *file, int line, const char *msg);
/* All collected messages as "FILE:LINE: msg" lines, for failure output. */
const char *diags_text(const struct diags *d, char *buf, size_t len);

/* Parse text; asserts it parses without any diagnostic. */
struct nt_config *parse_ok(const char *text);
/* Parse a file under NT_FIXTURES; asserts it parses without diagnostic. */
struct nt_config *parse_fixture_ok(const char *relpath);
/* fixture path under NT_FIXTURES */
const char *fixture_path(const char *relpath, char *buf, size_t len);

/* A connection described by strings: "1.2.3.4:80", "[::1]:443",
 * "unix:/path", "unix:@abstract", or NULL for unknown. */
struct conn {
    struct nt_conn_key key;
    struct sockaddr_storage local, remote;
};
void conn_make(struct conn *c, int dir, const char *local, const char *remote,
               const char *prog);

/* nt_config_match() on the described connection. */
const struct nt_settings *match(const struct nt_config *cfg, int dir,
                                const char *local, const char *remote,
                                const char *prog);
/* The matched rule's name, "-" for [defaults]. */
const char *match_name(const struct nt_config *cfg, int dir, const char *local,
                       const char *remote, const char *prog);

/* Removes comments and the blanks before them, in place; drops lines left
 * empty by that. */
void strip_comments(char *text);

/* nt_config_dump() into a malloc'd string. */
char *dump_string(const struct nt_config *cfg);

#define MS(x) ((nt_ns)(x) * 1000000LL)
#define SEC(x) ((nt_ns)(x) * 1000000000LL)

#endif
