/* Parsing and printing of single values: durations, sizes, ports, CIDRs,
 * enumerations, lists. Locale-independent on purpose: the host program may
 * have called setlocale(), and a config must mean the same everywhere. */
#define _GNU_SOURCE
#include "internal.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

int ntc_is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' ||
           c == '\v';
}

static int is_digit(int c)
{
    return c >= '0' && c <= '9';
}

/* Leading decimal digits of *s into *out; advances *s. -1 on overflow. */
static int scan_digits(const char **s, uint64_t *out, int *ndigits)
{
    uint64_t v = 0;
    int n = 0;
    for (; is_digit(**s); (*s)++, n++) {
        if (__builtin_mul_overflow(v, 10, &v) ||
            __builtin_add_overflow(v, (uint64_t)(**s - '0'), &v))
            return -1;
    }
    *out = v;
    *ndigits = n;
    return 0;
}

int ntc_uint(const char *s, uint64_t max, uint64_t *out)
{
    int n;
    if (scan_digits(&s, out, &n) != 0 || n == 0 || *s != '\0' || *out > max)
        return -1;
    return 0;
}

/* ---- durations ---- */

struct unit { const char *name; int64_t mult; };

static const struct unit duration_units[] = {
    { "ns", 1 },
    { "us", 1000 },
    { "\xc2\xb5s", 1000 },          /* µs */
    { "ms", 1000000 },
    { "s", 1000000000 },
    { "m", 60LL * 1000000000 },
    { "h", 3600LL * 1000000000 },
};

static const struct unit *find_unit(const char *name, const struct unit *u,
                                    size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(name, u[i].name) == 0)
            return &u[i];
    return NULL;
}

/* Fraction digits after a '.', at most 18 kept (more is below 1 ns). */
static void scan_fraction(const char **s, uint64_t *frac, uint64_t *scale)
{
    *frac = 0;
    *scale = 1;
    for (; is_digit(**s); (*s)++) {
        if (*scale < 1000000000000000000ULL) {
            *frac = *frac * 10 + (uint64_t)(**s - '0');
            *scale *= 10;
        }
    }
}

int ntc_duration(const char *s, nt_ns *out, const char **why)
{
    uint64_t whole = 0, frac = 0, scale = 1;
    int n = 0;

    if (strcasecmp(s, "off") == 0) {
        *out = 0;
        return 0;
    }
    *why = "expected a number and a unit (250us, 500ms, 2s, 1.5s, 3m, 1h), "
           "or 0 or off";
    if (!is_digit(*s) && !(*s == '.' && is_digit(s[1])))
        return -1;
    if (scan_digits(&s, &whole, &n) != 0) {
        *why = "too large (at most 8760h)";
        return -1;
    }
    if (*s == '.') {
        s++;
        if (!is_digit(*s))
            return -1;
        scan_fraction(&s, &frac, &scale);
    }
    while (ntc_is_space(*s))
        s++;
    if (*s == '\0') {
        if (whole != 0 || frac != 0) {
            *why = "missing unit (write e.g. 5s or 500ms)";
            return -1;
        }
        *out = 0;
        return 0;
    }
    const struct unit *u = find_unit(s, duration_units,
                                     sizeof duration_units / sizeof *duration_units);
    if (!u) {
        *why = "unknown unit (use ns, us, ms, s, m or h)";
        return -1;
    }
    __int128 ns = (__int128)whole * u->mult +
                  (__int128)frac * u->mult / (__int128)scale;
    if (ns > NTC_MAX_DURATION) {
        *why = "too large (at most 8760h)";
        return -1;
    }
    if (ns == 0 && (whole != 0 || frac != 0)) {
        *why = "too small (less than 1ns)";
        return -1;
    }
    *out = (nt_ns)ns;
    return 0;
}

int nt_parse_duration(const char *s, nt_ns *out)
{
    const char *why;
    return s ? ntc_duration(s, out, &why) : -1;
}

/* Largest unit that divides d exactly, so that printing is lossless. */
int ntc_format_duration(nt_ns d, char *buf, size_t len)
{
    static const struct unit order[] = {
        { "h", 3600LL * 1000000000 }, { "m", 60LL * 1000000000 },
        { "s", 1000000000 }, { "ms", 1000000 }, { "us", 1000 }, { "ns", 1 },
    };
    if (d <= 0)
        return snprintf(buf, len, "off");
    for (size_t i = 0; i < sizeof order / sizeof *order; i++)
        if (d % order[i].mult == 0)
            return snprintf(buf, len, "%lld%s", (long long)(d / order[i].mult),
                            order[i].name);
    return snprintf(buf, len, "%lldns", (long long)d); /* not reached */
}

