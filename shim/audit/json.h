/* A tiny append-only JSON writer into a caller-supplied, bounded buffer.
 *
 * No allocation, no stdio, no locale: usable from any thread inside a hook.
 * Appends that do not fit set `overflow` and write nothing; a caller can
 * take a mark before an optional part (a backtrace frame) and roll back to
 * it, so a line is shortened rather than cut in the middle of a token. */
#ifndef NT_JSON_H
#define NT_JSON_H

#include <stddef.h>
#include <stdint.h>

struct nt_jbuf {
    char *p;
    size_t len, cap;
    int overflow;   /* an append did not fit */
    int need_comma; /* the next member/element needs a ',' before it */
};

void nt_j_init(struct nt_jbuf *b, char *p, size_t cap);

/* Raw bytes, no escaping. */
void nt_j_raw(struct nt_jbuf *b, const char *s, size_t n);
void nt_j_cstr(struct nt_jbuf *b, const char *s);
/* A JSON string literal with escaping; n bytes of s (s may hold NULs). */
void nt_j_strn(struct nt_jbuf *b, const char *s, size_t n);
void nt_j_str(struct nt_jbuf *b, const char *s);
/* A string literal cut short (ending in "...") if it does not fit. */
void nt_j_str_fit(struct nt_jbuf *b, const char *s);
/* The contents of a string literal, without the quotes (for building one
 * string out of several parts). */
void nt_j_escaped(struct nt_jbuf *b, const char *s, size_t n);
void nt_j_u64(struct nt_jbuf *b, uint64_t v);
void nt_j_i64(struct nt_jbuf *b, int64_t v);
void nt_j_hex(struct nt_jbuf *b, uint64_t v); /* "0x1a2b" */
/* Nanoseconds as milliseconds with microsecond precision, trailing zeros
 * trimmed: 2000000000 -> 2000, 1500 -> 0.001, 250000 -> 0.25. */
void nt_j_ms(struct nt_jbuf *b, int64_t ns);

/* Objects and arrays: `{`, `"key":` with the comma handled, `}`. */
void nt_j_open(struct nt_jbuf *b, char bracket);
void nt_j_close(struct nt_jbuf *b, char bracket);
void nt_j_key(struct nt_jbuf *b, const char *key);
/* Before an array element. */
void nt_j_elem(struct nt_jbuf *b);

/* Convenience members. */
void nt_j_kstr(struct nt_jbuf *b, const char *key, const char *v);
void nt_j_ku64(struct nt_jbuf *b, const char *key, uint64_t v);
void nt_j_ki64(struct nt_jbuf *b, const char *key, int64_t v);
void nt_j_kms(struct nt_jbuf *b, const char *key, int64_t ns);
void nt_j_kbool(struct nt_jbuf *b, const char *key, int v);
/* A literal value as it is: "null", a number in text. */
void nt_j_kraw(struct nt_jbuf *b, const char *key, const char *literal);

struct nt_jmark {
    size_t len;
    int need_comma;
};
static inline struct nt_jmark nt_j_mark(const struct nt_jbuf *b)
{
    struct nt_jmark m = { b->len, b->need_comma };
    return m;
}
static inline void nt_j_rollback(struct nt_jbuf *b, struct nt_jmark m)
{
    b->len = m.len;
    b->need_comma = m.need_comma;
    b->overflow = 0;
}

/* Decimal digits of v into out (at least 20 bytes); returns the length. */
size_t nt_fmt_u64(char *out, uint64_t v);

#endif
