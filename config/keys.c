/* The keys of the format: where each may appear, and how its value is
 * checked and stored. Adding a key means one row in `keys` below. */
#define _GNU_SOURCE
#include "internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COUNT(a) (sizeof(a) / sizeof *(a))

__attribute__((format(printf, 2, 3)))
static int fail(struct ntc_value *v, const char *fmt, ...)
{
    char msg[NTC_MSG];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    v->report(v->rctx, msg);
    return -1;
}

/* "bad KIND 'ITEM' for 'KEY': WHY" */
static int fail_value(struct ntc_value *v, const char *kind, const char *item,
                      const char *why)
{
    char q[80];
    return fail(v, "bad %s '%s' for '%s': %s", kind,
                ntc_quote(q, sizeof q, item), v->key, why);
}

/* ---- settings ---- */

static int set_duration(void *field, struct ntc_value *v)
{
    const char *why;
    return ntc_duration(v->val, field, &why) == 0
               ? 0 : fail_value(v, "duration", v->val, why);
}

static int set_coalesce(void *field, struct ntc_value *v)
{
    const char *why;
    uint64_t n;
    if (ntc_size(v->val, &n, &why) != 0)
        return fail_value(v, "size", v->val, why);
    if (n > NTC_MAX_COALESCE)
        return fail_value(v, "size", v->val, "too large (at most 16MiB)");
    *(uint32_t *)field = (uint32_t)n;
    return 0;
}

/* A value from a fixed set of names; `expected` lists them for the user. */
static int choose(struct ntc_value *v, const struct ntc_choice *c, size_t n,
                  const char *expected, int *out)
{
    if (ntc_choose(v->val, c, n, out) == 0)
        return 0;
    return fail_value(v, "value", v->val, expected);
}

/* The same, into one of the uint8_t enum fields of struct nt_settings. */
static int choose_u8(void *field, struct ntc_value *v,
                     const struct ntc_choice *c, size_t n, const char *expected)
{
    int x;
    if (choose(v, c, n, expected, &x) != 0)
        return -1;
    *(uint8_t *)field = (uint8_t)x;
    return 0;
}

static int set_coalesce_mode(void *field, struct ntc_value *v)
{
    static const struct ntc_choice c[] = {
        { "buffer", NT_COALESCE_BUFFER }, { "cork", NT_COALESCE_CORK } };
    return choose_u8(field, v, c, COUNT(c), "expected buffer or cork");
}

static int set_expire_action(void *field, struct ntc_value *v)
{
    static const struct ntc_choice c[] = {
        { "shutdown", NT_EXPIRE_SHUTDOWN }, { "reset", NT_EXPIRE_RESET } };
    return choose_u8(field, v, c, COUNT(c), "expected shutdown or reset");
}

static int set_timeout_errno(void *field, struct ntc_value *v)
{
    static const struct ntc_choice c[] = {
        { "ETIMEDOUT", ETIMEDOUT }, { "EAGAIN", EAGAIN },
        { "EWOULDBLOCK", EAGAIN } };
    return choose(v, c, COUNT(c), "expected ETIMEDOUT or EAGAIN", field);
}

/* ---- [global] ---- */

static int set_log(void *field, struct ntc_value *v)
{
    size_t n = strlen(v->val);
    if (n >= sizeof(((struct nt_global *)0)->log))
        return fail(v, "value of 'log' too long (%zu bytes, at most 511)", n);
    memcpy(field, v->val, n + 1);
    return 0;
}

static const struct { const char *name; uint32_t bit; } events[] = {
    { "epipe", NT_EV_EPIPE }, { "econnreset", NT_EV_ECONNRESET },
    { "timeout", NT_EV_TIMEOUT }, { "flush_error", NT_EV_FLUSH_ERROR },
    { "config_error", NT_EV_CONFIG_ERROR },
    { "config_loaded", NT_EV_CONFIG_LOADED },
    { "suppressed", NT_EV_SUPPRESSED }, { "connect", NT_EV_CONNECT },
    { "accept", NT_EV_ACCEPT }, { "close", NT_EV_CLOSE },
    { "abandoned", NT_EV_ABANDONED },
};

const char *ntc_event_name(unsigned bit_index)
{
    for (size_t i = 0; i < COUNT(events); i++)
        if (events[i].bit == 1u << bit_index)
            return events[i].name;
    return NULL;
}

static int event_bits(const char *name, uint32_t *bits)
{
    if (strcasecmp(name, "all") == 0) {
        *bits = NT_EV_ALL;
        return 0;
    }
    if (strcasecmp(name, "none") == 0) {
        *bits = 0;
        return 0;
    }
    for (size_t i = 0; i < COUNT(events); i++) {
        if (strcasecmp(name, events[i].name) == 0) {
            *bits = events[i].bit;
            return 0;
        }
    }
    return -1;
}

