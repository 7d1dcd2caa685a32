/* The INI reader: lines, comments, section headers and key = value lines.
 * Every problem is reported and parsing goes on, so that one run of
 * `nettimeo check` shows them all; any problem makes the result NULL. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum section { SEC_NONE, SEC_GLOBAL, SEC_DEFAULTS, SEC_RULE, SEC_SKIP };

struct parser {
    struct nt_config *cfg;
    const char *file;
    nt_diag_fn diag;
    void *ctx;
    int line, errors;
    enum section sec;
    struct ntc_rule *rule;          /* current [rule]; moves on the next add */
    int global_line, defaults_line; /* first header of each, 0 if none yet */
    int key_line[NTC_MAX_KEYS];     /* where each key was set in this section */
};

static void report_msg(struct parser *p, int line, const char *msg)
{
    if (++p->errors <= NTC_MAX_ERRORS && p->diag)
        p->diag(p->ctx, p->file, line, msg);
}

__attribute__((format(printf, 3, 4)))
static void report(struct parser *p, int line, const char *fmt, ...)
{
    char msg[NTC_MSG];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    report_msg(p, line, msg);
}

/* Problems found by a key's setter belong to the current line. */
static void report_value(void *parser, const char *msg)
{
    struct parser *p = parser;
    report_msg(p, p->line, msg);
}

/* A '#' or ';' at the start or after a blank starts a comment, so that
 * "unix_path = /run/a;b" keeps its ';' but "x = 5s   # why" loses the rest. */
static void strip_comment(char *s)
{
    for (size_t i = 0; s[i]; i++) {
        if ((s[i] == '#' || s[i] == ';') && (i == 0 || ntc_is_space(s[i - 1]))) {
            s[i] = '\0';
            return;
        }
    }
}

