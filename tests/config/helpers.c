#define _GNU_SOURCE
#include "helpers.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

void diags_collect(void *ctx, const char *file, int line, const char *msg)
{
    struct diags *d = ctx;
    cr_assert_lt(d->n, DIAG_MAX, "too many diagnostics");
    struct diag *x = &d->d[d->n++];
    snprintf(x->file, sizeof x->file, "%s", file);
    x->line = line;
    snprintf(x->msg, sizeof x->msg, "%s", msg);
}

const char *diags_text(const struct diags *d, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < d->n && used < len; i++) {
        int n = snprintf(buf + used, len - used, "\n  %s:%d: %s", d->d[i].file,
                         d->d[i].line, d->d[i].msg);
        if (n < 0)
            break;
        used += (size_t)n;
    }
    return buf;
}

static struct nt_config *expect_clean(struct nt_config *cfg,
                                      const struct diags *d, const char *what)
{
    char text[4096];
    cr_assert_eq(d->n, 0, "%s: unexpected diagnostics:%s", what,
                 diags_text(d, text, sizeof text));
    cr_assert_not_null(cfg, "%s: parse failed", what);
    return cfg;
}

struct nt_config *parse_ok(const char *text)
{
    struct diags d = { 0 };
    struct nt_config *cfg = nt_config_parse_string(text, strlen(text), "inline",
                                                   diags_collect, &d);
    return expect_clean(cfg, &d, text);
}

const char *fixture_path(const char *relpath, char *buf, size_t len)
{
    snprintf(buf, len, "%s/%s", NT_FIXTURES, relpath);
    return buf;
}

struct nt_config *parse_fixture_ok(const char *relpath)
{
    char path[1024];
    struct diags d = { 0 };
    fixture_path(relpath, path, sizeof path);
    struct nt_config *cfg = nt_config_parse_file(path, diags_collect, &d);
    return expect_clean(cfg, &d, relpath);
}

/* Fills ss from "a.b.c.d:port", "[v6]:port", "unix:path" / "unix:@name". */
static socklen_t addr_make(struct sockaddr_storage *ss, const char *s)
{
    char host[128];
    memset(ss, 0, sizeof *ss);
    if (strncmp(s, "unix:", 5) == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)ss;
        const char *path = s + 5;
        size_t n = strlen(path);
        un->sun_family = AF_UNIX;
        memcpy(un->sun_path, path, n);
        if (path[0] == '@')
            un->sun_path[0] = '\0';   /* abstract: no trailing NUL */
        else
            n++;
        return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    }
    const char *colon = strrchr(s, ':');
    cr_assert_not_null(colon, "bad test address %s", s);
    int port = atoi(colon + 1);
    if (s[0] == '[') {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
        snprintf(host, sizeof host, "%.*s", (int)(colon - s - 2), s + 1);
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        cr_assert_eq(inet_pton(AF_INET6, host, &in6->sin6_addr), 1, "%s", s);
        return sizeof *in6;
    }
    struct sockaddr_in *in = (struct sockaddr_in *)ss;
    snprintf(host, sizeof host, "%.*s", (int)(colon - s), s);
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)port);
    cr_assert_eq(inet_pton(AF_INET, host, &in->sin_addr), 1, "%s", s);
    return sizeof *in;
}

void conn_make(struct conn *c, int dir, const char *local, const char *remote,
               const char *prog)
{
    memset(c, 0, sizeof *c);
    c->key.dir = dir;
    c->key.prog = prog;
    if (local) {
        c->key.local_len = addr_make(&c->local, local);
        c->key.local = (struct sockaddr *)&c->local;
    }
    if (remote) {
        c->key.remote_len = addr_make(&c->remote, remote);
        c->key.remote = (struct sockaddr *)&c->remote;
    }
}

const struct nt_settings *match(const struct nt_config *cfg, int dir,
                                const char *local, const char *remote,
                                const char *prog)
{
    struct conn c;
    conn_make(&c, dir, local, remote, prog);
    const struct nt_settings *s = nt_config_match(cfg, &c.key);
    cr_assert_not_null(s);
    return s;
}

const char *match_name(const struct nt_config *cfg, int dir, const char *local,
                       const char *remote, const char *prog)
{
    const struct nt_settings *s = match(cfg, dir, local, remote, prog);
    return s->rule ? s->rule : "-";
}

char *dump_string(const struct nt_config *cfg)
{
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    cr_assert_not_null(f);
    nt_config_dump(cfg, f);
    cr_assert_eq(fclose(f), 0);
    return text;
}

void strip_comments(char *text)
{
    char *out = text;
    for (char *line = text; *line;) {
        char *eol = strchr(line, '\n');
        size_t n = eol ? (size_t)(eol - line) : strlen(line);
        char *hash = memchr(line, '#', n);
        size_t keep = hash ? (size_t)(hash - line) : n;
        while (keep > 0 && line[keep - 1] == ' ')
            keep--;
        if (keep > 0 || !hash) {
            memmove(out, line, keep);
            out += keep;
            if (eol)
                *out++ = '\n';
        }
        line += n + (eol ? 1 : 0);
    }
    *out = '\0';
}
