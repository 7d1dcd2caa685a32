/* JSON Lines: enough scanning to count events and read top-level fields of
 * the audit log; python3 does the strict validation. */
#define _GNU_SOURCE
#include "nttest.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int nt_jsonl_parse(struct nt_jsonl *j, const char *text)
{
    size_t cap = 16;
    char *save, *l;
    memset(j, 0, sizeof *j);
    j->buf = strdup(text ? text : "");
    j->line = malloc(cap * sizeof *j->line);
    for (l = strtok_r(j->buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (l[0] != '{')
            continue;
        if (j->n == cap)
            j->line = realloc(j->line, (cap *= 2) * sizeof *j->line);
        j->line[j->n++] = l;
    }
    return 0;
}

int nt_jsonl_load(struct nt_jsonl *j, const char *path)
{
    char *text = nt_read_file(path, NULL);
    if (!text) {
        memset(j, 0, sizeof *j);
        return -1;
    }
    nt_jsonl_parse(j, text);
    free(text);
    return 0;
}

void nt_jsonl_free(struct nt_jsonl *j)
{
    free(j->buf);
    free(j->line);
    memset(j, 0, sizeof *j);
}

static bool is_event(const char *line, const char *event)
{
    char v[64];
    return !event || (nt_json_get(line, "event", v, sizeof v) && !strcmp(v, event));
}

size_t nt_jsonl_count(const struct nt_jsonl *j, const char *event)
{
    size_t n = 0;
    for (size_t i = 0; i < j->n; i++)
        n += is_event(j->line[i], event);
    return n;
}

const char *nt_jsonl_nth(const struct nt_jsonl *j, const char *event, size_t nth)
{
    for (size_t i = 0; i < j->n; i++)
        if (is_event(j->line[i], event) && nth-- == 0)
            return j->line[i];
    return NULL;
}

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\r')
        p++;
    return p;
}

/* Past the closing quote of the string starting at p (a '"'), or NULL. */
static const char *skip_string(const char *p)
{
    for (p++; *p && *p != '"'; p++)
        if (*p == '\\' && !*++p)
            return NULL;
    return *p ? p + 1 : NULL;
}

/* Past the value starting at p, or NULL when malformed. */
static const char *skip_value(const char *p)
{
    int depth = 0;
    if (*p == '"')
        return skip_string(p);
    if (*p != '{' && *p != '[') {
        while (*p && !strchr(",}] \t\r\n", *p))
            p++;
        return p;
    }
    while (*p) {
        if (*p == '"') {
            if (!(p = skip_string(p)))
                return NULL;
            continue;
        }
        if (*p == '{' || *p == '[')
            depth++;
        else if ((*p == '}' || *p == ']') && --depth == 0)
            return p + 1;
        p++;
    }
    return NULL;
}

/* Copy a string value (from its opening quote) unescaped. */
static void copy_string(const char *p, const char *end, char *out, size_t outlen)
{
    static const char esc_in[] = "\"\\/bfnrt", esc_out[] = "\"\\/\b\f\n\r\t";
    size_t n = 0;
    for (p++, end--; p < end && n + 1 < outlen; p++) {
        const char *e;
        if (*p == '\\' && (e = strchr(esc_in, p[1])) && p[1]) {
            out[n++] = esc_out[e - esc_in];
            p++;
        } else {
            out[n++] = *p;      /* \uXXXX stays as written */
        }
    }
    out[n] = 0;
}

bool nt_json_get(const char *line, const char *key, char *out, size_t outlen)
{
    size_t klen = strlen(key);
    const char *p = skip_ws(line);
    if (*p++ != '{')
        return false;
    for (;;) {
        const char *k, *v, *end;
        p = skip_ws(p);
        if (*p != '"' || !(end = skip_string(p)))
            return false;
        k = p + 1;
        p = skip_ws(end);
        if (*p++ != ':')
            return false;
        v = skip_ws(p);
        if (!(end = skip_value(v)) || end == v)
            return false;
        if ((size_t)(p - 2 - k) >= klen && !strncmp(k, key, klen) && k[klen] == '"') {
            if (*v == '"') {
                copy_string(v, end, out, outlen);
            } else {
                size_t n = (size_t)(end - v) < outlen ? (size_t)(end - v) : outlen - 1;
                memcpy(out, v, n);
                out[n] = 0;
            }
            return true;
        }
        p = skip_ws(end);
        if (*p++ != ',')
            return false;
    }
}

double nt_json_num(const char *line, const char *key, double dflt)
{
    char v[64], *end;
    double n;
    if (!line || !nt_json_get(line, key, v, sizeof v))
        return dflt;
    errno = 0;
    n = strtod(v, &end);
    return end == v || *end || errno ? dflt : n;
}

int nt_jsonl_validate(const char *path, char **why)
{
    static const char script[] =
        "import json, sys\n"
        "for i, l in enumerate(open(sys.argv[1], encoding='utf-8'), 1):\n"
        "    if not l.endswith('\\n'):\n"
        "        sys.exit(f'line {i}: not terminated by a newline')\n"
        "    try:\n"
        "        o = json.loads(l)\n"
        "    except ValueError as e:\n"
        "        sys.exit(f'line {i}: {e}: {l[:200]}')\n"
        "    if not isinstance(o, dict):\n"
        "        sys.exit(f'line {i}: not an object')\n";
    struct nt_spawn_opts o = {.no_preload = true};
    struct nt_result r;
    int rc;
    if (why)
        *why = NULL;
    if (nt_run(NT_ARGV("python3", "-c", script, path), &o, 10000, &r) < 0)
        return -1;
    rc = nt_exited(&r, 0) ? 0 : -1;
    if (rc && why)
        *why = strdup(r.err);
    nt_result_free(&r);
    return rc;
}