static int unknown_event(struct ntc_value *v, const char *tok)
{
    char q[80];
    const char *near = ntc_nearest(tok, events, COUNT(events), sizeof *events);
    ntc_quote(q, sizeof q, tok);
    if (near)
        return fail(v, "unknown event '%s' in 'events' (did you mean '%s'?)",
                    q, near);
    return fail(v, "unknown event '%s' in 'events' (known: epipe econnreset "
                "timeout abandoned flush_error config_error config_loaded suppressed "
                "connect accept close, or all)", q);
}

static int set_events(void *field, struct ntc_value *v)
{
    /* config_error and suppressed report on nettimeo itself: always on. */
    uint32_t all = NT_EV_CONFIG_ERROR | NT_EV_SUPPRESSED, bits;
    const char *cur = v->val;
    char tok[64];
    int r, seen = 0, bad = 0;

    while ((r = ntc_next_item(&cur, tok, sizeof tok)) != 0) {
        seen = 1;
        if (r > 0 && event_bits(tok, &bits) == 0)
            all |= bits;
        else
            bad = unknown_event(v, tok);
    }
    if (!seen)
        return fail(v, "missing value for 'events'");
    if (bad)
        return -1;
    *(uint32_t *)field = all;
    return 0;
}

static int set_backtrace(void *field, struct ntc_value *v)
{
    uint64_t n;
    if (ntc_uint(v->val, NTC_MAX_BACKTRACE, &n) != 0)
        return fail_value(v, "value", v->val, "expected frames 0..64");
    *(int *)field = (int)n;
    return 0;
}

static int set_sigpipe(void *field, struct ntc_value *v)
{
    static const struct ntc_choice c[] = { { "keep", 0 }, { "ignore", 1 } };
    return choose(v, c, COUNT(c), "expected keep or ignore", field);
}

static int set_rate_limit(void *field, struct ntc_value *v)
{
    char num[24];
    const char *slash = strchr(v->val, '/');
    size_t n = slash ? (size_t)(slash - v->val) : strlen(v->val);
    uint64_t rate;

    if (strcasecmp(v->val, "off") == 0) {
        *(uint32_t *)field = 0;
        return 0;
    }
    if (n >= sizeof num || (slash && strcmp(slash, "/s") != 0))
        goto bad;
    memcpy(num, v->val, n);
    num[n] = '\0';
    if (ntc_uint(num, NTC_MAX_RATE, &rate) != 0)
        goto bad;
    *(uint32_t *)field = (uint32_t)rate;
    return 0;
bad:
    return fail_value(v, "value", v->val, "expected events per second, "
                      "e.g. 50/s or 50 (at most 1000000); 0 or off: unlimited");
}

static int set_inherit(void *field, struct ntc_value *v)
{
    static const struct ntc_choice c[] = {
        { "yes", 1 }, { "no", 0 }, { "true", 1 }, { "false", 0 },
        { "on", 1 }, { "off", 0 }, { "1", 1 }, { "0", 0 } };
    return choose(v, c, COUNT(c), "expected yes or no", field);
}

/* ---- [rule] match keys ---- */

static int set_direction(void *field, struct ntc_value *v)
{
    static const struct ntc_choice c[] = {
        { "inbound", NT_DIR_INBOUND }, { "outbound", NT_DIR_OUTBOUND },
        { "any", NT_DIR_ANY } };
    return choose(v, c, COUNT(c), "expected inbound, outbound or any", field);
}

/* Parses every item of the list into a fresh array of `size`-byte elements,
 * reporting each bad one; replaces *vec / *n only if all of them are good. */
static int set_list(struct ntc_value *v, void **vec, size_t *n, size_t size,
                    const char *kind,
                    int (*item)(const char *, void *, const char **))
{
    const char *cur = v->val, *why;
    char tok[128];
    size_t count = 0, cap = 0;
    char *arr = NULL;
    int r, bad = 0;

    while ((r = ntc_next_item(&cur, tok, sizeof tok)) != 0) {
        if (count == cap) {
            char *grown = reallocarray(arr, cap ? cap * 2 : 4, size);
            if (!grown) {
                free(arr);
                return fail(v, "out of memory");
            }
            arr = grown;
            cap = cap ? cap * 2 : 4;
        }
        if (r < 0)
            bad = fail_value(v, kind, tok, "item too long");
        else if (item(tok, arr + count * size, &why) != 0)
            bad = fail_value(v, kind, tok, why);
        else
            count++;
    }
    if (!bad && count == 0)
        bad = fail(v, "missing value for '%s'", v->key);
    if (bad) {
        free(arr);
        return -1;
    }
    free(*vec);
    *vec = arr;
    *n = count;
    return 0;
}

static int port_item(const char *s, void *out, const char **why)
{
    return ntc_port_item(s, out, why);
}

static int cidr_item(const char *s, void *out, const char **why)
{
    return ntc_cidr_item(s, out, why);
}