/* ---- sizes: binary multiples, k = K = KB = KiB = 1024 ---- */

static const struct unit size_units[] = {
    { "b", 1 },
    { "k", 1 << 10 }, { "kb", 1 << 10 }, { "kib", 1 << 10 },
    { "m", 1 << 20 }, { "mb", 1 << 20 }, { "mib", 1 << 20 },
    { "g", 1 << 30 }, { "gb", 1 << 30 }, { "gib", 1 << 30 },
};

int ntc_size(const char *s, uint64_t *out, const char **why)
{
    uint64_t v;
    int n;

    if (strcasecmp(s, "off") == 0) {
        *out = 0;
        return 0;
    }
    *why = "expected a whole number of bytes with an optional unit "
           "(k/KiB, m/MiB), or 0 or off";
    if (scan_digits(&s, &v, &n) != 0) {
        *why = "too large";
        return -1;
    }
    if (n == 0)
        return -1;
    while (ntc_is_space(*s))
        s++;
    if (*s == '\0') {
        *out = v;
        return 0;
    }
    const struct unit *u = find_unit(s, size_units,
                                     sizeof size_units / sizeof *size_units);
    if (!u) {
        *why = is_digit(*s) || *s == '.' ? *why
                                         : "unknown unit (use k/KiB or m/MiB)";
        return -1;
    }
    if (__builtin_mul_overflow(v, (uint64_t)u->mult, out)) {
        *why = "too large";
        return -1;
    }
    return 0;
}

int nt_parse_size(const char *s, uint64_t *out)
{
    const char *why;
    return s ? ntc_size(s, out, &why) : -1;
}

int ntc_format_size(uint64_t n, char *buf, size_t len)
{
    if (n == 0)
        return snprintf(buf, len, "off");
    if (n % (1u << 20) == 0)
        return snprintf(buf, len, "%lluMiB", (unsigned long long)(n >> 20));
    if (n % (1u << 10) == 0)
        return snprintf(buf, len, "%lluKiB", (unsigned long long)(n >> 10));
    return snprintf(buf, len, "%llu", (unsigned long long)n);
}

/* ---- ports and ranges ---- */

