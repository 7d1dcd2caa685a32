/* Append-only JSON writer (see json.h). */
#include <string.h>

#include "audit/json.h"

void nt_j_init(struct nt_jbuf *b, char *p, size_t cap)
{
    b->p = p;
    b->len = 0;
    b->cap = cap;
    b->overflow = 0;
    b->need_comma = 0;
}

void nt_j_raw(struct nt_jbuf *b, const char *s, size_t n)
{
    if (b->overflow || n > b->cap - b->len) {
        b->overflow = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

void nt_j_cstr(struct nt_jbuf *b, const char *s)
{
    nt_j_raw(b, s, strlen(s));
}

static void put_char(struct nt_jbuf *b, char c)
{
    nt_j_raw(b, &c, 1);
}

static const char hexdigits[] = "0123456789abcdef";

/* Control characters, quote and backslash are escaped; other bytes pass
 * as they are (symbol names and paths are normally UTF-8 or ASCII).
 * Bytes >= 0x80 are escaped as \u00XX so a line is valid JSON even when a
 * path holds bytes that are not UTF-8. */
void nt_j_escaped(struct nt_jbuf *b, const char *s, size_t n)
{
    for (size_t i = 0; i < n && !b->overflow; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char e[2] = { '\\', (char)c };
            nt_j_raw(b, e, 2);
        } else if (c == '\n') {
            nt_j_raw(b, "\\n", 2);
        } else if (c == '\t') {
            nt_j_raw(b, "\\t", 2);
        } else if (c < 0x20 || c >= 0x7f) {
            char e[6] = { '\\', 'u', '0', '0', hexdigits[c >> 4],
                          hexdigits[c & 15] };
            nt_j_raw(b, e, 6);
        } else {
            put_char(b, (char)c);
        }
    }
}

void nt_j_strn(struct nt_jbuf *b, const char *s, size_t n)
{
    put_char(b, '"');
    nt_j_escaped(b, s, n);
    put_char(b, '"');
}

void nt_j_str(struct nt_jbuf *b, const char *s)
{
    nt_j_strn(b, s, strlen(s));
}

#define NT_CUT_MARK "...\""

void nt_j_str_fit(struct nt_jbuf *b, const char *s)
{
    size_t room = sizeof NT_CUT_MARK - 1;
    if (b->overflow || b->cap - b->len < room + 2) {
        b->overflow = 1;
        return;
    }
    b->cap -= room; /* keep space to close the literal */
    nt_j_str(b, s);
    b->cap += room;
    if (b->overflow) {
        b->overflow = 0; /* escapes are whole: the text ends cleanly */
        nt_j_raw(b, NT_CUT_MARK, room);
    }
}

size_t nt_fmt_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

void nt_j_u64(struct nt_jbuf *b, uint64_t v)
{
    char d[20];
    nt_j_raw(b, d, nt_fmt_u64(d, v));
}

void nt_j_i64(struct nt_jbuf *b, int64_t v)
{
    if (v < 0) {
        put_char(b, '-');
        nt_j_u64(b, (uint64_t)0 - (uint64_t)v);
    } else {
        nt_j_u64(b, (uint64_t)v);
    }
}

void nt_j_hex(struct nt_jbuf *b, uint64_t v)
{
    char d[18] = { '0', 'x' };
    int n = 0;
    for (int shift = 60; shift >= 0; shift -= 4) {
        unsigned nib = (unsigned)(v >> shift) & 15;
        if (nib || n || shift == 0)
            d[2 + n++] = hexdigits[nib];
    }
    nt_j_raw(b, d, (size_t)n + 2);
}

void nt_j_ms(struct nt_jbuf *b, int64_t ns)
{
    uint64_t mag = (uint64_t)ns;
    if (ns < 0) {
        put_char(b, '-');
        mag = (uint64_t)0 - mag;
    }
    uint64_t us = mag / 1000;
    nt_j_u64(b, us / 1000);
    unsigned frac = (unsigned)(us % 1000);
    if (!frac)
        return;
    char d[4] = { '.', (char)('0' + frac / 100), (char)('0' + frac / 10 % 10),
                  (char)('0' + frac % 10) };
    size_t n = 4;
    while (d[n - 1] == '0')
        n--;
    nt_j_raw(b, d, n);
}

void nt_j_open(struct nt_jbuf *b, char bracket)
{
    put_char(b, bracket);
    b->need_comma = 0;
}

void nt_j_close(struct nt_jbuf *b, char bracket)
{
    put_char(b, bracket);
    b->need_comma = 1;
}

void nt_j_elem(struct nt_jbuf *b)
{
    if (b->need_comma)
        put_char(b, ',');
    b->need_comma = 1;
}

void nt_j_key(struct nt_jbuf *b, const char *key)
{
    nt_j_elem(b);
    nt_j_str(b, key);
    put_char(b, ':');
}

static void put_bool(struct nt_jbuf *b, int v)
{
    nt_j_cstr(b, v ? "true" : "false");
}

/* "key":value members, one per value writer. */
#define NT_J_MEMBER(name, type, write_value)                                 \
    void name(struct nt_jbuf *b, const char *key, type v)                   \
    {                                                                        \
        nt_j_key(b, key);                                                    \
        write_value(b, v);                                                   \
    }
NT_J_MEMBER(nt_j_kstr, const char *, nt_j_str)
NT_J_MEMBER(nt_j_ku64, uint64_t, nt_j_u64)
NT_J_MEMBER(nt_j_ki64, int64_t, nt_j_i64)
NT_J_MEMBER(nt_j_kms, int64_t, nt_j_ms)
NT_J_MEMBER(nt_j_kbool, int, put_bool)
NT_J_MEMBER(nt_j_kraw, const char *, nt_j_cstr)