static int set_ports(void *field, struct ntc_value *v)
{
    struct ntc_ports *p = field;
    return set_list(v, (void **)&p->v, &p->n, sizeof *p->v, "port", port_item);
}

static int set_cidrs(void *field, struct ntc_value *v)
{
    struct ntc_cidrs *c = field;
    return set_list(v, (void **)&c->v, &c->n, sizeof *c->v, "CIDR", cidr_item);
}

static int set_glob(void *field, struct ntc_value *v)
{
    const char *why = ntc_glob_check(v->val);
    char *copy;
    if (why)
        return fail_value(v, "pattern", v->val, why);
    if (!(copy = strdup(v->val)))
        return fail(v, "out of memory");
    free(*(char **)field);
    *(char **)field = copy;
    return 0;
}

/* ---- the table ---- */

#define GLOBAL(name, field, fn) \
    { name, NTC_IN_GLOBAL, NTC_T_GLOBAL, offsetof(struct nt_global, field), -1, fn }
#define SETTING(name, field, idx, fn)                                        \
    { name, NTC_IN_DEFAULTS | NTC_IN_RULE, NTC_T_SETTINGS,                   \
      offsetof(struct nt_settings, field), idx, fn }
#define MATCH(name, field, fn) \
    { name, NTC_IN_RULE, NTC_T_RULE, offsetof(struct ntc_rule, field), -1, fn }

static const struct ntc_key keys[] = {
    GLOBAL("log", log, set_log),
    GLOBAL("events", events, set_events),
    GLOBAL("backtrace", backtrace, set_backtrace),
    GLOBAL("sigpipe", sigpipe_ignore, set_sigpipe),
    GLOBAL("rate_limit", rate_limit, set_rate_limit),
    GLOBAL("inherit", inherit, set_inherit),
    SETTING("connect_timeout", connect_timeout, NTC_S_CONNECT, set_duration),
    SETTING("read_timeout", read_timeout, NTC_S_READ, set_duration),
    SETTING("write_timeout", write_timeout, NTC_S_WRITE, set_duration),
    SETTING("idle_timeout", idle_timeout, NTC_S_IDLE, set_duration),
    SETTING("request_timeout", request_timeout, NTC_S_REQUEST, set_duration),
    SETTING("max_lifetime", max_lifetime, NTC_S_LIFETIME, set_duration),
    SETTING("coalesce", coalesce, NTC_S_COALESCE, set_coalesce),
    SETTING("coalesce_delay", coalesce_delay, NTC_S_COALESCE_DELAY, set_duration),
    SETTING("coalesce_mode", coalesce_mode, NTC_S_COALESCE_MODE, set_coalesce_mode),
    SETTING("timeout_errno", timeout_errno, NTC_S_TIMEOUT_ERRNO, set_timeout_errno),
    SETTING("expire_action", expire_action, NTC_S_EXPIRE_ACTION, set_expire_action),
    MATCH("direction", dir, set_direction),
    MATCH("local_port", local_ports, set_ports),
    MATCH("remote_port", remote_ports, set_ports),
    MATCH("remote", remotes, set_cidrs),
    MATCH("unix_path", unix_path, set_glob),
    MATCH("program", program, set_glob),
};

_Static_assert(COUNT(keys) <= NTC_MAX_KEYS, "raise NTC_MAX_KEYS");

size_t ntc_key_count(void)
{
    return COUNT(keys);
}

const struct ntc_key *ntc_key_find(const char *name, size_t *index)
{
    for (size_t i = 0; i < COUNT(keys); i++) {
        if (strcmp(name, keys[i].name) == 0) {
            if (index)
                *index = i;
            return &keys[i];
        }
    }
    return NULL;
}

void ntc_unknown_key_msg(const char *key, char *buf, size_t len)
{
    char q[80];
    const char *near = ntc_nearest(key, keys, COUNT(keys), sizeof *keys);
    ntc_quote(q, sizeof q, key);
    if (near)
        snprintf(buf, len, "unknown key '%s' (did you mean '%s'?)", q, near);
    else
        snprintf(buf, len, "unknown key '%s'", q);
}

void ntc_wrong_scope_msg(const struct ntc_key *k, char *buf, size_t len)
{
    const char *where = k->scope == NTC_IN_GLOBAL ? "the [global] section"
                      : k->scope == NTC_IN_RULE   ? "a [rule] section"
                                                  : "[defaults] or a [rule] section";
    snprintf(buf, len, "'%s' is only valid in %s", k->name, where);
}

int ntc_key_apply(const struct ntc_key *k, struct nt_global *g,
                  struct nt_settings *s, struct ntc_rule *r,
                  struct ntc_value *v)
{
    void *obj = k->target == NTC_T_GLOBAL ? (void *)g
              : k->target == NTC_T_SETTINGS ? (void *)s : (void *)r;
    if (k->set((char *)obj + k->offset, v) != 0)
        return -1;
    if (r && k->setting >= 0)
        r->own_mask |= 1u << k->setting;
    return 0;
}
