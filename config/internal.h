/* Internals of the config library, shared by its .c files only.
 *
 * Everything here is prefixed ntc_ so that it cannot collide with the shim,
 * which links this library statically; the library is built with hidden
 * visibility, so none of it is exported from libnettimeo.so. */
#ifndef NT_CONFIG_INTERNAL_H
#define NT_CONFIG_INTERNAL_H

#include "nt_config.h"

#include <stddef.h>
#include <stdint.h>

#define NTC_MAX_FILE (1u << 20)          /* bytes read from a config file */
#define NTC_MAX_ERRORS 100               /* messages before we stop reporting */
#define NTC_MAX_COALESCE (16u << 20)     /* largest coalesce buffer */
#define NTC_MAX_DURATION (8760LL * 3600 * 1000000000LL) /* one year */
#define NTC_MAX_BACKTRACE 64
#define NTC_MAX_RATE 1000000u
#define NTC_MAX_RULE_NAME 64
#define NTC_MAX_GLOB 1024
#define NTC_MSG 512                      /* one diagnostic message */
#define NTC_MAX_KEYS 32                  /* rows of the key table */

/* ---- values.c: parsing one value; `why` is a constant string ---- */

struct ntc_port_range { uint16_t lo, hi; };
struct ntc_ports { struct ntc_port_range *v; size_t n; };

struct ntc_cidr {
    uint8_t v6;          /* 0: IPv4 (addr[0..3]), 1: IPv6 */
    uint8_t prefix;      /* bits */
    uint8_t addr[16];    /* host bits cleared */
};
struct ntc_cidrs { struct ntc_cidr *v; size_t n; };

struct ntc_choice { const char *name; int value; };

int ntc_duration(const char *s, nt_ns *out, const char **why);
int ntc_size(const char *s, uint64_t *out, const char **why);
int ntc_port_item(const char *s, struct ntc_port_range *out, const char **why);
int ntc_cidr_item(const char *s, struct ntc_cidr *out, const char **why);
int ntc_uint(const char *s, uint64_t max, uint64_t *out);
int ntc_choose(const char *s, const struct ntc_choice *c, size_t n, int *out);
/* Next item of a list separated by spaces, tabs or commas, copied into tok.
 * Returns 1 for an item, 0 at the end, -1 if the item does not fit. */
int ntc_next_item(const char **cursor, char *tok, size_t toklen);
int ntc_is_space(int c);
/* Nearest name (edit distance, case-insensitive) to `word` among n records
 * of `stride` bytes that each start with a `const char *` name; NULL if none
 * is close enough to be a plausible typo. */
const char *ntc_nearest(const char *word, const void *records, size_t n,
                        size_t stride);
/* Copy of s fit for a message: truncated, non-printable bytes as '?'. */
const char *ntc_quote(char *buf, size_t len, const char *s);
int ntc_format_duration(nt_ns d, char *buf, size_t len);
int ntc_format_size(uint64_t n, char *buf, size_t len);

/* ---- glob.c: shell patterns, allocation-free ---- */

/* NULL if `pat` is a usable pattern, else why not. */
const char *ntc_glob_check(const char *pat);
/* `pathname`: '*', '?' and [...] never match '/' (fnmatch FNM_PATHNAME). */
int ntc_glob_match(const char *pat, const char *str, int pathname);

/* ---- config.c: the config object ---- */

/* Index of each field of struct nt_settings, as a bit in a set-mask. */
enum ntc_setting {
    NTC_S_CONNECT, NTC_S_READ, NTC_S_WRITE, NTC_S_IDLE, NTC_S_REQUEST,
    NTC_S_LIFETIME, NTC_S_COALESCE, NTC_S_COALESCE_DELAY, NTC_S_COALESCE_MODE,
    NTC_S_TIMEOUT_ERRNO, NTC_S_EXPIRE_ACTION, NTC_S_COUNT
};

struct ntc_rule {
    char *name;
    int line;                 /* of its [rule NAME] header */
    int dir;                  /* enum nt_dir; ANY matches both */
    struct ntc_ports local_ports, remote_ports;  /* n == 0: any */
    struct ntc_cidrs remotes;                    /* n == 0: any */
    char *unix_path, *program;                   /* NULL: any */
    struct nt_settings own;   /* what the rule sets itself... */
    uint32_t own_mask;        /* ...as 1u << enum ntc_setting */
    struct nt_settings eff;   /* own over [defaults]: what nt_config_match returns */
};

struct nt_config {
    struct nt_global global;
    struct nt_settings defaults;
    struct ntc_rule *rules;
    size_t n_rules, cap_rules;
    int governs;
};

struct nt_config *ntc_config_new(void);
struct ntc_rule *ntc_config_add_rule(struct nt_config *cfg, const char *name,
                                     int line);
/* Recompute every rule's effective settings from [defaults]. */
void ntc_config_resolve(struct nt_config *cfg);
void ntc_settings_default(struct nt_settings *s);

/* ---- keys.c: the table of keys and how each one is set ---- */

enum ntc_scope { NTC_IN_GLOBAL = 1, NTC_IN_DEFAULTS = 2, NTC_IN_RULE = 4 };
enum ntc_target { NTC_T_GLOBAL, NTC_T_SETTINGS, NTC_T_RULE };

/* One value to set. A setter reports each problem it finds (every bad item
 * of a list) through `report`, and returns -1 if there was any. */
struct ntc_value {
    const char *key, *val;
    void (*report)(void *rctx, const char *msg);
    void *rctx;
};

struct ntc_key {
    const char *name;
    unsigned scope;           /* enum ntc_scope bits */
    enum ntc_target target;
    size_t offset;            /* of the field within the target struct */
    int setting;              /* enum ntc_setting, or -1 */
    int (*set)(void *field, struct ntc_value *v);
};

const struct ntc_key *ntc_key_find(const char *name, size_t *index);
size_t ntc_key_count(void);
/* "unknown key 'x' (did you mean 'y'?)" */
void ntc_unknown_key_msg(const char *key, char *buf, size_t len);
/* "'x' is only valid in ..." */
void ntc_wrong_scope_msg(const struct ntc_key *k, char *buf, size_t len);
/* Applies k to the matching object, setting the rule's mask if needed. */
int ntc_key_apply(const struct ntc_key *k, struct nt_global *g,
                  struct nt_settings *s, struct ntc_rule *r,
                  struct ntc_value *v);
/* Names of event bits, in enum order; NULL past the end. */
const char *ntc_event_name(unsigned bit_index);

/* ---- files.c ---- */

/* Reads a regular file of at most NTC_MAX_FILE bytes without ever blocking.
 * On failure returns -1 with a message in err. */
int ntc_read_file(const char *path, char **text, size_t *len, char *err,
                  size_t errlen);

#endif
