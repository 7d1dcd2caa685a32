/* The config object: creation, built-in defaults, rule resolution,
 * NETTIMEO_OPTIONS, and freeing. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Where each enum ntc_setting lives in struct nt_settings, so that a rule's
 * own values can be laid over [defaults] field by field. */
static const struct { size_t off, size; } setting_field[NTC_S_COUNT] = {
#define F(idx, field) [idx] = { offsetof(struct nt_settings, field), \
                                sizeof(((struct nt_settings *)0)->field) }
    F(NTC_S_CONNECT, connect_timeout),
    F(NTC_S_READ, read_timeout),
    F(NTC_S_WRITE, write_timeout),
    F(NTC_S_IDLE, idle_timeout),
    F(NTC_S_REQUEST, request_timeout),
    F(NTC_S_LIFETIME, max_lifetime),
    F(NTC_S_COALESCE, coalesce),
    F(NTC_S_COALESCE_DELAY, coalesce_delay),
    F(NTC_S_COALESCE_MODE, coalesce_mode),
    F(NTC_S_TIMEOUT_ERRNO, timeout_errno),
    F(NTC_S_EXPIRE_ACTION, expire_action),
#undef F
};

void ntc_settings_default(struct nt_settings *s)
{
    memset(s, 0, sizeof *s);
    s->coalesce_delay = 1000000; /* 1ms */
    s->coalesce_mode = NT_COALESCE_BUFFER;
    s->expire_action = NT_EXPIRE_SHUTDOWN;
    s->timeout_errno = ETIMEDOUT;
    s->rule = NULL;
}

static void global_default(struct nt_global *g)
{
    memset(g, 0, sizeof *g);
    strcpy(g->log, "stderr");
    g->events = NT_EV_DEFAULT;
    g->backtrace = 16;
    g->sigpipe_ignore = 0;
    g->rate_limit = 50;
    g->inherit = 1;
}

struct nt_config *ntc_config_new(void)
{
    struct nt_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return NULL;
    global_default(&cfg->global);
    ntc_settings_default(&cfg->defaults);
    return cfg;
}

struct nt_config *nt_config_default(void)
{
    return ntc_config_new();
}

struct ntc_rule *ntc_config_add_rule(struct nt_config *cfg, const char *name,
                                     int line)
{
    if (cfg->n_rules == cfg->cap_rules) {
        size_t cap = cfg->cap_rules ? cfg->cap_rules * 2 : 8;
        struct ntc_rule *r = realloc(cfg->rules, cap * sizeof *r);
        if (!r)
            return NULL;
        cfg->rules = r;
        cfg->cap_rules = cap;
    }
    struct ntc_rule *r = &cfg->rules[cfg->n_rules];
    memset(r, 0, sizeof *r);
    r->name = strdup(name);
    if (!r->name)
        return NULL;
    r->line = line;
    r->dir = NT_DIR_ANY;
    ntc_settings_default(&r->own);
    cfg->n_rules++;
    return r;
}

static void overlay(struct nt_settings *dst, const struct nt_settings *src,
                    uint32_t mask)
{
    for (int i = 0; i < NTC_S_COUNT; i++)
        if (mask & (1u << i))
            memcpy((char *)dst + setting_field[i].off,
                   (const char *)src + setting_field[i].off,
                   setting_field[i].size);
}

static int settings_govern(const struct nt_settings *s)
{
    return s->connect_timeout || s->read_timeout || s->write_timeout ||
           s->idle_timeout || s->request_timeout || s->max_lifetime ||
           s->coalesce;
}

void ntc_config_resolve(struct nt_config *cfg)
{
    cfg->defaults.rule = NULL;
    cfg->governs = settings_govern(&cfg->defaults);
    for (size_t i = 0; i < cfg->n_rules; i++) {
        struct ntc_rule *r = &cfg->rules[i];
        r->eff = cfg->defaults;
        overlay(&r->eff, &r->own, r->own_mask);
        r->eff.rule = r->name;
        cfg->governs |= settings_govern(&r->eff);
    }
}

void nt_config_free(struct nt_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->n_rules; i++) {
        struct ntc_rule *r = &cfg->rules[i];
        free(r->name);
        free(r->local_ports.v);
        free(r->remote_ports.v);
        free(r->remotes.v);
        free(r->unix_path);
        free(r->program);
    }
    free(cfg->rules);
    free(cfg);
}

const struct nt_global *nt_config_global(const struct nt_config *cfg)
{
    return &cfg->global;
}

int nt_config_governs(const struct nt_config *cfg)
{
    return cfg && cfg->governs;
}

/* ---- NETTIMEO_OPTIONS ---- */

struct options_run {
    nt_diag_fn diag;
    void *ctx;
    int errors;
};

static void options_error(void *r, const char *msg)
{
    struct options_run *run = r;
    if (run->diag && run->errors < NTC_MAX_ERRORS)
        run->diag(run->ctx, "NETTIMEO_OPTIONS", 0, msg);
    run->errors++;
}

/* One "key=value" item onto *s; reports and returns -1 if bad. */
static int apply_option(struct options_run *run, char *item,
                        struct nt_settings *s)
{
    char msg[NTC_MSG], q[80];
    char *eq = strchr(item, '=');
    const struct ntc_key *k;

    if (!eq) {
        snprintf(msg, sizeof msg, "missing '=' in '%s' (expected key=value)",
                 ntc_quote(q, sizeof q, item));
        options_error(run, msg);
        return -1;
    }
    *eq = '\0';
    struct ntc_value v = { item, eq + 1, options_error, run };
    if (!(k = ntc_key_find(item, NULL)))
        ntc_unknown_key_msg(item, msg, sizeof msg);
    else if (!(k->scope & NTC_IN_DEFAULTS))
        snprintf(msg, sizeof msg, "'%s' cannot be set in NETTIMEO_OPTIONS, "
                 "which takes [defaults] keys only", k->name);
    else if (!*v.val)
        snprintf(msg, sizeof msg, "missing value for '%s'", k->name);
    else
        return ntc_key_apply(k, NULL, s, NULL, &v);
    options_error(run, msg);
    return -1;
}

int nt_config_apply_options(struct nt_config *cfg, const char *options,
                            nt_diag_fn diag, void *ctx)
{
    struct options_run run = { diag, ctx, 0 };
    struct nt_settings s = cfg->defaults;  /* cfg unchanged on error */
    const char *p = options ? options : "";

    while (*p) {
        while (ntc_is_space(*p))
            p++;
        const char *start = p;
        while (*p && !ntc_is_space(*p))
            p++;
        size_t n = (size_t)(p - start);
        if (n == 0)
            break;
        char *item = strndup(start, n);
        if (!item) {
            options_error(&run, "out of memory");
            break;
        }
        apply_option(&run, item, &s);  /* later items win over earlier */
        free(item);
    }
    if (run.errors)
        return -1;
    cfg->defaults = s;
    ntc_config_resolve(cfg);
    return 0;
}
