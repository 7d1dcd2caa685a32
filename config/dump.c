/* The effective configuration, printed in the config format itself: what
 * `nettimeo check` shows. The output parses back to the same settings;
 * values a rule inherits from [defaults] are marked by a comment. */
#include "internal.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#define COMMENT_COLUMN 32

static void dump_events(uint32_t events, FILE *out)
{
    const uint32_t always = NT_EV_CONFIG_ERROR | NT_EV_SUPPRESSED;
    const char *sep = "";

    fputs("events = ", out);
    if ((events | always) == NT_EV_ALL) {
        fputs("all\n", out);
        return;
    }
    for (unsigned i = 0; i < 32; i++) {
        const char *name = ntc_event_name(i);
        if (name && (events & (1u << i))) {
            fprintf(out, "%s%s", sep, name);
            sep = " ";
        }
    }
    fputc('\n', out);
}

static void dump_global(const struct nt_global *g, FILE *out)
{
    fprintf(out, "[global]\nlog = %s\n", g->log);
    dump_events(g->events, out);
    fprintf(out, "backtrace = %d\n", g->backtrace);
    fprintf(out, "sigpipe = %s\n", g->sigpipe_ignore ? "ignore" : "keep");
    if (g->rate_limit)
        fprintf(out, "rate_limit = %u/s\n", (unsigned)g->rate_limit);
    else
        fputs("rate_limit = off\n", out);
    fprintf(out, "inherit = %s\n", g->inherit ? "yes" : "no");
}

/* "key = value", then "# from [defaults]" unless the rule set it. */
static void dump_line(FILE *out, const char *key, const char *value,
                      int inherited)
{
    int n = fprintf(out, "%s = %s", key, value);
    if (inherited)
        fprintf(out, "%*s# from [defaults]",
                n < COMMENT_COLUMN ? COMMENT_COLUMN - n : 1, "");
    fputc('\n', out);
}

static void dump_settings(const struct nt_settings *s, uint32_t own_mask,
                          int in_rule, FILE *out)
{
    static const struct { const char *key; size_t off; int idx; } durations[] = {
#define D(field, idx) { #field, offsetof(struct nt_settings, field), idx }
        D(connect_timeout, NTC_S_CONNECT), D(read_timeout, NTC_S_READ),
        D(write_timeout, NTC_S_WRITE), D(idle_timeout, NTC_S_IDLE),
        D(request_timeout, NTC_S_REQUEST), D(max_lifetime, NTC_S_LIFETIME),
#undef D
    };
    char v[32];
#define INHERITED(idx) (in_rule && !(own_mask & (1u << (idx))))

    for (size_t i = 0; i < sizeof durations / sizeof *durations; i++) {
        nt_ns d;
        memcpy(&d, (const char *)s + durations[i].off, sizeof d);
        ntc_format_duration(d, v, sizeof v);
        dump_line(out, durations[i].key, v, INHERITED(durations[i].idx));
    }
    ntc_format_size(s->coalesce, v, sizeof v);
    dump_line(out, "coalesce", v, INHERITED(NTC_S_COALESCE));
    ntc_format_duration(s->coalesce_delay, v, sizeof v);
    dump_line(out, "coalesce_delay", v, INHERITED(NTC_S_COALESCE_DELAY));
    dump_line(out, "coalesce_mode",
              s->coalesce_mode == NT_COALESCE_CORK ? "cork" : "buffer",
              INHERITED(NTC_S_COALESCE_MODE));
    dump_line(out, "timeout_errno",
              s->timeout_errno == EAGAIN ? "EAGAIN" : "ETIMEDOUT",
              INHERITED(NTC_S_TIMEOUT_ERRNO));
    dump_line(out, "expire_action",
              s->expire_action == NT_EXPIRE_RESET ? "reset" : "shutdown",
              INHERITED(NTC_S_EXPIRE_ACTION));
#undef INHERITED
}

static void dump_ports(const char *key, const struct ntc_ports *p, FILE *out)
{
    if (p->n == 0)
        return;
    fprintf(out, "%s = ", key);
    for (size_t i = 0; i < p->n; i++) {
        fprintf(out, "%s%u", i ? "," : "", (unsigned)p->v[i].lo);
        if (p->v[i].hi != p->v[i].lo)
            fprintf(out, "-%u", (unsigned)p->v[i].hi);
    }
    fputc('\n', out);
}

static void dump_remotes(const struct ntc_cidrs *c, FILE *out)
{
    char addr[INET6_ADDRSTRLEN];
    if (c->n == 0)
        return;
    fputs("remote =", out);
    for (size_t i = 0; i < c->n; i++) {
        inet_ntop(c->v[i].v6 ? AF_INET6 : AF_INET, c->v[i].addr, addr,
                  sizeof addr);
        fprintf(out, " %s/%u", addr, (unsigned)c->v[i].prefix);
    }
    fputc('\n', out);
}

static void dump_rule(const struct ntc_rule *r, FILE *out)
{
    static const char *const dirs[] = { "any", "inbound", "outbound" };
    int any = r->dir == NT_DIR_ANY && !r->local_ports.n && !r->remote_ports.n &&
              !r->remotes.n && !r->unix_path && !r->program;

    fprintf(out, "\n[rule %s]\n", r->name);
    if (any)
        fputs("# no match keys: matches every connection\n", out);
    if (r->dir != NT_DIR_ANY)
        fprintf(out, "direction = %s\n", dirs[r->dir]);
    dump_ports("local_port", &r->local_ports, out);
    dump_remotes(&r->remotes, out);
    dump_ports("remote_port", &r->remote_ports, out);
    if (r->unix_path)
        fprintf(out, "unix_path = %s\n", r->unix_path);
    if (r->program)
        fprintf(out, "program = %s\n", r->program);
    dump_settings(&r->eff, r->own_mask, 1, out);
}

void nt_config_dump(const struct nt_config *cfg, FILE *out)
{
    dump_global(&cfg->global, out);
    fputs("\n[defaults]\n", out);
    dump_settings(&cfg->defaults, 0, 0, out);
    for (size_t i = 0; i < cfg->n_rules; i++)
        dump_rule(&cfg->rules[i], out);
}