static int port_number(const char *s, const char *end, uint16_t *out)
{
    uint64_t v = 0;
    if (s == end || end - s > 5)
        return -1;
    for (; s < end; s++) {
        if (!is_digit(*s))
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v < 1 || v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

int ntc_port_item(const char *s, struct ntc_port_range *out, const char **why)
{
    const char *dash = strchr(s, '-');
    const char *end = s + strlen(s);

    *why = "expected a port 1..65535 or a range like 8000-8099";
    if (port_number(s, dash ? dash : end, &out->lo) != 0)
        return -1;
    out->hi = out->lo;
    if (dash && port_number(dash + 1, end, &out->hi) != 0)
        return -1;
    if (out->hi < out->lo) {
        *why = "range ends below its start";
        return -1;
    }
    return 0;
}

/* ---- CIDRs ---- */

static void clear_host_bits(uint8_t *addr, unsigned prefix, unsigned bytes)
{
    for (unsigned i = 0; i < bytes; i++) {
        unsigned keep = prefix >= 8 * (i + 1) ? 8
                      : prefix > 8 * i ? prefix - 8 * i : 0;
        addr[i] &= (uint8_t)(0xff00u >> keep);
    }
}

/* An IPv6 network inside ::ffff:0:0/96 is an IPv4 network: store it so, and
 * it matches both plain IPv4 peers and IPv4-mapped IPv6 peers. */
static void unmap_v4(struct ntc_cidr *c)
{
    static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
    if (!c->v6 || c->prefix < 96 || memcmp(c->addr, mapped, 12) != 0)
        return;
    memmove(c->addr, c->addr + 12, 4);
    memset(c->addr + 4, 0, 12);
    c->v6 = 0;
    c->prefix = (uint8_t)(c->prefix - 96);
}

int ntc_cidr_item(const char *s, struct ntc_cidr *out, const char **why)
{
    char addr[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    uint64_t prefix;

    memset(out, 0, sizeof *out);
    *why = "not an IPv4 or IPv6 address";
    if (alen == 0 || alen >= sizeof addr)
        return -1;
    memcpy(addr, s, alen);
    addr[alen] = '\0';
    if (inet_pton(AF_INET, addr, out->addr) == 1)
        out->v6 = 0;
    else if (inet_pton(AF_INET6, addr, out->addr) == 1)
        out->v6 = 1;
    else
        return -1;
    unsigned max = out->v6 ? 128 : 32;
    prefix = max;
    if (slash && ntc_uint(slash + 1, max, &prefix) != 0) {
        *why = out->v6 ? "prefix length must be 0..128"
                       : "prefix length must be 0..32";
        return -1;
    }
    out->prefix = (uint8_t)prefix;
    clear_host_bits(out->addr, out->prefix, out->v6 ? 16 : 4);
    unmap_v4(out);
    return 0;
}

/* ---- enumerations and lists ---- */

int ntc_choose(const char *s, const struct ntc_choice *c, size_t n, int *out)
{
    for (size_t i = 0; i < n; i++) {
        if (strcasecmp(s, c[i].name) == 0) {
            *out = c[i].value;
            return 0;
        }
    }
    return -1;
}

static int is_list_sep(int c)
{
    return c == ',' || ntc_is_space(c);
}

int ntc_next_item(const char **cursor, char *tok, size_t toklen)
{
    const char *s = *cursor;
    while (is_list_sep(*s))
        s++;
    if (*s == '\0') {
        *cursor = s;
        return 0;
    }
    const char *start = s;
    while (*s && !is_list_sep(*s))
        s++;
    *cursor = s;
    size_t n = (size_t)(s - start);
    if (n >= toklen) {
        /* Report the truncated item rather than nothing. */
        memcpy(tok, start, toklen - 1);
        tok[toklen - 1] = '\0';
        return -1;
    }
    memcpy(tok, start, n);
    tok[n] = '\0';
    return 1;
}

/* ---- messages ---- */

static char lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

/* Optimal string alignment distance (edits and adjacent swaps). Three rows
 * of bytes, because this may run on a small thread stack of the host
 * program; names over 63 bytes are never close to a known name anyway. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    uint8_t rows[3][64], *prev2 = rows[0], *prev = rows[1], *cur = rows[2];
    if (la > 63 || lb > 63)
        return (size_t)-1;
    for (size_t j = 0; j <= lb; j++)
        prev[j] = (uint8_t)j;
    for (size_t i = 1; i <= la; i++) {
        cur[0] = (uint8_t)i;
        for (size_t j = 1; j <= lb; j++) {
            unsigned best = prev[j - 1] + (lower(a[i - 1]) != lower(b[j - 1]));
            if (prev[j] + 1u < best)
                best = prev[j] + 1u;
            if (cur[j - 1] + 1u < best)
                best = cur[j - 1] + 1u;
            if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) &&
                lower(a[i - 2]) == lower(b[j - 1]) && prev2[j - 2] + 1u < best)
                best = prev2[j - 2] + 1u;
            cur[j] = (uint8_t)best;
        }
        uint8_t *t = prev2;
        prev2 = prev;
        prev = cur;
        cur = t;
    }
    return prev[lb];
}

const char *ntc_nearest(const char *word, const void *records, size_t n,
                        size_t stride)
{
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    size_t len = strlen(word);
    /* Up to 1 edit per 3 characters, at least 1, at most 3. */
    size_t limit = len / 3 < 1 ? 1 : len / 3 > 3 ? 3 : len / 3;

    for (size_t i = 0; i < n; i++) {
        const char *name;
        memcpy(&name, (const char *)records + i * stride, sizeof name);
        size_t d = edit_distance(word, name);
        if (d < best_d) {
            best_d = d;
            best = name;
        }
    }
    return best_d <= limit ? best : NULL;
}

const char *ntc_quote(char *buf, size_t len, const char *s)
{
    size_t i = 0;
    for (; s[i] && i + 1 < len; i++)
        buf[i] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
    buf[i] = '\0';
    if (s[i] && len > 4)
        memcpy(buf + len - 4, "...", 4);
    return buf;
}
