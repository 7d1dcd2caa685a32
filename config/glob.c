/* Shell-style patterns: '*', '?', [set], [!set] / [^set], ranges [a-z] and
 * backslash escapes, as fnmatch(3) without character classes. Our own
 * rather than fnmatch() because matching runs at every connect/accept inside
 * the host program: this one never allocates and ignores the locale. */
#include "internal.h"

#include <string.h>

/* End of the set whose body starts at p (just after '['): the closing ']'
 * (a ']' first in the body, after an optional '!'/'^', is a member), or
 * NULL if there is none. */
static const char *set_end(const char *p, const char *pe)
{
    if (p < pe && (*p == '!' || *p == '^'))
        p++;
    if (p < pe && *p == ']')
        p++;
    for (; p < pe; p++) {
        if (*p == '\\' && p + 1 < pe)
            p++;
        else if (*p == ']')
            return p;
    }
    return NULL;
}

/* One member of a set at *p, unescaped; advances *p. */
static unsigned char set_char(const char **p, const char *close)
{
    if (**p == '\\' && *p + 1 < close)
        (*p)++;
    return (unsigned char)*(*p)++;
}

static int set_match(const char *body, const char *close, unsigned char c)
{
    const char *p = body;
    int negate = 0, hit = 0;

    if (*p == '!' || *p == '^') {
        negate = 1;
        p++;
    }
    while (p < close) {
        unsigned char lo = set_char(&p, close), hi = lo;
        if (p + 1 < close && *p == '-') {
            p++;
            hi = set_char(&p, close);
        }
        if (lo <= c && c <= hi)
            hit = 1;
    }
    return hit != negate;
}

/* Does the pattern element at *p match c? Advances *p past it if so. */
static int element_match(const char **p, const char *pe, unsigned char c)
{
    const char *q = *p, *close;
    int ok;

    if (*q == '?') {
        ok = 1;
        q++;
    } else if (*q == '[' && (close = set_end(q + 1, pe)) != NULL) {
        ok = set_match(q + 1, close, c);
        q = close + 1;
    } else {
        if (*q == '\\' && q + 1 < pe)
            q++;
        ok = (unsigned char)*q == c;
        q++;
    }
    if (ok)
        *p = q;
    return ok;
}

/* Classic single-backtrack matcher: on a mismatch, let the last '*' take
 * one more character. Never recursive, O(pattern * string) at worst. */
static int match_range(const char *p, const char *pe, const char *s,
                       const char *se)
{
    const char *star_p = NULL, *star_s = NULL;

    while (s < se) {
        if (p < pe && *p == '*') {
            while (p < pe && *p == '*')
                p++;
            star_p = p;
            star_s = s;
            continue;
        }
        if (p < pe && element_match(&p, pe, (unsigned char)*s)) {
            s++;
            continue;
        }
        if (!star_p)
            return 0;
        p = star_p;
        s = ++star_s;
    }
    while (p < pe && *p == '*')
        p++;
    return p == pe;
}

/* Next '/' of the pattern that is a path separator (not in a set), or pe;
 * *seg_end is where the component before it ends (before the '\\' of an
 * escaped "\\/", which is a separator too, as in fnmatch). */
static const char *pattern_slash(const char *p, const char *pe,
                                 const char **seg_end)
{
    for (; p < pe; p++) {
        const char *close;
        if (*p == '\\' && p + 1 < pe) {
            if (p[1] == '/') {
                *seg_end = p;
                return p + 1;
            }
            p++;
        } else if (*p == '[' && (close = set_end(p + 1, pe)) != NULL) {
            p = close;
        } else if (*p == '/') {
            break;
        }
    }
    *seg_end = p;
    return p;
}

/* With `pathname`, match component by component: nothing but a '/' of the
 * pattern ever matches a '/' of the string. */
int ntc_glob_match(const char *pat, const char *str, int pathname)
{
    const char *pe = pat + strlen(pat), *se = str + strlen(str);

    if (!pathname)
        return match_range(pat, pe, str, se);
    for (;;) {
        const char *seg_end, *pslash = pattern_slash(pat, pe, &seg_end);
        const char *sslash = memchr(str, '/', (size_t)(se - str));
        if (!sslash)
            sslash = se;
        if (!match_range(pat, seg_end, str, sslash))
            return 0;
        if (pslash == pe || sslash == se)
            return pslash == pe && sslash == se;
        pat = pslash + 1;
        str = sslash + 1;
    }
}

const char *ntc_glob_check(const char *pat)
{
    const char *pe = pat + strlen(pat);

    if (pe - pat > NTC_MAX_GLOB)
        return "pattern too long";
    for (const char *p = pat; p < pe; p++) {
        if (*p == '\\') {
            if (p + 1 == pe)
                return "pattern ends with a lone '\\'";
            p++;
        } else if (*p == '[') {
            const char *close = set_end(p + 1, pe);
            if (!close)
                return "'[' without a closing ']'";
            p = close;
        }
    }
    return NULL;
}