static char *trim(char *s)
{
    while (ntc_is_space(*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && ntc_is_space(s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* ---- section headers ---- */

static void enter(struct parser *p, enum section sec)
{
    p->sec = sec;
    memset(p->key_line, 0, sizeof p->key_line);
}

static void single_header(struct parser *p, const char *what, const char *name,
                          int *first_line, enum section sec)
{
    char q[80];
    if (*name)
        report(p, p->line, "section [%s] takes no name, got '%s'", what,
               ntc_quote(q, sizeof q, name));
    if (*first_line)
        report(p, p->line, "section [%s] repeated (first at line %d)", what,
               *first_line);
    else
        *first_line = p->line;
    enter(p, sec);
}

static int good_rule_name(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > NTC_MAX_RULE_NAME)
        return 0;
    for (; *name; name++) {
        char c = *name;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.'))
            return 0;
    }
    return 1;
}

static void rule_header(struct parser *p, const char *name)
{
    char q[80];

    if (!*name) {
        report(p, p->line, "missing rule name (write [rule NAME])");
        enter(p, SEC_SKIP);
        return;
    }
    /* Names go into JSON events and `check` output: keep them plain. */
    if (!good_rule_name(name))
        report(p, p->line, "bad rule name '%s': use up to 64 letters, digits, "
               "'_', '-' or '.'", ntc_quote(q, sizeof q, name));
    for (size_t i = 0; i < p->cfg->n_rules; i++) {
        if (strcmp(p->cfg->rules[i].name, name) == 0) {
            report(p, p->line, "duplicate rule name '%s' (first at line %d)",
                   ntc_quote(q, sizeof q, name), p->cfg->rules[i].line);
            break;
        }
    }
    /* Even a misnamed or duplicate rule is read, to report its keys too. */
    p->rule = ntc_config_add_rule(p->cfg, name, p->line);
    if (!p->rule) {
        report(p, p->line, "out of memory");
        enter(p, SEC_SKIP);
        return;
    }
    enter(p, SEC_RULE);
}

static void unknown_section(struct parser *p, const char *word)
{
    static const char *const sections[] = { "global", "defaults", "rule" };
    char q[80];
    const char *near = ntc_nearest(word, sections, 3, sizeof *sections);

    ntc_quote(q, sizeof q, word);
    if (!*word)
        report(p, p->line, "empty section name (expected [global], "
               "[defaults] or [rule NAME])");
    else if (near)
        report(p, p->line, "unknown section '[%s]' (did you mean '[%s%s]'?)",
               q, near, strcmp(near, "rule") == 0 ? " NAME" : "");
    else
        report(p, p->line, "unknown section '[%s]' (expected [global], "
               "[defaults] or [rule NAME])", q);
    enter(p, SEC_SKIP);
}

static void section_header(struct parser *p, char *s)
{
    size_t n = strlen(s);
    char q[80];

    if (s[n - 1] != ']') {
        report(p, p->line, "missing ']' at the end of section header '%s'",
               ntc_quote(q, sizeof q, s));
        enter(p, SEC_SKIP);
        return;
    }
    s[n - 1] = '\0';
    char *word = trim(s + 1), *name = word;
    while (*name && !ntc_is_space(*name))
        name++;
    if (*name)
        *name++ = '\0';
    name = trim(name);

    if (strcmp(word, "global") == 0)
        single_header(p, "global", name, &p->global_line, SEC_GLOBAL);
    else if (strcmp(word, "defaults") == 0)
        single_header(p, "defaults", name, &p->defaults_line, SEC_DEFAULTS);
    else if (strcmp(word, "rule") == 0)
        rule_header(p, name);
    else
        unknown_section(p, word);
}

/* ---- key = value ---- */

static unsigned section_scope(enum section sec)
{
    return sec == SEC_GLOBAL ? NTC_IN_GLOBAL
         : sec == SEC_DEFAULTS ? NTC_IN_DEFAULTS : NTC_IN_RULE;
}

static void key_value(struct parser *p, char *s)
{
    char msg[NTC_MSG], q[80];
    char *eq = strchr(s, '=');
    size_t idx;

    if (p->sec == SEC_SKIP)     /* already reported at the header */
        return;
    if (!eq) {
        report(p, p->line, "missing '=' in '%s' (expected key = value)",
               ntc_quote(q, sizeof q, s));
        return;
    }
    *eq = '\0';
    char *key = trim(s), *val = trim(eq + 1);
    if (*val == '#' || *val == ';')    /* "key =# note": a comment, no value */
        *val = '\0';
    const struct ntc_key *k = ntc_key_find(key, &idx);
    if (!*key) {
        report(p, p->line, "missing key before '='");
    } else if (p->sec == SEC_NONE) {
        report(p, p->line, "'%s' is outside any section (start with [global], "
               "[defaults] or [rule NAME])", ntc_quote(q, sizeof q, key));
    } else if (!k) {
        ntc_unknown_key_msg(key, msg, sizeof msg);
        report_msg(p, p->line, msg);
    } else if (!(k->scope & section_scope(p->sec))) {
        ntc_wrong_scope_msg(k, msg, sizeof msg);
        report_msg(p, p->line, msg);
    } else if (!*val) {
        report(p, p->line, "missing value for '%s'", key);
    } else if (p->key_line[idx]) {
        report(p, p->line, "duplicate key '%s' (first set at line %d)", key,
               p->key_line[idx]);
    } else {
        struct ntc_value v = { key, val, report_value, p };
        int in_rule = p->sec == SEC_RULE;
        p->key_line[idx] = p->line;
        ntc_key_apply(k, &p->cfg->global,
                      in_rule ? &p->rule->own : &p->cfg->defaults,
                      in_rule ? p->rule : NULL, &v);
    }
}

static void parse_line(struct parser *p, char *s)
{
    strip_comment(s);
    s = trim(s);
    if (!*s)
        return;
    if (*s == '[')
        section_header(p, s);
    else
        key_value(p, s);
}

/* buf holds len bytes plus one spare byte; it is cut into lines in place. */
static void parse_lines(struct parser *p, char *buf, size_t len)
{
    char *s = buf, *end = buf + len;

    if (len >= 3 && memcmp(s, "\xef\xbb\xbf", 3) == 0)  /* UTF-8 BOM */
        s += 3;
    while (s < end) {
        char *eol = memchr(s, '\n', (size_t)(end - s));
        if (!eol)
            eol = end;
        p->line++;
        if (memchr(s, '\0', (size_t)(eol - s))) {
            report(p, p->line, "line contains a NUL byte");
        } else {
            *eol = '\0';
            parse_line(p, s);
        }
        s = eol + 1;
    }
}

/* Takes ownership of buf (len bytes + 1 spare). */
static struct nt_config *parse_buffer(char *buf, size_t len, const char *name,
                                      nt_diag_fn diag, void *ctx)
{
    struct parser p = { .file = name ? name : "(config)", .diag = diag,
                        .ctx = ctx };

    p.cfg = ntc_config_new();
    if (!p.cfg || !buf) {
        report(&p, 0, "out of memory");
    } else {
        parse_lines(&p, buf, len);
        if (p.errors > NTC_MAX_ERRORS && diag) {
            char msg[NTC_MSG];
            snprintf(msg, sizeof msg, "too many errors: %d more not shown",
                     p.errors - NTC_MAX_ERRORS);
            diag(ctx, p.file, p.line, msg);
        }
    }
    free(buf);
    if (p.errors) {
        nt_config_free(p.cfg);
        return NULL;
    }
    ntc_config_resolve(p.cfg);
    return p.cfg;
}

struct nt_config *nt_config_parse_string(const char *text, size_t len,
                                         const char *name, nt_diag_fn diag,
                                         void *ctx)
{
    int saved = errno;
    char *buf = malloc(len + 1);
    if (buf && len)
        memcpy(buf, text, len);
    struct nt_config *cfg = parse_buffer(buf, len, name, diag, ctx);
    errno = saved;
    return cfg;
}

struct nt_config *nt_config_parse_file(const char *path, nt_diag_fn diag,
                                       void *ctx)
{
    int saved = errno;
    char msg[NTC_MSG], *text;
    size_t len;
    struct nt_config *cfg = NULL;

    if (ntc_read_file(path, &text, &len, msg, sizeof msg) == 0)
        cfg = parse_buffer(text, len, path, diag, ctx);
    else if (diag)
        diag(ctx, path, 0, msg);
    errno = saved;
    return cfg;
}
